"""Every recipe the project ships passes validation."""

from pathlib import Path

import pytest

from rlhf_stack.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml"))


def test_recipes_are_found():
    assert len(RECIPES) >= 1, RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name
