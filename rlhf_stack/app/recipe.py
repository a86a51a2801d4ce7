"""A recipe: one YAML file, one strict typed section per stage, checked before any Ray or model work.

The `Recipe` model is assembled from the stage registry (`stages.STAGES`): every registered stage contributes an
optional section named after it, typed by its `Config`. Adding a stage touches its own folder and the registry,
nothing here.

Checks run in layers: YAML syntax, then the schema (unknown keys, types, ranges, choices), then rules across
sections (model aliases, stage dependencies, each section's own `check`), then the files the recipe names, then
(for a sweep) every cell. Every problem found is reported at once, with its key path, the rule and a fix.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

import stages
from rlhf_stack.app.sweep_config import CELLS, GENERATION_CACHE, SweepConfig
from rlhf_stack.core.config import StrictModel, did_you_mean, problems_from_validation
from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.chat import has_thinking_switch, thinking_problem
from rlhf_stack.core.models import ModelSpec, check_model, tokenizer_on_disk
from rlhf_stack.core.pipeline import Job
from rlhf_stack.core.prompt_dataset import MATERIALIZED, PromptDataset, dataset_problems
from rlhf_stack.core.prompts import load_prompts
from rlhf_stack.core.precision import ComputeUse, slow_precision_problems
from rlhf_stack.core.sections import ClusterConfig, ComputeConfig, DataConfig


class RecipeBase(StrictModel):
    """The sections every recipe has; `recipe_model` adds one optional section per registered stage."""

    STAGES: ClassVar[tuple[ModuleType, ...]] = ()  # the stage registry this model was assembled from

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    run_dir: str | None = None  # default: runs/<name>, relative to the working directory
    cluster: ClusterConfig = ClusterConfig()
    compute: ComputeConfig = ComputeConfig()
    models: dict[str, ModelSpec] = Field(min_length=1)  # alias -> built-in name, folder or hub id
    data: DataConfig
    sweep: SweepConfig | None = None  # run the recipe once per seed and grid point (rlhf_stack/app/sweep.py)

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
        """The prompt JSONL: the file `data.prompts` names, or the run folder's copy of a mapped dataset."""
        if isinstance(self.data.prompts, PromptDataset):
            return self.run_path / MATERIALIZED
        return self.resolve_path(self.data.prompts)

    def resolve_path(self, value: str) -> Path:
        """A path the recipe names: absolute or `~` as given, otherwise relative to the recipe's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    def section(self, name: str) -> Any | None:
        """A stage's section by stage name, or None when the recipe lacks it."""
        return getattr(self, name) if name in self.stage_names() else None

    @classmethod
    def stage_names(cls) -> tuple[str, ...]:
        return tuple(stage.NAME for stage in cls.STAGES)

    def sections(self) -> dict[str, Any]:
        """The stage sections this recipe defines, in data-flow order."""
        return {name: getattr(self, name) for name in self.stage_names() if getattr(self, name) is not None}

    def compute_uses(self) -> list[ComputeUse]:
        """Every engine and trainer the recipe's stages will start, with the precision and threads they ask for."""
        return [use for section in self.sections().values() if hasattr(section, "compute_uses")
                for use in section.compute_uses(self)]

    def jobs(self) -> list[Job]:
        """Every job of the stages this recipe defines, in data-flow order."""
        return [job for stage in self.STAGES if getattr(self, stage.NAME) is not None for job in stage.jobs(self)]


def recipe_model(registry: Sequence[ModuleType]) -> type[RecipeBase]:
    """The recipe model for a stage registry: one optional section per stage, typed by the stage's Config."""
    namespace = {"__annotations__": {stage.NAME: stage.Config | None for stage in registry},
                 **{stage.NAME: None for stage in registry}, "STAGES": tuple(registry),
                 "__module__": __name__}
    return type("Recipe", (RecipeBase,), namespace)


Recipe = recipe_model(stages.STAGES)


def load_recipe(path: Path, overrides: Sequence[str] = (), base_dir: Path | None = None,
                model: type[RecipeBase] = Recipe) -> RecipeBase:
    """Reads, overrides and fully checks a recipe (a sweep's cells too); raises RecipeError listing every problem."""
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
    recipe = recipe_from_raw(raw, source, (base_dir or path.parent).resolve(), model)
    if recipe.sweep is not None:
        sweep_cells(recipe, source)  # every cell is checked before anything runs
    return recipe


def recipe_from_raw(raw: dict, source: str, base_dir: Path, model: type[RecipeBase] = Recipe) -> RecipeBase:
    """A fully checked recipe from its parsed YAML; RecipeError listing every problem."""
    try:
        recipe = model.model_validate(raw)
    except ValidationError as e:
        raise RecipeError(source, problems_from_validation(e, model)) from e
    recipe._base_dir = base_dir
    problems = cross_section_problems(recipe) + file_problems(recipe)
    if not problems:
        problems = template_problems(recipe)
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


