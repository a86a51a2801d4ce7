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
    61 lowercase/uppercase change case only; keyword, phrase and title checks ignore case
    80 json_object         wrap everything, last

so that a later repair leaves what an earlier one satisfied intact. Pairs whose repairs cannot coexist, or
which no answer can satisfy together, are listed in `CONFLICTS` and never combined in one prompt.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from rlhf_stack.sandbox import text as tx


@dataclass(frozen=True)
class Constraint(ABC):
    kind: ClassVar[str]  # the name used in prompt categories, sidecar files and reports
    repair_rank: ClassVar[int]  # repairs run in ascending rank (module docstring)

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
        return {"kind": self.kind, **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}


@dataclass(frozen=True)
class Lowercase(Constraint):
    kind = "lowercase"
    repair_rank = 61

    def check(self, text: str) -> bool:
        return not any(ch.isupper() for ch in text)

    def describe(self) -> str:
        return "Write your whole answer in lowercase letters, without a single capital letter."

    def _fix(self, text: str) -> str:
        return text.lower()


@dataclass(frozen=True)
class Uppercase(Constraint):
    kind = "uppercase"
    repair_rank = 61

    def check(self, text: str) -> bool:
        return not any(ch.islower() for ch in text)

    def describe(self) -> str:
        return "Write your whole answer in capital letters."

    def _fix(self, text: str) -> str:
        return text.upper()


@dataclass(frozen=True)
class NoCommas(Constraint):
    kind = "no_commas"
    repair_rank = 60

    def check(self, text: str) -> bool:
        return "," not in text

    def describe(self) -> str:
        return "Do not use any commas."

    def _fix(self, text: str) -> str:
        return text.replace(",", "")


@dataclass(frozen=True)
class MinWords(Constraint):
    kind = "min_words"
    repair_rank = 0
    min_words: int

    def __post_init__(self):
        _require(self.min_words >= 1, f"min_words must be at least 1, got {self.min_words}")

    def check(self, text: str) -> bool:
        return tx.word_count(text) >= self.min_words

    def describe(self) -> str:
        return f"Your answer must be at least {self.min_words} words long."

    def _fix(self, text: str) -> None:
        return None  # missing content cannot be added mechanically


@dataclass(frozen=True)
class MaxWords(Constraint):
    kind = "max_words"
    repair_rank = 50
    max_words: int

    def __post_init__(self):
        _require(self.max_words >= 1, f"max_words must be at least 1, got {self.max_words}")

    def check(self, text: str) -> bool:
        return tx.word_count(text) <= self.max_words

    def describe(self) -> str:
        return f"Use no more than {self.max_words} words."

    def _fix(self, text: str) -> str:
        last = tx.words(text)[self.max_words - 1]
        return text[: last.end()]  # the first max_words words, exactly as written


@dataclass(frozen=True)
class IncludeKeywords(Constraint):
    kind = "include_keywords"
    repair_rank = 40
    words: tuple[str, ...]

    def __post_init__(self):
        _check_words(self.words)

    def check(self, text: str) -> bool:
        return not self._missing(text)

    def describe(self) -> str:
        return f"Use the {_plural('word', self.words)} {_quoted(self.words)} in your answer."

    def _fix(self, text: str) -> str:
        sentence = f"This answer covers {' and '.join(self._missing(text))}."
        return tx.insert_after_first_sentence(text, sentence)

    def _missing(self, text: str) -> list[str]:
        return [w for w in self.words if not tx.word_pattern(w).search(text)]


@dataclass(frozen=True)
class ForbiddenWords(Constraint):
    kind = "forbidden_words"
    repair_rank = 10
    words: tuple[str, ...]

    def __post_init__(self):
        _check_words(self.words)

    def check(self, text: str) -> bool:
        return not any(tx.word_pattern(w).search(text) for w in self.words)

    def describe(self) -> str:
        return f"Do not use the {_plural('word', self.words)} {_quoted(self.words)} anywhere in your answer."

    def _fix(self, text: str) -> str:
        for word in self.words:
            text = tx.delete_word(text, word)
        return text


@dataclass(frozen=True)
class BulletCount(Constraint):
    kind = "bullet_count"
    repair_rank = 20
    bullets: int

    def __post_init__(self):
        _require(self.bullets >= 1, f"bullets must be at least 1, got {self.bullets}")

    def check(self, text: str) -> bool:
        return len(tx.bullet_lines(text)) == self.bullets

    def describe(self) -> str:
        return f"Include exactly {self.bullets} bullet points, each on its own line starting with '- '."

    def _fix(self, text: str) -> str | None:
        markers = tx.bullet_lines(text)
        if len(markers) > self.bullets:  # the surplus bullets, from the end, lose their marker and stay as lines
            for marker in reversed(markers[self.bullets :]):
                text = text[: marker.start()] + text[marker.end() :]
            return text
        lines = text.split("\n")
        bulleted = {text.count("\n", 0, m.start()) for m in markers}
        plain = [i for i, line in enumerate(lines) if line.strip() and i not in bulleted]
        missing = self.bullets - len(markers)
        if len(plain) < missing:
            return None
        for i in plain[len(plain) - missing :]:  # the last plain lines become bullets: openers stay as they are
            lines[i] = "- " + lines[i].lstrip()
        return "\n".join(lines)


