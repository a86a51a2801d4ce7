"""The student reward model: a causal-LM backbone, a bias-free linear `score` head, and the LM head kept for the
generation regularizer.

The reward is the head's value at the last attended position of each row, the EOS the policy emits; position ids
come from the attention mask, so any padding side gives the same reward (as OpenRLHF computes it).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACKED_ATTENTION = "rlhf_stack_packed_sdpa"  # sdpa that keeps the rows of a packed sequence apart


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last position whose mask is 1, per row. attention_mask: [n, L] -> [n]."""
    width = attention_mask.size(1)
    return width - 1 - attention_mask.long().fliplr().argmax(dim=1)


def is_right_padded(attention_mask: Tensor) -> bool:
    """True when every row is real tokens followed only by pads. attention_mask: [n, L]."""
    mask = attention_mask.long()
    return bool((mask.cummin(dim=1).values == mask).all())


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """0, 1, 2, ... over the attended positions of each row (pads get 1, as OpenRLHF does). [n, L] -> [n, L]."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


class RewardStudent(nn.Module):
    """Causal LM + `score` head. forward -> (rewards [r], logits [t, V] at the requested positions or None)."""

    def __init__(self, lm: nn.Module, head_seed: int, split_min_saving: float = 1.0, padding_free: bool = False):
        super().__init__()
        self.lm = lm
        self.split_min_saving = split_min_saving  # see length_groups; 1.0: one pass per batch
        self.padding_free = padding_free  # right-padded rows go through as one packed sequence (see _passes)
        if padding_free:
            use_packed_attention(lm)
        hidden = lm.config.hidden_size
        self.score = nn.Linear(hidden, 1, bias=False, dtype=lm.dtype)
        generator = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():  # small init, as OpenRLHF initializes a fresh value head
            self.score.weight.copy_(torch.randn(1, hidden, generator=generator) / (hidden + 1))

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.lm, self.lm.base_model_prefix)

    @property
    def backbone_prefix(self) -> str:
        """Key prefix of the backbone's weights in this module's state dict."""
        return f"lm.{self.lm.base_model_prefix}."

    def forward(self, input_ids: Tensor, attention_mask: Tensor, num_reward_rows: int,
                lm_rows: Tensor | None = None, lm_cols: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Rewards of the first rows and LM logits at selected positions.

        Args:
            input_ids: [n, L].
            attention_mask: [n, L], 1 on real tokens.
            num_reward_rows: r, rewards are read from rows 0 ... r-1.
            lm_rows, lm_cols: [t] positions whose next-token logits are wanted (only y_T response positions,
                so the vocabulary projection never runs over prompts, pairs or pads).

        Returns:
            rewards [r] in float32, and logits [t, V] (or None).
        """
        last = last_token_index(attention_mask)  # [n]
        want_lm = lm_rows is not None and lm_rows.numel() > 0
        reward_parts, lm_parts = [], []
        for rows, hidden in self._passes(input_ids, attention_mask):  # hidden: [len(rows), width, H]
            local = {row: i for i, row in enumerate(rows.tolist())}
            reward_rows = [row for row in local if row < num_reward_rows]
            if reward_rows:
                at = torch.tensor([local[r] for r in reward_rows], device=input_ids.device)
                reward_parts.append((reward_rows, hidden[at, last[reward_rows]]))
            if want_lm:
                in_pass = torch.isin(lm_rows, rows).nonzero().squeeze(1)  # [t_pass]
                if in_pass.numel():
                    at = torch.tensor([local[r] for r in lm_rows[in_pass].tolist()], device=input_ids.device)
                    lm_parts.append((in_pass.tolist(), hidden[at, lm_cols[in_pass]]))
        rewards = self.score(_in_order(reward_parts)).squeeze(-1).float() if reward_parts else \
            input_ids.new_zeros(0, dtype=torch.float32)
        logits = self.lm.get_output_embeddings()(_in_order(lm_parts)) if want_lm else None
        return rewards, logits

    def _passes(self, input_ids: Tensor, attention_mask: Tensor):
        """(row indices [k], last hidden states [k, width, H]) per backbone pass.

        Right-padded rows need no padding mask: causal attention never lets a real token see the pads after it,
        so the backbone takes its plain causal path (fused attention instead of a materialized mask). They go
        through in length-sorted groups, each cut to its own longest row (see `length_groups`), or, padding-free,
        as one packed sequence (`_packed`).
        """
        if not is_right_padded(attention_mask):
            rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            yield rows, self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                      position_ids=position_ids_from_mask(attention_mask),
                                      use_cache=False).last_hidden_state
            return
        if self.padding_free:
            yield torch.arange(input_ids.shape[0], device=input_ids.device), self._packed(input_ids, attention_mask)
            return
        lengths = attention_mask.sum(1).tolist()
        for group in length_groups(lengths, self.split_min_saving):
            rows = torch.tensor(group, device=input_ids.device)
            width = max(lengths[i] for i in group)
            yield rows, self.backbone(input_ids=input_ids[rows, :width], use_cache=False).last_hidden_state


    def _packed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Last hidden states [n, width, H] (zeros at pads) from one pass over the rows laid end to end.

        The backbone sees one sequence of all real tokens (no pads), positions restarting at each row, and the
        packed attention keeps each row causal and to itself; the dense layers then run once over exactly the
        real tokens.
        """
        real = attention_mask.bool()
        lengths = attention_mask.sum(1)
        bounds = F.pad(lengths.cumsum(0), (1, 0))
        positions = position_ids_from_mask(attention_mask)[real][None]
        hidden = self.backbone(input_ids=input_ids[real][None], position_ids=positions, cu_seq_lens_q=bounds,
                               use_cache=False).last_hidden_state[0]  # [t, H]
        out = hidden.new_zeros(*input_ids.shape, hidden.shape[-1])
        out[real] = hidden
        return out


def use_packed_attention(lm: nn.Module) -> None:
    """Switches `lm` to PACKED_ATTENTION: sdpa as before, except that a call given `cu_seq_lens_q` (row
    boundaries in one packed sequence, starting at 0) attends causally within each row only."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, cu_seq_lens_q=None,
                  **kwargs):
        if cu_seq_lens_q is None:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                          dropout=dropout, **kwargs)
        bounds = cu_seq_lens_q.tolist()
        rows = [F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
                                               scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
                for a, b in zip(bounds[:-1], bounds[1:])]
        return torch.cat(rows, dim=2).transpose(1, 2).contiguous(), None

    def mask(attention_mask=None, **kwargs):  # rows are kept apart by the attention above, not by a mask
        return None if attention_mask is None else sdpa_mask(attention_mask=attention_mask, **kwargs)

    AttentionInterface.register(PACKED_ATTENTION, attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, mask)
    lm.config._attn_implementation = PACKED_ATTENTION


