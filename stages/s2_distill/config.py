"""Recipe section `distill`: one reward model per variant, trained with DeepSpeed (METHOD.md §7-9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rlhf_stack.config import StrictModel


class VariantConfig(StrictModel):
    pairs: Literal["initial", "refined"]  # initial: (y_w, y_l); refined: (y*_w, y_l)
    margin: Literal["none", "raw", "calibrated"]  # raw: s_w - s_l; calibrated: s*_w - s_l
    objective: Literal["bt", "margin_bt", "margin_mse", "soft_label"]  # no default: say which
    sft_weight: float = Field(ge=0)  # generation regularizer on y_T (no default, METHOD.md D2)
    kl_weight: float = Field(ge=0)
    kl_temperature: float = Field(1.0, gt=0)


class DistillConfig(StrictModel):
    base_model: str  # model alias; must share the policy's tokenizer
    variants: dict[str, VariantConfig] = Field(min_length=1)
    max_length_tokens: int = Field(1024, ge=16)
    pairs_per_step: int = Field(16, ge=1)
    micro_pairs_per_device: int = Field(4, ge=1)
    num_processes: int = Field(1, ge=1)
    zero_stage: Literal[0, 1, 2, 3] = 0
    dtype: Literal["bf16", "fp32"] = "bf16"
    lr: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    held_out_fraction: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _divisible(self) -> "DistillConfig":
        per_step = self.micro_pairs_per_device * self.num_processes
        if self.pairs_per_step % per_step:
            raise ValueError(
                f"pairs_per_step ({self.pairs_per_step}) must be a multiple of "
                f"micro_pairs_per_device x num_processes ({self.micro_pairs_per_device} x {self.num_processes})"
            )
        return self

    def model_aliases(self) -> dict[str, str]:
        return {"distill.base_model": self.base_model}
