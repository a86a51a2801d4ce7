"""The turning point of reward over-optimization: where the gold reward peaks while the proxy keeps rising.

During PPO against a reward model (the proxy), the policy first gets better by both measures. Past some KL
distance from the reference, the proxy keeps climbing while the true (gold) reward falls: the policy has found
the proxy's mistakes. `turning_point` finds that iteration in per-iteration series.

The rule. Both series are smoothed with a trailing mean over `window_iters` iterations (iteration i averages
iterations max(0, i - w + 1) .. i), which damps one-iteration noise without looking ahead. The smoothed gold's
peak (its first maximum) is the turning point when, after it,

- the smoothed gold ends lower than at the peak by more than `min_drop` (gold turned down), and
- the smoothed proxy ends higher than at the peak (the proxy is still rising).

Otherwise there is none: gold that never turns down (peak at the last iteration, or no drop beyond
`min_drop`) is not over-optimized yet, and gold falling together with the proxy is a policy getting worse by
every measure (unstable training, too high a learning rate), not over-optimization of the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TurningPoint:
    """Where the smoothed gold reward peaked: the iteration, its KL, and both smoothed rewards there."""

    iteration: int
    kl: float
    gold: float
    proxy: float


def trailing_mean(values: list[float], window_iters: int) -> list[float]:
    """Each value replaced by the mean of itself and up to `window_iters - 1` values before it."""
    if window_iters < 1:
        raise ValueError(f"window_iters must be at least 1, got {window_iters}")
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window_iters + 1):i + 1]
        out.append(sum(part) / len(part))
    return out


def turning_point(kl: list[float], gold: list[float], proxy: list[float], window_iters: int = 3,
                  min_drop: float = 0.0) -> TurningPoint | None:
    """The iteration where smoothed gold peaks while smoothed proxy is still rising after it; None when gold
    never turns down or when the proxy falls too (see the module docstring for the rule)."""
    if not len(kl) == len(gold) == len(proxy):
        raise ValueError(f"kl, gold and proxy must have one value per iteration, got lengths "
                         f"{len(kl)}, {len(gold)}, {len(proxy)}")
    if not gold:
        return None
    gold_s = trailing_mean(gold, window_iters)
    proxy_s = trailing_mean(proxy, window_iters)
    peak = max(range(len(gold_s)), key=lambda i: (gold_s[i], -i))  # first maximum
    gold_turned_down = gold_s[-1] < gold_s[peak] - min_drop
    proxy_still_rising = proxy_s[-1] > proxy_s[peak]
    if peak == len(gold_s) - 1 or not gold_turned_down or not proxy_still_rising:
        return None
    return TurningPoint(iteration=peak, kl=kl[peak], gold=gold_s[peak], proxy=proxy_s[peak])
