"""Constraints on the words and characters of an answer: case, commas, length, keywords, opening and closing."""

from __future__ import annotations

from dataclasses import dataclass

from stages.sandbox import text as tx
from stages.sandbox.base import Constraint, check_words, require


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
        require(self.min_words >= 1, f"min_words must be at least 1, got {self.min_words}")

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
        require(self.max_words >= 1, f"max_words must be at least 1, got {self.max_words}")

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
        check_words(self.words)

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
        check_words(self.words)

    def check(self, text: str) -> bool:
        return not any(tx.word_pattern(w).search(text) for w in self.words)

    def describe(self) -> str:
        return f"Do not use the {_plural('word', self.words)} {_quoted(self.words)} anywhere in your answer."

    def _fix(self, text: str) -> str:
        for word in self.words:
            text = tx.delete_word(text, word)
        return text


@dataclass(frozen=True)
class StartsWith(Constraint):
    kind = "starts_with"
    repair_rank = 41
    phrase: str

    def __post_init__(self):
        require(bool(self.phrase.strip()), "phrase must not be empty")

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
        require(bool(self.phrase.strip()), "phrase must not be empty")

    def check(self, text: str) -> bool:
        return tx.unmarked(text).rstrip().lower().endswith(self.phrase.lower())

    def describe(self) -> str:
        return f'End your answer with the exact phrase "{self.phrase}" with nothing after it.'

    def _fix(self, text: str) -> str:
        body = text.rstrip()
        if not body:
            return self.phrase
        last_line = body.rsplit("\n", 1)[-1]
        return f"{body}\n{self.phrase}" if tx.is_title(last_line) else f"{body} {self.phrase}"  # titles stay whole


def _quoted(words: tuple[str, ...]) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _plural(noun: str, items: tuple) -> str:
    return noun if len(items) == 1 else noun + "s"
