"""The `sweep:` section of a recipe (what a sweep is: rlhf_stack/app/sweep.py)."""

from __future__ import annotations

import json

from pydantic import Field, field_validator

from rlhf_stack.core.config import StrictModel

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
