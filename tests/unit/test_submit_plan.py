"""`rlhf-stack submit` checks the recipe and builds the job before any cluster is contacted."""

import shlex
import socket
from pathlib import Path

import pytest
import yaml

from rlhf_stack.app.submit import CLUSTER_OVERRIDES, UPLOAD_EXCLUDES, plan_submission
from rlhf_stack.app.cli import main as cli_main
from rlhf_stack.core.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]


def _project(root: Path, recipe: dict, checkout: bool = True) -> Path:
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'probe'\n")
    (root / "recipes" / "data").mkdir(parents=True)
    (root / "recipes" / "data" / "p.jsonl").write_text('{"id": "p1", "prompt": "Say hi."}\n')
    path = root / "recipes" / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "probe", "models": {"m": "tiny-random-llama"},
                                    "data": {"prompts": "data/p.jsonl"}, **recipe}))
    return path


def _nobody_listens() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_the_tiny_recipe_runs_from_the_checkout_with_cluster_address_auto():
    plan = plan_submission(REPO / "recipes" / "tiny.yaml", ["seed=5"])
    assert plan.project_root == REPO
    assert shlex.split(plan.entrypoint) == ["rlhf-stack", "run", "recipes/tiny.yaml", "--set", "seed=5",
                                            *(a for o in CLUSTER_OVERRIDES for a in ("--set", o))]
    assert plan.recipe.cluster.address == "auto" and plan.recipe.cluster.num_cpus is None  # tiny.yaml sets 2
    assert plan.recipe.seed == 5
    assert plan.runtime_env["working_dir"] == str(REPO)
    assert set(UPLOAD_EXCLUDES) <= set(plan.runtime_env["excludes"])
    assert any(w.startswith("run_dir is runs/tiny") for w in plan.warnings)  # would vanish with the job's copy


def test_overrides_with_spaces_survive_the_shell(tmp_path):
    recipe = _project(tmp_path, {})
    plan = plan_submission(recipe, ["run_dir=/shared/my runs/x"])
    assert ["--set", "run_dir=/shared/my runs/x"] == shlex.split(plan.entrypoint)[3:5]
    assert not plan.warnings  # an absolute run_dir


def test_the_recipes_runtime_env_travels_with_the_job(tmp_path):
    env = {"pip": ["some-package==1.0"], "env_vars": {"HF_HOME": "/shared/hf"}, "excludes": ["big/"]}
    plan = plan_submission(_project(tmp_path, {"cluster": {"runtime_env": env}}))
    assert plan.runtime_env["pip"] == ["some-package==1.0"]
    assert plan.runtime_env["env_vars"] == {"HF_HOME": "/shared/hf", "RAY_OVERRIDE_JOB_RUNTIME_ENV": "1"}
    assert plan.runtime_env["excludes"][0] == "big/"


def test_a_bad_recipe_exits_2_before_the_cluster_is_contacted(tmp_path, capsys):
    recipe = _project(tmp_path, {"seed": "three"})
    assert cli_main(["submit", str(recipe), "--address", _nobody_listens()]) == 2
    err = capsys.readouterr().err
    assert "seed" in err and "cannot connect" not in err


@pytest.mark.parametrize(("recipe", "checkout", "message"), [
    ({}, False, "not inside a project checkout"),
    ({"cluster": {"runtime_env": {"working_dir": "."}}}, True, "cluster.runtime_env.working_dir"),
])
def test_recipes_the_job_could_not_run_are_refused(tmp_path, recipe, checkout, message):
    with pytest.raises(RecipeError, match=message):
        plan_submission(_project(tmp_path, recipe, checkout=checkout))


def test_files_are_named_relative_to_the_recipe_or_live_on_shared_storage(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    recipe = _project(project, {})
    inside = project / "recipes" / "data" / "p.jsonl"
    with pytest.raises(RecipeError, match="absolute path into this checkout"):
        plan_submission(recipe, [f"data.prompts={inside}"])
    elsewhere.mkdir()
    (elsewhere / "p.jsonl").write_text(inside.read_text())
    plan = plan_submission(recipe, [f"data.prompts={elsewhere / 'p.jsonl'}", "run_dir=/shared/x"])
    assert [w.split(":")[0] for w in plan.warnings] == ["data.prompts"]  # fine if the cluster shares that path
