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
