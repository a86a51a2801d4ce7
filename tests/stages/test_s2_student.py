"""The student reward model on the tiny model: the reward is read at the last real token, whatever the padding."""

from __future__ import annotations

import pytest
import torch

from stages.s2_distill.batching import pad_rows
from stages.s2_distill.student import is_right_padded, last_token_index, load_student, position_ids_from_mask


def test_mask_helpers():
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert last_token_index(right).tolist() == [1, 2] and last_token_index(left).tolist() == [2, 2]
    assert is_right_padded(right) and not is_right_padded(left)
    assert position_ids_from_mask(left).tolist() == [[1, 0, 1], [0, 1, 2]]


@pytest.fixture(scope="module")
def student(tiny_policy):
    return load_student(tiny_policy, head_seed=0, gradient_checkpointing=False).eval()


def test_rewards_do_not_depend_on_padding(student):
    rows = [[5, 6, 7, 8, 2], [9, 10, 2], [11, 2]]
    with torch.no_grad():
        alone = torch.cat([student(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long), 1)[0] for r in rows])
        ids, mask = pad_rows(rows, pad_id=3)  # right padding: the causal path without a padding mask
        right = student(ids, mask, 3)[0]
        left_ids, left_mask = ids.clone(), mask.clone()  # left padding: the masked path with shifted positions
        for i, r in enumerate(rows):
            left_ids[i], left_mask[i] = 3, 0
            left_ids[i, -len(r):], left_mask[i, -len(r):] = torch.tensor(r), 1
        left = student(left_ids, left_mask, 3)[0]
    torch.testing.assert_close(right, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(left, alone, rtol=1e-5, atol=1e-5)


def test_lm_logits_only_at_requested_positions(student):
    ids = torch.tensor([[5, 6, 7, 2]])
    with torch.no_grad():
        rewards, logits = student(ids, torch.ones_like(ids), 0, torch.tensor([0, 0]), torch.tensor([1, 2]))
        full = student.lm(ids).logits[0]
    assert rewards.shape == (0,) and logits.shape == (2, 2048)
    torch.testing.assert_close(logits, full[1:3], rtol=1e-5, atol=1e-5)
