"""AlpacaEval pieces by hand: template filling, logprob preference, order randomization, win rates."""

import math

import pytest

from stages.s4_evaluate.alpacaeval import (
    chatml_messages,
    fill_template,
    is_switched,
    position_flip_rate,
    preference_from_logprobs,
    shown_to_reference_order,
    win_rate,
)
from stages.s4_evaluate.lc_winrate import is_extreme_change, length_controlled_win_rate

TEMPLATE = "<|im_start|>system\nJudge.\n<|im_end|>\n<|im_start|>user\nI: {instruction}\nm: {output_1}\nM: {output_2}\n<|im_end|>"


def test_template_fills_first_occurrences_and_splits_into_messages():
    text = fill_template(TEMPLATE, {"instruction": "say {hi}", "output_1": "a", "output_2": "b"})
    assert chatml_messages(text) == (("system", "Judge."), ("user", "I: say {hi}\nm: a\nM: b"))
    with pytest.raises(ValueError, match="ChatML"):
        chatml_messages("plain text")


def test_preference_is_two_minus_the_first_outputs_probability():
    lp = {"m": math.log(0.6), "M": math.log(0.2), "The": math.log(0.2)}
    assert preference_from_logprobs(lp) == pytest.approx(2 - 0.75)  # renormalized over m and M only
    assert preference_from_logprobs({"M": -0.1, "x": -3.0}) == pytest.approx(2.0)  # a missing token has p = 0
    assert preference_from_logprobs({"x": -0.1}) is None  # neither: no preference, never a default
    assert shown_to_reference_order(1.25, switched=True) == 1.75
    assert shown_to_reference_order(1.25, switched=False) == 1.25


def test_order_randomization_is_seeded_and_fair():
    flips = [is_switched(f"instruction {i}", seed=0) for i in range(400)]
    assert flips == [is_switched(f"instruction {i}", seed=0) for i in range(400)]
    assert 160 < sum(flips) < 240
    assert flips != [is_switched(f"instruction {i}", seed=1) for i in range(400)]


def test_win_rate_by_hand():
    out = win_rate([1.0, 2.0, 1.5, None, 1.25, float("nan")])
    assert out["win_rate"] == pytest.approx(43.75)  # mean of 0, 1, 0.5, 0.25
    assert out["standard_error"] == pytest.approx(100 * math.sqrt(0.546875 / 3) / 2)
    assert out["discrete_win_rate"] == pytest.approx(37.5)  # 0, 1, draw, 0
    assert (out["n_wins"], out["n_wins_base"], out["n_draws"], out["n_total"]) == (1, 2, 1, 4)
    assert win_rate([None])["win_rate"] is None


def test_position_flip_rate_counts_changed_winners():
    assert position_flip_rate([(1.2, 1.7), (1.8, 1.9), (None, 1.2)]) == 0.5
    assert position_flip_rate([]) is None


def test_lc_win_rate_needs_enough_judged_items_and_length_spread():
    few = length_controlled_win_rate(["a"] * 4, ["bb"] * 4, [1.2, 1.3, 1.4, 1.9])
    assert few["length_controlled_winrate"] is None and "at least 5" in few["reason"]
    flat = length_controlled_win_rate(["a"] * 6, ["bb"] * 6, [1.2] * 6)
    assert flat["length_controlled_winrate"] is None and "same length" in flat["reason"]


def test_lc_win_rate_removes_a_pure_length_effect():
    refs = ["x" * 50] * 40
    outs = ["y" * n for n in range(10, 410, 10)]
    prefs = [1.05 if len(o) < 50 else 1.95 for o in outs]  # the judge only rewards length
    out = length_controlled_win_rate(refs, outs, prefs)
    raw = win_rate(prefs)["win_rate"]
    assert raw > 80
    assert out["length_controlled_winrate"] < raw - 20
    assert out["weights"]["np.tanh(std_delta_len)"] < 0  # longer model answers (negative delta) win


def test_extreme_change_rule():
    assert is_extreme_change(20.0, 9.0) and not is_extreme_change(20.0, 12.0)
    assert is_extreme_change(50.0, 63.0) and not is_extreme_change(50.0, 62.0)


def test_the_official_lc_needs_eval_set_rows_and_the_gamed_file(tmp_path):
    import numpy as np
    import pandas as pd

    from stages.s4_evaluate.lc_winrate import length_adjusted, official_length_controlled_win_rate

    rng = np.random.default_rng(0)
    gamed = tmp_path / "df_gamed.csv"
    pd.concat([pd.DataFrame({"model": m, "index": range(805), "preference": rng.uniform(0, 1, 805),
                             "std_delta_len": rng.normal(0, 1, 805), "instruction_difficulty": np.linspace(-1, 1, 805),
                             "not_gamed_baseline": False}) for m in ("concise", "verbose")]).to_csv(gamed, index=False)
    annotations = [{"output_1": "r" * int(rng.integers(10, 200)), "output_2": "m" * int(rng.integers(10, 400)),
                    "preference": float(rng.uniform(1, 2)), "index": 20 * i} for i in range(30)]
    both = length_adjusted(annotations, str(gamed), None)
    column = {key: [a[key] for a in annotations] for key in ("output_1", "output_2", "preference", "index")}
    alone = official_length_controlled_win_rate(column["output_1"], column["output_2"], column["preference"],
                                                column["index"], str(gamed))
    assert both["lc_official"] and both["length_controlled_winrate"] == alone["length_controlled_winrate"]
    assert both["minimal_glm_winrate"] is not None and "not the LC win rate" in both["minimal_glm_note"]
    unindexed = [{k: v for k, v in a.items() if k != "index"} for a in annotations]
    without_rows = length_adjusted(unindexed, str(gamed), None)
    assert without_rows["length_controlled_winrate"] is None and "805" in without_rows["lc_not_computed"]
    assert without_rows["minimal_glm_winrate"] == both["minimal_glm_winrate"]
