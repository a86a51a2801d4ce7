"""Generation engines (vLLM or transformers) in Ray actors, and an OpenAI-compatible client, behind one API.

    from ray_cluster.generation import open_backend
    with open_backend(model_dir, engine_cfg, cluster=cluster_cfg, seed=seed, model_name="teacher") as backend:
        results = backend.generate(requests, on_result=callback)   # list[GenerationResult], in input order

`on_result` is called with each result as it arrives (any order), for progress and for persisting finished work.
`backend.load_weights(folder)` swaps in the weights of a saved HF folder of the same architecture (vllm, hf);
`backend.update_weights(state_dict)` swaps in weights from memory, through Ray's object store (vllm, hf).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.types import Completion, GenerationRequest, GenerationResult, Sampling, TokenLogprob
from rlhf_stack.core.errors import EngineError
from rlhf_stack.core.sections import ClusterConfig
from ray_cluster.generation.openai_backend import OpenAIBackend
from ray_cluster.generation.pool import EnginePool
from ray_cluster.session import ensure_ray

__all__ = ["Completion", "GenerationBackend", "GenerationRequest", "GenerationResult", "Sampling", "TokenLogprob",
           "open_backend"]


class GenerationBackend(Protocol):
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[GenerationResult], None] | None = None,
    ) -> list[GenerationResult]: ...

    def load_weights(self, folder: str) -> None: ...

    def update_weights(self, tensors: Mapping[str, Any]) -> None: ...

    @property
    def precision(self) -> str | None:
        """What the engines really run at (bf16 | fp16 | fp32); None where the backend does not say (a server)."""

    def close(self) -> None: ...


@contextmanager
def open_backend(
    model_dir: Path | str | None,
    engine_cfg: EngineConfig,
    *,
    cluster: ClusterConfig | None = None,
    seed: int = 0,
    model_name: str = "model",
) -> Iterator[GenerationBackend]:
    """Starts the engines `engine_cfg` describes (joining or starting Ray as `cluster` says) and stops them after.

    Args:
        model_dir: local HF folder of the model; may be None for backend "openai" with `served_model_name`.
        engine_cfg: backend, engine count and resources.
        cluster: where Ray runs (engine backends only); default: a local Ray.
        seed: engine seed; also the base of per-request seeds when a request has none.
        model_name: shown in logs and actor names (e.g. the recipe's model alias).

    Raises:
        EngineError: an engine cannot start or fails beyond its restarts.
        ClusterError: the cluster lacks the CPUs or GPUs the engines need.
    """
    if engine_cfg.backend == "openai":
        backend: GenerationBackend = OpenAIBackend(None if model_dir is None else Path(model_dir), engine_cfg,
                                                   seed=seed, model_name=model_name)
    else:
        if model_dir is None:
            raise EngineError(f"{model_name}: backend {engine_cfg.backend!r} needs a local model folder")
        cluster = cluster or ClusterConfig()
        ensure_ray(cluster)
        backend = EnginePool(engine_cfg.backend, str(Path(model_dir).resolve()), engine_cfg, seed=seed,
                             name=model_name, namespace=cluster.namespace)
    try:
        yield backend
    finally:
        backend.close()
