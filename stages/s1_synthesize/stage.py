"""Stage 1: synthesize preference data with the teacher.

prompts (synthesize split) -> preference_data (PreferenceRecord shards, drops.jsonl, stats.json)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlhf_stack.pipeline import Job, JobContext

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

FOLDER = "s1_synthesize"
KIND = "preference_data"


def jobs(recipe: "Recipe") -> list[Job]:
    cfg = recipe.synthesize
    key = {
        "synthesize": cfg.model_dump(mode="json"),
        "models": {a: recipe.models[a].model_dump(mode="json") for a in cfg.model_aliases().values()},
        "data": recipe.data.model_dump(mode="json", exclude={"prompts"}),
        "seed": recipe.seed,
    }
    return [Job(stage="synthesize", folder=FOLDER, kind=KIND, key=key, run=run, files=(recipe.prompts_path,))]


def run(ctx: JobContext) -> dict:
    raise NotImplementedError("synthesize: under construction")
