"""The recipe and the run are assembled from the stage registry: a stage registered here, in the test only, gets
its recipe section (strictly checked), its dependency rule and its jobs, with no change anywhere else."""

import types
from pathlib import Path

import pytest
import yaml

import stages
from rlhf_stack.app.recipe import Recipe, load_recipe, recipe_model
from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.pipeline import Job, run_jobs


class ToyConfig(StrictModel):
    words_per_line: int = 3

    def model_aliases(self) -> dict[str, str]:
        return {}


def _toy_jobs(recipe) -> list[Job]:
    cfg = recipe.section("toy")

    def run(ctx):
        prompts = ctx.prompts("synthesize")
        text = "\n".join(" ".join(p.prompt.split()[:cfg.words_per_line]) for p in prompts)
        (ctx.out_dir / "lines.txt").write_text(text)
        return {"lines": len(prompts)}

    return [Job("toy", "s9_toy", "toy_lines", {"words_per_line": cfg.words_per_line}, run)]


toy = types.ModuleType("toy_stage")
toy.NAME, toy.FOLDER, toy.READS, toy.Config, toy.jobs = "toy", "s9_toy", ("synthesize",), ToyConfig, _toy_jobs
REPO = Path(__file__).resolve().parents[2]
ToyRecipe = recipe_model((*stages.STAGES, toy))


def _write(tmp_path, **sections) -> object:
    raw = {"name": "toy", "run_dir": str(tmp_path / "run"), "models": {"m": "tiny-random-llama"},
           "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")}, **sections}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_registered_stage_gets_a_checked_section_and_runs(tmp_path):
    recipe = load_recipe(_write(tmp_path, toy={"words_per_line": 2},
                                synthesize={"teacher": "m", "generators": ["m"], "responses_per_generator": 2}), model=ToyRecipe)
    assert recipe.stage_names()[-1] == "toy" and recipe.section("toy").words_per_line == 2
    toy_jobs = [j for j in recipe.jobs() if j.stage == "toy"]
    assert run_jobs(recipe, toy_jobs, {"toy"}) == {"s9_toy": "ran"}
    lines = (recipe.run_path / "s9_toy" / "lines.txt").read_text().splitlines()
    assert lines and all(len(line.split()) <= 2 for line in lines)
    assert read_manifest(recipe.run_path / "s9_toy").summary == {"lines": len(lines)}


def test_the_registered_stage_is_checked_like_any_other(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_recipe(_write(tmp_path, toy={"words_per_lin": 2}), model=ToyRecipe)
    assert "toy.words_per_lin" in str(e.value) and "did you mean 'words_per_line'" in str(e.value)
    with pytest.raises(RecipeError, match="stage 'toy' reads the output of 'synthesize'"):
        load_recipe(_write(tmp_path, toy={}), model=ToyRecipe)


def test_the_default_recipe_knows_only_the_registered_stages(tmp_path):
    assert Recipe.stage_names() == stages.STAGE_NAMES
    with pytest.raises(RecipeError, match="toy"):
        load_recipe(_write(tmp_path, toy={}))
