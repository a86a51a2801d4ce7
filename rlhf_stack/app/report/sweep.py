"""The report of a sweep (rlhf_stack/app/sweep.py): every metric per grid point and variant, mean and 95% interval over
seeds, and each variant's paired difference to the baseline.

Read only from finished cell folders (docs/artifacts.md layout). Writes `<run dir>/report/report.md`, its plots
and `summary.json` (every number in the report, with the per-seed values it came from). The interval is the
Student t interval of the mean over seeds, mean ± t(0.975, n-1) · sd / sqrt(n); a paired difference is taken
seed by seed within a grid point before averaging, so what the seed changes in both variants cancels out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_stack.app.recipe import Cell, RecipeBase, sweep_cells
from rlhf_stack.app.report.best_of_n import sweep_best_of_n
from rlhf_stack.app.report.natural_pairs import natural_pairs_section
from rlhf_stack.app.report.overoptimization import sweep_overoptimization_section
from rlhf_stack.app.run_folder import SWEEP_INFO
from rlhf_stack.app.sweep_config import CELLS
from rlhf_stack.core import plots
from rlhf_stack.core.artifacts import read_manifest, write_atomic, write_json_atomic
from rlhf_stack.core.intervals import seed_stats
from rlhf_stack.core.markdown import DASH, fmt, table


INITIAL = "initial"


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    kind: str  # "rm" (one value per RM variant) or "policy" (per policy, the initial one included)
    read: Callable[[dict], float | None]  # results.json (or manifest summary) -> value in [0, 1]
    source: str = "results"  # "results": s4 results.json; "distill": the s2 manifest summary


def _path(*keys: str) -> Callable[[dict], float | None]:
    def read(node: Any) -> float | None:
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return float(node) if isinstance(node, (int, float)) and math.isfinite(node) else None

    return read


METRICS = (
    Metric("gt_candidates", "Ground-truth RM accuracy on held-out candidate pairs", "rm",
           _path("ground_truth", "candidates", "accuracy")),
    Metric("gt_edit", "Ground-truth RM accuracy on edit pairs (an answer vs the verifier's repair of it)", "rm",
           _path("ground_truth", "edit", "accuracy")),
    Metric("teacher_agreement", "RM accuracy on held-out initial pairs (agreement with the noisy teacher's labels; "
           "the same pairs for every variant)", "rm", _path("held_out_accuracy_initial"), source="distill"),
    Metric("compliance", "Policy compliance (share of constraints met, evaluation prompts)", "policy",
           _path("compliance", "mean_compliance")),
    Metric("full_compliance", "Policy answers meeting all their constraints", "policy",
           _path("compliance", "full_compliance_rate")),
)


def _point_label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items()) or "all cells"


def grid_points(cells: list[Cell]) -> dict[str, list[Cell]]:
    """The cells of each grid point (its seeds), by the point's label."""
    points: dict[str, list[Cell]] = {}
    for cell in cells:
        points.setdefault(_point_label(cell.values), []).append(cell)
    return points


def collect(run_dir: Path, recipe: RecipeBase, cells: list[Cell]) -> dict[str, Any]:
    """summary.json: per metric, grid point and variant the per-seed values, mean and interval; the differences."""
    variants = list(recipe.distill.variants) if recipe.distill else []
    policies = (recipe.ppo.variants if recipe.ppo and recipe.ppo.variants is not None else variants) + [INITIAL]
    points = grid_points(cells)
    raw: dict[str, dict[str, dict[str, dict[int, float]]]] = {m.key: {} for m in METRICS}
    for label, members in points.items():
        for cell in members:
            folder = run_dir / CELLS / cell.name
            for m in METRICS:
                for name in policies if m.kind == "policy" else variants:
                    value = m.read(_source(folder, m, name))
                    if value is not None:
                        raw[m.key].setdefault(label, {}).setdefault(name, {})[cell.seed] = value
    metrics = {k: {label: {name: seed_stats(seeds) for name, seeds in by_name.items()}
                   for label, by_name in v.items()} for k, v in raw.items() if v}
    baseline = recipe.sweep.baseline
    differences: dict[str, Any] = {}
    for key, by_point in raw.items():
        for label, by_name in by_point.items():
            base = by_name.get(baseline, {})
            for name, seeds in by_name.items():
                if name in (baseline, INITIAL):
                    continue
                paired = {s: v - base[s] for s, v in seeds.items() if s in base}
                if paired:
                    differences.setdefault(key, {}).setdefault(label, {})[name] = seed_stats(paired)
    return {"baseline": baseline, "grid": recipe.sweep.grid, "seeds": recipe.sweep.seeds,
            "points": {label: {"values": members[0].values, "cells": [c.name for c in members]}
                       for label, members in points.items()},
            "metrics": metrics, "differences": differences}


