"""The finished parts of a run folder, as the report reads them (layout: docs/artifacts.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_stack.app.run_folder import load_run
from rlhf_stack.core.artifacts import Manifest, read_manifest
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table
from rlhf_stack.core.pipeline import job_states
from rlhf_stack.core.records import read_json_lines

REPORT_DIR = "report"
STAND_IN = "†"


@dataclass
class RunView:
    """The finished parts of a run."""

    run_dir: Path
    name: str
    rm_order: list[str] = field(default_factory=list)  # planned RM variants, in recipe order
    extra: set[str] = field(default_factory=set)  # RMs and policies the evaluate section adds
    status: list[tuple[str, str]] = field(default_factory=list)  # (folder, done|stale|partial|missing)
    notes: list[str] = field(default_factory=list)
    s1: dict[str, Any] | None = None
    distill: dict[str, tuple[Manifest, list[dict]]] = field(default_factory=dict)
    ppo: dict[str, tuple[Manifest, list[dict]]] = field(default_factory=dict)
    rm_eval: dict[str, dict] = field(default_factory=dict)
    policy_eval: dict[str, dict] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)


def read_run(run_dir: Path) -> RunView:
    view = RunView(run_dir=run_dir, name=run_dir.name)
    try:
        recipe = load_run(run_dir)
        view.name = recipe.name
        view.rm_order = list(recipe.section("distill").variants) if recipe.section("distill") else []
        if recipe.evaluate:
            view.extra = set(recipe.evaluate.reward_models) | set(recipe.evaluate.policies)
        view.status = [(s.job.folder, s.state) for s in job_states(recipe.jobs(), run_dir)]
    except Exception as e:  # a copied or partial run folder: report what is on disk
        view.notes.append(f"The run's recipe could not be read ({type(e).__name__}: {e}); the report lists only "
                          "the finished folders it found.")
    for folder in sorted(p for p in run_dir.rglob("manifest.json") if REPORT_DIR not in p.parts):
        manifest = read_manifest(folder.parent)
        view.manifests[manifest.folder] = manifest
    for rel in view.manifests:
        parts, folder = rel.split("/"), run_dir / rel
        try:
            if rel == "s1_synthesize":
                view.s1 = json.loads((folder / "stats.json").read_text())
            elif parts[0] == "s2_distill":
                view.distill[parts[1]] = (view.manifests[rel], read_json_lines(folder / "metrics.jsonl", missing_ok=True))
            elif parts[0] == "s3_ppo":
                view.ppo[parts[1]] = (view.manifests[rel], read_json_lines(folder / "metrics.jsonl", missing_ok=True))
            elif parts[:2] == ["s4_evaluate", "rm"]:
                view.rm_eval[parts[2]] = json.loads((folder / "results.json").read_text())
            elif parts[:2] == ["s4_evaluate", "policy"]:
                view.policy_eval[parts[2]] = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError) as e:
            view.notes.append(f"`{rel}` is finished but could not be read ({type(e).__name__}: {e}).")
    return view


def row_names(view: RunView) -> list[str]:
    """Rows of the comparison: planned variants first, then the initial policy, then extra models."""
    found = set(view.rm_eval) | set(view.policy_eval) | set(view.distill) | set(view.ppo)
    ordered = [n for n in view.rm_order if n in found or view.status]
    rest = sorted(found - set(ordered) - {"initial"})
    return ordered + rest + (["initial"] if "initial" in found else [])


def cell(results: dict | None, path: tuple[str, ...], digits: int = 1) -> tuple[str, bool]:
    """A value out of nested results, and whether it was computed on a stand-in set."""
    node: Any = results
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return DASH, False
        node = node[part]
    stand_in = bool(results and results.get("benchmarks", {}).get(path[1], {}).get("stand_in")) \
        if path[0] == "benchmarks" else bool(results and results.get(path[0], {}).get("stand_in"))
    text = _fmt(node, digits)
    return (text + STAND_IN if stand_in and text != DASH else text), stand_in
