"""ray_cluster/gpu_smoke.sh up to the first CUDA call: its syntax, its check mode, and its refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ray_cluster" / "gpu_smoke.sh"


def smoke(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_check_mode_validates_the_recipe_and_plans_without_a_gpu(tmp_path):
    out = smoke("--check", RUN_DIR=str(tmp_path / "run"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recipes/gpu_smoke.yaml validates" in out.stdout
    assert "dry run of synthesize plans; check mode: stopping before CUDA" in out.stdout
    assert not (tmp_path / "run").exists()  # nothing was written where the real run goes


def test_a_broken_recipe_stops_the_check(tmp_path):
    broken = tmp_path / "gpu_smoke.yaml"
    text = (REPO / "recipes" / "gpu_smoke.yaml").read_text()
    text = text.replace("zero_stage: 2\n  dtype: bf16", "zero_stage: 5\n  dtype: bf16")  # distill's
    prompts = REPO / "recipes" / "data" / "quickstart_prompts.jsonl"
    broken.write_text(text.replace("data/quickstart_prompts.jsonl", str(prompts)))
    out = smoke("--check", RECIPE=str(broken), RUN_DIR=str(tmp_path / "run"))
    assert out.returncode == 1
    assert f"FAIL: {broken} does not validate" in out.stdout
    assert "distill.zero_stage" in out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_the_run_says_so_and_installs_nothing(tmp_path):
    out = smoke(VENV=str(tmp_path / "venv"), RUN_DIR=str(tmp_path / "run"))
    assert out.returncode == 2
    assert "cannot run: no NVIDIA GPU here" in out.stdout
    assert not (tmp_path / "venv").exists()


def test_unknown_arguments_are_refused():
    out = smoke("--gpus=2")
    assert out.returncode == 64 and "unknown argument '--gpus=2'" in out.stderr
