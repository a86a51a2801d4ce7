"""From candidates to an initial pair: which two candidates the teacher compares, and what its two verdicts (one
per presentation order) decide (METHOD.md step 2, D11, D12)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from rlhf_stack.core.records import Candidate


def seeded_rng(seed: int, *parts: str) -> random.Random:
    """A random generator that depends only on the seed and the given parts (e.g. a prompt id)."""
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def pick_pair(candidates: list[Candidate], rng: random.Random) -> tuple[int, int] | None:
    """Two candidates with different texts, in a random presentation order; None when there are no two."""
    distinct: dict[str, int] = {}
    for i, c in enumerate(candidates):
        distinct.setdefault(c.text.strip(), i)
    if len(distinct) < 2:
        return None
    a, b = rng.sample(sorted(distinct.values()), 2)
    return a, b


@dataclass(frozen=True)
class PairDecision:
    score_a: float  # averaged over both orders
    score_b: float
    consistent: bool  # the same side wins (or ties) in both orders
    reason: str | None = None  # drop reason; None when the pair is kept

    @property
    def a_wins(self) -> bool:
        return self.score_a > self.score_b


def decide(a_first: tuple[float, float], b_first: tuple[float, float], *, drop_position_flips: bool,
           tie_tolerance: float, min_score_gap: float) -> PairDecision:
    """Averages a pair's scores over both orders and decides whether the pair is usable.

    Args:
        a_first: scores (a, b) with a shown as Assistant 1.
        b_first: scores (b, a) with b shown as Assistant 1.
        drop_position_flips: drop the pair when the two orders prefer different sides.
        tie_tolerance: averaged gaps at or below this are ties.
        min_score_gap: averaged gaps at or below this are too small to train on (strict, as METHOD.md §16 and the
            reference filter_score.py: keep s_w - s_l > min_score_gap; averaged scores fall on a 0.5 grid).

    Returns:
        The averaged scores, the consistency, and the drop reason ("position_flip", "tie", "small_gap") or None.
    """
    score_a = (a_first[0] + b_first[1]) / 2
    score_b = (a_first[1] + b_first[0]) / 2
    winner_1 = _sign(a_first[0] - a_first[1])
    winner_2 = _sign(b_first[1] - b_first[0])
    consistent = winner_1 == winner_2
    gap = abs(score_a - score_b)
    reason = None
    if drop_position_flips and winner_1 * winner_2 < 0:
        reason = "position_flip"
    elif gap <= tie_tolerance:
        reason = "tie"
    elif gap <= min_score_gap:
        reason = "small_gap"
    return PairDecision(score_a, score_b, consistent, reason)


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)
