"""Runs a recipe's jobs in order, skipping those whose outputs are current.

A stage contributes one or more jobs (one per RM variant for distill and ppo). A job's config hash covers its key
(the recipe values that decide its output), the digests of the upstream folders it reads and of the external
files it reads. A job is skipped when its folder's manifest carries the same hash. Otherwise its folder is
cleared (unless it holds unfinished work under the same hash, which the job resumes) and the job runs.

Before any job runs, every finished folder the run would trust (skipped jobs, inputs of selected jobs) is checked
against its manifest; a folder changed since it was published stops the run, or is rebuilt when asked.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_stack.core.artifacts import (
    MANIFEST,
    SCRATCH,
    Manifest,
    canonical_json,
    publish,
    read_manifest,
    sha256_file,
    sha256_text,
    verify_artifact,
    write_json_atomic,
)
from rlhf_stack.core.errors import ArtifactError, CorruptArtifactError, DiskFullError
from rlhf_stack.core.file_check import FileProblem
from rlhf_stack.core.models import resolve_model
from rlhf_stack.core.prompts import load_prompts, split_prompts
from rlhf_stack.core.records import PromptRecord
from rlhf_stack.core.recipe_view import RecipeView


log = logging.getLogger("rlhf_stack")
JOB_KEY = "job_key.json"  # in the scratch folder: the hash the unfinished work belongs to
RERUN = "rlhf-stack run <recipe>"  # how messages name the command that reruns the recipe, unless told


@dataclass(frozen=True)
class Job:
    stage: str  # stage name: synthesize | distill | ppo | evaluate
    folder: str  # relative to the run dir, e.g. "s2_distill/rm_distiller"
    kind: str  # artifact kind it produces
    key: Mapping[str, Any]  # the recipe values that decide its output (JSON-able)
    run: Callable[["JobContext"], dict]  # writes into ctx.out_dir; returns the manifest summary
    inputs: tuple[str, ...] = ()  # upstream folders it reads
    files: tuple[Path, ...] = ()  # external files it reads


@dataclass
class JobContext:
    """What a running job may use besides its own config section."""

    recipe: RecipeView
    job: Job
    run_dir: Path
    dry_run: bool = False
    _prompts: dict[str, list[PromptRecord]] | None = field(default=None, repr=False)

    @property
    def out_dir(self) -> Path:
        return self.run_dir / self.job.folder

    @property
    def work_dir(self) -> Path:
        """Scratch space for resumable state; deleted when the job publishes."""
        return self.out_dir / SCRATCH

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def cluster(self):
        return self.recipe.cluster

    def input(self, folder: str) -> Path:
        if folder not in self.job.inputs:
            raise ArtifactError(f"job {self.job.folder} did not declare {folder} as an input")
        return self.run_dir / folder

    def model(self, alias: str) -> Path:
        """Local folder of a model named in the recipe's `models` section."""
        return resolve_model(self.recipe.models[alias], self.recipe.base_dir)

    def prompts(self, split: str) -> list[PromptRecord]:
        if self._prompts is None:
            records, problems = load_prompts(self.recipe.prompts_path)
            if problems:
                raise ArtifactError("; ".join(map(str, problems)))
            self._prompts = split_prompts(records, self.recipe.data.splits, self.recipe.data.split_seed)
        return self._prompts[split]


@dataclass(frozen=True)
class JobState:
    job: Job
    state: str  # done | stale | partial | missing | corrupt (only when asked to verify)
    config_hash: str | None  # None when an input is missing
    problems: tuple[FileProblem, ...] = ()  # why a folder is corrupt


def config_hash(job: Job, run_dir: Path) -> str | None:
    """Hash of the job's key, input digests and file digests; None if an input is unfinished."""
    inputs = {}
    for folder in job.inputs:
        manifest = read_manifest(run_dir / folder)
        if manifest is None:
            return None
        inputs[folder] = manifest.digest()
    files = {str(p): sha256_file(p) for p in job.files}
    return sha256_text(canonical_json({"key": job.key, "inputs": inputs, "files": files}))[:16]


def job_states(jobs: Sequence[Job], run_dir: Path, *, verify: bool = False) -> list[JobState]:
    """Each job's state; with `verify`, a finished folder whose files changed since it was published is corrupt.

    Reads only: safe while a run writes the folder (the check cache is left to the run).
    """
    states = []
    for job in jobs:
        folder = run_dir / job.folder
        manifest = read_manifest(folder)
        h = config_hash(job, run_dir)
        problems: list[FileProblem] = []
        if manifest is not None:
            state = "done" if manifest.config_hash == h else "stale"
            if verify:
                problems = verify_artifact(folder, manifest, save_cache=False)[0]
                state = "corrupt" if problems else state
        else:
            state = "partial" if folder.exists() else "missing"
        states.append(JobState(job, state, h, tuple(problems)))
    return states


def corrupt_message(folder: Path, manifest: Manifest, problems: Sequence[FileProblem], rebuild: str) -> str:
    """One message naming the changed file, the stage that published the folder and the command that rebuilds it."""
    first, rest = problems[0], [p.path for p in problems[1:]]
    more = f" (and {len(rest)} more: {', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''})" if rest else ""
    return (f"{folder / first.path}: {first.problem}{more}. {folder} was published by the {manifest.stage} stage "
            f"and has changed since; the stages that read it would use data it did not produce. "
            f"Rebuild it with: {rebuild}")


