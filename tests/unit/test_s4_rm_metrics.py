"""RM benchmark scoring on hand-worked records (EVAL.md §2-4)."""

import json
import math

import pytest

from stages.s4_evaluate.rm_metrics import best_of_n_credit, rb2_ties, rewardbench, rewardbench2, rm_bench
from stages.s4_evaluate.rm_scorer import plan_batches


def rec(group, chosen, rejected, id_="x"):
    return {"id": id_, "group": group, "chosen": list(chosen), "rejected": list(rejected)}


def test_rewardbench_sections_are_weighted_by_official_counts_and_ties_are_wrong():
    records = [
        rec("alpacaeval-easy", [2.0], [1.0]),
        rec("alpacaeval-easy", [1.0], [1.0]),  # a tie counts as wrong
        rec("mt-bench-easy", [0.5], [0.1]),
        rec("math-prm", [3.0], [1.0]),
        rec("math-prm", [0.0], [-1.0]),
        rec("hep-python", [0.0], [1.0]),
        rec("not-a-subset", [1.0], [0.0]),
    ]
    out = rewardbench(records)
    assert out["subsets"]["alpacaeval-easy"] == {"accuracy": 50.0, "n": 2}
    assert out["sections"]["Chat"] == pytest.approx((50 * 100 + 100 * 28) / 128)  # 60.9375
    assert out["sections"]["Reasoning"] == pytest.approx(100 * 984 / (984 + 164))  # math-prm weighs 984
    assert out["sections"]["Chat Hard"] is None and out["sections"]["Safety"] is None
    assert out["score"] == pytest.approx((60.9375 + 100 * 984 / 1148) / 2)
    assert out["unscored_subsets"] == ["not-a-subset"]
    assert out["n_items"] == 7


def test_best_of_n_shares_credit_among_tied_top_scores():
    assert best_of_n_credit([3.0], [1.0, 2.0, 0.0]) == 1.0
    assert best_of_n_credit([2.0], [2.0, 1.0, 0.0]) == 0.5
    assert best_of_n_credit([2.0], [2.0, 2.0, 2.0]) == 0.25
    assert best_of_n_credit([1.0], [3.0, 0.0, 0.0]) == 0.0


def test_rb2_ties_formula_by_hand():
    records = [
        rec("Ties", [5.0], [1.0, 2.0], "ref:1"),  # accurate, correct - incorrect = 3
        rec("Ties", [4.0, 6.0, 5.0], [1.0, 3.0], "tied:1"),  # accurate, margin 1, spread among correct 2
        rec("Ties", [1.0], [2.0], "ref:2"),  # wrong, margin -1
        rec("Ties", [3.0, 3.0], [0.0], "tied:2"),  # accurate, margin 3, spread 0
    ]
    out = rb2_ties(records)
    assert out["ref_accuracy"] == 0.5 and out["tied_accuracy"] == 1.0
    assert out["correctness_preferred"] == 0.5  # pid 1: 1 > 2 no; pid 2: 3 > 0 yes
    assert out["correctness_preferred_hard"] == 0.0  # min(3, 1) > 2 no; min(-1, 3) > 0 no
    margin = (math.tanh(1 / 2 - 1) + -1.0) / 2  # -1/0 is -inf, tanh(-inf) = -1
    assert out["correctness_margin"] == pytest.approx(margin)
    assert out["score"] == pytest.approx(100 * (0.3 * 1.0 + 0.3 * 0.5 + 0.2 * 0.5 + 0.0 + 0.01 * margin))


def test_rb2_ties_rejects_ids_without_kind():
    with pytest.raises(ValueError, match="ref:<n> or tied:<n>"):
        rb2_ties([rec("Ties", [1.0], [0.0], "17")])


def test_rewardbench2_is_the_unweighted_mean_of_subsets():
    records = [
        rec("Factuality", [3.0], [1.0, 2.0, 0.0]),
        rec("Factuality", [2.0], [2.0, 1.0, 0.0]),
        rec("Factuality", [1.0], [3.0, 0.0, 0.0]),
        rec("Ties", [5.0], [1.0, 2.0], "ref:1"),
        rec("Ties", [4.0, 6.0, 5.0], [1.0, 3.0], "tied:1"),
        rec("Ties", [1.0], [2.0], "ref:2"),
        rec("Ties", [3.0, 3.0], [0.0], "tied:2"),
    ]
    out = rewardbench2(records)
    assert out["subsets"]["Factuality"]["accuracy"] == pytest.approx(50.0)
    ties = out["subsets"]["Ties"]["accuracy"]
    assert ties == pytest.approx(rb2_ties(records[3:])["score"])
    assert out["score"] == pytest.approx((50.0 + ties) / 2)


def test_a_ties_subset_without_a_complete_prompt_has_no_score_and_is_left_out_of_the_mean():
    records = [rec("Factuality", [3.0], [1.0, 2.0]), rec("Ties", [5.0], [1.0], "ref:1"),
               rec("Ties", [4.0, 6.0], [1.0], "tied:2")]  # prompt 1 lacks its tied: row, prompt 2 its ref: row
    out = rewardbench2(records)
    assert out["subsets"]["Ties"]["accuracy"] is None
    assert out["score"] == pytest.approx(100.0)
    json.dumps(out, allow_nan=False)  # the results file stays valid JSON


def test_rm_bench_style_matrix_by_hand():
    records = [
        rec("chat", [3, 2, 1], [0, 2.5, 4]),
        rec("chat", [1, 1, 1], [1, 0, 0]),  # equal rewards count as wrong
        rec("safety-refuse", [1, 1, 1], [0, 0, 0]),
        rec("safety-response", [0, 0, 0], [1, 1, 1]),
    ]
    out = rm_bench(records)
    chat = out["domains"]["chat"]
    assert chat["matrix"] == [[50, 100, 50], [50, 50, 50], [50, 50, 50]]
    assert chat["hard"] == pytest.approx(200 / 3)  # upper triangle: plainer chosen vs fancier rejected
    assert chat["normal"] == 50 and chat["easy"] == 50
    assert chat["average"] == pytest.approx(500 / 9)
    assert set(out["domains"]) == {"chat", "safety"}  # safety-refuse and safety-response merge
    assert out["domains"]["safety"]["average"] == 50 and out["domains"]["safety"]["n"] == 2
    assert out["hard"] == pytest.approx((200 / 3 + 50) / 2)
    assert out["score"] == out["average"] == pytest.approx((500 / 9 + 50) / 2)


def test_batches_are_length_sorted_within_the_token_budget():
    assert plan_batches([5, 10, 3, 10, 7], tokens_per_batch=20) == [[1, 3], [4, 0], [2]]
    assert plan_batches([50], tokens_per_batch=20) == [[0]]  # an over-long sequence still gets scored
