"""Recipe section `evaluate`: RM benchmarks for every RM, AlpacaEval 2 and MT-Bench for every policy."""

from __future__ import annotations

from ray_cluster.engine_config import EngineConfig
from rlhf_stack.config import StrictModel


class EvaluateConfig(StrictModel):
    judge: str  # model alias of the judge
    judge_engine: EngineConfig = EngineConfig()

    def model_aliases(self) -> dict[str, str]:
        return {"evaluate.judge": self.judge}
