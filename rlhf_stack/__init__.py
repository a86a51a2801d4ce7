"""rlhf-stack: reward models distilled from a generative teacher (RM-Distiller), PPO, evaluation."""

__version__ = "0.1.0"
