"""The verifier teacher: score mapping, refinement, calibrated scores, the noise model, ground-truth metrics."""

import statistics

import pytest
from pydantic import ValidationError

from rlhf_stack.core.errors import ArtifactError
from stages.sandbox import (
    NoiseConfig, NoiseModel, SandboxPrompt, ScoredPair, Verifier, compliance_summary, pair_accuracy,
    score_from_compliance, true_pairs, write_sandbox_prompts,
)
from stages.sandbox.constraints import Lowercase, MinWords, NoCommas

PROMPT = SandboxPrompt("p1", "Greet a friend.", (Lowercase(), NoCommas(), MinWords(5)))
ALL_MET = "hello there my good friend"  # 3 of 3
TWO_MET = "hello, there my good friend"  # lowercase and length: 2 of 3
NONE_MET = "Hello, friend"  # 0 of 3


def exact() -> Verifier:
    return Verifier({"p1": PROMPT})


def test_score_mapping_is_linear_in_the_share_of_constraints_met():
    assert [score_from_compliance(x) for x in (0, 1 / 3, 0.5, 2 / 3, 1)] == pytest.approx([1, 4, 5.5, 7, 10])
    v = exact()
    assert [v.compliance("p1", t) for t in (ALL_MET, TWO_MET, NONE_MET)] == pytest.approx([1, 2 / 3, 0])
    assert [v.true_score("p1", t) for t in (ALL_MET, TWO_MET, NONE_MET)] == pytest.approx([10, 7, 1])
    assert v.checks("p1", TWO_MET) == {"lowercase": True, "no_commas": False, "min_words": True}


def test_exact_teacher_scores_pairs_in_either_order_and_calibrates_to_the_truth():
    v = exact()
    assert v.score_pair("p1", TWO_MET, NONE_MET) == pytest.approx((7, 1))
    assert v.score_pair("p1", NONE_MET, TWO_MET) == pytest.approx((1, 7))
    assert v.calibrated_score("p1", ALL_MET) == pytest.approx(10)


def test_refine_repairs_minimally_and_names_what_it_cannot_repair():
    v = exact()
    assert v.refine("p1", "Hello, there my good friend") == ("hello there my good friend", [])
    assert v.refine("p1", "Hi, You") == ("hi you", ["min_words"])
    assert v.refine("p1", "hi you") == ("hi you", ["min_words"])  # nothing repairable: unchanged
    assert v.diagnosis("p1", "Hi, You") == ("violated: lowercase, no_commas, min_words; repaired: lowercase, "
                                            "no_commas; not repairable: min_words")


def test_unknown_prompt_is_a_clear_error():
    with pytest.raises(ArtifactError, match="prompt id 'nope' is not a sandbox prompt"):
        exact().score_pair("nope", "a", "b")


def test_verifier_reads_the_prompt_file_and_its_constraints(tmp_path):
    prompts_file, _ = write_sandbox_prompts(tmp_path / "sb.jsonl", seed=2, count=12)
    v = Verifier.from_prompt_file(prompts_file, NoiseConfig(score_sigma_points=1.0), seed=9)
    assert len(v.prompts) == 12 and v.constraints("sbx2-00011") == v.prompts["sbx2-00011"].constraints


def test_noise_config_is_strict_and_bounded():
    with pytest.raises(ValidationError):
        NoiseConfig(flip_prob=1.5)
    with pytest.raises(ValidationError):
        NoiseConfig(score_sigma_points=-1)
    with pytest.raises(ValidationError):
        NoiseConfig(flip=0.1)


def test_noisy_judgments_are_identical_on_rerun_and_independent_across_orders_and_seeds():
    noise = NoiseConfig(flip_prob=0.2, score_sigma_points=1.0, position_bias_points=0.5)
    a, b = Verifier({"p1": PROMPT}, noise, seed=1), Verifier({"p1": PROMPT}, noise, seed=1)
    assert a.score_pair("p1", TWO_MET, NONE_MET) == b.score_pair("p1", TWO_MET, NONE_MET)
    assert a.calibrated_score("p1", ALL_MET) == b.calibrated_score("p1", ALL_MET)
    forward, backward = a.score_pair("p1", TWO_MET, NONE_MET), a.score_pair("p1", NONE_MET, TWO_MET)
    assert forward != backward[::-1]  # the swapped order is its own judgment
    other_seed = Verifier({"p1": PROMPT}, noise, seed=2)
    assert other_seed.score_pair("p1", TWO_MET, NONE_MET) != forward


N = 4000  # items for the statistics below; the bounds are several standard errors wide


def test_flips_happen_at_the_configured_rate_and_nest_across_levels():
    low, high = NoiseModel(NoiseConfig(flip_prob=0.1), seed=0), NoiseModel(NoiseConfig(flip_prob=0.3), seed=0)
    flips_low = [low.pair(f"item{i}", 10.0, 1.0) for i in range(N)]
    flips_high = [high.pair(f"item{i}", 10.0, 1.0) for i in range(N)]
    assert all((j.first, j.second) == ((1.0, 10.0) if j.flipped else (10.0, 1.0)) for j in flips_low)
    assert 0.08 < sum(j.flipped for j in flips_low) / N < 0.12
    assert 0.27 < sum(j.flipped for j in flips_high) / N < 0.33
    assert all(h.flipped for lo, h in zip(flips_low, flips_high) if lo.flipped)  # common random numbers


