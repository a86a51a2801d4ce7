"""Stage 4: evaluate reward models and policies.

reward_model(s) + policy(ies) -> evaluation (per-item scores and benchmark tables)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlhf_stack.pipeline import Job, JobContext

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

FOLDER = "s4_evaluate"
KIND = "evaluation"


def jobs(recipe: "Recipe") -> list[Job]:
    cfg = recipe.evaluate
    key = {"evaluate": cfg.model_dump(mode="json"), "seed": recipe.seed}
    return [Job(stage="evaluate", folder=FOLDER, kind=KIND, key=key, run=run)]


def run(ctx: JobContext) -> dict:
    raise NotImplementedError("evaluate: under construction")
