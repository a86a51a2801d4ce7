"""Every recipe the project ships passes validation."""

from pathlib import Path

import pytest

from rlhf_stack.app.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml"))
SHIPPED = ["gpu_smoke.yaml", "quickstart_cpu.yaml", "rm_distill_ppo.yaml", "sandbox_cpu.yaml", "sandbox_power.yaml",
           "sandbox_tiny.yaml", "tiny.yaml"]


def test_every_shipped_recipe_is_found():
    """A recipe added or removed must be named here, so the count below is the count that was meant."""
    assert len(RECIPES) == len(SHIPPED) == 7
    assert [p.name for p in RECIPES] == SHIPPED


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name