def _source(folder: Path, metric: Metric, name: str) -> dict:
    if metric.source == "distill":
        manifest = read_manifest(folder / "s2_distill" / name)
        return manifest.summary if manifest else {}
    kind = "rm" if metric.kind == "rm" else "policy"
    path = folder / "s4_evaluate" / kind / name
    if read_manifest(path) is None:
        return {}
    return json.loads((path / "results.json").read_text())


def write_sweep_report(run_dir: Path, recipe: RecipeBase) -> Path:
    """Writes RUN_DIR/report/report.md, its plots and summary.json; returns the report's path."""
    cells = sweep_cells(recipe)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    summary = collect(run_dir, recipe, cells)
    points = grid_points(cells)
    folders = {label: {c.seed: run_dir / CELLS / c.name for c in members} for label, members in points.items()}
    summary["best_of_n"], best_of_n_lines = sweep_best_of_n({label: list(by_seed.items())
                                                             for label, by_seed in folders.items()},
                                                            recipe.sweep.baseline, out)
    write_json_atomic(out / "summary.json", summary)
    sweep = recipe.sweep
    lines = [f"# rlhf-stack sweep report: {recipe.name}", "",
             f"{len(cells)} cells: {len(summary['points'])} grid point(s) x {len(sweep.seeds)} seed(s) "
             f"({', '.join(map(str, sweep.seeds))}). Each number is the mean over seeds with its 95% t-interval "
             "in brackets (none from a single seed); accuracies and compliance in %.", ""]
    lines += _differences(summary) + natural_pairs_section(run_dir, recipe, points) + _seed_note(recipe)
    lines += _training_pairs_section(run_dir, recipe, points)
    for m in METRICS:
        lines += _metric_section(m, summary, out, sweep.grid)
    lines += best_of_n_lines + sweep_overoptimization_section(folders, out)
    lines += _cells_section(run_dir, cells)
    path = out / "report.md"
    write_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def _ci(s: dict[str, Any], scale: float = 100.0) -> str:
    if s["mean"] is None:
        return DASH
    text = fmt(s["mean"] * scale, 1)
    if s["low"] is not None:
        text += f" [{fmt(s['low'] * scale, 1)}, {fmt(s['high'] * scale, 1)}]"
    return text


def _differences(summary: dict[str, Any]) -> list[str]:
    baseline = summary["baseline"]
    if not baseline:
        return []
    rows = []
    titles = {m.key: m.title for m in METRICS}
    for key, by_point in summary["differences"].items():
        for label, by_name in by_point.items():
            for name, s in by_name.items():
                seeds = ", ".join(f"{float(v) * 100:+.1f}" for v in s["values"].values())
                rows.append([titles[key], label, f"{name} - {baseline}", _ci(s), str(s["n"]), seeds])
    if not rows:
        return [f"No variant has results to compare with the baseline `{baseline}` yet.", ""]
    return [f"## Measured difference to `{baseline}`", "",
            "Paired by seed: within each grid point, every seed's difference (percentage points), then their mean "
            "and 95% t-interval. An interval that excludes 0 is a difference this sweep resolves.", ""] + \
        table(["metric", "grid point", "difference", "mean [95% CI]", "seeds", "per seed"], rows)


def _seed_note(recipe: RecipeBase) -> list[str]:
    varies = ["the verifier's noise draws (label flips, score noise)", "RM initialization and data order (distill)",
              "PPO sampling", "the policies' answers at evaluation"]
    fixed = [f"the prompt split (data.split_seed = {recipe.data.split_seed})"]
    s = recipe.synthesize
    if s is not None and s.generation_seed is not None:
        fixed.append(f"the LLM's candidates and y_T (synthesize.generation_seed = {s.generation_seed})")
    elif s is not None:
        varies.append("the LLM's candidates and y_T (synthesize.generation_seed is not set)")
    gt = recipe.evaluate.ground_truth if recipe.evaluate else None
    if gt is not None:
        fixed.append(f"the held-out answers of the ground-truth pairs (evaluate.ground_truth.seed = {gt.seed})")
        if gt.best_of_n:
            fixed.append(f"the best-of-N samples (evaluate.ground_truth.seed = {gt.seed})")
            varies.append("the direct judge's noise draws in best-of-N")
    return ["## What varies with the seed", "", f"- Varies: {'; '.join(varies)}.",
            f"- Fixed across seeds: {'; '.join(fixed)}.", ""]


