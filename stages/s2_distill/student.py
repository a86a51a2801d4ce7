"""The student reward model: a causal-LM backbone, a bias-free linear `score` head, and the LM head kept for the
generation regularizer.

The reward is the head's value at the last attended position of each row, the EOS the policy emits; position ids
come from the attention mask, so any padding side gives the same reward (as OpenRLHF computes it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn


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

    def __init__(self, lm: nn.Module, head_seed: int):
        super().__init__()
        self.lm = lm
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
        """Rewards of the first rows and LM logits at selected positions, from one backbone pass.

        Args:
            input_ids: [n, L].
            attention_mask: [n, L], 1 on real tokens.
            num_reward_rows: r, rewards are read from rows 0 ... r-1.
            lm_rows, lm_cols: [t] positions whose next-token logits are wanted (only y_T response positions,
                so the vocabulary projection never runs over prompts, pairs or pads).

        Returns:
            rewards [r] in float32, and logits [t, V] (or None).
        """
        if is_right_padded(attention_mask):
            # Causal attention never lets a real token see the pads after it, so no padding mask is needed: the
            # backbone takes the plain causal path (fused attention kernels instead of a materialized mask).
            hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state  # [n, L, H]
        else:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids_from_mask(attention_mask),
                                   use_cache=False).last_hidden_state
        rows = torch.arange(num_reward_rows, device=input_ids.device)
        last = last_token_index(attention_mask[:num_reward_rows])
        rewards = self.score(hidden[rows, last]).squeeze(-1).float()  # [r]
        logits = None
        if lm_rows is not None and lm_rows.numel():
            logits = self.lm.get_output_embeddings()(hidden[lm_rows, lm_cols])  # [t, V]
        return rewards, logits


def load_student(model_dir: Path, head_seed: int, gradient_checkpointing: bool) -> RewardStudent:
    """The base causal LM in float32 (DeepSpeed casts to the training dtype) with a seeded fresh head."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    lm.config.use_cache = False
    if gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return RewardStudent(lm, head_seed)
