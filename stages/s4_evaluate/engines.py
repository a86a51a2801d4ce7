"""The engines of one policy job: the policy's, then the judge's. When both are served alike (same engine settings,
same architecture, same tokenizer files) the judge's weights are loaded into the running engine instead of
starting a second one, which on a CPU costs more than the judging of a small model itself."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationBackend, open_backend
from rlhf_stack.core.pipeline import JobContext

_SAME_ARCHITECTURE = ("architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                      "intermediate_size", "vocab_size", "tie_word_embeddings")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
_PROVENANCE_KEYS = {"is_local", "local_files_only", "name_or_path", "_name_or_path"}  # where it was loaded from


def swappable(a: Path, b: Path) -> bool:
    """Whether an engine serving folder `a` can serve `b` by loading its weights: same architecture and tokenizer."""
    if a.resolve() == b.resolve():
        return True
    configs = [json.loads((d / "config.json").read_text()) for d in (a, b)]
    if any(configs[0].get(k) != configs[1].get(k) for k in _SAME_ARCHITECTURE):
        return False
    for name in _TOKENIZER_FILES:
        files = [d / name for d in (a, b)]
        if any(f.exists() for f in files) and not all(f.exists() for f in files):
            return False
        if files[0].exists() and _content(files[0]) != _content(files[1]):
            return False
    return True


def _content(path: Path) -> Any:
    """A tokenizer file's content, without the keys that only record where it was loaded from."""
    if path.suffix != ".json" or path.name == "tokenizer.json":
        return path.read_bytes()
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in _PROVENANCE_KEYS}


class JobEngines:
    """At most one open engine pool, reused (weights swapped) for the next model when `swappable` allows."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self._stack = ExitStack()
        self._backend: GenerationBackend | None = None
        self._cfg: EngineConfig | None = None
        self._dir: Path | None = None
        self.starts = 0  # engines started
        self.swaps = 0  # weight swaps instead of a start

    def get(self, model_dir: Path | None, cfg: EngineConfig, model_name: str) -> Any:
        if (self._backend is not None and cfg == self._cfg and cfg.backend in ("vllm", "hf")
                and model_dir is not None and swappable(self._dir, model_dir)):
            if model_dir.resolve() != self._dir.resolve():
                self._backend.load_weights(str(model_dir))
                self.swaps += 1
                self._dir = model_dir
            return self._backend
        self.close()
        self._backend = self._stack.enter_context(open_backend(model_dir, cfg, cluster=self.ctx.cluster,
                                                               seed=self.ctx.seed, model_name=model_name))
        self._cfg, self._dir = cfg, model_dir
        self.starts += 1
        return self._backend

    def close(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self._backend = None
