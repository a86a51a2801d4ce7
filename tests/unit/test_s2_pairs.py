"""Pair selection per variant, the held-out split, held-out metrics and the learning-rate schedule."""

import math

import pytest

from rlhf_stack.core.prompts import split_prompts
from rlhf_stack.core.records import Candidate, InitialPair, PreferenceRecord, PromptRecord, Refinement
from rlhf_stack.core.sections import SplitFractions
from stages.s2_distill.config import VariantConfig
from stages.s2_distill.engine import lr_factor
from stages.s2_distill.evaluate import pair_metrics, ranks, spearman
from stages.s2_distill.pairs import in_training_share, is_held_out, loss_margin, pair_of, select_pairs
from stages.s2_distill.settings import TrainSettings


def record(rid: str, refined: bool = True) -> PreferenceRecord:
    return PreferenceRecord(
        id=rid, prompt="p", candidates=[Candidate(generator="a", text="w", finish_reason="stop")],
        initial=InitialPair(chosen_index=0, rejected_index=1, chosen="y_w", rejected="y_l", chosen_score=7.0,
                            rejected_score=4.5, judgments=[]),
        refinement=Refinement(chosen="y*_w", completion="c", calibrated_score=8.0, margin=3.5, edit_distance=0.1)
        if refined else None,
    )


def variant(**kw) -> VariantConfig:
    base = {"pairs": "refined", "margin": "calibrated", "objective": "margin_mse", "sft_weight": 0, "kl_weight": 0}
    return VariantConfig(**{**base, **kw})


def test_initial_and_refined_pairs():
    r = record("a")
    initial, refined = pair_of(r, "initial"), pair_of(r, "refined")
    assert (initial.chosen, initial.rejected, initial.teacher_margin) == ("y_w", "y_l", 2.5)  # s_w - s_l
    assert (refined.chosen, refined.rejected, refined.teacher_margin) == ("y*_w", "y_l", 3.5)  # s*_w - s_l
    assert pair_of(record("b", refined=False), "refined") is None


def test_select_counts_records_without_the_pair_type():
    records = [record("a"), record("b", refined=False), record("c")]
    pairs, missing = select_pairs(records, variant())
    assert [p.id for p in pairs] == ["a", "c"] and missing == 1
    assert len(select_pairs(records, variant(pairs="initial", margin="raw"))[0]) == 3


def test_loss_margin_scaling_and_none():
    p = pair_of(record("a"), "refined")
    assert loss_margin(p, variant()) == 3.5
    assert loss_margin(p, variant(margin_scale=0.5)) == 1.75
    assert loss_margin(p, variant(margin="none", objective="bt")) is None


def test_held_out_split_is_seeded_and_about_the_fraction():
    ids = [f"p{i}" for i in range(2000)]
    held = [i for i in ids if is_held_out(i, 0.1, seed=0)]
    assert 150 < len(held) < 250
    assert held == [i for i in ids if is_held_out(i, 0.1, seed=0)]
    assert held != [i for i in ids if is_held_out(i, 0.1, seed=1)]
    assert not any(is_held_out(i, 0.0, seed=0) for i in ids)


def test_held_out_prompts_are_a_fraction_of_the_synthesis_split_not_all_of_it():
    """The prompt splits rank prompts by a seeded hash too: the held-out draw must not repeat it."""
    prompts = [PromptRecord(id=f"p{i}", prompt=f"question {i}") for i in range(1000)]
    synthesis = split_prompts(prompts, SplitFractions(synthesize=0.2, ppo=0.1, evaluate=0.05), seed=0)["synthesize"]
    held = [p for p in synthesis if is_held_out(p.id, 0.2, seed=0)]
    assert 0.1 * len(synthesis) < len(held) < 0.3 * len(synthesis)


def test_training_shares_are_nested_and_drawn_apart_from_the_held_out_prompts():
    ids = [f"p{i}" for i in range(2000)]
    shares = {f: {i for i in ids if in_training_share(i, f, seed=0)} for f in (0.25, 0.5, 1.0)}
    assert shares[0.25] < shares[0.5] < shares[1.0] == set(ids)  # a learning curve adds prompts, never swaps them
    assert 400 < len(shares[0.25]) < 600 and 900 < len(shares[0.5]) < 1100
    held = {i for i in ids if is_held_out(i, 0.5, seed=0)}
    assert 150 < len(held & shares[0.25]) < 350  # independent draws: about half of the quarter is held out
    assert shares[0.25] != {i for i in ids if in_training_share(i, 0.25, seed=1)}


def test_spearman_by_hand():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ties share ranks: x -> [1, 2.5, 2.5, 4]; centred [-1.5, 0, 0, 1.5] and y centred [-1.5, -0.5, 0.5, 1.5]:
    # covariance sum 4.5, variances 4.5 and 5 -> 4.5 / sqrt(22.5) = 0.948683
    assert ranks([1, 2, 2, 3]).tolist() == [1, 2.5, 2.5, 4]
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.948683, abs=1e-6)
    assert spearman([1], [2]) is None and spearman([1, 1], [1, 2]) is None


def test_pair_metrics_count_ties_as_wrong():
    m = pair_metrics(chosen=[2.0, 1.0, 0.5], rejected=[1.0, 1.0, 1.0], margins=[3.0, 1.0, 0.0])
    assert m["accuracy"] == pytest.approx(1 / 3) and m["pairs"] == 3
    assert m["margin_spearman"] == pytest.approx(1.0)  # gaps [1, 0, -0.5] rank like margins [3, 1, 0]
    assert pair_metrics([], [], []) == {"pairs": 0}


def settings(**kw) -> TrainSettings:
    base = dict(model_dir=None, work_dir=None, out_dir=None, objective="bt", sft_weight=0.0, kl_weight=0.0,
                kl_temperature=1.0, pad_token_id=0, num_steps=10, pairs_per_step=4, micro_pairs=2, world_size=1,
                zero_stage=0, dtype="fp32", device="cpu", gradient_checkpointing=False, lr=1.0, lr_schedule="cosine",
                warmup_ratio=0.2, weight_decay=0.0, max_grad_norm=1.0, group_by_length=True, split_rows_min_saving=0.2,
                padding_free=False, checkpoint_every_steps=1, seed=0)
    return TrainSettings(**{**base, **kw})


def test_lr_schedule():
    s = settings()  # warm-up ceil(0.2 * 10) = 2 steps: 1/3, 2/3; then cosine from 1 down to 0
    assert [round(lr_factor(i, s), 4) for i in (0, 1, 2, 6)] == [0.3333, 0.6667, 1.0, 0.5]
    assert lr_factor(9, s) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))  # progress (9 - 2) / 8
    assert lr_factor(9, settings(lr_schedule="constant")) == 1.0
    assert settings(sft_weight=1.0).answers == "sft" and settings(kl_weight=0.1).answers == "topk"
    assert settings().answers == "none" and settings(pairs_per_step=8).gradient_accumulation_steps == 4
