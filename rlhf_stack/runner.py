"""What `rlhf-stack run` and `rlhf-stack status` do with a recipe and a run folder."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import click

from rlhf_stack.artifacts import write_atomic, write_json_atomic
from rlhf_stack.errors import ArtifactError
from rlhf_stack.pipeline import Job, job_states, run_jobs
from rlhf_stack.recipe import STAGE_SECTIONS, Recipe, dump_recipe, load_recipe

log = logging.getLogger("rlhf_stack")
RESOLVED = "recipe.resolved.yaml"
RUN_INFO = "run.json"
SWEEP_INFO = "sweep.json"  # per cell: seed, grid values, folders copied from earlier cells, wall time


def all_jobs(recipe: Recipe) -> list[Job]:
    from stages import STAGES

    return [job for stage in STAGES if getattr(recipe, stage.NAME) is not None for job in stage.jobs(recipe)]


def selected_stages(recipe: Recipe, only: str | None, from_stage: str | None) -> set[str]:
    present = list(recipe.sections())
    if only:
        chosen = [only]
    elif from_stage:
        chosen = [s for s in present if STAGE_SECTIONS.index(s) >= STAGE_SECTIONS.index(from_stage)]
    else:
        chosen = present
    missing = [s for s in chosen if s not in present]
    if missing:
        raise ArtifactError(f"the recipe has no '{missing[0]}' section, so that stage cannot run")
    return set(chosen)


def run_recipe(path: Path, overrides: Sequence[str], *, only: str | None = None, from_stage: str | None = None,
               fresh: bool = False, dry_run: bool = False) -> dict[str, str]:
    recipe = load_recipe(path, overrides)
    selected = selected_stages(recipe, only, from_stage)
    _write_run_files(recipe, path, overrides)
    if recipe.sweep is not None:
        return _run_sweep(recipe, path, overrides, selected, fresh=fresh, dry_run=dry_run)
    wall: dict[str, float] = defaultdict(float)

    def on_job(job: Job, outcome: str, seconds: float) -> None:
        wall[job.stage] += seconds if outcome != "skipped" else 0.0

    start = time.perf_counter()
    try:
        outcomes = run_jobs(recipe, all_jobs(recipe), selected, fresh=fresh, dry_run=dry_run, on_job=on_job)
    finally:
        from ray_cluster.session import shutdown

        shutdown()
    _echo_report(recipe.run_path, selected, dry_run)
    lines = [f"  {stage:<11} {wall[stage]:8.1f} s" for stage in STAGE_SECTIONS if stage in selected]
    click.echo("wall time per stage (this invocation):\n" + "\n".join(lines)
               + f"\n  {'total':<11} {time.perf_counter() - start:8.1f} s")
    return outcomes


def _write_run_files(recipe: Recipe, path: Path, overrides: Sequence[str], **info) -> None:
    run_dir = recipe.run_path
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / RESOLVED, dump_recipe(recipe))
    write_json_atomic(run_dir / RUN_INFO, {"recipe": str(Path(path).resolve()), "base_dir": str(recipe.base_dir),
                                           "overrides": list(overrides), **info})


def _echo_report(run_dir: Path, selected: set[str], dry_run: bool) -> None:
    if not dry_run and "evaluate" in selected:
        from rlhf_stack.report import write_report

        click.echo(write_report(run_dir).read_text())


def _run_sweep(recipe: Recipe, path: Path, overrides: Sequence[str], selected: set[str], *, fresh: bool,
               dry_run: bool) -> dict[str, str]:
    """Runs every cell in order (rlhf_stack/sweep.py); returns `cells/<cell>/<folder>` -> outcome."""
    from rlhf_stack.sweep import CELLS, reuse_finished, sweep_cells

    cells = sweep_cells(recipe, str(path))
    info_path = recipe.run_path / SWEEP_INFO
    info = json.loads(info_path.read_text()) if info_path.exists() else {"cells": {}}
    outcomes: dict[str, str] = {}
    start = time.perf_counter()
    try:
        for i, cell in enumerate(cells):
            log.info("sweep cell %d/%d: %s", i + 1, len(cells), cell.name)
            _write_run_files(cell.recipe, path, overrides, sweep_cell=cell.name)
            entry = info["cells"].setdefault(cell.name, {"seed": cell.seed, "values": cell.values, "reused": {}})
            if not (fresh or dry_run):
                entry["reused"].update(reuse_finished(cell, cells[:i]))
                write_json_atomic(info_path, info)  # a kill mid-cell keeps the record of what was copied
            cell_start = time.perf_counter()
            ran = run_jobs(cell.recipe, all_jobs(cell.recipe), selected, fresh=fresh, dry_run=dry_run)
            for folder, outcome in ran.items():  # a folder that ran here is no longer a copy
                if outcome == "ran":
                    entry["reused"].pop(folder, None)
            entry["last_invocation_s"] = round(time.perf_counter() - cell_start, 1)
            outcomes.update({f"{CELLS}/{cell.name}/{folder}": outcome for folder, outcome in ran.items()})
            if not dry_run and "evaluate" in selected:
                from rlhf_stack.report import write_report

                write_report(cell.run_dir)
            write_json_atomic(info_path, info)
    finally:
        from ray_cluster.session import shutdown

        shutdown()
    _echo_report(recipe.run_path, selected, dry_run)
    click.echo(f"sweep: {len(cells)} cells in {time.perf_counter() - start:.1f} s (this invocation)")
    return outcomes


def load_run(run_dir: Path) -> Recipe:
    info_path = run_dir / RUN_INFO
    if not info_path.exists():
        raise ArtifactError(f"{run_dir} has no {RUN_INFO}: not a run folder written by `rlhf-stack run`")
    info = json.loads(info_path.read_text())
    return load_recipe(run_dir / RESOLVED, base_dir=Path(info["base_dir"]))


def print_status(run_dir: Path) -> None:
    recipe = load_run(run_dir)
    if recipe.sweep is None:
        for st in job_states(all_jobs(recipe), run_dir):
            click.echo(f"{st.job.folder:<32} {st.state}")
        return
    from rlhf_stack.sweep import CELLS, sweep_cells

    for cell in sweep_cells(recipe):
        for st in job_states(all_jobs(cell.recipe), run_dir / CELLS / cell.name):
            click.echo(f"{CELLS}/{cell.name}/{st.job.folder:<32} {st.state}")
