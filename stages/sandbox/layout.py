"""Constraints on the layout of an answer: bullets, paragraphs, bold highlights, a title line, JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from stages.sandbox import text as tx
from stages.sandbox.base import Constraint, require


@dataclass(frozen=True)
class BulletCount(Constraint):
    kind = "bullet_count"
    repair_rank = 20
    bullets: int

    def __post_init__(self):
        require(self.bullets >= 1, f"bullets must be at least 1, got {self.bullets}")

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
        require(self.paragraphs >= 1, f"paragraphs must be at least 1, got {self.paragraphs}")

    def check(self, text: str) -> bool:
        return len(tx.paragraphs(text)) == self.paragraphs

    def describe(self) -> str:
        return f"Write exactly {self.paragraphs} paragraphs, separated by blank lines."

    def _fix(self, text: str) -> str | None:
        found = len(tx.paragraphs(text))
        if found == 0:
            return None
        lead = len(text) - len(text.lstrip())  # leading blank lines stay as they are
        body = text[lead:]
        breaks = list(tx.PARAGRAPH_BREAK.finditer(body.rstrip()))
        if found > self.paragraphs:  # the surplus paragraphs join the last kept one, their lines kept
            for brk in reversed(breaks[self.paragraphs - 1 :]):
                body = body[: brk.start()] + "\n" + body[brk.end() :]
            return text[:lead] + body
        # Too few: split at line breaks inside paragraphs, and only if those are too few also at sentence ends,
        # choosing split points spread evenly over the text.
        need = self.paragraphs - found
        inside = [m for m in tx.LINE_BREAK.finditer(body, 0, len(body.rstrip()))
                  if not any(b.start() <= m.start() < b.end() for b in breaks)]
        gaps = inside if len(inside) >= need else inside + list(tx.SENTENCE_GAP.finditer(body))
        if len(gaps) < need:
            return None
        gaps.sort(key=lambda m: m.start())
        for gap in reversed([gaps[(i + 1) * len(gaps) // (need + 1)] for i in range(need)]):
            body = body[: gap.start()] + "\n\n" + body[gap.end() :]
        return text[:lead] + body


@dataclass(frozen=True)
class HighlightCount(Constraint):
    kind = "highlight_count"
    repair_rank = 30
    min_highlights: int

    def __post_init__(self):
        require(self.min_highlights >= 1, f"min_highlights must be at least 1, got {self.min_highlights}")

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
class Title(Constraint):
    kind = "title"
    repair_rank = 42
    title_words: ClassVar[int] = 4  # a repaired title is made of the answer's first words

    def check(self, text: str) -> bool:
        return tx.is_title(text.strip().split("\n", 1)[0])

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
