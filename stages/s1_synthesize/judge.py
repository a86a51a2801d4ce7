"""The judging roles of RM-Distiller behind one small interface, so that something other than an LLM can play them.

A judge plays three roles (METHOD.md steps 2, 4, 5); candidates and the teacher answer y_T always come from the
LLM generation pool. Each role is a batch method: it receives items and returns one `Verdict` per item, in order,
holding either the value or the reason the item is dropped. A judge never invents a value: when it cannot
produce one, it says why.

Judges: `llm_judge.LLMJudge` (the teacher model) and `verifier_judge.VerifierJudge` (the sandbox's programmatic
checker); `synthesize.judges` picks one per role. To add a judge: implement `Judge` (three methods and a `name`),
add its name to `JudgeName` (config.py), and build it in `make_judge` (stage.py). The item's `key` is stable across runs; use it for anything that must repeat
identically on a rerun (seeds, noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class PairItem:
    """One presentation order of a pair: `first` is shown as Assistant 1."""

    key: str  # stable and unique: "<prompt id>/ab" or "<prompt id>/ba"
    prompt_id: str  # the PromptRecord's id (e.g. to look up what a programmatic judge checks)
    prompt: str
    first: str
    second: str


@dataclass(frozen=True)
class RefineItem:
    """Edit `rejected` (y_l) minimally into a better answer, guided by `preferred` (y_T)."""

    key: str
    prompt_id: str
    prompt: str
    preferred: str
    rejected: str


@dataclass(frozen=True)
class Refined:
    chosen: str  # y*_w, the edited answer
    completion: str  # the judge's whole output (diagnosis + edit); the calibration conversation continues it


@dataclass(frozen=True)
class CalibrateItem:
    """Score the refined answer on the 0-10 scale, anchored on the rejected answer's score s_l."""

    key: str
    refine: RefineItem
    refined: Refined
    rejected_score: float


@dataclass(frozen=True)
class Verdict(Generic[T]):
    value: T | None = None
    reason: str | None = None  # drop reason when value is None
    attempts: int = 1  # answers the judge had to read (1 + retries)
    parse_failures: int = 0  # answers that could not be read

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("a Verdict holds a value or a drop reason, exactly one of them")


class Judge(Protocol):
    name: str

    def score_pairs(self, items: Sequence[PairItem]) -> list[Verdict[tuple[float, float]]]:
        """Scores (first, second), each in [0, 10]."""

    def refine(self, items: Sequence[RefineItem]) -> list[Verdict[Refined]]:
        """The minimal edit of each rejected answer."""

    def calibrate(self, items: Sequence[CalibrateItem]) -> list[Verdict[float]]:
        """The refined answer's score s*_w in [0, 10]."""
