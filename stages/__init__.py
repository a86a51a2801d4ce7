"""The stages, in data-flow order. This tuple is the only list of stages in the code base.

Each stage is a package that exposes `NAME` (its recipe section), `FOLDER` (its run-folder prefix), `Config` (the
strict model of its section), `jobs(recipe) -> list[Job]` and optionally `READS` (the stages whose output it
reads). The application assembles the recipe and the run from this registry (rlhf_stack/app/recipe.py).
"""

from stages import s1_synthesize, s2_distill, s3_ppo, s4_evaluate

STAGES = (s1_synthesize, s2_distill, s3_ppo, s4_evaluate)
STAGE_NAMES = tuple(s.NAME for s in STAGES)
