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

import shutil
from pathlib import Path

from rlhf_stack.app.recipe import Cell
from rlhf_stack.core.artifacts import MANIFEST, read_manifest, write_atomic
from rlhf_stack.core.pipeline import config_hash


def reuse_finished(cell: Cell, earlier: list[Cell]) -> dict[str, str]:
    """Copies into `cell` every job folder an earlier cell finished with the same config hash.

    Returns:
        folder -> name of the cell it was copied from.
    """
    copied = {}
    for job in cell.recipe.jobs():  # in pipeline order, so a copied input lets its consumers match too
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
