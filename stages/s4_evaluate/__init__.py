"""Stage 4: RM benchmarks for every reward model; AlpacaEval 2 and MT-Bench for every policy."""

from stages.s4_evaluate.config import EvaluateConfig as Config
from stages.s4_evaluate.stage import jobs

NAME = "evaluate"
FOLDER = "s4_evaluate"
__all__ = ["Config", "NAME", "FOLDER", "jobs"]
