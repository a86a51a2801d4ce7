"""Record schemas that stages exchange, and JSONL reading/writing.

`PromptRecord` is what users supply. `PreferenceRecord` is the contract between synthesis (s1) and distillation
(s2): one record per prompt, holding every teacher product, so one artifact serves every RM variant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field

from rlhf_stack.core.artifacts import write_atomic
from rlhf_stack.core.config import StrictModel

T = TypeVar("T", bound=BaseModel)


class PromptRecord(StrictModel):
    id: str = Field(min_length=1)
    prompt: str
    category: str = ""
    chosen: str | None = None  # a preference set's answers, usable as the initial pair (the method's "orig" data)
    rejected: str | None = None


class Candidate(StrictModel):
    generator: str  # model alias from the recipe
    text: str
    finish_reason: str  # "stop" or "length"


class PairJudgment(StrictModel):
    first: int  # candidate index shown as Assistant 1
    second: int  # candidate index shown as Assistant 2
    scores: tuple[float, float]  # the teacher's 1-10 scores for (first, second), in the order shown


class InitialPair(StrictModel):
    """The teacher's pairwise verdict on two candidates (METHOD.md step 2), both orders averaged."""

    chosen_index: int
    rejected_index: int
    chosen: str  # y_w
    rejected: str  # y_l
    chosen_score: float  # s_w
    rejected_score: float  # s_l
    judgments: list[PairJudgment]


class TeacherAnswer(StrictModel):
    """The teacher's own answer y_T (METHOD.md step 3), the text of the generation regularizer."""

    text: str
    token_ids: list[int]  # the teacher tokenizer's ids of the response, ending with EOS when it stopped
    finish_reason: str
    topk_file: str | None = None  # safetensors file in the artifact with its top-k logprobs (see topk_store)


class Refinement(StrictModel):
    """Contrastive refinement and self-calibrated score (METHOD.md steps 4-5)."""

    chosen: str  # y*_w: the rejected answer, minimally edited by the teacher
    completion: str  # the teacher's whole refinement output (diagnosis + edit)
    calibrated_score: float  # s*_w, anchored on s_l
    margin: float  # s*_w - s_l, raw points
    edit_distance: float  # character-level edit distance between y*_w and y_l, over len(y_l)


class RMBoostPair(StrictModel):
    """Baseline: the teacher rewrites its own answer better or worse."""

    direction: str  # "better" or "worse"
    chosen: str
    rejected: str


class PreferenceRecord(StrictModel):
    id: str  # the prompt id; every later join is by this id
    prompt: str
    candidates: list[Candidate]
    initial: InitialPair
    teacher_answer: TeacherAnswer | None = None
    refinement: Refinement | None = None
    rmboost: RMBoostPair | None = None


def read_json_lines(path: Path, *, missing_ok: bool = False) -> list[dict]:
    """Every non-blank line of a JSON-lines file, as plain objects (no schema); [] for a missing file only when
    `missing_ok`."""
    if missing_ok and not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_jsonl(path: Path, schema: type[T]) -> list[T]:
    return list(iter_jsonl(path, schema))


def iter_jsonl(path: Path, schema: type[T]) -> Iterator[T]:
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield schema.model_validate_json(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{line_no}: not a valid {schema.__name__}: {e}") from e


def write_jsonl(path: Path, records: Iterable[BaseModel | dict], *, exclude_none: bool = False) -> int:
    """Writes all records atomically (leaving out unset optional fields when asked); returns how many."""
    lines = [r.model_dump_json(exclude_none=exclude_none) if isinstance(r, BaseModel) else json.dumps(r, sort_keys=True)
             for r in records]
    write_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)