def _training_pairs_section(run_dir: Path, recipe: RecipeBase, points: dict[str, list[Cell]]) -> list[str]:
    """With a grid over a distill setting (a learning curve over distill.train_prompt_fraction, or epochs): the
    training pairs and optimizer steps of each RM per grid point, the x axis the accuracy tables are read against."""
    if not any(key.startswith("distill.") for key in recipe.sweep.grid) or not recipe.distill:
        return []
    variants = list(recipe.distill.variants)
    rows = []
    for label, members in points.items():
        row = [label]
        for name in variants:
            found = [m.summary for m in (read_manifest(run_dir / CELLS / c.name / "s2_distill" / name)
                                         for c in members) if m is not None]
            row.append(f"{fmt(sum(s['train_pairs'] for s in found) / len(found), 1)} / "
                       f"{fmt(sum(s['steps'] for s in found) / len(found), 1)}" if found else DASH)
        rows.append(row)
    return ["## Training pairs per grid point", "",
            "Mean over seeds of each RM's training pairs / optimizer steps: read the accuracy tables below as "
            "learning curves against these.", ""] + table(["grid point"] + variants, rows)


def _metric_section(m: Metric, summary: dict[str, Any], out: Path, grid: dict[str, list]) -> list[str]:
    by_point = summary["metrics"].get(m.key)
    if not by_point:
        return []
    names = list(dict.fromkeys(n for by_name in by_point.values() for n in by_name))
    rows = [[label] + [_ci(by_point[label][n]) if n in by_point[label] else DASH for n in names]
            for label in by_point]
    lines = [f"## {m.title}", ""] + table(["grid point"] + names, rows)
    if m.key == "teacher_agreement":
        lines += ["Held-out pairs labelled by the noisy teacher of synthesis, not by the ground truth.", ""]
    figure = _figure(m, summary, out, grid, names)
    return lines + ([f"![{m.title}]({figure})", ""] if figure else [])


def _figure(m: Metric, summary: dict[str, Any], out: Path, grid: dict[str, list], names: list[str]) -> str | None:
    """The metric against the first grid key (e.g. the teacher's flip probability), one line per variant."""
    if m.key not in ("gt_candidates", "gt_edit", "compliance"):
        return None
    by_point = summary["metrics"][m.key]
    x_key = next(iter(grid), None)
    series: dict[str, list] = {}
    xs: list = []
    for label, point in summary["points"].items():
        x = point["values"].get(x_key, "all cells") if x_key else "all cells"
        rest = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point["values"].items() if k != x_key)
        if x not in xs:
            xs.append(x)
        for name in names:
            s = by_point.get(label, {}).get(name)
            series.setdefault(f"{name} ({rest})" if rest else name, {})[x] = \
                None if s is None or s["mean"] is None else tuple(None if v is None else v * 100
                                                                  for v in (s["mean"], s["low"], s["high"]))
    name = f"{m.key}.png"
    plots.interval_lines(out / name, m.title.split(" (")[0], xs, {k: [v.get(x) for x in xs] for k, v in series.items()},
                         x_key.split(".")[-1] if x_key else "", "%")
    return name


def _cells_section(run_dir: Path, cells: list[Cell]) -> list[str]:
    info_path = run_dir / SWEEP_INFO
    info = json.loads(info_path.read_text())["cells"] if info_path.exists() else {}
    rows, total = [], 0.0
    for cell in cells:
        folder = run_dir / CELLS / cell.name
        reused = info.get(cell.name, {}).get("reused", {})
        manifests = [m for m in (read_manifest(p.parent) for p in folder.rglob("manifest.json")) if m is not None]
        ran = sum(m.wall_time_s for m in manifests if m.folder not in reused)
        total += ran
        report = folder / "report" / "report.md"
        link = f"[report](../{CELLS}/{cell.name}/report/report.md)" if report.exists() else DASH
        rows.append([f"`{cell.name}`", str(len(manifests)), fmt(ran, 1), ", ".join(sorted(reused)) or DASH, link])
    rows.append(["**total**", "", f"**{fmt(total, 1)}**", "", ""])
    return ["## Cells", "",
            "Finished folders per cell, and the seconds their jobs took when they ran there (folders copied from an "
            "earlier cell with the same config hash cost nothing; LLM requests answered from the generation cache "
            "are not sent again).", ""] + \
        table(["cell", "finished folders", "seconds", "copied from an earlier cell", "cell report"], rows)
