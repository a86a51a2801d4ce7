"""The natural-pair analysis of the sweep report: the seeds-and-prompts interval (by hand, and its coverage on
simulated experiments), the gap distribution, the per-kind breakdown and the verdict."""

import math
import random

import pytest

from rlhf_stack.app.report.natural_pairs import (CellPairs, breakdown, difference, gap_distribution,
                                                 separating_kinds, verdict)
from rlhf_stack.core.intervals import prompts_for_half_width, seeds_and_prompts_interval, sizing, t_interval


def test_interval_by_hand():
    # per-item seed means .5, 0, .5, 1 -> mean .5; prompt residual sums a: -.5, b: 0, c: .5
    d = seeds_and_prompts_interval({0: [1, 0, 0, 1], 1: [0, 0, 1, 1]}, ["a", "a", "b", "c"])
    prompt_se = math.sqrt(3 / 2 * (0.25 + 0 + 0.25)) / 4
    assert d["mean"] == 0.5 and d["seed_half"] == pytest.approx(0.0)  # both seeds average .5
    assert d["prompt_half"] == pytest.approx(1.96 * prompt_se)
    assert (d["low"], d["high"]) == pytest.approx((0.5 - 1.96 * prompt_se, 0.5 + 1.96 * prompt_se))
    assert (d["items"], d["prompts"], d["seeds"]) == (4, 3, 2)


def test_interval_adds_the_seed_part_in_quadrature():
    diffs = {0: [1.0, 0.0, 1.0, 0.0], 1: [0.0, 0.0, 0.0, 0.0], 2: [1.0, 1.0, 0.0, 0.0]}
    d = seeds_and_prompts_interval(diffs, ["a", "b", "c", "d"])
    mean, low, _ = t_interval([0.5, 0.0, 0.5])
    assert d["mean"] == pytest.approx(mean) and d["seed_half"] == pytest.approx(mean - low)
    assert d["half"] == pytest.approx(math.hypot(d["seed_half"], d["prompt_half"]))


def test_interval_needs_two_seeds_and_two_prompts_and_the_same_items():
    assert seeds_and_prompts_interval({0: [1.0, 0.0]}, ["a", "b"])["low"] is None
    assert seeds_and_prompts_interval({0: [1.0, 0.0], 1: [0.0, 1.0]}, ["a", "a"])["low"] is None
    with pytest.raises(ValueError, match="same 2 items"):
        seeds_and_prompts_interval({0: [1.0, 0.0], 1: [0.0]}, ["a", "b"])


def test_interval_covers_the_population_difference_where_seeds_alone_do_not():
    """Simulated experiments: each draws prompts (a per-prompt effect shared by its pairs) and seeds (a shift of
    every pair); the population difference is 0. The seeds-and-prompts interval covers it about 95% of the time;
    the interval over seeds alone, on a fixed pair set, far less often (96% and 62% here)."""
    rng = random.Random(0)
    covered = covered_by_seeds = 0
    experiments = 300
    for _ in range(experiments):
        prompts = [f"p{c}" for c in range(40) for _ in range(3)]
        prompt_effect = {p: rng.gauss(0, 0.3) for p in dict.fromkeys(prompts)}
        diffs = {}
        for seed in range(4):
            shift = rng.gauss(0, 0.03)
            diffs[seed] = [prompt_effect[p] + shift + rng.gauss(0, 0.2) for p in prompts]
        d = seeds_and_prompts_interval(diffs, prompts)
        covered += d["low"] <= 0 <= d["high"]
        _, low, high = t_interval([sum(v) / len(v) for v in diffs.values()])
        covered_by_seeds += low <= 0 <= high
    assert covered / experiments >= 0.92
    assert covered_by_seeds / experiments < 0.7


def test_sizing_by_hand():
    # seed-averaged items: a: 1, 1 (mean 1); b: 1, 0 (mean .5); c: 0, 0 (mean 0); grand mean .5
    s = sizing({0: [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], 1: [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]}, list("aabbcc"))
    within = 0.5 / (6 - 3)  # squares about the prompt means over n - k
    between = (2 * (0.25 + 0 + 0.25) / 2 - within) / 2  # (mean square between - within) / n0, n0 = 2
    assert (s["within"], s["between"], s["items_per_prompt"]) == pytest.approx((within, between, 2.0))
    assert s["seed_sd"] == 0.0 and s["pair_noise_sd"] == 0.0  # both seeds give the same verdicts
    assert prompts_for_half_width(between, within, 2.0, 0.1) == math.ceil(19.6 ** 2 * (between + within / 2))
    assert prompts_for_half_width(between, within, math.inf, 0.1) == math.ceil(19.6 ** 2 * between)
    assert sizing({0: [1.0, 0.0]}, ["a", "b"])["seed_sd"] is None  # one seed; one item per prompt:
    assert sizing({0: [1.0, 0.0]}, ["a", "b"])["between"] is None  # no within-prompt variance to tell apart


