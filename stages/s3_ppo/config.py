"""Recipe section `ppo`: one policy per reward-model variant (OpenRLHF on a GPU cluster, or local)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rlhf_stack.config import StrictModel


class PPOConfig(StrictModel):
    backend: Literal["local", "openrlhf"] = "local"
    policy: str  # model alias of the initial policy (also the reference model)
    variants: list[str] | None = None  # RM variants to train a policy for; default: all of distill.variants
    estimator: Literal["gae", "reinforce", "group_norm", "rloo"] = "gae"
    prompts_per_step: int = Field(8, ge=1)
    samples_per_prompt: int = Field(1, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    episodes: int = Field(1, ge=1)
    kl_coef: float = Field(0.05, ge=0)
    actor_lr: float = Field(1e-6, gt=0)
    critic_lr: float = Field(9e-6, gt=0)

    def model_aliases(self) -> dict[str, str]:
        return {"ppo.policy": self.policy}
