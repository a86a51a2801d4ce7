"""Programmatically checkable constraints on an answer, each with its instruction sentence and mechanical repair.

A constraint is a small frozen dataclass:

- `check(text) -> bool`: whether `text` satisfies it;
- `describe() -> str`: the sentence that asks a model for it (appended to the task's instruction);
- `repair(text) -> str | None`: the text itself when it already complies; otherwise a minimal mechanical edit
  that complies, or None when no mechanical edit can (e.g. a missing number of words cannot be invented).

Repairs are meant to be applied together (`repair.repair_all`), in ascending `repair_rank`:

    10 forbidden_words     delete words
    20 bullet_count        (un)mark lines as bullets; words unchanged
    21 paragraph_count     split or merge paragraphs at line and sentence breaks; words unchanged
    30 highlight_count     bold the first words; the phrase and title checks ignore bold
    40 include_keywords    insert a sentence after the first sentence or line
    41 starts_with         prepend a line
    42 title               prepend a line
    50 max_words           cut the tail; what the repairs above placed early survives
    55 ends_with           append to the last line
    60 no_commas           delete commas (the sandbox's phrases and keywords have none)
    61 lowercase/uppercase change case only; keyword and phrase checks ignore case
    80 json_object         wrap everything, last

so that a later repair leaves what an earlier one satisfied intact. Pairs whose repairs cannot coexist, or
which no answer can satisfy together, are listed in `CONFLICTS` and never combined in one prompt.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stages.sandbox.base import Constraint
from stages.sandbox.layout import BulletCount, HighlightCount, JsonObject, ParagraphCount, Title
from stages.sandbox.wording import (
    EndsWith, ForbiddenWords, IncludeKeywords, Lowercase, MaxWords, MinWords, NoCommas, StartsWith, Uppercase,
)

__all__ = [
    "Constraint", "BulletCount", "HighlightCount", "JsonObject", "ParagraphCount", "Title", "EndsWith",
    "ForbiddenWords", "IncludeKeywords", "Lowercase", "MaxWords", "MinWords", "NoCommas", "StartsWith", "Uppercase",
    "KINDS", "CONFLICTS", "compatible", "constraint_from_json",
]

KINDS: dict[str, type[Constraint]] = {c.kind: c for c in (
    Lowercase, Uppercase, NoCommas, MinWords, MaxWords, IncludeKeywords, ForbiddenWords, BulletCount,
    ParagraphCount, HighlightCount, StartsWith, EndsWith, Title, JsonObject,
)}

# Kinds never combined in one prompt: no answer satisfies both, or their repairs undo each other.
CONFLICTS: frozenset[frozenset[str]] = frozenset(frozenset(pair) for pair in (
    ("lowercase", "uppercase"),  # contradictory
    ("min_words", "max_words"),  # contradictory for some bounds; kept apart rather than tuned
    ("max_words", "ends_with"),  # cutting to the limit removes the appended phrase, appending exceeds the limit
    ("starts_with", "title"),  # both claim the first line
    ("json_object", "uppercase"),  # the wrapper's key is lowercase
    ("json_object", "max_words"),  # the wrapper's key is a word
    ("json_object", "include_keywords"),  # JSON escapes (\n) glue letters to the words that follow
    ("json_object", "bullet_count"),  # one JSON line has no bullets or paragraphs, no phrase or title around it
    ("json_object", "paragraph_count"),
    ("json_object", "starts_with"),
    ("json_object", "ends_with"),
    ("json_object", "title"),
))


def compatible(kinds: list[str] | tuple[str, ...]) -> bool:
    """Whether these kinds may share one prompt: no conflicting pair and no kind twice."""
    return len(set(kinds)) == len(kinds) and not any(
        frozenset((a, b)) in CONFLICTS for i, a in enumerate(kinds) for b in kinds[i + 1 :])


def constraint_from_json(data: dict[str, Any]) -> Constraint:
    """The constraint that `Constraint.to_json` wrote; ValueError naming the problem otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"a constraint is a JSON object with a 'kind', got {data!r}")
    kind = data.get("kind")
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown constraint kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(data) - {"kind"}
    if given != names:
        raise ValueError(f"constraint {kind!r} takes fields {sorted(names)}, got {sorted(given)}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
    return cls(**args)
