"""evaluate.ground_truth.best_of_n and best_of_n_generator are checked at validate, naming key, value and fix."""

from pathlib import Path

import pytest
import yaml

from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]
SANDBOX_TINY = REPO / "recipes" / "sandbox_tiny.yaml"


def _write(tmp_path: Path, **ground_truth) -> Path:
    raw = yaml.safe_load(SANDBOX_TINY.read_text())
    raw["data"]["prompts"] = str(REPO / "recipes" / raw["data"]["prompts"])
    raw["evaluate"]["ground_truth"].update(ground_truth)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    return [str(p) for p in err.value.problems]


def test_good_list_loads(tmp_path):
    recipe = load_recipe(_write(tmp_path, best_of_n=[1, 2, 4], best_of_n_generator="teacher"))
    gt = recipe.section("evaluate").ground_truth
    assert gt.best_of_n == [1, 2, 4] and gt.best_of_n_generator == "teacher"


@pytest.mark.parametrize(("ns", "says"), [
    ([], "empty list"),
    ([0, 2], "below 1"),
    ([1, 4, 2], "not strictly increasing: [1, 4, 2]"),
    ([1, 2, 2], "not strictly increasing: [1, 2, 2]"),
])
def test_bad_lists_are_named(tmp_path, ns, says):
    problems = _problems(_write(tmp_path, best_of_n=ns))
    assert any(p.startswith("evaluate.ground_truth.best_of_n:") and says in p for p in problems), problems


def test_unknown_generator_alias_is_named(tmp_path):
    problems = _problems(_write(tmp_path, best_of_n=[1, 2], best_of_n_generator="polcy"))
    assert any("evaluate.ground_truth.best_of_n_generator" in p and "polcy" in p for p in problems), problems
