"""The best-of-N estimator against brute force over every N-subset and every tie-break, and by-hand cases."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from stages.sandbox.best_of_n import best_of_n_curve, best_of_n_expected, bon_kl_nats, pick_probabilities


def brute_force(gold: list[float], rewards: list[float], n: int) -> float:
    """Average, over all n-subsets, of the mean gold of the subset's top-reward members (uniform tie-break)."""
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(gold)), n))
    for subset in subsets:
        top = max(rewards[i] for i in subset)
        picks = [i for i in subset if rewards[i] == top]
        total += Fraction(sum(Fraction(gold[i]) for i in picks)) / len(picks)
    return float(total / len(subsets))


def test_n1_is_the_mean_and_n_equals_m_is_the_argmax_gold():
    gold = [3.0, 7.0, 1.0, 10.0]
    rewards = [0.5, 2.0, -1.0, 0.1]
    assert best_of_n_expected(gold, rewards, 1) == pytest.approx(sum(gold) / 4)
    assert best_of_n_expected(gold, rewards, 4) == pytest.approx(7.0)


def test_by_hand_three_samples_best_of_two():
    # rewards ascending: sample 0 (gold 1), 1 (gold 4), 2 (gold 10). Pairs: {0,1}->4, {0,2}->10, {1,2}->10.
    assert best_of_n_expected([1.0, 4.0, 10.0], [0.0, 1.0, 2.0], 2) == pytest.approx(24.0 / 3)


def test_by_hand_full_tie_gives_the_mean_for_every_n():
    gold = [2.0, 4.0, 9.0]
    for n in (1, 2, 3):
        assert best_of_n_expected(gold, [1.0, 1.0, 1.0], n) == pytest.approx(5.0)


def test_no_ties_uses_the_rank_formula():
    rewards = [0.3, 0.1, 0.9, 0.5, 0.7]
    m, n = 5, 3
    probs = pick_probabilities(rewards, n)
    for i, r in enumerate(rewards):
        rank = sum(other < r for other in rewards)
        assert probs[i] == pytest.approx(math.comb(rank, n - 1) / math.comb(m, n))


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_with_and_without_ties(seed):
    rng = random.Random(seed)
    m = rng.randint(1, 8)
    gold = [float(rng.randint(1, 10)) for _ in range(m)]
    levels = rng.choice([2, 3, 100])  # few reward levels -> many ties; 100 -> mostly distinct
    rewards = [float(rng.randint(0, levels)) for _ in range(m)]
    for n in range(1, m + 1):
        probs = pick_probabilities(rewards, n)
        assert sum(probs) == pytest.approx(1.0)
        assert best_of_n_expected(gold, rewards, n) == pytest.approx(brute_force(gold, rewards, n))


def test_bad_n_and_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="N=3"):
        pick_probabilities([0.0, 1.0], 3)
    with pytest.raises(ValueError, match="N=0"):
        pick_probabilities([0.0, 1.0], 0)
    with pytest.raises(ValueError, match="one of each"):
        best_of_n_expected([1.0], [0.0, 1.0], 1)


def test_kl_formula():
    assert bon_kl_nats(1) == 0.0
    assert bon_kl_nats(2) == pytest.approx(math.log(2) - 0.5)
    assert bon_kl_nats(32) == pytest.approx(math.log(32) - 31 / 32)


def test_curve_averages_prompts_and_skips_prompts_with_too_few_samples():
    samples = [{"prompt_id": "a", "true_score": 1.0, "compliance": 0.0},
               {"prompt_id": "a", "true_score": 10.0, "compliance": 1.0},
               {"prompt_id": "b", "true_score": 5.5, "compliance": 0.5}]
    curve = best_of_n_curve(samples, [0.0, 1.0, 3.0], [1, 2])
    # N=1: prompt a's mean 5.5 and prompt b's 5.5; N=2: only prompt a has two samples, and its pick has gold 10.
    assert curve["1"] == {"gold_mean": 5.5, "compliance_mean": 0.5, "prompts": 2, "kl_nats": 0.0}
    assert curve["2"]["gold_mean"] == 10.0 and curve["2"]["compliance_mean"] == 1.0 and curve["2"]["prompts"] == 1
    assert best_of_n_curve(samples, [0.0, 1.0, 3.0], [3])["3"] == {
        "gold_mean": None, "compliance_mean": None, "prompts": 0, "kl_nats": bon_kl_nats(3)}
