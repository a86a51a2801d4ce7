"""The evaluate section: recipe errors found before any work, and the jobs a recipe gets."""

from pathlib import Path

import pytest
import yaml

from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from stages.s4_evaluate.stage import jobs

REPO = Path(__file__).resolve().parents[2]


def write_recipe(tmp_path, evaluate, **extra):
    recipe = {"name": "t", "models": {"judge": "tiny-random-llama", "rm": "tiny-random-llama"},
              "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")}, "evaluate": evaluate,
              **extra}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def problems(tmp_path, evaluate):
    with pytest.raises(RecipeError) as err:
        load_recipe(write_recipe(tmp_path, evaluate))
    return str(err.value)


def test_errors_name_the_key_and_the_fix(tmp_path):
    text = problems(tmp_path, {"alpaca_eval": {"instructions": {"source": "smoke"}}, "policies": {"p": "rm"}})
    assert "evaluate.judge: AlpacaEval and MT-Bench need a judge" in text
    text = problems(tmp_path, {"rm_benchmarks": {"rewardbench": {"source": "nope/x.jsonl"}}, "reward_models": {"a": "rm"}})
    assert "evaluate.rm_benchmarks.rewardbench.source" in text and "does not exist" in text
    text = problems(tmp_path, {"judge": "judge", "alpaca_eval": {"instructions": {"source": "smoke"},
                                                                 "reference_outputs": "r.json", "reference_model": "rm"}})
    assert "set reference_outputs or reference_model, not both" in text
    text = problems(tmp_path, {"rm_benchmarks": {"rewardbench": {"source": "smoke"}}})
    assert "nothing to evaluate" in text
    text = problems(tmp_path, {"rm_benchmarks": {"rewardbench": {"source": "smoke"}}, "reward_models": {"a": "rmm"}})
    assert "evaluate.reward_models.a" in text and "did you mean 'rm'" in text
    text = problems(tmp_path, {"judge": "judge", "mt_bench": {"data": "nowhere"}, "policies": {"p": "rm"}})
    assert "evaluate.mt_bench.data" in text and "question.jsonl" in text


def test_one_job_per_evaluated_thing(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, {
        "judge": "judge", "rm_benchmarks": {"rewardbench": {"source": "smoke"}}, "reward_models": {"ext": "rm"},
        "alpaca_eval": {"instructions": {"source": "smoke"}, "reference_model": "judge"}, "policies": {"p": "rm"}}))
    by_folder = {j.folder: j for j in jobs(recipe)}
    assert set(by_folder) == {"s4_evaluate/rm/ext", "s4_evaluate/alpaca_reference", "s4_evaluate/policy/p"}
    assert by_folder["s4_evaluate/policy/p"].inputs == ("s4_evaluate/alpaca_reference",)
    assert any(f.name == "rewardbench_smoke.jsonl" for f in by_folder["s4_evaluate/rm/ext"].files)


def test_tiny_recipe_evaluates_every_variant_and_the_initial_policy():
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml")
    folders = {j.folder: j.inputs for j in jobs(recipe)}
    for variant in recipe.distill.variants:
        assert folders[f"s4_evaluate/rm/{variant}"] == (f"s2_distill/{variant}",)
        assert folders[f"s4_evaluate/policy/{variant}"] == (f"s3_ppo/{variant}",)
    assert folders["s4_evaluate/policy/initial"] == ()
