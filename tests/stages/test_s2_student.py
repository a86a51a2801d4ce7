"""The student reward model on the tiny model: the reward is read at the last real token, whatever the padding."""

from __future__ import annotations

import pytest
import torch

from stages.s2_distill.batching import pad_rows
from stages.s2_distill.student import (
    RewardStudent,
    is_right_padded,
    last_token_index,
    length_groups,
    load_student,
    position_ids_from_mask,
)


def test_mask_helpers():
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert last_token_index(right).tolist() == [1, 2] and last_token_index(left).tolist() == [2, 2]
    assert is_right_padded(right) and not is_right_padded(left)
    assert position_ids_from_mask(left).tolist() == [[1, 0, 1], [0, 1, 2]]


def test_length_groups_split_while_it_saves_padding():
    # Sorted: rows 0 (10), 2 (12), 3 (90), 1 (100). One pass pads 4 x 100 = 400 tokens; halves pad 2 x 12 + 2 x 100
    # = 224 (44% fewer): split. [0, 2]: 24 vs 10 + 12 = 22 (8% fewer): keep. [3, 1]: 200 vs 190 (5%): keep.
    assert length_groups([10, 100, 12, 90], min_saving=0.2) == [[0, 2], [3, 1]]
    assert length_groups([10, 100, 12, 90], min_saving=1.0) == [[0, 2, 3, 1]]
    assert length_groups([10, 100, 12, 90], min_saving=0.0) == [[0], [2], [3], [1]]
    assert length_groups([7], min_saving=0.0) == [[0]]


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


def test_split_passes_give_the_same_rewards_and_logits(student):
    rows = [[5, 6, 7, 8, 9, 10, 11, 2], [9, 2], [12, 13, 14, 15, 16, 17, 18, 19, 20, 2], [21, 2], [22, 23, 2]]
    ids, mask = pad_rows(rows, pad_id=3)
    lm_rows, lm_cols = torch.tensor([4, 4, 0, 2]), torch.tensor([0, 1, 6, 8])
    split = RewardStudent(student.lm, head_seed=0, split_min_saving=0.0).eval()  # every row in its own pass
    with torch.no_grad():
        one = student(ids, mask, 4, lm_rows, lm_cols)
        many = split(ids, mask, 4, lm_rows, lm_cols)
    torch.testing.assert_close(many[0], one[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(many[1], one[1], rtol=1e-5, atol=1e-5)


def test_padding_free_rows_give_the_same_loss_and_gradients(tiny_policy):
    """One packed pass over the rows' real tokens gives the padded batch's rewards, LM logits, pair loss (with the
    SFT term) and every parameter's gradient; changing one row's tokens leaves the other rows' rewards alone."""
    from stages.s2_distill.losses import pair_loss, sft_loss

    rows = [[5, 6, 7, 8, 9, 10, 11, 2], [9, 2], [12, 13, 14, 15, 16, 17, 18, 19, 20, 2], [21, 2], [22, 23, 2]]
    ids, mask = pad_rows(rows, pad_id=3)
    lm_rows, lm_cols = torch.tensor([4, 4, 0, 2]), torch.tensor([0, 1, 6, 8])
    padded = load_student(tiny_policy, head_seed=0, gradient_checkpointing=False, split_min_saving=1.0)
    packed = load_student(tiny_policy, head_seed=0, gradient_checkpointing=False, padding_free=True)
    results = []
    for model in (padded, packed):
        rewards, logits = model(ids, mask, 4, lm_rows, lm_cols)
        loss = pair_loss("margin_mse", rewards[:2], rewards[2:4], torch.tensor([0.5, -1.0])) + \
            0.1 * sft_loss(logits, ids[lm_rows, lm_cols + 1], torch.tensor([0, 0, 1, 2]), 3)
        loss.backward()
        results.append((rewards.detach(), logits.detach(), loss.detach(),
                        {name: p.grad for name, p in model.named_parameters()}))
    (r1, l1, loss1, g1), (r2, l2, loss2, g2) = results
    torch.testing.assert_close(r2, r1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l2, l1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss2, loss1, rtol=1e-5, atol=1e-6)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-4, atol=1e-5, msg=name)
    changed = ids.clone()
    changed[0, :7] = 40  # row 0 only
    with torch.no_grad():
        after = packed(changed, mask, 4)[0]
    assert after[0] != r2[0]
    torch.testing.assert_close(after[1:], r2[1:], rtol=1e-5, atol=1e-5)
