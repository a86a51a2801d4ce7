"""Recipe sections shared by every stage: where Ray runs and which prompts to use."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.prompt_dataset import PromptDataset


class ClusterConfig(StrictModel):
    address: str = "local"  # "local" starts Ray in-process; "auto", "host:port" or "ray://host:port" connect
    num_cpus: int | None = Field(None, ge=1)  # local Ray only; default: the CPUs this process may use
    num_gpus: int | None = Field(None, ge=0)  # local Ray only
    namespace: str = "rlhf-stack"
    runtime_env: dict[str, Any] = {}  # Ray runtime environment for a remote cluster (env_vars, pip, ...)

    @model_validator(mode="after")
    def _local_only(self) -> "ClusterConfig":
        if self.address != "local" and (self.num_cpus is not None or self.num_gpus is not None):
            raise ValueError(
                f"num_cpus/num_gpus size a local Ray only, but address is {self.address!r}; "
                "remove them or set address: local"
            )
        return self


class ComputeConfig(StrictModel):
    """How stages compute on the machine at hand (rlhf_stack/core/precision.py decides every `dtype: auto`)."""

    # An explicit bf16/fp16 on a CPU without native support for it is refused at validate (it runs many times
    # slower than fp32); true keeps it anyway.
    allow_slow_precision: bool = False


class SplitFractions(StrictModel):
    """Share of the prompts each stage uses; disjoint, assigned by a seeded hash of the prompt id."""

    synthesize: float = Field(0.6, ge=0, le=1)
    ppo: float = Field(0.3, ge=0, le=1)
    evaluate: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> "SplitFractions":
        total = self.synthesize + self.ppo + self.evaluate
        if total > 1 + 1e-9:
            raise ValueError(f"split fractions add up to {total:g}; they must add up to at most 1")
        return self


class DataConfig(StrictModel):
    # A JSONL of {"id", "prompt", "category"?, "chosen"?, "rejected"?} relative to the recipe file, or a dataset
    # (hub id or local file/folder) with a column mapping and filters (rlhf_stack/core/prompt_dataset.py).
    prompts: str | PromptDataset
    splits: SplitFractions = SplitFractions()
    split_seed: int = 0  # kept apart from the run seed, so seeds can vary without moving prompts between splits
