"""The stages, in data-flow order. This tuple is the only list of stages in the code base."""

from stages import s1_synthesize, s2_distill, s3_ppo, s4_evaluate

STAGES = (s1_synthesize, s2_distill, s3_ppo, s4_evaluate)
STAGE_NAMES = tuple(s.NAME for s in STAGES)
