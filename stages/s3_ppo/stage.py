"""Stage 3: train one policy per reward-model variant.

prompts (ppo split) + reward_model -> policy (HF causal LM checkpoint)
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rlhf_stack.pipeline import Job, JobContext

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

FOLDER = "s3_ppo"
KIND = "policy"


def jobs(recipe: "Recipe") -> list[Job]:
    cfg = recipe.ppo
    variants = cfg.variants if cfg.variants is not None else list(recipe.distill.variants)
    key = {
        "ppo": cfg.model_dump(mode="json", exclude={"variants"}),
        "policy": recipe.models[cfg.policy].model_dump(mode="json"),
        "data": recipe.data.model_dump(mode="json", exclude={"prompts"}),
        "seed": recipe.seed,
    }
    return [
        Job(stage="ppo", folder=f"{FOLDER}/{v}", kind=KIND, key=key, run=partial(run, variant=v),
            inputs=(f"s2_distill/{v}",), files=(recipe.prompts_path,))
        for v in variants
    ]


def run(ctx: JobContext, variant: str) -> dict:
    raise NotImplementedError("ppo: under construction")
