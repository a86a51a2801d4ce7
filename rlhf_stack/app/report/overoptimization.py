"""The report's over-optimization section (docs/sandbox.md): gold and proxy reward against KL during PPO.

Read from each policy's metrics.jsonl, where the local backend logs on sandbox prompts the proxy (`reward_mean`,
the RM's raw score), the gold (`gold_mean`, the verifier's exact true score of the same rollouts) and the KL to
the reference summed per sequence (`kl_seq_k1`).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from rlhf_stack.app.report.run_view import RunView
from rlhf_stack.core import plots
from rlhf_stack.core.intervals import seed_stats
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table
from rlhf_stack.core.overoptimization import turning_point
from rlhf_stack.core.records import read_json_lines

WINDOW_ITERS = 3  # trailing mean of the turning-point rule
KL_KEY = "kl_seq_k1"


def overopt_series(records: list[dict]) -> dict[str, list[float]] | None:
    """Per-iteration kl, proxy and gold of one policy's metrics; None unless every iteration has all three."""
    if not records or not all("gold_mean" in r and KL_KEY in r for r in records):
        return None
    return {"kl": [float(r[KL_KEY]) for r in records], "proxy": [float(r["reward_mean"]) for r in records],
            "gold": [float(r["gold_mean"]) for r in records]}


def _standardized(values: list[float]) -> list[float]:
    mean = statistics.fmean(values)
    sd = statistics.pstdev(values)
    return [(v - mean) / sd if sd > 0 else 0.0 for v in values]


def overoptimization_section(view: RunView, out: Path) -> list[str]:
    """Sandbox runs on the local backend: a table per policy and a plot of gold and proxy against KL."""
    series = {name: s for name, (_, records) in sorted(view.ppo.items()) if (s := overopt_series(records))}
    if not series:
        return []
    lines = ["## Over-optimization (sandbox)", "",
             f"Per PPO iteration: the proxy (the RM's mean raw score of the rollouts), the gold (the verifier's exact "
             f"mean true score, 1-10, of the same rollouts) and the KL to the reference ({KL_KEY}: the log-ratio "
             f"summed over each response, averaged over responses). Turning point: where gold, smoothed over "
             f"{WINDOW_ITERS} iterations, peaks while the smoothed proxy still rises after it (docs/sandbox.md).", ""]
    rows = []
    for name, s in series.items():
        tp = turning_point(s["kl"], s["gold"], s["proxy"], window_iters=WINDOW_ITERS)
        rows.append([name, _fmt(s["kl"][-1], 2), _fmt(s["proxy"][-1], 2), _fmt(s["gold"][-1], 2),
                     f"iteration {tp.iteration}, KL {_fmt(tp.kl, 2)}" if tp else DASH])
    lines += _table(["policy", "final KL", "final proxy", "final gold", "turning point"], rows)
    panels = {name: {"gold (standardized)": (s["kl"], _standardized(s["gold"])),
                     "proxy (standardized)": (s["kl"], _standardized(s["proxy"]))} for name, s in series.items()}
    plots.curves(out / "overoptimization.png", "Gold and proxy reward against KL", panels, f"KL ({KL_KEY})")
    lines += ["![gold and proxy against KL](overoptimization.png)", "",
              "Both rewards are standardized per policy (z-scores over its iterations): they are on different "
              "scales, and the curves' shapes are what matter.", ""]
    return lines


def sweep_overoptimization_section(points: dict[str, dict[int, Path]], out: Path) -> list[str]:
    """Sweeps: per grid point and policy, gold per iteration as a mean over seeds with its 95% interval, and the
    turning point of each seed; `points` maps a grid point's label to its cells' folders by seed."""
    lines: list[str] = []
    for k, (label, by_seed) in enumerate(points.items()):
        per_policy: dict[str, dict[int, dict[str, list[float]]]] = {}
        for seed, folder in by_seed.items():
            for metrics in sorted((folder / "s3_ppo").glob("*/metrics.jsonl")):
                if (s := overopt_series(read_json_lines(metrics, missing_ok=True))) is not None:
                    per_policy.setdefault(metrics.parent.name, {})[seed] = s
        if not per_policy:
            continue
        iterations = max(len(s["gold"]) for seeds in per_policy.values() for s in seeds.values())
        series = {}
        rows = []
        for name, seeds in per_policy.items():
            stats = [seed_stats({seed: s["gold"][i] for seed, s in seeds.items() if i < len(s["gold"])})
                     for i in range(iterations)]
            series[name] = [(st["mean"], st["low"], st["high"]) if st["n"] else None for st in stats]
            turns = {seed: turning_point(s["kl"], s["gold"], s["proxy"], window_iters=WINDOW_ITERS)
                     for seed, s in sorted(seeds.items())}
            rows.append([name] + ["; ".join(f"seed {seed}: " + (f"iteration {tp.iteration}, KL {_fmt(tp.kl, 2)}"
                                                                   if tp else DASH) for seed, tp in turns.items())])
        if not lines:
            lines = ["## Over-optimization (sandbox)", "",
                     "Gold reward (the verifier's exact mean true score of each PPO iteration's rollouts) per "
                     "iteration, the mean over seeds with its 95% t-interval; the turning point of each seed "
                     f"(smoothed gold over {WINDOW_ITERS} iterations peaks while the proxy still rises; "
                     "docs/sandbox.md).", ""]
        name_png = f"overoptimization_gold_{k}.png"
        plots.interval_lines(out / name_png, f"Gold reward per PPO iteration ({label})", list(range(iterations)),
                             series, "PPO iteration", "gold (1-10)")
        lines += [f"### {label}", ""] + _table(["policy", "turning point per seed"], rows)
        lines += [f"![gold per iteration]({name_png})", ""]
    return lines
