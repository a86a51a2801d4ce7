"""Compact storage of a teacher's top-k next-token logprobs, for the KL regularizer.

One safetensors file holds many responses: for response `rid`, `rid/ids` is an int32 array [n_tokens, k] of token
ids and `rid/logprobs` a float32 array [n_tokens, k] of their log-probabilities (teacher temperature 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_topk(path: Path, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    from safetensors.numpy import save_file

    tensors = {}
    for rid, (ids, logprobs) in entries.items():
        if ids.shape != logprobs.shape or ids.ndim != 2:
            raise ValueError(f"top-k arrays for {rid!r} must both be [n_tokens, k]; got {ids.shape}, {logprobs.shape}")
        tensors[f"{rid}/ids"] = np.ascontiguousarray(ids, dtype=np.int32)
        tensors[f"{rid}/logprobs"] = np.ascontiguousarray(logprobs, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def read_topk(path: Path, rid: str) -> tuple[np.ndarray, np.ndarray]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return f.get_tensor(f"{rid}/ids"), f.get_tensor(f"{rid}/logprobs")
