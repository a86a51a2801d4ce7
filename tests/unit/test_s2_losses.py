"""Reward-model losses on hand-worked numbers (each expected value is derived in the comments)."""

import math

import pytest
import torch

from stages.s2_distill.losses import (
    bt_loss,
    kl_topk_loss,
    margin_bt_loss,
    margin_mse_loss,
    pair_loss,
    per_sequence_mean,
    sft_loss,
    soft_label_loss,
)

T = torch.tensor
LN2, LN3 = math.log(2), math.log(3)


def test_bt():
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262; -log sigmoid(0) = log 2 = 0.693147; mean 0.503204
    assert bt_loss(T([1.0, 0.0]), T([0.0, 0.0])).item() == pytest.approx(0.503204, abs=1e-6)


def test_margin_bt():
    # gaps [2, 1] minus margins [1, 2] = [1, -1]: -log sigmoid(1) = 0.313262, -log sigmoid(-1) = 1.313262; mean 0.813262
    assert margin_bt_loss(T([2.0, 1.0]), T([0.0, 0.0]), T([1.0, 2.0])).item() == pytest.approx(0.813262, abs=1e-6)


def test_margin_mse_is_per_pair():
    # gaps [3-1, 1-0] = [2, 1], margins [1, 3]: errors [1, -2], squares [1, 4], mean 2.5
    assert margin_mse_loss(T([3.0, 1.0]), T([1.0, 0.0]), T([1.0, 3.0])).item() == pytest.approx(2.5)


def test_margin_mse_rejects_the_reference_broadcast():
    # The reference code's [b] - [b, 1] broadcast gives a [2, 2] matrix: gap_j - m_i = [[1, 0], [-1, -2]], whose
    # mean square is (1 + 0 + 1 + 4) / 4 = 1.5, not 2.5. The shape check refuses it before any arithmetic.
    chosen, rejected, margin = T([3.0, 1.0]), T([1.0, 0.0]), T([[1.0], [3.0]])
    assert ((chosen - rejected) - margin).pow(2).mean().item() == pytest.approx(1.5)  # what the bug computes
    with pytest.raises(ValueError, match=r"1-D tensors of one shape \[b\]"):
        margin_mse_loss(chosen, rejected, margin)
    with pytest.raises(ValueError, match="one shape"):
        margin_bt_loss(chosen, rejected[:1], T([1.0, 3.0]))
    with pytest.raises(ValueError, match="one shape"):
        bt_loss(chosen[:, None], rejected[:, None])


def test_soft_label():
    # m = gap = ln 3: a = sigmoid(ln 3) = 0.75, log sigmoid(ln 3) = ln 0.75 = -0.287682,
    # log sigmoid(-ln 3) = ln 0.25 = -1.386294; loss = 0.75 * 0.287682 + 0.25 * 1.386294 = 0.562335
    assert soft_label_loss(T([LN3]), T([0.0]), T([LN3])).item() == pytest.approx(0.562335, abs=1e-6)
    # m = 0: a = 0.5 and any gap 0 gives ln 2
    assert soft_label_loss(T([0.0]), T([0.0]), T([0.0])).item() == pytest.approx(LN2)


def test_pair_loss_dispatch():
    c, r, m = T([2.0, 1.0]), T([0.0, 0.0]), T([1.0, 2.0])
    assert pair_loss("bt", c, r, None).item() == pytest.approx(bt_loss(c, r).item())
    assert pair_loss("margin_mse", c, r, m).item() == pytest.approx(margin_mse_loss(c, r, m).item())
    with pytest.raises(ValueError, match="needs a margin"):
        pair_loss("margin_bt", c, r, None)


