"""95% Student t intervals of a mean over seeds: every "mean [low, high]" the reports print comes from here, and
the variance parts that size the next experiment."""

from __future__ import annotations

import math
import statistics
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
    per_item = _per_item_means(diffs, seeds, n_items)
    mean = sum(per_item) / n_items
    out["mean"] = mean
    if len(seeds) < 2 or out["prompts"] < 2:
        return out
    _, low, _ = t_interval(_per_seed_means(diffs, seeds, n_items))
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


def sizing(diffs: dict[int, list[float]], prompts: list[str]) -> dict[str, Any]:
    """What sizes the next experiment, from the same inputs as `seeds_and_prompts_interval`.

    - `between`, `within`: a one-way random-effects analysis of variance of the seed-averaged item differences by
      prompt (unbalanced, method of moments): the variance of a prompt's true mean difference between prompts, and
      of one item about its prompt's mean. With P prompts of m items each, the prompt part is about
      1.96 * sqrt((between + within / m) / P) (`prompts_for_half_width`).
    - `items_per_prompt`: the mean number of items of a prompt.
    - `seed_sd`: the standard deviation of the per-seed mean differences; `pair_noise_sd`: what it would be if each
      item's difference varied between seeds independently of every other item's. Where the two are alike, the
      seed part is item-level noise, and more items narrow it as surely as more seeds.

    Returns:
        those five values; each is None where the data cannot give it (two prompts, items or seeds are needed).
    """
    seeds = sorted(diffs)
    n_items = len(prompts)
    out: dict[str, Any] = dict.fromkeys(["between", "within", "items_per_prompt", "seed_sd", "pair_noise_sd"])
    if not seeds or not n_items:
        return out
    per_item = _per_item_means(diffs, seeds, n_items)
    groups: dict[str, list[float]] = {}
    for prompt, d in zip(prompts, per_item):
        groups.setdefault(prompt, []).append(d)
    k = len(groups)
    out["items_per_prompt"] = n_items / k
    if 1 < k < n_items:
        mean = sum(per_item) / n_items
        ss_within = sum((x - sum(g) / len(g)) ** 2 for g in groups.values() for x in g)
        ss_between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        within = ss_within / (n_items - k)
        n0 = (n_items - sum(len(g) ** 2 for g in groups.values()) / n_items) / (k - 1)
        out["within"] = within
        out["between"] = max(0.0, (ss_between / (k - 1) - within) / n0)
    if len(seeds) > 1:
        out["seed_sd"] = statistics.stdev(_per_seed_means(diffs, seeds, n_items))
        item_var = [sum((diffs[s][i] - per_item[i]) ** 2 for s in seeds) / (len(seeds) - 1) for i in range(n_items)]
        out["pair_noise_sd"] = math.sqrt(sum(item_var) / n_items / n_items)
    return out


def prompts_for_half_width(between: float, within: float, items_per_prompt: float, half: float) -> int:
    """Prompts (each giving `items_per_prompt` items, independent within the prompt; `math.inf` for the floor that
    no number of items per prompt gets under) whose prompt part of the 95% interval is `half`."""
    return math.ceil((1.96 / half) ** 2 * (between + within / items_per_prompt))


def _per_item_means(diffs: dict[int, list[float]], seeds: list[int], n_items: int) -> list[float]:
    return [sum(diffs[s][i] for s in seeds) / len(seeds) for i in range(n_items)]


def _per_seed_means(diffs: dict[int, list[float]], seeds: list[int], n_items: int) -> list[float]:
    return [sum(diffs[s]) / n_items for s in seeds]
