"""Step plans (deterministic, complete, rank-split, length-grouped) and padded micro-batches."""

import numpy as np
import pytest
import torch

from stages.s2_distill.batching import collate, collate_answers, step_plan, total_steps
from stages.s2_distill.encode import AnswerRow, EncodedPair

PAD = 99


def test_plan_is_seeded_and_covers_each_epoch_once():
    lengths = list(range(20))
    plan = step_plan(lengths, pairs_per_step=8, micro_pairs=2, world_size=2, num_steps=4, seed=3,
                     group_by_length=False)
    assert plan == step_plan(lengths, 8, 2, 2, 4, 3, False)
    assert plan != step_plan(lengths, 8, 2, 2, 4, 4, False)
    assert len(plan) == 4 and all(len(step) == 2 for step in plan)  # steps x ranks
    assert all(len(micro) == 2 for step in plan for rank in step for micro in rank)  # 2 micro-batches per rank
    per_step = [sorted(i for rank in step for micro in rank for i in micro) for step in plan]
    epoch0 = per_step[0] + per_step[1]  # 20 pairs, 8 per step: 2 steps per epoch, 4 pairs skipped
    assert len(set(epoch0)) == 16
    assert len(set(per_step[2] + per_step[3])) == 16


def test_ranks_share_a_step_in_the_order_one_rank_would_accumulate():
    one = step_plan(list(range(16)), 8, 2, 1, 2, 0, False)
    two = step_plan(list(range(16)), 8, 2, 2, 2, 0, False)
    for a, b in zip(one, two):
        assert a[0][0::2] == b[0] and a[0][1::2] == b[1]


def test_length_grouping_reduces_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, size=256).tolist()

    def padded_tokens(plan):
        return sum(len(m) * max(lengths[i] for i in m) for step in plan for rank in step for m in rank)

    grouped = step_plan(lengths, 16, 4, 1, 16, 0, True)
    plain = step_plan(lengths, 16, 4, 1, 16, 0, False)
    assert sorted(i for s in grouped for m in s[0] for i in m) == list(range(256))  # still one epoch, each once
    assert padded_tokens(grouped) < 0.75 * padded_tokens(plain)


def test_too_few_pairs_and_step_counts():
    assert total_steps(num_pairs=20, pairs_per_step=8, epochs=1.0) == 2
    assert total_steps(20, 8, 1.5) == 3
    assert total_steps(7, 8, 3) == 0
    with pytest.raises(ValueError, match="fewer than pairs_per_step"):
        step_plan([1] * 7, 8, 2, 1, 1, 0, True)


def pair(chosen, rejected, margin=None, answer=None):
    return EncodedPair("x", chosen, rejected, margin, 0.0, answer)


def test_collate_pads_right_and_finds_lm_targets():
    answer = AnswerRow(ids=[5, 6, 7, 8, 2], prefix_len=3,
                       topk_ids=np.array([[8, 1], [2, 3]], dtype=np.int32),
                       topk_logprobs=np.array([[-0.1, -2.0], [-0.2, -3.0]], dtype=np.float32))
    batch = collate([pair([1, 2], [1, 3, 4], 1.5, answer), pair([1, 2, 3], [1], 0.5)], PAD, "topk")
    assert batch.input_ids.tolist() == [
        [1, 2, PAD, PAD, PAD],  # chosen 0
        [1, 2, 3, PAD, PAD],  # chosen 1
        [1, 3, 4, PAD, PAD],  # rejected 0
        [1, PAD, PAD, PAD, PAD],  # rejected 1
        [5, 6, 7, 8, 2],  # y_T of pair 0 (pair 1 has none)
    ]
    assert batch.attention_mask.sum(1).tolist() == [2, 3, 3, 1, 5]
    assert batch.num_pairs == 2 and batch.margin.tolist() == [1.5, 0.5]
    # y_T tokens 8 and 2 sit at positions 3 and 4; logits at positions 2 and 3 predict them.
    assert batch.lm_rows.tolist() == [4, 4] and batch.lm_cols.tolist() == [2, 3]
    assert batch.lm_targets.tolist() == [8, 2] and batch.lm_seq.tolist() == [0, 0] and batch.num_answers == 1
    assert batch.topk_ids.tolist() == [[8, 1], [2, 3]] and batch.topk_logprobs.dtype == torch.float32


def test_collate_without_answers_has_no_lm_rows():
    answer = AnswerRow(ids=[5, 6, 2], prefix_len=1)
    batch = collate([pair([1, 2], [1], None, answer)], PAD, "none")
    assert batch.input_ids.shape == (2, 2) and batch.margin is None and batch.lm_rows is None


def test_collate_answers_for_the_lm_loss():
    rows = [AnswerRow([5, 6, 2], 2), AnswerRow([5, 7, 8, 2], 1)]
    batch = collate_answers(rows, PAD)
    assert batch.num_pairs == 0 and batch.num_answers == 2
    assert batch.lm_rows.tolist() == [0, 1, 1, 1] and batch.lm_cols.tolist() == [1, 0, 1, 2]
    assert batch.lm_targets.tolist() == [2, 7, 8, 2] and batch.lm_seq.tolist() == [0, 1, 1, 1]