def length_groups(lengths: list[int], min_saving: float) -> list[list[int]]:
    """Row indices sorted by length and halved while a split pads at least `min_saving` of the tokens fewer.

    Within a micro-batch the chosen and rejected answers of a pair differ in length, so one pass pads every row to
    the longest; two passes over the shorter and the longer half cost another backbone call but fewer tokens.
    """
    def split(rows: list[int]) -> list[list[int]]:
        half = len(rows) // 2
        padded = len(rows) * lengths[rows[-1]]
        halves = half * lengths[rows[half - 1]] + (len(rows) - half) * lengths[rows[-1]]
        if half == 0 or padded - halves < min_saving * padded:
            return [rows]
        return split(rows[:half]) + split(rows[half:])

    return split(sorted(range(len(lengths)), key=lambda i: lengths[i]))


def _in_order(parts: list[tuple[list[int], Tensor]]) -> Tensor:
    """Concatenates per-pass pieces [k_i, H] and puts them back in the order of their indices."""
    order = torch.tensor([i for idx, _ in parts for i in idx])
    return torch.cat([t for _, t in parts])[torch.argsort(order).to(parts[0][1].device)]


def load_student(model_dir: Path, head_seed: int, gradient_checkpointing: bool,
                 split_min_saving: float = 1.0, padding_free: bool = False) -> RewardStudent:
    """The base causal LM in float32 (DeepSpeed casts to the training dtype) with a seeded fresh head."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    lm.config.use_cache = False
    if gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return RewardStudent(lm, head_seed, split_min_saving, padding_free)
