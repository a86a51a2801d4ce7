"""The report's best-of-N section (docs/sandbox.md "Best-of-N"): each RM's pick among N policy samples, scored by
the verifier, beside the verifier's own pick (the ceiling) and the noisy teacher's direct score (direct judge)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhf_stack.app.report.run_view import RunView
from rlhf_stack.core import plots
from rlhf_stack.core.intervals import seed_stats
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table

GROUND_TRUTH = "s4_evaluate/ground_truth"
DIRECT_JUDGE = "s4_evaluate/best_of_n_direct_judge"
CEILING, JUDGE = "verifier (ceiling)", "direct judge"


def best_of_n_curves(run_dir: Path, rm_eval: dict[str, dict], names: list[str]) -> tuple[list[int], dict[str, dict]]:
    """The Ns and every curve of a run: {row name: {str(N): {"gold_mean", "compliance_mean", ...}}}, RMs in the
    order of `names`, then the ceiling and the direct judge; no Ns when the run measured no best-of-N."""
    path = run_dir / GROUND_TRUTH / "best_of_n.json"
    if not path.is_file() or not (run_dir / GROUND_TRUTH / "manifest.json").is_file():
        return [], {}
    ground = json.loads(path.read_text())
    curves = {n: rm_eval[n]["best_of_n"] for n in names if "best_of_n" in rm_eval.get(n, {})}
    curves[CEILING] = ground["verifier"]
    judge = run_dir / DIRECT_JUDGE / "results.json"
    if judge.is_file() and (run_dir / DIRECT_JUDGE / "manifest.json").is_file():
        curves[JUDGE] = json.loads(judge.read_text())["best_of_n"]
    return list(ground["ns"]), curves


def kl_nats(curves: dict[str, dict], ns: list[int]) -> list[float]:
    any_curve = next(iter(curves.values()))
    return [any_curve[str(n)]["kl_nats"] for n in ns]


def _pct(value: float | None) -> str:
    return DASH if value is None else _fmt(100 * value)


def best_of_n_section(view: RunView, names: list[str], out: Path) -> list[str]:
    """Gold (true score and compliance) of each RM's best-of-N pick per N, with the ceiling and the direct judge."""
    ns, curves = best_of_n_curves(view.run_dir, view.rm_eval, names)
    if not ns:
        return []
    kl = kl_nats(curves, ns)
    lines = ["## Best-of-N (sandbox)", "",
             "Each reward model picks its best of N samples of the policy before PPO; the verifier scores the pick "
             "exactly. Expected over all N-subsets of the samples (docs/sandbox.md \"Best-of-N\"). Cells: "
             "compliance % / true score (1-10).", ""]
    header = ["picked by"] + [f"N={n} (KL {k:.2f})" for n, k in zip(ns, kl)]
    rows = [[name] + [f"{_pct(c[str(n)]['compliance_mean'])} / "
                      f"{DASH if c[str(n)]['gold_mean'] is None else _fmt(c[str(n)]['gold_mean'])}" for n in ns]
            for name, c in curves.items()]
    lines += _table(header, rows)
    series = {name: [None if c[str(n)]["compliance_mean"] is None else (100 * c[str(n)]["compliance_mean"], None, None)
                     for n in ns] for name, c in curves.items()}
    plots.best_of_n_bands(out / "best_of_n.png", "Best-of-N gold compliance", ns, kl, series, "compliance (%)")
    lines += ["![best-of-N compliance](best_of_n.png)", ""]
    return lines


def _cell_rm_eval(folder: Path) -> dict[str, dict]:
    """The finished RM results of one sweep cell, by RM name."""
    out = {}
    for path in sorted((folder / "s4_evaluate" / "rm").glob("*/results.json")):
        if (path.parent / "manifest.json").is_file():
            out[path.parent.name] = json.loads(path.read_text())
    return out