def cross_section_problems(recipe: RecipeBase) -> list[Problem]:
    problems = []
    sections = recipe.sections()
    reads = {stage.NAME: getattr(stage, "READS", ()) for stage in recipe.STAGES}
    for name, section in sections.items():
        for needed in reads[name]:
            if needed not in sections:
                problems.append(Problem(name, f"stage '{name}' reads the output of '{needed}', which the recipe "
                                              "lacks", f"add a '{needed}' section"))
        for key, alias in section.model_aliases().items():
            if alias not in recipe.models:
                hint = did_you_mean(alias, recipe.models) or f"known: {', '.join(sorted(recipe.models))}"
                problems.append(Problem(key, f"model alias {alias!r} is not in models", hint))
        check = getattr(section, "check", None)
        if check is not None:
            problems.extend(check(recipe))
    if not recipe.compute.allow_slow_precision:
        problems.extend(slow_precision_problems(recipe.compute_uses()))
    return problems


def file_problems(recipe: RecipeBase) -> list[Problem]:
    problems = []
    for alias, spec in recipe.models.items():
        why = check_model(spec, recipe.base_dir)
        if why:
            problems.append(Problem(f"models.{alias}", why, "fix the path or use a built-in name or hub id"))
    if isinstance(recipe.data.prompts, PromptDataset):
        alias = recipe.data.prompts.tokenizer
        if alias is not None and alias not in recipe.models:
            problems.append(Problem("data.prompts.tokenizer", f"model alias {alias!r} is not in models",
                                    f"known: {', '.join(sorted(recipe.models))}"))
        return problems + dataset_problems(recipe.data.prompts, recipe.base_dir)
    prompts = recipe.prompts_path
    if not prompts.is_file():
        problems.append(Problem("data.prompts", f"prompt file {prompts} does not exist",
                                "paths are relative to the recipe file"))
    else:
        problems.extend(load_prompts(prompts)[1])
    return problems


def template_problems(recipe: RecipeBase) -> list[Problem]:
    """Chat templates that would make a model reason before answering, for every model already on this machine.

    Every prompt is rendered with thinking off (`rlhf_stack.core.chat`); a template that opens a reasoning block
    anyway is refused, and so is a Qwen3-style policy under OpenRLHF, which renders PPO prompts with the template's
    default (thinking on) while the reward model was trained on prompts with thinking off. Models not on disk yet
    (hub ids outside the cache) are checked by the stages that load them.
    """
    problems = []
    ppo = getattr(recipe, "ppo", None)
    openrlhf_policy = ppo.policy if ppo is not None and getattr(ppo, "backend", None) == "openrlhf" else None
    for alias, spec in recipe.models.items():
        tok = tokenizer_on_disk(spec, recipe.base_dir)
        if tok is None or tok.chat_template is None:
            continue
        why = thinking_problem(tok)
        if why:
            problems.append(Problem(f"models.{alias}", why, "use a model (or chat template) whose reasoning can be "
                                    "turned off with enable_thinking=False"))
        elif alias == openrlhf_policy and has_thinking_switch(tok):
            problems.append(Problem(
                "ppo.policy", f"{alias!r} has a Qwen3-style chat template (thinking on unless enable_thinking=False), "
                "and OpenRLHF renders PPO prompts with the template's default, so the policy would reason first and "
                "the reward model would see prompts unlike its training data", "use ppo.backend: local, or a "
                "policy whose template does not turn thinking on"))
    return problems


def dump_recipe(recipe: RecipeBase) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: the recipe with one value per grid key and one seed, in `cells/<name>/`."""

    name: str  # folder name under cells/
    seed: int
    values: dict[str, Any]  # grid key -> value
    recipe: RecipeBase

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


def sweep_cells(recipe: RecipeBase, source: str = "recipe") -> list[Cell]:
    """Every cell of the recipe's sweep, each fully checked; RecipeError naming the cell of every problem."""
    sweep = recipe.sweep
    problems = []
    distill = recipe.section("distill")
    variants = list(distill.variants) if distill else []
    if sweep.baseline is not None and sweep.baseline not in variants:
        problems.append(Problem("sweep.baseline", f"{sweep.baseline!r} is not a distill variant",
                                did_you_mean(sweep.baseline, variants) or f"variants: {', '.join(variants) or 'none'}"))
    base = recipe.model_dump(mode="json", exclude_none=True)
    base.pop("sweep")
    synthesize = recipe.section("synthesize")
    if synthesize is not None and synthesize.generation_cache is None:
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
                cells.append(Cell(name, seed, values, recipe_from_raw(raw, source, recipe.base_dir, type(recipe))))
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


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj
