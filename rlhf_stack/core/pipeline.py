"""Runs a recipe's jobs in order, skipping those whose outputs are current.

A stage contributes one or more jobs (one per RM variant for distill and ppo). A job's config hash covers its key
(the recipe values that decide its output), the digests of the upstream folders it reads and of the external
files it reads. A job is skipped when its folder's manifest carries the same hash. Otherwise its folder is
cleared (unless it holds unfinished work under the same hash, which the job resumes) and the job runs.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_stack.core.artifacts import (
    SCRATCH,
    canonical_json,
    publish,
    read_manifest,
    sha256_file,
    sha256_text,
    write_json_atomic,
)
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.models import resolve_model
from rlhf_stack.core.prompts import load_prompts, split_prompts
from rlhf_stack.core.records import PromptRecord
from rlhf_stack.core.recipe_view import RecipeView


log = logging.getLogger("rlhf_stack")
JOB_KEY = "job_key.json"  # in the scratch folder: the hash the unfinished work belongs to


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
    state: str  # done | stale | partial | missing
    config_hash: str | None  # None when an input is missing


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


def job_states(jobs: Sequence[Job], run_dir: Path) -> list[JobState]:
    states = []
    for job in jobs:
        folder = run_dir / job.folder
        manifest = read_manifest(folder)
        h = config_hash(job, run_dir)
        if manifest is not None:
            state = "done" if manifest.config_hash == h else "stale"
        else:
            state = "partial" if folder.exists() else "missing"
        states.append(JobState(job, state, h))
    return states


def run_jobs(
    recipe: RecipeView,
    jobs: Sequence[Job],
    selected: set[str],
    *,
    fresh: bool = False,
    dry_run: bool = False,
    on_job: Callable[[Job, str, float], None] | None = None,
) -> dict[str, str]:
    """Runs the jobs of the selected stages in order; returns folder -> outcome (ran | skipped | dry-run)."""
    run_dir = recipe.run_path
    outcomes: dict[str, str] = {}
    for job in jobs:
        folder = run_dir / job.folder
        if job.stage not in selected:
            if read_manifest(folder) is None and any(job.folder in j.inputs for j in jobs if j.stage in selected):
                raise ArtifactError(
                    f"{folder} is needed by a selected stage but has not finished; "
                    f"run it first: rlhf-stack run <recipe> --from {job.stage}"
                )
            continue
        h = config_hash(job, run_dir)
        if h is None:
            missing = [f for f in job.inputs if read_manifest(run_dir / f) is None]
            raise ArtifactError(f"{job.folder} needs {', '.join(missing)}, which has not finished")
        manifest = read_manifest(folder)
        if manifest is not None and manifest.config_hash == h and not fresh:
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
        summary = job.run(ctx)
        wall = time.perf_counter() - start
        if dry_run:
            outcomes[job.folder] = "dry-run"
        else:
            inputs = {f: read_manifest(run_dir / f).digest() for f in job.inputs}
            publish(folder, kind=job.kind, stage=job.stage, rel_folder=job.folder, config_hash=h,
                    inputs=inputs, summary=summary or {}, wall_time_s=wall)
            outcomes[job.folder] = "ran"
        if on_job:
            on_job(job, outcomes[job.folder], wall)
    return outcomes


def _prepare_folder(folder: Path, h: str, *, fresh: bool) -> None:
    """Keep unfinished work that belongs to the same hash (to resume it); clear anything else."""
    key_file = folder / SCRATCH / JOB_KEY
    resumable = not fresh and read_manifest(folder) is None and key_file.exists() and h in key_file.read_text()
    if not resumable and folder.exists():
        shutil.rmtree(folder)
    (folder / SCRATCH).mkdir(parents=True, exist_ok=True)
    write_json_atomic(key_file, {"config_hash": h})
