"""Recipe problems are found before any work, with key path, value, rule and a did-you-mean."""

from pathlib import Path

import pytest
import yaml

from rlhf_stack.app.cli import main
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw["data"]["prompts"] = str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")
    mutate(raw)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _problems(path: Path, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as err:
        load_recipe(path, overrides)
    return [str(p) for p in err.value.problems]


def test_misspelled_key_names_path_and_suggestion(tmp_path):
    path = _write(tmp_path, lambda r: r["distill"].__setitem__("lrr", 1e-4))
    assert _problems(path) == ["distill.lrr: unknown key (did you mean 'lr'?)"]


def test_misspelled_key_inside_a_variant(tmp_path):
    def mutate(r):
        r["distill"]["variants"]["binary_bt"]["sft_wieght"] = r["distill"]["variants"]["binary_bt"].pop("sft_weight")

    problems = _problems(_write(tmp_path, mutate))
    assert "distill.variants.binary_bt.sft_wieght: unknown key (did you mean 'sft_weight'?)" in problems
    assert "distill.variants.binary_bt.sft_weight: required key is missing (add it to the recipe)" in problems


def test_bad_choice_lists_choices_and_suggests(tmp_path):
    (problem,) = _problems(TINY, ["distill.variants.binary_bt.objective=btt"])
    assert problem.startswith("distill.variants.binary_bt.objective: 'btt' is not one of 'bt', 'margin_bt'")
    assert problem.endswith("(did you mean 'bt'?)")


def test_range_and_cross_field_rules(tmp_path):
    problems = _problems(TINY, ["distill.pairs_per_step=5", "distill.micro_pairs_per_device=2"])
    assert problems == [
        "distill: pairs_per_step (5) must be a multiple of micro_pairs_per_device x num_processes (2 x 1)"
    ]


def test_unknown_model_alias_suggests_the_close_one():
    assert _problems(TINY, ["ppo.policy=polcy"]) == ["ppo.policy: model alias 'polcy' is not in models "
                                                       "(did you mean 'policy'?)"]


def test_missing_model_folder_and_prompt_file_name_the_path(tmp_path):
    def mutate(r):
        r["models"]["teacher"] = "./no/such/model"
        r["data"]["prompts"] = str(tmp_path / "missing.jsonl")

    problems = _problems(_write(tmp_path, mutate))
    assert any(p.startswith("models.teacher: model folder") and "no/such/model does not exist" in p for p in problems)
    assert any(p.startswith("data.prompts: prompt file") and "missing.jsonl does not exist" in p for p in problems)


def test_empty_prompts_are_rejected_with_their_ids(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "  "}\n{"id": "c", "prompt": ""}\n')
    problems = _problems(_write(tmp_path, lambda r: r["data"].__setitem__("prompts", str(prompts))))
    assert len(problems) == 1 and "2 empty prompt(s)" in problems[0] and "ids b, c" in problems[0]


def test_stage_needs_its_upstream_section(tmp_path):
    problems = _problems(_write(tmp_path, lambda r: r.pop("synthesize")))
    assert problems == ["distill: stage 'distill' reads the output of 'synthesize', which the recipe lacks "
                        "(add a 'synthesize' section)"]


def test_override_values_are_typed():
    recipe = load_recipe(TINY, ["distill.lr=3e-4", "seed=7", "distill.zero_stage=2"])
    assert recipe.distill.lr == 3e-4 and recipe.seed == 7 and recipe.distill.zero_stage == 2


def test_recipe_is_frozen():
    recipe = load_recipe(TINY)
    with pytest.raises(ValueError):
        recipe.distill.lr = 1.0


def test_validate_command_exit_codes(tmp_path, capsys):
    assert main(["validate", str(TINY)]) == 0
    bad = _write(tmp_path, lambda r: r["synthesize"].__setitem__("techer", "teacher"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "synthesize.techer: unknown key (did you mean 'teacher'?)" in err
