"""Finished generation results kept on disk, so a killed evaluation resumes without asking a model twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_stack.core.progress import Progress


@dataclass(frozen=True)
class Answer:
    """What the evaluation keeps of a generation result."""

    text: str | None  # None when the backend returned an error
    finish_reason: str | None
    first_token_logprobs: dict[str, float] | None  # the first generated token's alternatives, when asked for
    error: str | None


class RequestLog:
    """An append-only JSONL of finished results by request id (in the job's scratch folder)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, Answer] = {}
        self._lock = threading.Lock()
        if path.exists():
            data = path.read_bytes()
            finished = data[: data.rfind(b"\n") + 1]
            if len(finished) < len(data):  # a line cut short by a kill: cut it off, so the next one starts clean
                with open(path, "r+b") as f:
                    f.truncate(len(finished))
            for line in finished.decode().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # garbled (by an older version's append after a cut line): asked again
                    continue
                key = row.pop("id")
                self.done[key] = Answer(**row)

    def missing(self, requests: Sequence[Any]) -> list[Any]:
        return [r for r in requests if r.id not in self.done]

    def run(self, backend: Any, requests: Sequence[Any], description: str) -> dict[str, Answer]:
        """Runs the requests not finished yet through `backend`, recording each as it arrives."""
        todo = self.missing(requests)
        if todo:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with Progress(description, total=len(todo)) as progress, open(self.path, "a") as f:
                def keep(result: Any) -> None:
                    answer = to_answer(result)
                    with self._lock:
                        if result.id in self.done:
                            return
                        f.write(json.dumps({"id": result.id, **answer.__dict__}) + "\n")
                        f.flush()
                        self.done[result.id] = answer
                        progress.advance()

                for result in backend.generate(todo, on_result=keep):
                    keep(result)  # a no-op for results already kept as they arrived
        return {r.id: self.done[r.id] for r in requests}


def to_answer(result: Any) -> Answer:
    if result.error or not result.completions:
        return Answer(None, None, None, result.error or "no completion")
    completion = result.completions[0]
    first = None
    if completion.top_logprobs:
        first = {}
        for alt in completion.top_logprobs[0]:
            first.setdefault(alt.token, alt.logprob)  # best first: keep the higher logprob of a repeated text
    return Answer(completion.text, completion.finish_reason, first, None)
