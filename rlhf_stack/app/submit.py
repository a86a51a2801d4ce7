"""`rlhf-stack submit`: run a whole recipe on a Ray cluster as one Ray job.

The recipe is checked here first, exactly as the job will load it, so a bad recipe fails (exit code 2) before the
cluster is contacted. The job's working directory is the project checkout that holds the recipe (the nearest folder
above it with a pyproject.toml), uploaded without `.venv`, `runs`, `.cache` and `.git`; its entrypoint is
`rlhf-stack run <recipe> --set ... --set cluster.address=auto`, so the driver joins the cluster it runs on, and
the recipe's `cluster.runtime_env` (pip packages, env_vars, ...) becomes the job's runtime environment.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ray_cluster.jobs import JobClient
from rlhf_stack.app.recipe import RecipeBase, load_recipe
from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.models import BUILTIN_MODELS

log = logging.getLogger("rlhf_stack")

# Appended after the user's overrides, so they win: the driver joins the cluster the job runs on.
CLUSTER_OVERRIDES = ("cluster.address=auto", "cluster.num_cpus=null", "cluster.num_gpus=null")
# Kept out of the uploaded checkout (gitignore syntax, relative to the checkout).
UPLOAD_EXCLUDES = (".venv/", ".git/", "/runs/", "/.cache/", "__pycache__/", "*.egg-info/")


@dataclass(frozen=True)
class SubmissionPlan:
    """What `rlhf-stack submit` sends: checked locally before the cluster is contacted."""

    recipe: RecipeBase  # loaded with the job's overrides, as the job will load it
    project_root: Path  # uploaded as the job's working directory
    entrypoint: str
    runtime_env: dict[str, Any]
    warnings: tuple[str, ...]  # things that work here but may not on the cluster


def plan_submission(recipe_path: Path, overrides: Sequence[str] = ()) -> SubmissionPlan:
    """Checks a recipe for running as a Ray job and builds the job's entrypoint and runtime environment.

    Raises:
        RecipeError: The recipe is invalid, lies outside a project checkout, or names files the job cannot see.
    """
    recipe_path = Path(recipe_path)
    source = str(recipe_path)
    job_overrides = [*overrides, *CLUSTER_OVERRIDES]
    recipe = load_recipe(recipe_path, job_overrides)
    root = _project_root(recipe_path.resolve())
    if root is None:
        raise RecipeError(source, [Problem("(file)", f"{recipe_path} is not inside a project checkout (no "
                                           "pyproject.toml in any folder above it)",
                                           "keep the recipe in the checkout, e.g. recipes/, and submit from there")])
    problems, warnings = _path_problems(recipe, root)
    user_env = dict(recipe.cluster.runtime_env)
    if "working_dir" in user_env:
        problems.append(Problem("cluster.runtime_env.working_dir", "`rlhf-stack submit` uploads the project "
                                f"checkout {root} as the job's working directory", "remove working_dir"))
    if problems:
        raise RecipeError(source, problems)
    if recipe.run_dir is None or not Path(recipe.run_dir).is_absolute():
        warnings.append(f"run_dir is {recipe.run_path}, relative to the job's copy of the checkout on the head node, "
                        "which Ray deletes; keep the results with --set run_dir=/shared/storage/runs/"
                        f"{recipe.name}")
    relative_recipe = recipe_path.resolve().relative_to(root).as_posix()
    entrypoint = shlex.join(["rlhf-stack", "run", relative_recipe, *(a for o in job_overrides for a in ("--set", o))])
    runtime_env = {
        **user_env,
        "working_dir": str(root),
        "excludes": [*user_env.get("excludes", []), *UPLOAD_EXCLUDES],
        # The driver's ray.init passes cluster.runtime_env again (ray_cluster.session); without this Ray refuses
        # the repeated keys instead of merging them.
        "env_vars": {**user_env.get("env_vars", {}), "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"},
    }
    return SubmissionPlan(recipe, root, entrypoint, runtime_env, tuple(warnings))


def submit_recipe(recipe_path: Path, overrides: Sequence[str], *, address: str, follow: bool = True) -> str:
    """Submits the recipe's pipeline as one Ray job, prints its id and, unless `follow` is False, its log.

    Args:
        recipe_path: The recipe, inside the project checkout.
        overrides: `key.path=value` overrides, as for `rlhf-stack run`.
        address: The cluster's dashboard URL, e.g. http://HEAD:8265.
        follow: Stream the job's log until it ends (Ctrl-C stops the job).

    Returns:
        The Ray job id.

    Raises:
        RecipeError: The recipe cannot run there (before the cluster is contacted).
        ClusterError: The cluster cannot be reached or refuses the job, or the followed job failed.
    """
    plan = plan_submission(recipe_path, overrides)
    for warning in plan.warnings:
        log.warning(warning)
    client = JobClient(address)
    job_id = client.submit(plan.entrypoint, plan.runtime_env, metadata={"rlhf_stack_recipe": plan.recipe.name})
    click.echo(f"submitted Ray job {job_id} to {address} (working dir {plan.project_root})")
    if not follow:
        click.echo(f"follow it:  ray job logs --address {address} --follow {job_id}\n"
                   f"stop it:    ray job stop --address {address} {job_id}")
        return job_id
    outcome = client.follow(job_id, echo=True)
    click.echo(f"Ray job {job_id} {outcome.status} after {outcome.wall_s:.0f} s")
    return job_id


def _project_root(recipe_path: Path) -> Path | None:
    return next((folder for folder in recipe_path.parents if (folder / "pyproject.toml").is_file()), None)


def _path_problems(recipe: RecipeBase, root: Path) -> tuple[list[Problem], list[str]]:
    """Files the job reads must travel in the checkout (named relative to the recipe) or be on shared storage."""
    problems, warnings = [], []
    prompts = recipe.data.prompts
    if isinstance(prompts, str):
        named = [("data.prompts", prompts)]
    else:  # a dataset: a hub id travels as a name; a local file or folder as a path
        named = [("data.prompts.source", prompts.source)] if prompts.local_path(recipe.base_dir) is not None else []
    named += [(f"models.{alias}.source", spec.source) for alias, spec in recipe.models.items()
              if spec.source not in BUILTIN_MODELS and (recipe.base_dir / Path(spec.source).expanduser()).exists()]
    for key, value in named:
        path = Path(value).expanduser()
        resolved = (path if path.is_absolute() else recipe.base_dir / path).resolve()
        inside = resolved.is_relative_to(root)
        if inside and path.is_absolute():
            problems.append(Problem(key, f"{value} is an absolute path into this checkout; the job runs in a copy "
                                    "of it elsewhere", "name it relative to the recipe file"))
        elif not inside:
            warnings.append(f"{key}: {resolved} lies outside the uploaded checkout {root}; the job finds it only "
                            "if it exists at that path on the cluster (shared storage)")
    return problems, warnings