def test_sizing_recovers_simulated_variance_parts_and_predicts_the_prompt_part():
    """Pairs drawn around a per-prompt effect (variance .03) with pair noise (variance .1): the analysis recovers
    both parts, and the prompt part it predicts for a four times larger experiment is the one that experiment
    gets; seed noise that is pair-level shows up as sd over seeds close to sd from pair noise."""
    rng = random.Random(1)

    def experiment(n_prompts: int) -> tuple[dict[int, list[float]], list[str]]:
        prompts = [f"p{c}" for c in range(n_prompts) for _ in range(6)]
        effect = {p: rng.gauss(0, 0.03 ** 0.5) for p in dict.fromkeys(prompts)}
        fixed = [effect[p] + rng.gauss(0, 0.1 ** 0.5) for p in prompts]
        return {seed: [f + rng.gauss(0, 0.3) for f in fixed] for seed in range(5)}, prompts

    diffs, prompts = experiment(400)
    s = sizing(diffs, prompts)
    assert s["between"] == pytest.approx(0.03, rel=0.3) and s["within"] == pytest.approx(0.1 + 0.09 / 5, rel=0.1)
    assert s["seed_sd"] == pytest.approx(s["pair_noise_sd"], rel=0.5)
    predicted = 1.96 * math.sqrt((s["between"] + s["within"] / 6) / 1600)
    halves = [seeds_and_prompts_interval(*experiment(1600))["prompt_half"] for _ in range(3)]
    assert sum(halves) / 3 == pytest.approx(predicted, rel=0.15)


def test_gap_distribution_counts_every_pair_of_distinct_answers_ties_included():
    checks = {("p", "a"): {"lowercase": True, "title": True, "no_commas": True},
              ("p", "b"): {"lowercase": True, "title": False, "no_commas": True},
              ("p", "c"): {"lowercase": False, "title": False, "no_commas": True},
              ("q", "x"): {"max_words": True}, ("q", "y"): {"max_words": True}}
    gaps = gap_distribution(checks)
    # p: a-b 1/3, a-c 2/3, b-c 1/3; q: x-y tie
    assert gaps == {"pairs": 4, "by_gap": {"0": 0.25, "1/3": 0.5, "2/3": 0.25}}


def _cell(seed, right_a, right_b):
    checks = {("p", "good"): {"lowercase": True, "title": True}, ("p", "half"): {"lowercase": True, "title": False},
              ("p", "bad"): {"lowercase": False, "title": False}, ("q", "x"): {"max_words": True},
              ("q", "y"): {"max_words": False}}
    pairs = [{"kind": "candidates", "prompt_id": "p", "chosen": "good", "rejected": "half"},
             {"kind": "candidates", "prompt_id": "p", "chosen": "good", "rejected": "bad"},
             {"kind": "candidates", "prompt_id": "q", "chosen": "x", "rejected": "y"},
             {"kind": "edit", "prompt_id": "p", "chosen": "bad-fixed", "rejected": "bad"},
             {"kind": "edit", "prompt_id": "r", "chosen": "r-fixed", "rejected": "r"}]
    return CellPairs(seed, pairs, checks, {"a": right_a, "b": right_b})


def test_separating_kinds_and_breakdown():
    cell = _cell(0, [True, False, True, True, False], [False, False, True, False, True])
    assert separating_kinds(cell.pairs[1], cell.checks) == ["lowercase", "title"]
    assert separating_kinds(cell.pairs[3], cell.checks) == []  # the edited text has no recorded checks
    b = breakdown([cell, _cell(1, [True] * 5, [False] * 5)], "a")
    assert b["gap"] == {"1": (3, 4), "1/2": (2, 2)}  # q's gap is 1; p's pairs 1/2 and 1
    assert b["kind"] == {"lowercase": (1, 2), "max_words": (2, 2), "title": (3, 4)}
    assert b["same prompts"] == {"candidates": (5, 6), "edit": (2, 2)}  # prompt r has no natural pair


def test_difference_pairs_seeds_on_natural_pairs_and_the_verdict():
    cells = [_cell(0, [True, True, True, False, False], [False, True, False, True, True]),
             _cell(1, [True, False, True, False, False], [False, False, True, True, True])]
    d = difference(cells, "a", "b")
    assert (d["items"], d["seeds"], d["prompts"]) == (3, 2, 2)
    assert d["mean"] == pytest.approx((2 / 3 + 1 / 3) / 2)  # seed 0: +1, 0, +1; seed 1: +1, 0, 0
    assert d["sizing"]["items_per_prompt"] == pytest.approx(1.5) and d["sizing"]["seed_sd"] is not None
    assert verdict({"mean": 0.05, "low": 0.01, "high": 0.09}) == "resolved: +5.0"
    assert verdict({"mean": 0.01, "low": -0.02, "high": 0.03}) == "null: no effect larger than 3.0"
    assert verdict({"mean": 0.01, "low": None, "high": None}) == "needs two seeds and two prompts"
    other = _cell(1, [True] * 5, [True] * 5)
    other.pairs[0]["chosen"] = "half"  # a different pair set: no paired difference
    assert difference([cells[0], other], "a", "b") is None
