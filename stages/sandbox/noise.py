"""A simulated imperfect teacher: label flips, Gaussian score noise and a position bias on exact scores.

Every judgment draws its randomness from a generator seeded by (seed, role, item key), where the key names the
prompt and the exact texts in the order shown. So a rerun, a resumed run or a different batch order gives
identical judgments, and the two presentation orders of one pair are independent draws, as two calls to an LLM
judge are. A judgment draws the same random numbers whatever the noise levels, so runs that differ only in
them share their randomness: an item flipped at flip_prob 0.1 is also flipped at 0.2.

A pairwise judgment of true scores (t1, t2), shown in that order:

    (s1, s2) = (t2, t1) if u < flip_prob else (t1, t2)       # the teacher prefers the wrong answer
    s1 += position_bias_points                                 # the answer shown first looks better
    s1 += score_sigma_points * e1;  s2 += score_sigma_points * e2
    both clamped to [1, 10]

A single score (the calibrated score of a refined answer) gets only the Gaussian term, then the clamp.

A pointwise judgment (a direct judge scoring one answer alone, as when the teacher itself is the reward) has no
second answer to swap with, so its flip mirrors the score on the scale:

    s = SCORE_MIN + SCORE_MAX - t if u < flip_prob else t      # the teacher rates a good answer bad, and back
    s += score_sigma_points * e;  clamped to [1, 10]
"""

from __future__ import annotations

import hashlib
import random
from typing import NamedTuple

from pydantic import Field

from rlhf_stack.core.config import StrictModel

SCORE_MIN, SCORE_MAX = 1.0, 10.0


class NoiseConfig(StrictModel):
    flip_prob: float = Field(0.0, ge=0, le=1)  # chance that one pairwise judgment swaps the two scores
    score_sigma_points: float = Field(0.0, ge=0)  # std of the Gaussian noise on every score, in points of 1-10
    position_bias_points: float = 0.0  # added to the answer shown first; negative favours the second


class NoisyPair(NamedTuple):
    first: float  # score of the answer shown first
    second: float
    flipped: bool  # whether the flip swapped the true scores (known only to the simulation)


class NoiseModel:
    """Turns exact verifier scores into the judgments of a noisy teacher, deterministically per item."""

    def __init__(self, cfg: NoiseConfig, seed: int):
        self.cfg = cfg
        self.seed = seed

    def pair(self, key: str, first: float, second: float) -> NoisyPair:
        """Noisy scores of two answers with true scores `first` and `second`, shown in that order.

        Args:
            key: identifies the item and the order shown (the same key always gives the same judgment).
            first: true score of the answer shown first, in [1, 10].
            second: true score of the answer shown second.
        """
        rng = self._rng("pair", key)
        u, e1, e2 = rng.random(), rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)
        flipped = u < self.cfg.flip_prob
        if flipped:
            first, second = second, first
        first += self.cfg.position_bias_points + self.cfg.score_sigma_points * e1
        second += self.cfg.score_sigma_points * e2
        return NoisyPair(_clamp(first), _clamp(second), flipped)

    def single(self, key: str, score: float) -> float:
        """Noisy version of one true score (Gaussian term and clamp only)."""
        rng = self._rng("single", key)
        return _clamp(score + self.cfg.score_sigma_points * rng.gauss(0.0, 1.0))

    def pointwise(self, key: str, score: float) -> float:
        """A direct judge's noisy score of one answer with true score `score` (mirror flip, Gaussian term, clamp)."""
        rng = self._rng("pointwise", key)
        u, e = rng.random(), rng.gauss(0.0, 1.0)
        if u < self.cfg.flip_prob:
            score = SCORE_MIN + SCORE_MAX - score
        return _clamp(score + self.cfg.score_sigma_points * e)

    def _rng(self, role: str, key: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}\x00{role}\x00{key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))


def _clamp(score: float) -> float:
    return min(SCORE_MAX, max(SCORE_MIN, score))