def sweep_best_of_n(points: dict[str, list[tuple[int, Path]]], baseline: str | None,
                    out: Path) -> tuple[dict[str, Any], list[str]]:
    """Best-of-N over a sweep's seeds: per grid point, row and N the compliance's per-seed values, mean and 95%
    t-interval, and each RM's paired difference to `baseline`; returns (summary.json entry, report lines).

    `points`: grid point label -> its cells as (seed, cell folder).
    """
    summary: dict[str, Any] = {}
    lines: list[str] = []
    ns: list[int] = []
    for label, cells in points.items():
        by_seed: dict[str, dict[int, dict[str, Any]]] = {}
        for seed, folder in cells:
            rm_eval = _cell_rm_eval(folder)
            cell_ns, curves = best_of_n_curves(folder, rm_eval, list(rm_eval))
            ns = cell_ns or ns
            for name, curve in curves.items():
                by_seed.setdefault(name, {})[seed] = curve
        if not by_seed or not ns:
            continue
        stats = {name: {str(n): seed_stats({s: c[str(n)]["compliance_mean"] for s, c in seeds.items()
                                            if c.get(str(n), {}).get("compliance_mean") is not None}) for n in ns}
                 for name, seeds in by_seed.items()}
        differences = {}
        base = by_seed.get(baseline or "", {})
        for name, seeds in by_seed.items():
            if name in (baseline, CEILING, JUDGE) or not base:
                continue
            differences[name] = {str(n): seed_stats(_paired(seeds, base, str(n))) for n in ns}
        summary[label] = {"compliance": stats, "differences": differences}
        kl = [next(iter(next(iter(by_seed.values())).values()))[str(n)]["kl_nats"] for n in ns]
        figure = f"best_of_n_{len(summary)}.png"
        series = {name: [_band(s[str(n)]) for n in ns] for name, s in stats.items()}
        plots.best_of_n_bands(out / figure, f"Best-of-N gold compliance ({label})", ns, kl, series, "compliance (%)")
        lines += [f"### {label}", ""]
        lines += _table(["picked by"] + [f"N={n} (KL {k:.2f})" for n, k in zip(ns, kl)],
                        [[name] + [_ci(s[str(n)]) for n in ns] for name, s in stats.items()])
        if differences:
            lines += [f"Paired difference to `{baseline}` (percentage points, by seed):", ""]
            lines += _table(["reward model"] + [f"N={n}" for n in ns],
                            [[f"{name} - {baseline}"] + [_ci(d[str(n)]) for n in ns]
                             for name, d in differences.items()])
        lines += [f"![best-of-N ({label})]({figure})", ""]
    if not summary:
        return {}, []
    head = ["## Best-of-N gold compliance (sandbox)", "",
            "Each reward model picks its best of N samples of the policy before PPO, the verifier scores the pick "
            "(docs/sandbox.md \"Best-of-N\"); compliance % as mean over seeds [95% t-interval].", ""]
    return {"ns": ns, "points": summary}, head + lines


def _paired(seeds: dict[int, dict], base: dict[int, dict], n: str) -> dict[int, float]:
    """Per seed, an RM's best-of-N compliance at N minus the baseline's, where both have one."""
    out = {}
    for seed, curve in seeds.items():
        mine, theirs = curve[n]["compliance_mean"], base.get(seed, {}).get(n, {}).get("compliance_mean")
        if mine is not None and theirs is not None:
            out[seed] = mine - theirs
    return out


def _band(s: dict[str, Any]) -> tuple[float, float | None, float | None] | None:
    if s["mean"] is None:
        return None
    return tuple(None if v is None else 100 * v for v in (s["mean"], s["low"], s["high"]))  # type: ignore[return-value]


def _ci(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return DASH
    text = _fmt(100 * s["mean"], 1)
    if s["low"] is not None:
        text += f" [{_fmt(100 * s['low'], 1)}, {_fmt(100 * s['high'], 1)}]"
    return text
