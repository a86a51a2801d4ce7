"""`rlhf-stack run RECIPE --only ppo` with the openrlhf backend: a dry run writes the launch plan and submits
nothing; a real run on a cluster without GPUs stops before submitting and says how many GPUs are missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import publish
from rlhf_stack.app.cli import main
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.prompts import load_prompts, split_prompts

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"


@pytest.fixture
def run_dir(tmp_path, tiny_model) -> Path:
    """A run whose distill stage finished for variant binary_bt (the tiny model stands in for a trained RM)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "s2_distill" / "binary_bt"
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    rm.save_pretrained(folder / "checkpoint")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder / "checkpoint")
    publish(folder, kind="reward_model", stage="distill", rel_folder="s2_distill/binary_bt", config_hash="fixture",
            inputs={}, summary={}, wall_time_s=0.0)
    return tmp_path


def _args(run_dir: Path, *extra: str) -> list[str]:
    sets = [f"run_dir={run_dir}", "ppo.backend=openrlhf", "ppo.variants=[binary_bt]", *extra]
    return ["run", str(TINY), "--only", "ppo", *(x for s in sets for x in ("--set", s))]


def test_dry_run_writes_the_argument_list_and_submits_nothing(run_dir):
    import ray

    assert main([*_args(run_dir), "--dry-run"]) == 0
    folder = run_dir / "s3_ppo" / "binary_bt"
    argv = json.loads((folder / "openrlhf_argv.json").read_text())
    assert all(isinstance(a, str) for a in argv)
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--reward.model_name_or_path"] == str((run_dir / "s2_distill/binary_bt/checkpoint").resolve())
    assert flags["--data.prompt_dataset"] == str((folder / "prompts.jsonl").resolve())
    recipe = load_recipe(TINY, [f"run_dir={run_dir}"])
    expected = split_prompts(load_prompts(recipe.prompts_path)[0], recipe.data.splits, recipe.data.split_seed)["ppo"]
    rows = [json.loads(line) for line in (folder / "prompts.jsonl").read_text().splitlines()]
    assert rows == [{"id": p.id, "input": [{"role": "user", "content": p.prompt}]} for p in expected]
    assert not (folder / "manifest.json").exists() and not (folder / "checkpoint").exists()
    assert not ray.is_initialized()  # nothing was asked of a cluster


def test_a_cluster_without_the_gpus_is_refused_before_submission(run_dir, capsys):
    code = main(_args(run_dir))
    err = capsys.readouterr().err
    assert code == 1
    assert ("ppo (backend openrlhf) needs 5 GPUs (actor 1, ref 1, vllm 1, critic 1, reward 1), but the cluster at "
            "local has 0") in err
    assert "colocate_all" in err  # the fix
    assert not list((run_dir / "s3_ppo" / "binary_bt").glob("logs/*"))  # no job was submitted
