"""Reading the teacher's answers. A parser returns the value, or None with the reason it could not; it never
substitutes a default (METHOD.md D9, D10)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ray_cluster.generation.types import Completion
from stages.s1_synthesize.prompts import (
    MODIFIED,
    MODIFIED_END_MALFORMED,
    REWRITE_TAGS,
    SCORE_MAX,
    SCORE_MIN,
)

NUMBER = re.compile(r"[-+]?(?:\d*\.\d+|\d+)")  # the sign belongs to either form
_MODIFIED = re.compile(
    re.escape(MODIFIED[0]) + r"\s*(.*?)\s*(?:" + re.escape(MODIFIED[1]) + "|" + re.escape(MODIFIED_END_MALFORMED) + ")",
    re.DOTALL,
)
_REWRITE = re.compile(re.escape(REWRITE_TAGS[0]) + r"\s*(.*?)\s*" + re.escape(REWRITE_TAGS[1]), re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    value: object = None
    reason: str | None = None  # why there is no value


def clamp(score: float) -> float:
    return min(SCORE_MAX, max(SCORE_MIN, score))


def parse_scores(text: str, count: int) -> list[float] | None:
    """The first `count` numbers of the text, clamped; None when there are fewer."""
    numbers = NUMBER.findall(text)
    if len(numbers) < count:
        return None
    return [clamp(float(n)) for n in numbers[:count]]


def parse_refinement(text: str, rejected: str) -> Parsed:
    """y*_w from a refinement: only a well-formed modified-response block counts (the known malformed closing tag
    is tolerated); an empty edit or one identical to the rejected answer is no refinement."""
    match = _MODIFIED.search(text)
    if match is None:
        return Parsed(reason="malformed_refinement")
    edited = match.group(1).strip()
    if not edited:
        return Parsed(reason="empty_edit")
    if edited == rejected.strip():
        return Parsed(reason="unchanged_edit")
    return Parsed(edited)


def parse_rewrite(text: str, original: str) -> Parsed:
    match = _REWRITE.search(text)
    if match is None:
        return Parsed(reason="malformed_rewrite")
    rewritten = match.group(1).strip()
    if not rewritten:
        return Parsed(reason="empty_rewrite")
    if rewritten == original.strip():
        return Parsed(reason="unchanged_rewrite")
    return Parsed(rewritten)


def expected_scores(completion: Completion, count: int, token_text) -> list[float] | None:
    """Expected value of each of the first `count` scores under the teacher's token distribution.

    At the token where a score begins, every top-k alternative that reads as the same prefix followed by a number
    in range contributes its number, weighted by its renormalized probability; the chosen token contributes the
    whole score as parsed (so a "10" written as "1" "0" counts as 10, while an alternative "1" counts as 1, an
    approximation for tokenizers that split numbers). None when a score's token or its logprobs are missing.

    Args:
        completion: with `top_logprobs`, one entry per generated token.
        count: how many scores to read.
        token_text: maps a TokenLogprob to its text (token ids decoded one by one where the backend gives ids).
    """
    spans = [(m.start(), m.end(), clamp(float(m.group()))) for m in NUMBER.finditer(completion.text)][:count]
    if len(spans) < count or len(completion.top_logprobs) < 1:
        return None
    values, offset, span = [], 0, 0
    for position, alternatives in enumerate(completion.top_logprobs):
        chosen = _chosen(completion, position, alternatives)
        if chosen is None:
            return None
        text = token_text(chosen)
        start, _, parsed = spans[span]
        if offset <= start < offset + len(text):
            prefix = text[: start - offset]
            weights = []
            for alt in alternatives:
                alt_text = token_text(alt)
                digits = alt_text[len(prefix):]
                if alt is chosen:
                    weights.append((alt.logprob, parsed))
                elif alt_text.startswith(prefix) and re.fullmatch(r"\d+", digits):
                    if SCORE_MIN <= int(digits) <= SCORE_MAX and math.isfinite(alt.logprob):
                        weights.append((alt.logprob, float(int(digits))))
            top = max(lp for lp, _ in weights)
            total = sum(math.exp(lp - top) for lp, _ in weights)
            values.append(sum(math.exp(lp - top) * v for lp, v in weights) / total)
            span += 1
            if span == count:
                return values
        offset += len(text)
    return None


def _chosen(completion: Completion, position: int, alternatives):
    if completion.token_ids:
        token_id = completion.token_ids[position]
        return next((a for a in alternatives if a.token_id == token_id), None)
    return alternatives[0] if alternatives else None  # text-only backends: greedy picks the best
