"""Stage 2: one reward model per variant, distilled from the preference data with DeepSpeed."""

from stages.s2_distill.config import DistillConfig as Config
from stages.s2_distill.stage import jobs

NAME = "distill"
FOLDER = "s2_distill"
READS = ("synthesize",)  # stages whose output this one reads: their sections must be in the recipe
__all__ = ["Config", "NAME", "FOLDER", "READS", "jobs"]
