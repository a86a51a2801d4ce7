"""Pair choice, both-order decisions (averaging, flips, ties, gaps), edit distance and the stage statistics."""

import pytest

from rlhf_stack.core.records import Candidate
from stages.s1_synthesize.judge import Verdict
from stages.s1_synthesize.pairing import decide, pick_pair, seeded_rng
from stages.s1_synthesize.stats import StageStats, edit_distance, histogram, normalized_edit_distance

RULES = dict(drop_position_flips=True, tie_tolerance=0.0, min_score_gap=0.0)


def cands(*texts):
    return [Candidate(generator="g", text=t, finish_reason="stop") for t in texts]


def test_pick_pair_takes_two_different_texts_reproducibly():
    pool = cands("same", "same ", "other", "third")
    pairs = {pick_pair(pool, seeded_rng(0, "pair", f"p{i}")) for i in range(30)}
    assert all(a != b and {a, b} <= {0, 2, 3} for a, b in pairs)  # "same " is a duplicate of "same"
    assert len(pairs) > 1 and pick_pair(pool, seeded_rng(0, "pair", "p1")) == pick_pair(pool, seeded_rng(0, "pair",
                                                                                                          "p1"))
    assert pick_pair(cands("x", " x"), seeded_rng(0)) is None


def test_scores_are_averaged_over_both_orders():
    # a first: (a=8, b=5); b first: (b=6, a=9) -> a = (8 + 9) / 2 = 8.5, b = (5 + 6) / 2 = 5.5
    d = decide((8, 5), (6, 9), **RULES)
    assert (d.score_a, d.score_b, d.consistent, d.reason, d.a_wins) == (8.5, 5.5, True, None, True)


def test_a_winner_that_flips_with_the_order_is_dropped_or_averaged():
    # each order prefers Assistant 1: a wins first, b wins second
    assert decide((7, 5), (7, 6), **RULES).reason == "position_flip"
    kept = decide((7, 5), (7, 6), **{**RULES, "drop_position_flips": False})
    assert (kept.reason, kept.consistent, kept.score_a, kept.score_b) == (None, False, 6.5, 6.0)


def test_ties_and_small_gaps_are_dropped():
    assert decide((6, 6), (6, 6), **RULES).reason == "tie"
    assert decide((7, 6), (6, 6), **{**RULES, "tie_tolerance": 0.5}).reason == "tie"  # gap 0.5
    assert decide((7, 6), (6, 7), **{**RULES, "min_score_gap": 1.5}).reason == "small_gap"  # gap 1
    assert decide((7, 6), (6, 7), **{**RULES, "min_score_gap": 0.5}).reason is None


def test_the_gap_filter_is_strict():
    # METHOD.md §16 keeps s_w - s_l > 1; averaged scores fall on a 0.5 grid, so a gap of exactly 1 is common.
    assert decide((7, 6), (6, 7), **{**RULES, "min_score_gap": 1.0}).reason == "small_gap"  # gap 1: dropped
    assert decide((8, 6), (6, 7), **{**RULES, "min_score_gap": 1.0}).reason is None  # gap 1.5: kept


def test_a_tie_in_one_order_is_inconsistent_but_not_a_flip():
    d = decide((7, 7), (5, 8), **RULES)
    assert not d.consistent and d.reason is None and d.score_a == 7.5


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3  # k->s, e->i, +g
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("same", "same") == 0
    assert normalized_edit_distance("the cat sat", "the cat sat.") == pytest.approx(1 / 12)


def test_histogram_clips_into_the_outer_bins():
    assert histogram([-12, -0.5, 0, 0.2, 3, 11], [-10.0, 0.0, 5.0, 10.0])["counts"] == [2, 3, 1]
    assert histogram([], [0.0, 1.0, 2.0])["counts"] == [0, 0]


def test_stats_json_counts_rates_and_reasons():
    stats = StageStats()
    stats.steps["initial_scores"].requested = 3
    stats.steps["initial_scores"].kept = 1
    stats.judged("initial_scores", [
        Verdict((7.0, 5.0)), Verdict((5.0, 7.0), attempts=3, parse_failures=2),
        Verdict(reason="unparseable_score", attempts=3, parse_failures=3), Verdict((1.0, 2.0)),
    ])
    stats.drop("p2", "initial_scores", "unparseable_score")
    stats.drop("p3", "initial_scores", "tie")
    stats.teacher_steps.add("initial_scores")
    stats.steps["initial_scores"].prompt_tokens, stats.steps["initial_scores"].completion_tokens = 100, 12
    out = stats.to_json(margins=[1.5, -0.5], edit_distances=[0.1, 0.3], consistent=[True, False, True, True])
    assert out["counts"]["initial_scores"] == {"requested": 3, "kept": 1, "dropped": 2}
    assert out["drops_by_reason"] == {"tie": 1, "unparseable_score": 1}
    assert out["parse_failure_rate"]["initial_scores"] == 5 / 8  # 5 failed answers of 8 read
    assert out["retry_rate"]["initial_scores"] == 2 / 4
    assert out["position_consistency_rate"] == 0.75
    assert out["margin_histogram"]["counts"][9] == 1 and out["margin_histogram"]["counts"][11] == 1
    assert out["edit_distance"]["mean"] == pytest.approx(0.2)
    assert out["teacher_tokens"] == {"prompt": 100, "completion": 12}
    assert stats.drops == [{"id": "p2", "step": "initial_scores", "reason": "unparseable_score"},
                           {"id": "p3", "step": "initial_scores", "reason": "tie"}]
