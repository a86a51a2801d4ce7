"""The evaluation's request log after a kill: a last line cut short is dropped, and what is appended after it
stays readable (appended to the cut line, the next answer would be lost too and asked again)."""

import json
from dataclasses import dataclass

from ray_cluster.generation.types import Completion, GenerationResult
from stages.s4_evaluate.request_log import RequestLog


@dataclass(frozen=True)
class Ask:
    id: str


class Echo:
    """Answers every request with its id; records what it was asked."""

    def __init__(self):
        self.asked = []

    def generate(self, requests, on_result):
        self.asked += [r.id for r in requests]
        return [GenerationResult(r.id, (Completion(f"answer {r.id}", (), "stop"),)) for r in requests]


def test_a_cut_last_line_is_dropped_and_later_answers_survive_a_reopen(tmp_path):
    path = tmp_path / "generations.jsonl"
    first = Echo()
    RequestLog(path).run(first, [Ask("a"), Ask("b")], "answers")
    path.write_bytes(path.read_bytes() + b'{"id": "c", "text": "ans')  # killed while writing c's line
    log = RequestLog(path)
    assert set(log.done) == {"a", "b"}
    second = Echo()
    log.run(second, [Ask("a"), Ask("b"), Ask("c"), Ask("d")], "answers")
    assert second.asked == ["c", "d"]
    reopened = RequestLog(path)
    assert {k: v.text for k, v in reopened.done.items()} == {k: f"answer {k}" for k in "abcd"}
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c", "d"]
