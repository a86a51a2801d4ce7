"""95% Student t intervals of a mean over seeds: every "mean [low, high]" the reports print comes from here."""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import t


def t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and the bounds of its 95% Student t interval; no bounds from fewer than two values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def seed_stats(by_seed: dict[int, float]) -> dict[str, Any]:
    """The per-seed values, their count, mean and 95% interval (None where there are too few)."""
    if not by_seed:
        return {"values": {}, "n": 0, "mean": None, "low": None, "high": None}
    mean, low, high = t_interval(list(by_seed.values()))
    return {"values": {str(s): v for s, v in by_seed.items()}, "n": len(by_seed), "mean": mean, "low": low,
            "high": high}


def seeds_and_prompts_interval(diffs: dict[int, list[float]], prompts: list[str]) -> dict[str, Any]:
    """The mean paired difference over seeds and items, with a 95% interval that covers both ways it was sampled.

    `diffs[seed][i]` is the difference on item i in that seed (say 1 - 0 when one RM orders pair i right and the
    other does not); every seed scores the same items. `prompts[i]` names the prompt item i belongs to: pairs of one
    prompt share answers, so the prompt, not the pair, is the unit drawn.

    - seed part: the t half-width of the per-seed means (what training randomness moves);
    - prompt part: 1.96 x the prompt-clustered standard error of the seed-averaged item differences (which prompts
      happened to be drawn; an interval over seeds alone treats the fixed pair set as the whole population);
    - the interval: mean +- sqrt(seed part^2 + prompt part^2). Both parts carry some of the seed-by-prompt
      interaction, so it errs wide.

    Returns:
        {"mean", "seed_half", "prompt_half", "half", "low", "high", "seeds", "items", "prompts"}; the half-widths
        and bounds are None with fewer than two seeds or two prompts.
    """
    seeds = sorted(diffs)
    n_items = len(prompts)
    if any(len(diffs[s]) != n_items for s in seeds):
        raise ValueError(f"every seed must score the same {n_items} items")
    out: dict[str, Any] = {"mean": None, "seed_half": None, "prompt_half": None, "half": None, "low": None,
                           "high": None, "seeds": len(seeds), "items": n_items, "prompts": len(set(prompts))}
    if not seeds or not n_items:
        return out
    per_item = [sum(diffs[s][i] for s in seeds) / len(seeds) for i in range(n_items)]
    mean = sum(per_item) / n_items
    out["mean"] = mean
    if len(seeds) < 2 or out["prompts"] < 2:
        return out
    _, low, _ = t_interval([sum(diffs[s]) / n_items for s in seeds])
    seed_half = mean - low
    residual_by_prompt: dict[str, float] = {}
    for prompt, d in zip(prompts, per_item):
        residual_by_prompt[prompt] = residual_by_prompt.get(prompt, 0.0) + d - mean
    clusters = len(residual_by_prompt)
    se = math.sqrt(clusters / (clusters - 1) * sum(r * r for r in residual_by_prompt.values())) / n_items
    prompt_half = 1.96 * se
    half = math.hypot(seed_half, prompt_half)
    out.update(seed_half=seed_half, prompt_half=prompt_half, half=half, low=mean - half, high=mean + half)
    return out
