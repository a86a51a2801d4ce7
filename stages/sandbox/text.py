"""What the sandbox's constraints count in a text: words, lines, bullets, paragraphs, bold spans, sentence ends.

Every checker and every repair measures a text through these few definitions, so a repair that satisfies one
constraint is judged by exactly the rule its checker applies.
"""

from __future__ import annotations

import re

# A word: letters/digits/underscore, with inner apostrophes or hyphens ("don't", "well-known" are one word).
WORD = re.compile(r"\w+(?:['’-]\w+)*")
# A markdown bullet line: optional indent, one of - * +, then whitespace and text. "**bold**" is not a bullet.
BULLET = re.compile(r"^[ \t]*[-*+][ \t]+(?=\S)", re.MULTILINE)
# Paragraphs are separated by at least one blank (or whitespace-only) line.
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A highlighted (markdown bold) span on one line.
HIGHLIGHT = re.compile(r"\*\*[^*\n]+?\*\*")
# Whitespace after a sentence end inside a line, where a paragraph may be split.
SENTENCE_GAP = re.compile(r"(?<=[.!?])[ \t]+(?=\S)")
LINE_BREAK = re.compile(r"\n")


def words(text: str) -> list[re.Match]:
    """Every word of `text`, as regex matches (so callers know where each word is)."""
    return list(WORD.finditer(text))


def word_count(text: str) -> int:
    return len(words(text))


def word_pattern(word: str) -> re.Pattern:
    """Case-insensitive whole-word match of `word`: not preceded or followed by a word character."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def delete_word(text: str, word: str) -> str:
    """`text` without any whole-word, case-insensitive occurrence of `word`, nor the spaces that went with it."""
    w = re.escape(word)
    return re.sub(rf"[ \t]+{w}(?!\w)|(?<!\w){w}(?!\w)[ \t]*", "", text, flags=re.IGNORECASE)


def paragraphs(text: str) -> list[str]:
    """The non-empty blocks of `text` between blank lines."""
    return [block for block in PARAGRAPH_BREAK.split(text.strip()) if block.strip()]


def bullet_lines(text: str) -> list[re.Match]:
    """The marker (indent + symbol + space) of every bullet line, as regex matches."""
    return list(BULLET.finditer(text))


def is_title(line: str) -> bool:
    """Whether `line` is a title: one `<<...>>` holding at least one word, nothing around it."""
    line = line.strip()
    return line.startswith("<<") and line.endswith(">>") and line.count("<<") == 1 and word_count(line) > 0


def unmarked(text: str) -> str:
    """`text` without the markdown emphasis stars, for comparisons that should ignore bold."""
    return text.replace("*", "")


def prepend_line(line: str, text: str) -> str:
    """`line` as a new first line of `text`, in the same paragraph as the old first line."""
    body = text.lstrip()
    return f"{line}\n{body}" if body else line


def insert_after_first_sentence(text: str, sentence: str) -> str:
    """`sentence` placed after the first sentence or line of `text`, whichever ends first.

    After a line it becomes a line of its own in the same paragraph; after a sentence it joins that line. The
    first line or sentence (an opening phrase, a title) stays first, and the insertion sits early in the text,
    where cutting the text to a word limit does not remove it.
    """
    start = len(text) - len(text.lstrip())  # leading blank lines are not a first line
    gap = SENTENCE_GAP.search(text, start)
    newline = text.find("\n", start, gap.start() if gap else len(text))
    if newline >= 0:
        return f"{text[:newline]}\n{sentence}{text[newline:]}"
    if gap:
        return f"{text[:gap.start()]} {sentence}{text[gap.start():]}"
    body = text.rstrip()
    return f"{body} {sentence}" if body else sentence
