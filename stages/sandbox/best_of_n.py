"""Best-of-N, measured exactly: the expected gold of a reward model's pick among N of a prompt's M samples.

Best-of-N draws N answers, lets a reward model pick the one it rewards most, and keeps it. With M >= N samples
of one prompt already scored (gold g_i from the verifier, reward r_i from the reward model), the expected gold
of the pick over a uniformly random N-subset of the M samples is

    E[gold] = sum_i g_i * P(sample i is the pick)

computed in closed form (no random subsampling). Ties in reward are broken uniformly at random: for a group
of t samples sharing one reward value, with L samples rewarded strictly lower, the subset's highest reward
falls in that group with m of its members in the subset with probability C(t, m) * C(L, N - m) / C(M, N), and
each of those m is the pick with probability 1/m; summed over m, every member of the group is the pick with the
same probability, 1/t of the group's total. Without ties this is C(j, N - 1) / C(M, N) for the sample
with j samples rewarded lower.

The policy that best-of-N defines sits `bon_kl_nats(N) = log N - (N - 1) / N` nats from the sampling policy
(the usual analytic value), which lets best-of-N curves be read against PPO's KL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def pick_probabilities(rewards: Sequence[float], n: int) -> list[float]:
    """P(sample i is best-of-`n`'s pick) for each sample, over uniform `n`-subsets and uniform tie-breaks."""
    m_total = len(rewards)
    if not 1 <= n <= m_total:
        raise ValueError(f"best-of-N needs 1 <= N <= number of samples; got N={n} with {m_total} samples")
    subsets = math.comb(m_total, n)
    order = sorted(range(m_total), key=lambda i: rewards[i])
    probs = [0.0] * m_total
    lower = 0
    start = 0
    while start < m_total:
        end = start
        while end < m_total and rewards[order[end]] == rewards[order[start]]:
            end += 1
        tied = end - start
        # P(the subset's top reward is this group's value); by symmetry each member is the pick equally often.
        group = sum(math.comb(tied, m) * math.comb(lower, n - m) for m in range(1, min(tied, n) + 1))
        for k in range(start, end):
            probs[order[k]] = group / subsets / tied
        lower += tied
        start = end
    return probs


def best_of_n_expected(gold: Sequence[float], rewards: Sequence[float], n: int) -> float:
    """Expected gold of the reward-argmax over a uniformly random `n`-subset of one prompt's samples."""
    if len(gold) != len(rewards):
        raise ValueError(f"{len(gold)} gold values but {len(rewards)} rewards: one of each per sample")
    return sum(g * p for g, p in zip(gold, pick_probabilities(rewards, n), strict=True))


def bon_kl_nats(n: int) -> float:
    """Analytic KL (nats) of the best-of-`n` policy from the sampling policy: log n - (n - 1) / n."""
    return math.log(n) - (n - 1) / n


def best_of_n_curve(samples: Sequence[Mapping[str, Any]], rewards: Sequence[float],
                    ns: Sequence[int]) -> dict[str, dict[str, float | int | None]]:
    """Best-of-N gold per N, averaged over prompts: `{str(N): {"gold_mean", "compliance_mean", "prompts",
    "kl_nats"}}`.

    `samples` are one prompt's samples after another, each with "prompt_id", "true_score" and "compliance";
    `rewards[i]` is the reward of `samples[i]`. A prompt counts toward N only if it has at least N samples.
    """
    if len(samples) != len(rewards):
        raise ValueError(f"{len(samples)} samples but {len(rewards)} rewards: one reward per sample")
    by_prompt: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_prompt.setdefault(s["prompt_id"], []).append(i)
    out: dict[str, dict[str, float | int | None]] = {}
    for n in ns:
        gold, compliance = [], []
        for rows in by_prompt.values():
            if len(rows) < n:
                continue
            probs = pick_probabilities([rewards[i] for i in rows], n)
            gold.append(sum(p * samples[i]["true_score"] for p, i in zip(probs, rows, strict=True)))
            compliance.append(sum(p * samples[i]["compliance"] for p, i in zip(probs, rows, strict=True)))
        out[str(n)] = {"gold_mean": sum(gold) / len(gold) if gold else None,
                       "compliance_mean": sum(compliance) / len(compliance) if compliance else None,
                       "prompts": len(gold), "kl_nats": bon_kl_nats(n)}
    return out
