"""How a model is served for generation: engine kind, how many, and their resources."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.precision import ComputeUse, DType


class EngineConfig(StrictModel):
    backend: Literal["vllm", "hf", "openai"] = "vllm"  # hf: transformers generate (baseline and fallback)
    num_engines: int = Field(1, ge=1)  # engine actors; requests are spread across them
    cpus_per_engine: float = Field(1, gt=0)
    gpus_per_engine: int = Field(0, ge=0)  # = tensor parallel size on GPU; 0 on CPU
    max_model_len: int = Field(4096, ge=64)  # prompt + completion tokens
    dtype: DType = "auto"  # auto: rlhf_stack/core/precision.py decides on the node that runs the engine
    enforce_eager: bool = True  # skip torch.compile / CUDA graphs: fast start, a little slower decode
    max_num_seqs: int = Field(64, ge=1)  # sequences decoded together per engine (vLLM and hf)
    kv_cache_gib: int = Field(1, ge=1)  # CPU only: VLLM_CPU_KVCACHE_SPACE (whole GiB)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)  # GPU only: share of GPU memory vLLM may take
    max_actor_restarts: int = Field(2, ge=0)  # an engine actor that dies is restarted this often
    # backend: openai
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # name of the environment variable holding the key (never the key itself)
    served_model_name: str | None = None  # model name the server knows; default: the model folder's path
    max_concurrency: int = Field(8, ge=1)  # requests in flight at once
    request_timeout_s: float = Field(120, gt=0)
    max_retries: int = Field(5, ge=0)  # on 429, 5xx, timeouts and dropped connections, with exponential backoff
    retry_backoff_s: float = Field(1.0, ge=0)  # first wait; doubles per retry (a Retry-After header wins)

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_engine else "cpu"

    def compute_use(self, stage: str, role: str, key: str, on_this_machine: bool) -> ComputeUse | None:
        """What the engines of `key` will compute with; None for a server (it decides for itself)."""
        if self.backend == "openai":
            return None
        threads = None if self.gpus_per_engine else max(1, int(self.cpus_per_engine))  # Ray's OMP_NUM_THREADS
        return ComputeUse(stage, f"{role} ({self.backend})", f"{key}.dtype", self.dtype, self.device, threads,
                          self.num_engines, on_this_machine)

    @model_validator(mode="after")
    def _endpoint(self) -> "EngineConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.backend != "openai" and self.base_url:
            raise ValueError(f"base_url is only used with backend 'openai', not {self.backend!r}")
        if self.backend == "hf" and self.gpus_per_engine > 1:
            raise ValueError(
                f"backend 'hf' runs one model copy per engine on at most one GPU, but gpus_per_engine is "
                f"{self.gpus_per_engine}; use backend 'vllm' for tensor parallelism or set gpus_per_engine: 1"
            )
        return self
