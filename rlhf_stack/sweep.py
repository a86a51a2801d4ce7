"""A sweep: one recipe run once per seed and grid point ("cell"), each cell an ordinary run through the pipeline.

    sweep:
      seeds: [0, 1, 2]
      grid: {synthesize.verifier.noise.flip_prob: [0.0, 0.3]}
      baseline: binary_bt        # the report gives every other variant's paired difference to it

A cell is the recipe with one value per grid key and one seed, in `<run dir>/cells/<name>/`, e.g.
`cells/flip_prob=0.3,seed=1/`. Every cell is checked before any runs. Cells run one after another; each is a normal
run folder (finished jobs skipped, killed ones resumed; `rlhf-stack report` and `status` work on it), and the
sweep's report (`<run dir>/report/`) aggregates them over seeds (sweep_report.py).

Work the cells have in common is done once:
- a job whose config hash equals that of a finished job in an earlier cell (same key, same inputs, e.g. held-out
  answers that depend on no seed) is copied from it instead of run, and the copy is recorded in `sweep.json`;
- the synthesis stage's LLM requests go through one generation cache (`synthesize.generation_cache`, set to
  `<run dir>/generation_cache.jsonl` unless the recipe names one), so cells that differ only in what the
  verifier judges share the candidates and y_T.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from rlhf_stack.artifacts import MANIFEST, write_atomic
from rlhf_stack.config import StrictModel, did_you_mean
from rlhf_stack.errors import Problem, RecipeError

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

CELLS = "cells"
GENERATION_CACHE = "generation_cache.jsonl"
_RESERVED = ("name", "seed", "run_dir", "sweep")  # a cell's seed comes from `seeds`; the rest belong to the sweep
Scalar = bool | int | float | str


class SweepConfig(StrictModel):
    seeds: list[int] = Field(min_length=1)  # every grid point runs once per seed
    grid: dict[str, list[Scalar]] = {}  # recipe key path -> the values it takes
    baseline: str | None = None  # a distill variant; the report pairs every other variant with it seed by seed

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in grid.items():
            if key.split(".")[0] in _RESERVED:
                raise ValueError(f"grid key {key!r} cannot be swept (the sweep sets {', '.join(_RESERVED)}); "
                                 "list seeds under sweep.seeds")
            if not values or len(set(map(json.dumps, values))) != len(values):
                raise ValueError(f"grid key {key!r} needs distinct values, got {values}")
        return grid


@dataclass(frozen=True)
class Cell:
    name: str  # folder name under cells/
    seed: int
    values: dict[str, Any]  # grid key -> value
    recipe: "Recipe"

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_path


def cell_name(values: dict[str, Any], seed: int) -> str:
    """`flip_prob=0.3,seed=1`: each grid key by its last part, or in full where last parts collide."""
    lasts = [k.split(".")[-1] for k in values]
    parts = [f"{k if lasts.count(k.split('.')[-1]) > 1 else k.split('.')[-1]}={_text(v)}" for k, v in values.items()]
    return ",".join([*parts, f"seed={seed}"])


def _text(value: Any) -> str:
    return str(value).replace("/", "_").replace(",", "_")


def sweep_cells(recipe: "Recipe", source: str = "recipe") -> list[Cell]:
    """Every cell of the recipe's sweep, each fully checked; RecipeError naming the cell of every problem."""
    from rlhf_stack.recipe import apply_overrides, recipe_from_raw

    sweep = recipe.sweep
    problems = []
    variants = list(recipe.distill.variants) if recipe.distill else []
    if sweep.baseline is not None and sweep.baseline not in variants:
        problems.append(Problem("sweep.baseline", f"{sweep.baseline!r} is not a distill variant",
                                did_you_mean(sweep.baseline, variants) or f"variants: {', '.join(variants) or 'none'}"))
    base = recipe.model_dump(mode="json", exclude_none=True)
    base.pop("sweep")
    if recipe.synthesize is not None and recipe.synthesize.generation_cache is None:
        base["synthesize"]["generation_cache"] = str((recipe.run_path / GENERATION_CACHE).resolve())
    cells = []
    keys = list(sweep.grid)
    for point in itertools.product(*(sweep.grid[k] for k in keys)):
        values = dict(zip(keys, point))
        for seed in sweep.seeds:
            name = cell_name(values, seed)
            raw = {**base, "seed": seed, "run_dir": str(recipe.run_path / CELLS / name)}
            try:
                raw = apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in values.items()], source)
                cells.append(Cell(name, seed, values, recipe_from_raw(raw, source, recipe.base_dir)))
            except RecipeError as e:
                problems += [Problem(f"{p.key} (sweep cell {name})", p.message, p.fix) for p in e.problems]
                break  # the other seeds of this grid point fail the same way
    names = [c.name for c in cells]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem("sweep.grid", f"two grid points share the cell folder {name!r}",
                                "give values that differ in more than '/' and ',' (or in case of true/True)"))
    if problems:
        raise RecipeError(source, problems)
    return cells


def reuse_finished(cell: Cell, earlier: list[Cell]) -> dict[str, str]:
    """Copies into `cell` every job folder an earlier cell finished with the same config hash.

    Returns:
        folder -> name of the cell it was copied from.
    """
    from rlhf_stack.artifacts import read_manifest
    from rlhf_stack.pipeline import config_hash
    from rlhf_stack.runner import all_jobs

    copied = {}
    for job in all_jobs(cell.recipe):  # in pipeline order, so a copied input lets its consumers match too
        h = config_hash(job, cell.run_dir)
        mine = read_manifest(cell.run_dir / job.folder)
        if h is None or (mine is not None and mine.config_hash == h):
            continue
        for other in earlier:
            theirs = read_manifest(other.run_dir / job.folder)
            if theirs is not None and theirs.config_hash == h:
                _copy_finished(other.run_dir / job.folder, cell.run_dir / job.folder)
                copied[job.folder] = other.name
                break
    return copied


def _copy_finished(source: Path, target: Path) -> None:
    """A finished folder's copy, its manifest written last: a copy killed midway is not taken for finished."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(MANIFEST))
    write_atomic(target / MANIFEST, (source / MANIFEST).read_text())