def run_jobs(
    recipe: RecipeView,
    jobs: Sequence[Job],
    selected: set[str],
    *,
    fresh: bool = False,
    dry_run: bool = False,
    on_job: Callable[[Job, str, float], None] | None = None,
    rebuild_corrupt: bool = False,
    rerun_command: str = RERUN,
) -> dict[str, str]:
    """Runs the jobs of the selected stages in order; returns folder -> outcome (ran | skipped | dry-run).

    Args:
        rebuild_corrupt: rerun a selected job whose finished folder changed after it was published (otherwise
            such a folder stops the run before any job runs).
        rerun_command: the command that reruns this recipe, for the messages that say what to do.
    """
    run_dir = recipe.run_path
    outcomes: dict[str, str] = {}
    rebuild = _check_finished(jobs, selected, run_dir, fresh=fresh, rebuild_corrupt=rebuild_corrupt,
                              rerun_command=rerun_command)
    for job in jobs:
        folder = run_dir / job.folder
        if job.stage not in selected:
            if read_manifest(folder) is None and any(job.folder in j.inputs for j in jobs if j.stage in selected):
                raise ArtifactError(
                    f"{folder} is needed by a selected stage but has not finished; "
                    f"run it first: {rerun_command} --from {job.stage}"
                )
            continue
        h = config_hash(job, run_dir)
        if h is None:
            missing = [f for f in job.inputs if read_manifest(run_dir / f) is None]
            raise ArtifactError(f"{job.folder} needs {', '.join(missing)}, which has not finished")
        manifest = read_manifest(folder)
        if manifest is not None and manifest.config_hash == h and not fresh and job.folder not in rebuild:
            log.info("skip %s: up to date (%s)", job.folder, h)
            outcomes[job.folder] = "skipped"
            if on_job:
                on_job(job, "skipped", manifest.wall_time_s)
            continue
        if dry_run:
            folder.mkdir(parents=True, exist_ok=True)  # a dry run never clears finished work
        else:
            _prepare_folder(folder, h, fresh=fresh)
        log.info("run %s -> %s (hash %s)", job.stage, folder, h)
        ctx = JobContext(recipe=recipe, job=job, run_dir=run_dir, dry_run=dry_run)
        start = time.perf_counter()
        try:
            summary = job.run(ctx)
            wall = time.perf_counter() - start
            if not dry_run:
                inputs = {f: read_manifest(run_dir / f).digest() for f in job.inputs}
                publish(folder, kind=job.kind, stage=job.stage, rel_folder=job.folder, config_hash=h,
                        inputs=inputs, summary=summary or {}, wall_time_s=wall)
        except Exception as e:
            full = _disk_full(e)
            if full is None:
                raise
            raise DiskFullError(_disk_full_message(job, folder, full, rerun_command)) from e
        outcomes[job.folder] = "dry-run" if dry_run else "ran"
        if on_job:
            on_job(job, outcomes[job.folder], wall)
    return outcomes


def _check_finished(jobs: Sequence[Job], selected: set[str], run_dir: Path, *, fresh: bool, rebuild_corrupt: bool,
                    rerun_command: str) -> set[str]:
    """Checks every finished folder this run would trust against its manifest; returns the folders to rebuild.

    Trusted: the folders of selected jobs that would be skipped, and the inputs of selected jobs that are not
    selected themselves. A folder that will run anyway (stale, or --fresh) is not checked.
    """
    needed = {folder for job in jobs if job.stage in selected for folder in job.inputs}
    rebuild = set()
    for job in jobs:
        chosen = job.stage in selected
        folder = run_dir / job.folder
        manifest = read_manifest(folder)
        if manifest is None or (chosen and fresh) or (not chosen and job.folder not in needed):
            continue
        if chosen and manifest.config_hash != config_hash(job, run_dir):
            continue
        problems, _ = verify_artifact(folder, manifest, save_cache=True)
        if not problems:
            continue
        if chosen and rebuild_corrupt:
            log.warning("rebuild %s: %s", job.folder, "; ".join(map(str, problems)))
            rebuild.add(job.folder)
            continue
        raise CorruptArtifactError(corrupt_message(folder, manifest, problems,
                                                   f"{rerun_command} --from {job.stage} --rebuild-corrupt"))
    return rebuild


def _disk_full(e: BaseException | None) -> OSError | None:
    """The no-space (or over-quota) error behind `e`, also when a Ray task raised it, or None."""
    for _ in range(8):
        if e is None:
            return None
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        e = getattr(e, "cause", None) or e.__cause__ or e.__context__
    return None


def _disk_full_message(job: Job, folder: Path, error: OSError, rerun_command: str) -> str:
    where = f" writing {error.filename}" if error.filename else ""
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"{job.folder}: {error.strerror}{where} ({free} on the file system of {folder}). Nothing was published: "
            f"the folder has no {MANIFEST}, and its finished work stays in {SCRATCH}/. Free space, then rerun "
            f"{rerun_command}: the {job.stage} job resumes.")


def _prepare_folder(folder: Path, h: str, *, fresh: bool) -> None:
    """Keep unfinished work that belongs to the same hash (to resume it); clear anything else."""
    key_file = folder / SCRATCH / JOB_KEY
    resumable = not fresh and read_manifest(folder) is None and key_file.exists() and h in key_file.read_text()
    if not resumable and folder.exists():
        shutil.rmtree(folder)
    (folder / SCRATCH).mkdir(parents=True, exist_ok=True)
    write_json_atomic(key_file, {"config_hash": h})
