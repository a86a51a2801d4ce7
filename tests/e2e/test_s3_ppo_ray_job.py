"""The openrlhf backend's Ray job on a real local cluster: OpenRLHF's entrypoint is submitted through the Job
Submission API, its log lands in the stage folder, a failure is reported with the log's end, and a rerun after a
failure submits a new attempt instead of re-reading the failed one.

On this CPU machine the job fails on its own (OpenRLHF's models need flash-attn, which only installs with CUDA);
that failure is the real one a cluster without flash-attn would report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_cluster.launch.local import LocalCluster
from rlhf_stack.core.errors import ClusterError
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.app.recipe import load_recipe
from stages.s3_ppo import stage
from stages.s3_ppo.openrlhf_args import LaunchPaths, entrypoint, to_argv
from stages.s3_ppo.openrlhf_backend import JOB_FILE, run_job

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def cluster():
    local = LocalCluster(num_workers=0, cpus_per_node=2)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_failed_job_is_reported_and_retried_as_a_new_attempt(cluster, tmp_path, tiny_policy):
    recipe = load_recipe(TINY, [f"run_dir={tmp_path}", f"cluster.address={cluster.address}", "cluster.num_cpus=null",
                                "ppo.backend=openrlhf", f"ppo.openrlhf.dashboard_url={cluster.dashboard_url}",
                                "ppo.variants=[binary_bt]"])
    job = stage.jobs(recipe)[0]
    ctx = JobContext(recipe=recipe, job=job, run_dir=tmp_path)
    ctx.work_dir.mkdir(parents=True)
    paths = LaunchPaths(policy=tiny_policy, prompts=ctx.out_dir / "prompts.jsonl", checkpoint=ctx.out_dir / "checkpoint",
                        deepspeed_checkpoints=ctx.work_dir / "deepspeed", tensorboard=ctx.out_dir / "tensorboard",
                        reward_model=tmp_path / "rm")
    command = entrypoint(to_argv(recipe.ppo, paths, seed=0), python="python3")

    with pytest.raises(ClusterError, match=r"(?s)rlhf-stack-ppo-\w+-0 FAILED.*flash_attn"):
        run_job(ctx, command)
    first = json.loads((ctx.work_dir / JOB_FILE).read_text())
    assert "No module named 'flash_attn'" in (ctx.out_dir / "logs/attempt-0.log").read_text()

    with pytest.raises(ClusterError, match=r"rlhf-stack-ppo-\w+-1 FAILED"):
        run_job(ctx, command)
    second = json.loads((ctx.work_dir / JOB_FILE).read_text())
    assert (second["name"], second["attempt"]) == (first["name"], 1)
    assert (ctx.out_dir / "logs/attempt-1.log").exists()