def test_gaussian_noise_has_the_configured_spread_and_no_bias():
    model = NoiseModel(NoiseConfig(score_sigma_points=0.5), seed=0)
    pairs = [model.pair(f"item{i}", 5.5, 5.5) for i in range(N)]
    for errors in ([p.first - 5.5 for p in pairs], [p.second - 5.5 for p in pairs]):
        assert abs(statistics.fmean(errors)) < 0.05
        assert 0.45 < statistics.stdev(errors) < 0.55
    assert abs(statistics.correlation([p.first for p in pairs], [p.second for p in pairs])) < 0.05
    singles = [model.single(f"item{i}", 5.5) - 5.5 for i in range(N)]
    assert abs(statistics.fmean(singles)) < 0.05 and 0.45 < statistics.stdev(singles) < 0.55


def test_pointwise_judgments_mirror_at_the_flip_rate_and_are_deterministic():
    model = NoiseModel(NoiseConfig(flip_prob=0.2), seed=0)
    scores = [model.pointwise(f"item{i}", 8.0) for i in range(N)]
    assert set(scores) == {8.0, 3.0}  # 1 + 10 - 8: a good answer rated as bad as it is good
    assert 0.18 < scores.count(3.0) / N < 0.22
    assert scores == [model.pointwise(f"item{i}", 8.0) for i in range(N)]
    noisy = Verifier({"p1": PROMPT}, NoiseConfig(score_sigma_points=0.5), seed=1)
    assert noisy.pointwise_score("p1", TWO_MET) == noisy.pointwise_score("p1", TWO_MET) != 7.0
    assert exact().pointwise_score("p1", TWO_MET) == 7.0


def test_position_bias_favours_the_answer_shown_first_and_scores_stay_on_the_scale():
    exact_bias = NoiseModel(NoiseConfig(position_bias_points=1.0), seed=0)
    assert exact_bias.pair("x", 5.0, 5.0)[:2] == (6.0, 5.0)
    assert exact_bias.pair("x", 10.0, 10.0)[:2] == (10.0, 10.0)  # clamped to the 1-10 scale
    noisy = NoiseModel(NoiseConfig(position_bias_points=1.0, score_sigma_points=0.5), seed=0)
    gaps = [j.first - j.second for j in (noisy.pair(f"item{i}", 5.5, 5.5) for i in range(N))]
    assert 0.95 < statistics.fmean(gaps) < 1.05
    wide = NoiseModel(NoiseConfig(score_sigma_points=5.0), seed=0)
    scores = [s for i in range(500) for s in wide.pair(f"item{i}", 9.0, 2.0)[:2]]
    assert min(scores) == 1.0 and max(scores) == 10.0


def test_ground_truth_pairs_accuracy_and_compliance():
    v = exact()
    pairs = true_pairs(v, "p1", [ALL_MET, TWO_MET, NONE_MET, "hi there my dear old pal"])
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [
        (ALL_MET, TWO_MET, 3.0), (ALL_MET, NONE_MET, 9.0), (TWO_MET, NONE_MET, 6.0),
        ("hi there my dear old pal", TWO_MET, 3.0), ("hi there my dear old pal", NONE_MET, 9.0)]
    scored = [ScoredPair("p1", ALL_MET, NONE_MET, 2.0, -1.0),  # right
              ScoredPair("p1", NONE_MET, TWO_MET, 0.5, 0.1),  # wrong
              ScoredPair("p1", TWO_MET, NONE_MET, 0.3, 0.3),  # reward tie: wrong
              ScoredPair("p1", ALL_MET, ALL_MET, 1.0, 0.0)]  # verifier tie: skipped
    assert pair_accuracy(v, scored) == {"accuracy": pytest.approx(1 / 3), "pairs": 3, "skipped_ties": 1}
    summary = compliance_summary(v, [("p1", ALL_MET), ("p1", TWO_MET), ("p1", NONE_MET)])
    assert summary == {
        "answers": 3, "mean_compliance": pytest.approx(5 / 9), "full_compliance_rate": pytest.approx(1 / 3),
        "by_kind": {"lowercase": pytest.approx(2 / 3), "min_words": pytest.approx(2 / 3),
                    "no_commas": pytest.approx(1 / 3)}}


def test_nothing_to_measure_gives_no_number_rather_than_nan():
    v = exact()
    assert pair_accuracy(v, [ScoredPair("p1", ALL_MET, ALL_MET, 1.0, 0.0)])["accuracy"] is None
    summary = compliance_summary(v, [])
    assert summary["mean_compliance"] is None and summary["full_compliance_rate"] is None
