"""Reward-model losses, per pair and shape-checked, and the generation regularizers on y_T (METHOD.md §8-9).

Every pair loss takes rewards of shape [b] and returns the mean over pairs. Shapes are checked before any
arithmetic: the reference code subtracted a [b, 1] margin from [b] reward gaps, which broadcast to [b, b] and
regressed every pair onto the batch-mean margin (METHOD.md D1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

OBJECTIVES = ("bt", "margin_bt", "margin_mse", "soft_label")


def _check_pairs(chosen: Tensor, rejected: Tensor, margin: Tensor | None = None) -> None:
    shapes = [chosen.shape, rejected.shape] + ([margin.shape] if margin is not None else [])
    if chosen.dim() != 1 or any(s != chosen.shape for s in shapes):
        raise ValueError(f"pair losses need 1-D tensors of one shape [b]; got {[tuple(s) for s in shapes]}")


def bt_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Bradley-Terry: mean of -log sigmoid(r_c - r_r). chosen, rejected: [b]."""
    _check_pairs(chosen, rejected)
    return -F.logsigmoid(chosen - rejected).mean()


def margin_bt_loss(chosen: Tensor, rejected: Tensor, margin: Tensor) -> Tensor:
    """Margin Bradley-Terry (Llama-2 style): mean of -log sigmoid(r_c - r_r - m). All [b]."""
    _check_pairs(chosen, rejected, margin)
    return -F.logsigmoid(chosen - rejected - margin).mean()


def margin_mse_loss(chosen: Tensor, rejected: Tensor, margin: Tensor) -> Tensor:
    """RM-Distiller margin regression: mean of (r_c - r_r - m)^2. All [b]."""
    _check_pairs(chosen, rejected, margin)
    return (chosen - rejected - margin).pow(2).mean()


def soft_label_loss(chosen: Tensor, rejected: Tensor, margin: Tensor) -> Tensor:
    """Soft-label BT: with a = sigmoid(m), mean of -[a log sigmoid(dr) + (1 - a) log sigmoid(-dr)]. All [b]."""
    _check_pairs(chosen, rejected, margin)
    gap = chosen - rejected
    label = torch.sigmoid(margin)
    return -(label * F.logsigmoid(gap) + (1 - label) * F.logsigmoid(-gap)).mean()


def pair_loss(objective: str, chosen: Tensor, rejected: Tensor, margin: Tensor | None) -> Tensor:
    """The variant's objective on one micro-batch; `margin` is None exactly for `bt`."""
    if objective == "bt":
        return bt_loss(chosen, rejected)
    if margin is None:
        raise ValueError(f"objective {objective!r} needs a margin")
    losses = {"margin_bt": margin_bt_loss, "margin_mse": margin_mse_loss, "soft_label": soft_label_loss}
    if objective not in losses:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    return losses[objective](chosen, rejected, margin)


def per_sequence_mean(values: Tensor, seq: Tensor, num_seqs: int) -> Tensor:
    """Mean over sequences of each sequence's mean token value (length-normalized, METHOD.md §8.2).

    Args:
        values: one value per target token, shape [t].
        seq: which sequence each token belongs to, in [0, num_seqs), shape [t]; every sequence has a token.
        num_seqs: number of sequences.
    """
    if values.shape != seq.shape or values.dim() != 1:
        raise ValueError(f"values and seq must both be [t]; got {tuple(values.shape)}, {tuple(seq.shape)}")
    sums = torch.zeros(num_seqs, dtype=values.dtype, device=values.device).index_add(0, seq, values)
    counts = torch.bincount(seq, minlength=num_seqs).to(values.dtype)
    if bool((counts == 0).any()):
        raise ValueError("every sequence needs at least one target token")
    return (sums / counts).mean()


def sft_loss(logits: Tensor, targets: Tensor, seq: Tensor, num_seqs: int) -> Tensor:
    """Negative log-likelihood of y_T tokens, length-normalized per sequence.

    Args:
        logits: student logits at the positions that predict each target (position t predicts t + 1), [t, V].
        targets: the y_T tokens, EOS included, no pads and no prompt tokens, [t].
        seq: sequence index of each target, [t].
        num_seqs: number of y_T sequences.
    """
    nll = -logits.float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)  # [t]
    return per_sequence_mean(nll, seq, num_seqs)


def kl_topk_loss(logits: Tensor, topk_ids: Tensor, topk_logprobs: Tensor, seq: Tensor, num_seqs: int,
                 temperature: float) -> Tensor:
    """T^2 * KL(p_teacher || p_student) over the teacher's top-k tokens, length-normalized per sequence.

    The teacher's distribution at temperature T is its stored top-k logprobs divided by T and renormalized over
    the k tokens (the tail was not stored). The student's log-probabilities are over its whole vocabulary, so
    the term is >= 0 and 0 only when the student puts exactly the teacher's renormalized mass on those k tokens.

    An entry whose logprob is -inf (a position where the engine returned fewer than k alternatives) or whose id
    is outside the student's vocabulary (a token only the teacher has) is masked: it has no mass and adds nothing,
    so 0 * (-inf) never turns the sum into NaN. A position with no usable entry adds 0.

    Args:
        logits: student logits at the positions that predict each y_T token, [t, V].
        topk_ids: the teacher's top-k token ids at each of those positions, [t, k].
        topk_logprobs: the teacher's logprobs of those tokens at temperature 1, [t, k]; -inf marks padding.
        seq: sequence index of each position, [t].
        num_seqs: number of y_T sequences.
        temperature: T > 0.
    """
    if topk_ids.shape != topk_logprobs.shape or topk_ids.shape[0] != logits.shape[0]:
        raise ValueError(f"top-k shapes {tuple(topk_ids.shape)}, {tuple(topk_logprobs.shape)} do not match "
                         f"logits {tuple(logits.shape)}")
    usable = torch.isfinite(topk_logprobs) & (topk_ids >= 0) & (topk_ids < logits.shape[-1])  # [t, k]
    teacher = (topk_logprobs.float() / temperature).masked_fill(~usable, float("-inf")).log_softmax(-1)  # [t, k]
    student = (logits.float() / temperature).log_softmax(-1).gather(-1, torch.where(usable, topk_ids, 0).long())
    # Masked entries are zeroed on both factors, so neither the value nor the gradient sees a -inf or NaN.
    p_teacher = torch.where(usable, teacher.exp(), 0.0)  # [t, k]
    log_ratio = torch.where(usable, teacher - student, 0.0)  # [t, k]
    kl = (p_teacher * log_ratio).sum(-1)  # [t]
    return temperature**2 * per_sequence_mean(kl, seq, num_seqs)
