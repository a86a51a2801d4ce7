"""Stage 2: distill the teacher's preferences into one reward model per variant.

preference_data -> reward_model (HF *ForSequenceClassification, num_labels=1, bias-free head `score`)
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rlhf_stack.pipeline import Job, JobContext

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

FOLDER = "s2_distill"
KIND = "reward_model"
SOURCE = "s1_synthesize"


def jobs(recipe: "Recipe") -> list[Job]:
    cfg = recipe.distill
    shared = cfg.model_dump(mode="json", exclude={"variants"})
    out = []
    for variant, vcfg in cfg.variants.items():
        key = {
            "distill": shared,
            "variant": vcfg.model_dump(mode="json"),
            "base_model": recipe.models[cfg.base_model].model_dump(mode="json"),
            "seed": recipe.seed,
        }
        out.append(Job(stage="distill", folder=f"{FOLDER}/{variant}", kind=KIND, key=key,
                       run=partial(run, variant=variant), inputs=(SOURCE,)))
    return out


def run(ctx: JobContext, variant: str) -> dict:
    raise NotImplementedError("distill: under construction")
