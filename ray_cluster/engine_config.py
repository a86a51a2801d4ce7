"""How a model is served for generation: engine kind, how many, and their resources."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rlhf_stack.config import StrictModel


class EngineConfig(StrictModel):
    backend: Literal["vllm", "hf", "openai"] = "vllm"  # hf: transformers generate (baseline and fallback)
    num_engines: int = Field(1, ge=1)  # engine actors; requests are spread across them
    cpus_per_engine: float = Field(1, gt=0)
    gpus_per_engine: int = Field(0, ge=0)  # = tensor parallel size on GPU; 0 on CPU
    max_model_len: int = Field(4096, ge=64)  # prompt + completion tokens
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    enforce_eager: bool = True  # skip torch.compile / CUDA graphs: fast start, a little slower decode
    max_num_seqs: int = Field(64, ge=1)  # vLLM's concurrent sequences per engine
    kv_cache_gib: float = Field(1.0, gt=0)  # CPU only: VLLM_CPU_KVCACHE_SPACE
    max_actor_restarts: int = Field(2, ge=0)  # an engine actor that dies is restarted this often
    # backend: openai
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # name of the environment variable holding the key (never the key itself)
    served_model_name: str | None = None  # model name the server knows; default: the model's source
    max_concurrency: int = Field(8, ge=1)
    request_timeout_s: float = Field(120, gt=0)
    max_retries: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _endpoint(self) -> "EngineConfig":
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
        if self.backend != "openai" and self.base_url:
            raise ValueError(f"base_url is only used with backend 'openai', not {self.backend!r}")
        return self