def test_sft_is_length_normalized_per_sequence():
    # Token 0 (sequence 0): logits [0, 0, 0], target 1 -> NLL ln 3 = 1.098612.
    # Token 1 (sequence 1): logits [ln 2, 0, 0] -> p = [0.5, 0.25, 0.25], target 0 -> NLL ln 2 = 0.693147.
    # Token 2 (sequence 1): logits [0, 0, 0], target 2 -> NLL ln 3.
    # Per sequence: 1.098612 and (0.693147 + 1.098612) / 2 = 0.895880; mean 0.997246
    # (a plain token mean would be 0.963457: short sequences would weigh less).
    logits = T([[0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss = sft_loss(logits, T([1, 0, 2]), T([0, 1, 1]), num_seqs=2)
    assert loss.item() == pytest.approx(0.997246, abs=1e-6)


def test_per_sequence_mean_refuses_empty_sequences():
    with pytest.raises(ValueError, match="at least one target token"):
        per_sequence_mean(T([1.0, 2.0]), T([0, 0]), num_seqs=2)


def test_kl_topk_at_temperature_1():
    # Teacher top-2 logprobs [ln 0.5, ln 0.25] renormalized over the two: [2/3, 1/3]. Student logits [0, 0, 0]:
    # log p_s = ln(1/3) for each token. KL = 2/3 ln((2/3)/(1/3)) + 1/3 ln(1) = 2/3 ln 2 = 0.462098.
    loss = kl_topk_loss(T([[0.0, 0.0, 0.0]]), T([[0, 1]]), T([[math.log(0.5), math.log(0.25)]]), T([0]), 1, 1.0)
    assert loss.item() == pytest.approx(2 / 3 * LN2, abs=1e-6)


def test_kl_topk_with_temperature_is_scaled_by_t_squared():
    # T = 2: teacher [ln 0.5, ln 0.25] / 2 renormalized: the ratio is e^(ln 2 / 2) = sqrt 2, so
    # p_t = [sqrt2, 1] / (1 + sqrt2) = [0.585786, 0.414214]; the student stays uniform, 1/3 each.
    # KL = 0.585786 ln(3 * 0.585786) + 0.414214 ln(3 * 0.414214) = 0.330274 + 0.089983 = 0.420257; x T^2 = 1.681027
    loss = kl_topk_loss(T([[0.0, 0.0, 0.0]]), T([[0, 1]]), T([[math.log(0.5), math.log(0.25)]]), T([0]), 1, 2.0)
    assert loss.item() == pytest.approx(1.681027, abs=1e-5)


def test_kl_topk_is_zero_when_the_student_matches_and_positive_otherwise():
    # Student puts 2/3 and 1/3 on tokens 0 and 1 and nothing on token 2: exactly the renormalized teacher.
    student = T([[math.log(2.0), 0.0, -1e4]])
    teacher = T([[math.log(0.5), math.log(0.25)]])
    assert kl_topk_loss(student, T([[0, 1]]), teacher, T([0]), 1, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    # Mass on a token outside the teacher's top-k counts against the student.
    leaky = T([[math.log(2.0), 0.0, math.log(3.0)]])  # p_s = [1/3, 1/6, 1/2]
    # KL = 2/3 ln((2/3)/(1/3)) + 1/3 ln((1/3)/(1/6)) = ln 2 = 0.693147
    assert kl_topk_loss(leaky, T([[0, 1]]), teacher, T([0]), 1, 1.0).item() == pytest.approx(LN2, abs=1e-6)


def test_kl_topk_checks_shapes():
    with pytest.raises(ValueError, match="do not match"):
        kl_topk_loss(T([[0.0, 0.0]]), T([[0, 1], [1, 0]]), T([[0.0, 0.0], [0.0, 0.0]]), T([0]), 1, 1.0)


def test_kl_topk_masks_padding_and_teacher_only_ids():
    # Position 0 had only two alternatives: its third entry is padding (-inf). Position 1 names token 7, which the
    # 3-token student does not have. Both rows reduce to the two-token case of test_kl_topk_at_temperature_1:
    # teacher [2/3, 1/3] against a uniform student, KL = 2/3 ln 2 each, so the mean is 2/3 ln 2.
    logits = T([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    ids = T([[0, 1, 0], [0, 1, 7]])
    logprobs = T([[math.log(0.5), math.log(0.25), -math.inf], [math.log(0.5), math.log(0.25), math.log(0.2)]])
    loss = kl_topk_loss(logits, ids, logprobs, T([0, 1]), 2, 1.0)
    assert loss.item() == pytest.approx(2 / 3 * LN2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # A position with no usable entry at all adds nothing (and no NaN).
    empty = kl_topk_loss(T([[0.0, 0.0, 0.0]]), T([[0, 1]]), T([[-math.inf, -math.inf]]), T([0]), 1, 1.0)
    assert empty.item() == 0.0
