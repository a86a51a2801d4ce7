"""The interface every sandbox constraint implements, and the checks its parameters share."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from stages.sandbox import text as tx


@dataclass(frozen=True)
class Constraint(ABC):
    """A checkable demand on an answer; subclasses are frozen dataclasses whose fields are its parameters."""

    kind: ClassVar[str]  # the name used in prompt categories, sidecar files and reports
    repair_rank: ClassVar[int]  # repairs of several constraints run in ascending rank (see constraints.py)

    @abstractmethod
    def check(self, text: str) -> bool: ...

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def _fix(self, text: str) -> str | None:
        """A minimal edit of a non-complying `text`, or None when there is none."""

    def repair(self, text: str) -> str | None:
        """`text` if it complies, else a minimal complying edit of it, else None (cannot be repaired)."""
        if self.check(text):
            return text
        fixed = self._fix(text)
        return fixed if fixed is not None and self.check(fixed) else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def require(ok: bool, message: str) -> None:
    """Refuses a bad parameter (ValueError: the sidecar reader reports it with its file and line)."""
    if not ok:
        raise ValueError(message)


def check_words(words: tuple[str, ...]) -> None:
    require(len(words) >= 1, "words must not be empty")
    for word in words:
        require(isinstance(word, str) and tx.WORD.fullmatch(word) is not None, f"{word!r} is not a single word")


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
