"""Stage 3: one PPO policy per reward-model variant (OpenRLHF on a GPU Ray cluster, or the local backend)."""

from stages.s3_ppo.config import PPOConfig as Config
from stages.s3_ppo.stage import jobs

NAME = "ppo"
FOLDER = "s3_ppo"
READS = ("distill",)  # stages whose output this one reads: their sections must be in the recipe
__all__ = ["Config", "NAME", "FOLDER", "READS", "jobs"]
