"""The files `rlhf-stack run` writes at the top of a run folder, and reading the run's recipe back from them."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from rlhf_stack.app.recipe import RecipeBase, dump_recipe, load_recipe
from rlhf_stack.core.artifacts import write_atomic, write_json_atomic
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.models import resolve_model
from rlhf_stack.core.prompt_dataset import PromptDataset, materialize

RESOLVED = "recipe.resolved.yaml"
RUN_INFO = "run.json"
SWEEP_INFO = "sweep.json"  # per cell: seed, grid values, folders copied from earlier cells, wall time


def write_run_files(recipe: RecipeBase, path: Path, overrides: Sequence[str], **info) -> None:
    """The resolved recipe and where it came from, so `status` and `report` can read the run later."""
    run_dir = recipe.run_path
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / RESOLVED, dump_recipe(recipe))
    write_json_atomic(run_dir / RUN_INFO, {"recipe": str(Path(path).resolve()), "base_dir": str(recipe.base_dir),
                                           "overrides": list(overrides), **info})
    prepare_prompts(recipe)


def prepare_prompts(recipe: RecipeBase) -> None:
    """A mapped prompt dataset (`data.prompts` as a mapping) becomes the run folder's prompt JSONL, before any stage."""
    cfg = recipe.data.prompts
    if not isinstance(cfg, PromptDataset):
        return
    tokenizer = None
    if cfg.tokenizer is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(recipe.models[cfg.tokenizer], recipe.base_dir))
    materialize(cfg, recipe.base_dir, recipe.prompts_path, recipe.data.split_seed, tokenizer)


def load_run(run_dir: Path) -> RecipeBase:
    info_path = run_dir / RUN_INFO
    if not info_path.exists():
        raise ArtifactError(f"{run_dir} has no {RUN_INFO}: not a run folder written by `rlhf-stack run`")
    info = json.loads(info_path.read_text())
    return load_recipe(run_dir / RESOLVED, base_dir=Path(info["base_dir"]))


def rerun_command(path: Path | str, overrides: Sequence[str]) -> str:
    """The `rlhf-stack run` command line that runs this recipe with these overrides again."""
    return shlex.join(["rlhf-stack", "run", str(path), *(a for o in overrides for a in ("--set", o))])


def recorded_rerun_command(run_dir: Path) -> str:
    """The command that reruns the recipe a run folder was written by (from its run.json)."""
    info = json.loads((run_dir / RUN_INFO).read_text())
    return rerun_command(info["recipe"], info["overrides"])
