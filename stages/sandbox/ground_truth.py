"""Ground-truth metrics: reward-model pair accuracy against the verifier, and policy compliance."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from stages.sandbox.verifier import Verifier


class TruePair(NamedTuple):
    prompt_id: str
    chosen: str  # the answer with the higher true score
    rejected: str
    margin: float  # true score difference, > 0


class ScoredPair(NamedTuple):
    prompt_id: str
    answer_a: str
    answer_b: str
    reward_a: float  # the reward model's reward of answer_a
    reward_b: float


def true_pairs(verifier: Verifier, prompt_id: str, answers: Sequence[str]) -> list[TruePair]:
    """Every pair of `answers` whose true scores differ, the better one as chosen (ties carry no label)."""
    scores = [verifier.true_score(prompt_id, a) for a in answers]
    pairs = []
    for i, j in itertools.combinations(range(len(answers)), 2):
        if scores[i] != scores[j]:
            hi, lo = (i, j) if scores[i] > scores[j] else (j, i)
            pairs.append(TruePair(prompt_id, answers[hi], answers[lo], scores[hi] - scores[lo]))
    return pairs


def pair_accuracy(verifier: Verifier, pairs: Iterable[ScoredPair]) -> dict[str, float | int]:
    """Share of pairs the reward model orders as the verifier does; pairs the verifier ties are skipped.

    A reward tie counts as wrong, so a constant reward model scores 0, not 0.5.

    Returns:
        {"accuracy", "pairs" (judged), "skipped_ties"}; accuracy is NaN when no pair was judged.
    """
    right = judged = ties = 0
    for p in pairs:
        truth = verifier.true_score(p.prompt_id, p.answer_a) - verifier.true_score(p.prompt_id, p.answer_b)
        if truth == 0:
            ties += 1
            continue
        judged += 1
        right += (p.reward_a - p.reward_b) * truth > 0
    return {"accuracy": right / judged if judged else None, "pairs": judged, "skipped_ties": ties}


def compliance_summary(verifier: Verifier, answers: Iterable[tuple[str, str]]) -> dict:
    """How well answers `(prompt_id, text)` follow their constraints.

    Returns:
        {"answers", "mean_compliance" (mean share of constraints met), "full_compliance_rate" (share of answers
        meeting all), "by_kind": {kind: share of that kind's checks met}}; rates are None when there are no answers.
    """
    shares, full, by_kind = [], 0, {}
    for prompt_id, text in answers:
        checks = verifier.checks(prompt_id, text)
        shares.append(sum(checks.values()) / len(checks))
        full += all(checks.values())
        for kind, ok in checks.items():
            by_kind.setdefault(kind, []).append(ok)
    n = len(shares)
    return {
        "answers": n,
        "mean_compliance": sum(shares) / n if n else None,
        "full_compliance_rate": full / n if n else None,
        "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }
