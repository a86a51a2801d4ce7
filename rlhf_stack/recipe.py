"""A recipe: one YAML file, one strict typed section per stage, checked before any Ray or model work.

Checks run in layers: YAML syntax, then the schema (unknown keys, types, ranges, choices), then rules across
sections (model aliases, stage dependencies), then the files the recipe names. Every problem found is reported at
once, with its key path, the rule and a fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from rlhf_stack.config import StrictModel, did_you_mean, problems_from_validation
from rlhf_stack.errors import Problem, RecipeError
from rlhf_stack.models import ModelSpec, check_model
from rlhf_stack.prompts import load_prompts
from rlhf_stack.sections import ClusterConfig, DataConfig
from rlhf_stack.sweep import SweepConfig
from stages.s1_synthesize.config import SynthesizeConfig
from stages.s2_distill.config import DistillConfig
from stages.s3_ppo.config import PPOConfig
from stages.s4_evaluate.config import EvaluateConfig

STAGE_SECTIONS = ("synthesize", "distill", "ppo", "evaluate")  # in data-flow order
_NEEDS = {"distill": "synthesize", "ppo": "distill"}  # a stage section -> the section whose output it reads


class Recipe(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    run_dir: str | None = None  # default: runs/<name>, relative to the working directory
    cluster: ClusterConfig = ClusterConfig()
    models: dict[str, ModelSpec] = Field(min_length=1)  # alias -> built-in name, folder or hub id
    data: DataConfig
    synthesize: SynthesizeConfig | None = None
    distill: DistillConfig | None = None
    ppo: PPOConfig | None = None
    evaluate: EvaluateConfig | None = None
    sweep: SweepConfig | None = None  # run the recipe once per seed and grid point (rlhf_stack/sweep.py)

    _base_dir: Path = PrivateAttr(default=Path("."))

    @field_validator("models")
    @classmethod
    def _alias_names(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        bad = [a for a in models if not re.fullmatch(r"[A-Za-z0-9_.-]+", a)]
        if bad:
            raise ValueError(f"model aliases may use letters, digits, '_', '.', '-' only: {bad}")
        return models

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the recipe are resolved against (the recipe file's folder)."""
        return self._base_dir

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    @property
    def prompts_path(self) -> Path:
        return self.resolve_path(self.data.prompts)

    def resolve_path(self, value: str) -> Path:
        """A path the recipe names: absolute or `~` as given, otherwise relative to the recipe's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    def sections(self) -> dict[str, Any]:
        """The stage sections this recipe defines, in data-flow order."""
        return {name: getattr(self, name) for name in STAGE_SECTIONS if getattr(self, name) is not None}


def load_recipe(path: Path, overrides: Sequence[str] = (), base_dir: Path | None = None) -> Recipe:
    """Reads, overrides and fully checks a recipe; raises RecipeError listing every problem."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise RecipeError(source, [Problem("(file)", f"recipe {path} does not exist", "check the path")])
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(source, [Problem("(file)", f"not valid YAML: {e}")]) from e
    if not isinstance(raw, dict):
        raise RecipeError(source, [Problem("(top level)", "a recipe must be a mapping of sections")])
    raw = apply_overrides(raw, overrides, source)
    recipe = recipe_from_raw(raw, source, (base_dir or path.parent).resolve())
    if recipe.sweep is not None:
        from rlhf_stack.sweep import sweep_cells

        sweep_cells(recipe, source)  # every cell is checked before anything runs
    return recipe


def recipe_from_raw(raw: dict, source: str, base_dir: Path) -> Recipe:
    """A fully checked recipe from its parsed YAML; RecipeError listing every problem."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(source, problems_from_validation(e, Recipe)) from e
    recipe._base_dir = base_dir
    problems = cross_section_problems(recipe) + file_problems(recipe)
    if problems:
        raise RecipeError(source, problems)
    return recipe


def apply_overrides(raw: dict, overrides: Sequence[str], source: str) -> dict:
    """`a.b.c=value` overrides; the value is parsed as YAML (so `x=3` is an int, `x=[1,2]` a list)."""
    raw = _deep_copy(raw)
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(item, "an override must look like key.path=value", "e.g. --set distill.lr=1e-5"))
            continue
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part, {}), dict):
                problems.append(Problem(key, f"'{part}' is not a section, so it has no keys"))
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    if problems:
        raise RecipeError(source, problems)
    return raw


def cross_section_problems(recipe: Recipe) -> list[Problem]:
    problems = []
    sections = recipe.sections()
    for name, section in sections.items():
        needed = _NEEDS.get(name)
        if needed and needed not in sections:
            problems.append(Problem(name, f"stage '{name}' reads the output of '{needed}', which the recipe lacks",
                                    f"add a '{needed}' section"))
        for key, alias in section.model_aliases().items():
            if alias not in recipe.models:
                hint = did_you_mean(alias, recipe.models) or f"known: {', '.join(sorted(recipe.models))}"
                problems.append(Problem(key, f"model alias {alias!r} is not in models", hint))
        check = getattr(section, "check", None)
        if check is not None:
            problems.extend(check(recipe))
    return problems


def file_problems(recipe: Recipe) -> list[Problem]:
    problems = []
    for alias, spec in recipe.models.items():
        why = check_model(spec, recipe.base_dir)
        if why:
            problems.append(Problem(f"models.{alias}", why, "fix the path or use a built-in name or hub id"))
    prompts = recipe.prompts_path
    if not prompts.is_file():
        problems.append(Problem("data.prompts", f"prompt file {prompts} does not exist",
                                "paths are relative to the recipe file"))
    else:
        problems.extend(load_prompts(prompts)[1])
    return problems


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj
