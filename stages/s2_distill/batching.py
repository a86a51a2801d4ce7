"""Deterministic step plans and padded micro-batches.

The plan fixes, from the seed alone, which pairs each rank sees in each micro-batch of each step, so a resumed
run replays exactly the steps an uninterrupted one would. With `group_by_length`, pairs of similar length share
a micro-batch (less padding); the order of the steps is still shuffled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stages.s2_distill.encode import AnswerRow, EncodedPair

GROUP_WINDOW_STEPS = 8  # length grouping sorts within windows of this many steps' pairs

Plan = list[list[list[list[int]]]]  # plan[step][rank] = micro-batches, each a list of pair indices


def steps_per_epoch(num_pairs: int, pairs_per_step: int) -> int:
    return num_pairs // pairs_per_step


def total_steps(num_pairs: int, pairs_per_step: int, epochs: float) -> int:
    return math.ceil(epochs * steps_per_epoch(num_pairs, pairs_per_step))


def step_plan(lengths: list[int], pairs_per_step: int, micro_pairs: int, world_size: int, num_steps: int,
              seed: int, group_by_length: bool) -> Plan:
    """Micro-batches of pair indices for every step and rank; leftover pairs of an epoch are skipped.

    Args:
        lengths: longest row of each pair, [n].
        pairs_per_step: pairs per optimizer step over all ranks (a multiple of micro_pairs * world_size).
        micro_pairs: pairs per micro-batch.
        world_size: number of ranks.
        num_steps: optimizer steps to plan.
        seed: the run seed.
        group_by_length: sort pairs by length within windows of GROUP_WINDOW_STEPS steps.
    """
    per_epoch = steps_per_epoch(len(lengths), pairs_per_step)
    if per_epoch == 0:
        raise ValueError(f"{len(lengths)} training pairs are fewer than pairs_per_step ({pairs_per_step})")
    lengths_arr = np.asarray(lengths)
    steps: list[np.ndarray] = []
    epoch = 0
    while len(steps) < num_steps:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(lengths))[: per_epoch * pairs_per_step]
        if group_by_length:
            window = GROUP_WINDOW_STEPS * pairs_per_step
            order = np.concatenate([
                chunk[np.argsort(-lengths_arr[chunk], kind="stable")]
                for chunk in np.split(order, range(window, len(order), window))
            ])
        epoch_steps = np.split(order, per_epoch)
        if group_by_length:
            epoch_steps = [epoch_steps[i] for i in rng.permutation(per_epoch)]
        steps.extend(epoch_steps)
        epoch += 1
    plan = []
    for step in steps[:num_steps]:
        micro = [step[i: i + micro_pairs].tolist() for i in range(0, pairs_per_step, micro_pairs)]
        plan.append([micro[rank::world_size] for rank in range(world_size)])
    return plan


@dataclass
class Batch:
    """Rows [chosen x b; rejected x b; y_T rows], right-padded, and the LM targets inside the y_T rows."""

    input_ids: Tensor  # [n, L]
    attention_mask: Tensor  # [n, L]
    num_pairs: int  # b: rewards are read from the first 2b rows
    margin: Tensor | None  # [b] float32
    lm_rows: Tensor | None = None  # [t] row of each position whose logits predict a y_T token
    lm_cols: Tensor | None = None  # [t] that position (prefix_len - 1 ... len - 2)
    lm_targets: Tensor | None = None  # [t] the predicted y_T token
    lm_seq: Tensor | None = None  # [t] which y_T row (0 ... num_answers - 1)
    num_answers: int = 0
    topk_ids: Tensor | None = None  # [t, k]
    topk_logprobs: Tensor | None = None  # [t, k]

    def to(self, device: torch.device) -> "Batch":
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in vars(self).items()}
        return Batch(**moved)


def pad_rows(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ids [n, L] and attention mask [n, L] (L = longest row: no fixed-length padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def collate(pairs: list[EncodedPair], pad_id: int, answers: str) -> Batch:
    """One micro-batch; `answers`: "none" (no LM rows), "sft" (targets only) or "topk" (targets + top-k)."""
    rows = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    margin = None
    if pairs[0].margin is not None:
        margin = torch.tensor([p.margin for p in pairs], dtype=torch.float32)
    answer_rows = [p.answer for p in pairs if p.answer is not None] if answers != "none" else []
    ids, mask = pad_rows(rows + [a.ids for a in answer_rows], pad_id)
    batch = Batch(ids, mask, len(pairs), margin)
    if answer_rows:
        _add_lm_targets(batch, answer_rows, first_row=len(rows), with_topk=answers == "topk")
    return batch


def collate_answers(rows: list[AnswerRow], pad_id: int) -> Batch:
    """y_T rows alone, for the held-out LM loss."""
    ids, mask = pad_rows([a.ids for a in rows], pad_id)
    batch = Batch(ids, mask, 0, None)
    _add_lm_targets(batch, rows, first_row=0, with_topk=False)
    return batch


def _add_lm_targets(batch: Batch, rows: list[AnswerRow], first_row: int, with_topk: bool) -> None:
    lm_rows, lm_cols, lm_seq, targets = [], [], [], []
    for j, row in enumerate(rows):
        n = len(row.ids) - row.prefix_len
        lm_rows += [first_row + j] * n
        lm_cols += range(row.prefix_len - 1, len(row.ids) - 1)  # logits at t predict token t + 1
        lm_seq += [j] * n
        targets += row.ids[row.prefix_len:]
    batch.lm_rows = torch.tensor(lm_rows, dtype=torch.long)
    batch.lm_cols = torch.tensor(lm_cols, dtype=torch.long)
    batch.lm_seq = torch.tensor(lm_seq, dtype=torch.long)
    batch.lm_targets = torch.tensor(targets, dtype=torch.long)
    batch.num_answers = len(rows)
    if with_topk:
        batch.topk_ids = torch.from_numpy(np.concatenate([r.topk_ids for r in rows])).long()
        batch.topk_logprobs = torch.from_numpy(np.concatenate([r.topk_logprobs for r in rows])).float()
