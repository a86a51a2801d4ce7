"""Recipe section `synthesize`: the teacher's pair synthesis (METHOD.md steps 1-5)."""

from __future__ import annotations

from pydantic import Field

from ray_cluster.engine_config import EngineConfig
from rlhf_stack.config import StrictModel


class SamplingConfig(StrictModel):
    temperature: float = Field(0.0, ge=0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # 0 = off
    min_p: float = Field(0.0, ge=0, le=1)
    max_new_tokens: int = Field(256, ge=1)


class SynthesizeConfig(StrictModel):
    teacher: str  # model alias from `models`
    teacher_engine: EngineConfig = EngineConfig()
    generators: list[str] = Field(min_length=1)  # model aliases that write candidate answers
    generator_engine: EngineConfig = EngineConfig()
    responses_per_generator: int = Field(1, ge=1)
    candidate_sampling: SamplingConfig = SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=256)
    judge_sampling: SamplingConfig = SamplingConfig(max_new_tokens=20)
    answer_sampling: SamplingConfig = SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=256)
    refine_sampling: SamplingConfig = SamplingConfig(temperature=0.7, top_p=0.8, top_k=20, max_new_tokens=512)
    calibrate_sampling: SamplingConfig = SamplingConfig(max_new_tokens=20)
    teacher_top_logprobs: int = Field(20, ge=0)  # top-k logprobs kept per y_T token for the KL term; 0 = none
    min_score_gap: float = Field(0.0, ge=0)  # drop pairs whose averaged scores differ by less
    parse_retries: int = Field(2, ge=0)  # a judgment that does not parse is asked again this often, then dropped

    def model_aliases(self) -> dict[str, str]:
        refs = {"synthesize.teacher": self.teacher}
        refs.update({f"synthesize.generators.{i}": g for i, g in enumerate(self.generators)})
        return refs