@dataclass(frozen=True)
class ParagraphCount(Constraint):
    kind = "paragraph_count"
    repair_rank = 21
    paragraphs: int

    def __post_init__(self):
        _require(self.paragraphs >= 1, f"paragraphs must be at least 1, got {self.paragraphs}")

    def check(self, text: str) -> bool:
        return len(tx.paragraphs(text)) == self.paragraphs

    def describe(self) -> str:
        return f"Write exactly {self.paragraphs} paragraphs, separated by blank lines."

    def _fix(self, text: str) -> str | None:
        found = len(tx.paragraphs(text))
        if found == 0:
            return None
        lead = len(text) - len(text.lstrip())
        body = text[lead:]
        breaks = list(tx.PARAGRAPH_BREAK.finditer(body.rstrip()))
        if found > self.paragraphs:  # the surplus paragraphs join the last kept one, their lines kept
            for brk in reversed(breaks[self.paragraphs - 1 :]):
                body = body[: brk.start()] + "\n" + body[brk.end() :]
            return text[:lead] + body
        # Too few: split at line breaks inside paragraphs, else also at sentence ends, spread evenly.
        end = len(body.rstrip())
        inside = [m for m in tx.LINE_BREAK.finditer(body, 0, end)
                  if not any(b.start() <= m.start() < b.end() for b in breaks)]
        gaps = inside if len(inside) >= self.paragraphs - found else inside + list(tx.SENTENCE_GAP.finditer(body))
        gaps.sort(key=lambda m: m.start())
        need = self.paragraphs - found
        if len(gaps) < need:
            return None
        chosen = [gaps[(i + 1) * len(gaps) // (need + 1)] for i in range(need)]
        for gap in reversed(chosen):
            body = body[: gap.start()] + "\n\n" + body[gap.end() :]
        return text[:lead] + body


@dataclass(frozen=True)
class HighlightCount(Constraint):
    kind = "highlight_count"
    repair_rank = 30
    min_highlights: int

    def __post_init__(self):
        _require(self.min_highlights >= 1, f"min_highlights must be at least 1, got {self.min_highlights}")

    def check(self, text: str) -> bool:
        return len(tx.HIGHLIGHT.findall(text)) >= self.min_highlights

    def describe(self) -> str:
        parts = "part" if self.min_highlights == 1 else "parts"
        return f"Highlight at least {self.min_highlights} {parts} of your answer in markdown bold, **like this**."

    def _fix(self, text: str) -> str | None:
        need = self.min_highlights - len(tx.HIGHLIGHT.findall(text))
        taken = [m.span() for m in tx.HIGHLIGHT.finditer(text)]
        free = [w for w in tx.words(text) if not any(a <= w.start() < b for a, b in taken)
                and "*" not in text[max(w.start() - 1, 0) : w.end() + 1]]
        if len(free) < need:
            return None
        for w in reversed(free[:need]):  # the first free words, so a later cut to a word limit keeps them
            text = f"{text[: w.start()]}**{w.group()}**{text[w.end() :]}"
        return text


@dataclass(frozen=True)
class StartsWith(Constraint):
    kind = "starts_with"
    repair_rank = 41
    phrase: str

    def __post_init__(self):
        _require(bool(self.phrase.strip()), "phrase must not be empty")

    def check(self, text: str) -> bool:
        return tx.unmarked(text).lstrip().lower().startswith(self.phrase.lower())

    def describe(self) -> str:
        stop = "" if self.phrase[-1] in ".!?" else "."
        return f'Open your answer with the sentence "{self.phrase}"{stop}'

    def _fix(self, text: str) -> str:
        return tx.prepend_line(self.phrase, text)


@dataclass(frozen=True)
class EndsWith(Constraint):
    kind = "ends_with"
    repair_rank = 55
    phrase: str

    def __post_init__(self):
        _require(bool(self.phrase.strip()), "phrase must not be empty")

    def check(self, text: str) -> bool:
        return tx.unmarked(text).rstrip().lower().endswith(self.phrase.lower())

    def describe(self) -> str:
        return f'End your answer with the exact phrase "{self.phrase}" with nothing after it.'

    def _fix(self, text: str) -> str:
        body = text.rstrip()
        return f"{body} {self.phrase}" if body else self.phrase


@dataclass(frozen=True)
class Title(Constraint):
    kind = "title"
    repair_rank = 42
    title_words: ClassVar[int] = 4  # a repaired title is made of the answer's first words

    def check(self, text: str) -> bool:
        first = text.strip().split("\n", 1)[0].strip()
        return first.startswith("<<") and first.endswith(">>") and tx.word_count(first) > 0 and first.count("<<") == 1

    def describe(self) -> str:
        return "Put a title on the first line, wrapped in double angle brackets, such as <<a short title>>."

    def _fix(self, text: str) -> str:
        head = " ".join(w.group() for w in tx.words(text)[: self.title_words]) or "Answer"
        return tx.prepend_line(f"<<{head}>>", text)


@dataclass(frozen=True)
class JsonObject(Constraint):
    kind = "json_object"
    repair_rank = 80
    key: ClassVar[str] = "answer"  # a wrapped answer becomes {"answer": "<the text>"}

    def check(self, text: str) -> bool:
        return isinstance(_json_or_none(_unfenced(text)), dict)

    def describe(self) -> str:
        return "Reply with one JSON object and nothing outside it."

    def _fix(self, text: str) -> str:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end and isinstance(_json_or_none(text[start : end + 1]), dict):
            return text[start : end + 1]  # an object surrounded by prose: drop the prose
        return json.dumps({self.key: text}, ensure_ascii=False)


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


def _unfenced(text: str) -> str:
    """The text inside a ```/```json code fence that wraps the whole answer, else the stripped text."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        body = body[3:-3]
        body = body[4:] if body.startswith("json") else body
    return body.strip()


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check_words(words: tuple[str, ...]) -> None:
    _require(len(words) >= 1, "words must not be empty")
    for word in words:
        _require(isinstance(word, str) and tx.WORD.fullmatch(word) is not None, f"{word!r} is not a single word")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _quoted(words: tuple[str, ...]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _plural(noun: str, items: tuple) -> str:
    return noun if len(items) == 1 else noun + "s"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
