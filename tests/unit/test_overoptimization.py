"""The over-optimization turning point: by-hand series, and a brute-force check of the trailing mean."""

import random

import pytest

from rlhf_stack.core.overoptimization import TurningPoint, trailing_mean, turning_point

KL = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_trailing_mean_by_hand_and_against_brute_force():
    assert trailing_mean([1, 2, 3, 4], 2) == pytest.approx([1, 1.5, 2.5, 3.5])
    assert trailing_mean([1, 2, 3, 4], 1) == [1, 2, 3, 4]
    assert trailing_mean([], 3) == []
    rng = random.Random(0)
    xs = [rng.uniform(-5, 5) for _ in range(30)]
    for w in (1, 2, 5, 40):
        brute = [sum(xs[j] for j in range(i + 1) if i - j < w) / min(i + 1, w) for i in range(len(xs))]
        assert trailing_mean(xs, w) == pytest.approx(brute)
    with pytest.raises(ValueError, match="window_iters"):
        trailing_mean([1.0], 0)


def test_rising_gold_has_no_turning_point():
    assert turning_point(KL, [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], window_iters=1) is None
    assert turning_point(KL, [1, 2, 3, 3, 3, 3], [1, 2, 3, 4, 5, 6], window_iters=1) is None  # flat: no drop


def test_gold_peaking_then_falling_while_proxy_rises_is_the_turning_point():
    gold = [1, 3, 5, 4, 3, 2]
    proxy = [1, 2, 3, 4, 5, 6]
    assert turning_point(KL, gold, proxy, window_iters=1) == TurningPoint(iteration=2, kl=2.0, gold=5, proxy=3)
    # window 2: smoothed gold [1, 2, 4, 4.5, 3.5, 2.5] peaks at iteration 3, smoothed proxy there is 3.5
    assert turning_point(KL, gold, proxy, window_iters=2) == TurningPoint(3, 3.0, 4.5, 3.5)
    # a drop smaller than min_drop does not count
    assert turning_point(KL, gold, proxy, window_iters=1, min_drop=3.0) is None
    assert turning_point(KL, gold, proxy, window_iters=1, min_drop=2.5) is not None


def test_both_falling_is_not_over_optimization():
    assert turning_point(KL, [1, 3, 5, 4, 3, 2], [1, 3, 5, 4, 3, 2], window_iters=1) is None
    # proxy back to exactly its value at the gold peak: not still rising
    assert turning_point(KL, [1, 3, 5, 4, 3, 2], [1, 2, 3, 9, 9, 3], window_iters=1) is None


def test_one_noisy_dip_is_smoothed_away():
    gold = [1, 2, 3, 1, 4, 5]  # one bad iteration, then rising again
    proxy = [1, 2, 3, 4, 5, 6]
    assert turning_point(KL, gold, proxy, window_iters=1) is None  # the peak is the last iteration
    assert turning_point(KL, gold, proxy, window_iters=3) is None


def test_first_maximum_and_bad_lengths():
    assert turning_point(KL, [1, 5, 5, 2, 2, 2], [1, 2, 3, 4, 5, 6], window_iters=1).iteration == 1
    assert turning_point([], [], []) is None
    with pytest.raises(ValueError, match="one value per iteration"):
        turning_point(KL, [1.0], [1.0])
