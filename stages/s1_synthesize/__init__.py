"""Stage 1: the teacher turns prompts into preference data (RM-Distiller, METHOD.md steps 1-5)."""

from stages.s1_synthesize.config import SynthesizeConfig as Config
from stages.s1_synthesize.stage import jobs

NAME = "synthesize"
FOLDER = "s1_synthesize"
__all__ = ["Config", "NAME", "FOLDER", "jobs"]
