"""The record of finished requests that lets a killed run resume without sending them again.

One JSON line per finished request, appended (and flushed) the moment its result arrives, keyed by the request
id, which carries a digest of everything that decides the answer (model, messages, sampling). A rerun answers
those requests from here. A SIGKILL can leave half a line at the end; it is cut off on the next open.
Top-k logprobs are stored compactly: ids and logprobs as base64 arrays, the text of each distinct token once.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import numpy as np

from ray_cluster.generation.types import Completion, GenerationResult, TokenLogprob

log = logging.getLogger("rlhf_stack")


class RequestJournal:
    def __init__(self, path: Path):
        self.path = path
        self._results: dict[str, GenerationResult] = {}
        good_bytes = 0
        if path.exists():
            with open(path, "rb") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        break  # the unfinished last line of a killed run
                    if not line.endswith(b"\n"):
                        break
                    self._results[entry["id"]] = decode_result(entry)
                    good_bytes += len(line)
            if good_bytes < path.stat().st_size:
                log.warning("%s: dropping an unfinished last line (%d bytes)", path,
                            path.stat().st_size - good_bytes)
                with open(path, "r+b") as f:
                    f.truncate(good_bytes)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a")

    def __len__(self) -> int:
        return len(self._results)

    def get(self, request_id: str) -> GenerationResult | None:
        return self._results.get(request_id)

    def add(self, result: GenerationResult) -> None:
        self._results[result.id] = result
        self._file.write(json.dumps(encode_result(result)) + "\n")
        self._file.flush()  # a SIGKILL loses only what the OS had not been handed

    def close(self) -> None:
        self._file.close()


def encode_result(r: GenerationResult) -> dict:
    return {"id": r.id, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "prompt_truncated": r.prompt_truncated, "error": r.error,
            "completions": [_encode_completion(c) for c in r.completions]}


def decode_result(d: dict) -> GenerationResult:
    return GenerationResult(id=d["id"], completions=tuple(_decode_completion(c) for c in d["completions"]),
                            prompt_tokens=d["prompt_tokens"], completion_tokens=d["completion_tokens"],
                            prompt_truncated=d["prompt_truncated"], error=d["error"])


def _encode_completion(c: Completion) -> dict:
    out = {"text": c.text, "token_ids": list(c.token_ids), "finish_reason": c.finish_reason}
    if not c.top_logprobs:
        return out
    if all(e.token_id is not None for position in c.top_logprobs for e in position):
        width = max(len(position) for position in c.top_logprobs)
        ids = np.full((len(c.top_logprobs), width), -1, dtype=np.int32)  # -1 pads short positions
        logprobs = np.zeros((len(c.top_logprobs), width), dtype=np.float32)
        vocab = {}
        for i, position in enumerate(c.top_logprobs):
            for j, e in enumerate(position):
                ids[i, j], logprobs[i, j] = e.token_id, e.logprob
                vocab[str(e.token_id)] = e.token
        out["top"] = {"ids": _b64(ids), "logprobs": _b64(logprobs), "shape": list(ids.shape), "vocab": vocab}
    else:
        out["top_text"] = [[[e.token, e.logprob] for e in position] for position in c.top_logprobs]
    return out


def _decode_completion(d: dict) -> Completion:
    top: tuple = ()
    if "top" in d:
        shape = tuple(d["top"]["shape"])
        ids = np.frombuffer(base64.b64decode(d["top"]["ids"]), dtype=np.int32).reshape(shape)
        logprobs = np.frombuffer(base64.b64decode(d["top"]["logprobs"]), dtype=np.float32).reshape(shape)
        vocab = d["top"]["vocab"]
        top = tuple(tuple(TokenLogprob(vocab[str(t)], int(t), float(lp)) for t, lp in zip(row_ids, row_lps) if t >= 0)
                    for row_ids, row_lps in zip(ids.tolist(), logprobs.tolist()))
    elif "top_text" in d:
        top = tuple(tuple(TokenLogprob(t, None, float(lp)) for t, lp in position) for position in d["top_text"])
    return Completion(text=d["text"], token_ids=tuple(d["token_ids"]), finish_reason=d["finish_reason"],
                      top_logprobs=top)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()
