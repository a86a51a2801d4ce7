"""What `rlhf-stack run` and `rlhf-stack status` do with a recipe and a run folder."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import click

from ray_cluster.session import shutdown
from rlhf_stack.app.doctor import plan_rows
from rlhf_stack.app.recipe import RecipeBase, load_recipe, sweep_cells
from rlhf_stack.app.report import write_report
from rlhf_stack.app.run_folder import SWEEP_INFO, load_run, recorded_rerun_command, rerun_command, write_run_files
from rlhf_stack.app.sweep import reuse_finished
from rlhf_stack.app.sweep_config import CELLS
from rlhf_stack.core.artifacts import write_json_atomic
from rlhf_stack.core.errors import ArtifactError, CorruptArtifactError
from rlhf_stack.core.hardware import machine_facts
from rlhf_stack.core.pipeline import Job, JobState, job_states, run_jobs
from rlhf_stack.core.run_lock import hold_run_lock

log = logging.getLogger("rlhf_stack")


def selected_stages(recipe: RecipeBase, only: str | None, from_stage: str | None) -> set[str]:
    present = list(recipe.sections())
    if only:
        chosen = [only]
    elif from_stage:
        order = recipe.stage_names()
        chosen = [s for s in present if order.index(s) >= order.index(from_stage)]
    else:
        chosen = present
    missing = [s for s in chosen if s not in present]
    if missing:
        raise ArtifactError(f"the recipe has no '{missing[0]}' section, so that stage cannot run")
    return set(chosen)


def run_recipe(path: Path, overrides: Sequence[str], *, only: str | None = None, from_stage: str | None = None,
               fresh: bool = False, dry_run: bool = False, rebuild_corrupt: bool = False) -> dict[str, str]:
    """Runs the selected stages while holding the run folder's lock (a second run on it is refused)."""
    recipe = load_recipe(path, overrides)
    selected = selected_stages(recipe, only, from_stage)
    command = rerun_command(path, overrides)
    with hold_run_lock(recipe.run_path, command):
        log_compute_plan(recipe, selected)
        write_run_files(recipe, path, overrides)
        options = {"fresh": fresh, "dry_run": dry_run, "rebuild_corrupt": rebuild_corrupt, "rerun_command": command}
        if recipe.sweep is not None:
            return _run_sweep(recipe, path, overrides, selected, **options)
        return _run(recipe, selected, **options)


def _run(recipe: RecipeBase, selected: set[str], *, dry_run: bool, **options) -> dict[str, str]:
    wall: dict[str, float] = defaultdict(float)

    def on_job(job: Job, outcome: str, seconds: float) -> None:
        wall[job.stage] += seconds if outcome != "skipped" else 0.0

    start = time.perf_counter()
    try:
        outcomes = run_jobs(recipe, recipe.jobs(), selected, dry_run=dry_run, on_job=on_job, **options)
    finally:
        shutdown()
    _echo_report(recipe.run_path, selected, dry_run)
    lines = [f"  {stage:<11} {wall[stage]:8.1f} s" for stage in recipe.stage_names() if stage in selected]
    click.echo("wall time per stage (this invocation):\n" + "\n".join(lines)
               + f"\n  {'total':<11} {time.perf_counter() - start:8.1f} s")
    return outcomes


def log_compute_plan(recipe: RecipeBase, selected: set[str]) -> None:
    """Logs the precision and threads each selected stage's engines and trainers will use on this machine, and
    gives this process (where single-rank training and RM scoring run) one torch thread per usable CPU."""
    import torch

    machine = machine_facts()
    torch.set_num_threads(machine.usable_cpus)
    uses = [u for u in recipe.compute_uses() if u.stage in selected]
    for row in plan_rows(uses, machine):
        threads = f"{row['threads']} threads" if row["threads"] else "threads: the node's"
        log.info("%s: %s: %s (%s), %s x %d", row["stage"], row["role"], row["precision"], row["why"], threads,
                 row["processes"])


def _echo_report(run_dir: Path, selected: set[str], dry_run: bool) -> None:
    if not dry_run and "evaluate" in selected:
        click.echo(write_report(run_dir).read_text())


def _run_sweep(recipe: RecipeBase, path: Path, overrides: Sequence[str], selected: set[str], *, fresh: bool,
               dry_run: bool, **options) -> dict[str, str]:
    """Runs every cell in order (rlhf_stack/app/sweep.py); returns `cells/<cell>/<folder>` -> outcome."""
    cells = sweep_cells(recipe, str(path))
    info_path = recipe.run_path / SWEEP_INFO
    info = json.loads(info_path.read_text()) if info_path.exists() else {"cells": {}}
    outcomes: dict[str, str] = {}
    start = time.perf_counter()
    try:
        for i, cell in enumerate(cells):
            log.info("sweep cell %d/%d: %s", i + 1, len(cells), cell.name)
            write_run_files(cell.recipe, path, overrides, sweep_cell=cell.name)
            entry = info["cells"].setdefault(cell.name, {"seed": cell.seed, "values": cell.values, "reused": {}})
            if not (fresh or dry_run):
                entry["reused"].update(reuse_finished(cell, cells[:i]))
                write_json_atomic(info_path, info)  # a kill mid-cell keeps the record of what was copied
            cell_start = time.perf_counter()
            ran = run_jobs(cell.recipe, cell.recipe.jobs(), selected, fresh=fresh, dry_run=dry_run, **options)
            for folder, outcome in ran.items():  # a folder that ran here is no longer a copy
                if outcome == "ran":
                    entry["reused"].pop(folder, None)
            entry["last_invocation_s"] = round(time.perf_counter() - cell_start, 1)
            outcomes.update({f"{CELLS}/{cell.name}/{folder}": outcome for folder, outcome in ran.items()})
            if not dry_run and "evaluate" in selected:
                        write_report(cell.run_dir)
            write_json_atomic(info_path, info)
    finally:
        shutdown()
    _echo_report(recipe.run_path, selected, dry_run)
    click.echo(f"sweep: {len(cells)} cells in {time.perf_counter() - start:.1f} s (this invocation)")
    return outcomes


def print_status(run_dir: Path, *, verify: bool = False) -> None:
    """One line per job folder; with `verify`, folders changed since they were published show as corrupt (and
    the command ends with an error naming the command that rebuilds them). Takes no lock: a run may be writing."""
    recipe = load_run(run_dir)
    if recipe.sweep is None:
        states = [("", st) for st in job_states(recipe.jobs(), run_dir, verify=verify)]
    else:
        states = [(f"{CELLS}/{cell.name}/", st) for cell in sweep_cells(recipe)
                  for st in job_states(cell.recipe.jobs(), run_dir / CELLS / cell.name, verify=verify)]
    for prefix, st in states:
        click.echo(f"{prefix}{st.job.folder:<32} {st.state}{_first_problem(st)}")
    corrupt = [prefix + st.job.folder for prefix, st in states if st.state == "corrupt"]
    if corrupt:
        raise CorruptArtifactError(
            f"{len(corrupt)} folder(s) of {run_dir} changed after they were published ({', '.join(corrupt)}); "
            f"rebuild them with: {recorded_rerun_command(run_dir)} --rebuild-corrupt")


def _first_problem(st: JobState) -> str:
    if not st.problems:
        return ""
    more = f" and {len(st.problems) - 1} more" if len(st.problems) > 1 else ""
    return f"  ({st.problems[0]}{more})"
