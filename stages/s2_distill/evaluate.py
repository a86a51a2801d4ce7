"""Held-out metrics: pairwise accuracy, Spearman correlation of reward gaps with the teacher's margins, and the
LM loss on held-out teacher answers (does the regularizer preserve language modelling?)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from stages.s2_distill.batching import Batch, collate, collate_answers
from stages.s2_distill.encode import AnswerRow, EncodedPair
from stages.s2_distill.losses import sft_loss

Forward = Callable[[Batch], tuple[Tensor, Tensor | None]]  # batch -> (rewards [2b], logits [t, V] | None)


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks."""
    arr = np.asarray(values, dtype=np.float64)
    order = np.argsort(arr, kind="stable")
    out = np.empty(len(arr))
    sorted_vals = arr[order]
    start = 0
    while start < len(arr):
        end = start
        while end + 1 < len(arr) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        out[order[start: end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on tie-averaged ranks); None when undefined (n < 2 or a constant)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of one length; got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return None if denom == 0 else float((rx * ry).sum() / denom)


def pair_metrics(chosen: Sequence[float], rejected: Sequence[float], margins: Sequence[float]) -> dict:
    """Strict accuracy (ties are wrong), Spearman of r_c - r_r against the teacher margin, mean gap."""
    gaps = [c - r for c, r in zip(chosen, rejected, strict=True)]
    if not gaps:
        return {"pairs": 0}
    return {
        "pairs": len(gaps),
        "accuracy": sum(g > 0 for g in gaps) / len(gaps),
        "margin_spearman": spearman(gaps, margins),
        "reward_gap_mean": float(np.mean(gaps)),
    }


@torch.no_grad()
def pair_rewards(forward: Forward, pairs: list[EncodedPair], micro_pairs: int, pad_id: int,
                 device: torch.device) -> tuple[list[float], list[float]]:
    """Rewards of every pair's chosen and rejected sequence."""
    chosen, rejected = [], []
    for i in range(0, len(pairs), micro_pairs):
        part = pairs[i: i + micro_pairs]
        rewards, _ = forward(collate(part, pad_id, "none").to(device))
        chosen += rewards[: len(part)].tolist()
        rejected += rewards[len(part):].tolist()
    return chosen, rejected


@torch.no_grad()
def answers_lm_loss(forward: Forward, rows: list[AnswerRow], micro_rows: int, pad_id: int,
                    device: torch.device) -> float | None:
    """Mean over teacher answers of their per-token NLL under the student; None without answers."""
    if not rows:
        return None
    total = 0.0
    for i in range(0, len(rows), micro_rows):
        batch = collate_answers(rows[i: i + micro_rows], pad_id).to(device)
        _, logits = forward(batch)
        total += float(sft_loss(logits, batch.lm_targets, batch.lm_seq, batch.num_answers)) * batch.num_answers
    return total / len(rows)
