"""Backend `openrlhf`: OpenRLHF's Ray PPO, submitted as a Ray job to the recipe's GPU cluster.

The stage writes the prompt dataset and the exact argument list into its folder (all a dry run does), checks that
the cluster has the GPUs the roles ask for, submits `python3 -m openrlhf.cli.train_ppo_ray ARGS` through Ray's Job
Submission API, streams the job's log into `logs/`, and collects the actor checkpoint OpenRLHF saves into
`checkpoint/`. The job reads and writes the run folder at the same paths as this machine: the cluster must share
its filesystem (or mount it at the same place).

A rerun of an unfinished job follows the Ray job still running (or collects the one that succeeded); after a
failed job it submits a new attempt, which resumes from OpenRLHF's DeepSpeed checkpoints when
`openrlhf.checkpoint_every_steps` is set.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from rlhf_stack.core.artifacts import write_atomic, write_json_atomic
from rlhf_stack.core.errors import ArtifactError, ClusterError
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.core.records import PromptRecord
from rlhf_stack.core.sections import ClusterConfig
from stages.s3_ppo.metrics import MetricsLog
from stages.s3_ppo.openrlhf_args import (
    PROMPT_KEY,
    LaunchPaths,
    entrypoint,
    gpus_needed,
    gpus_per_node_needed,
    parse_step_line,
    to_argv,
)
from stages.s3_ppo.value_models import write_scaled_reward_model
from ray_cluster.jobs import JobClient, submit_and_wait
from ray_cluster.session import ensure_ray

log = logging.getLogger("rlhf_stack")
ARGV_FILE = "openrlhf_argv.json"
PROMPTS_FILE = "prompts.jsonl"
LOG_DIR = "logs"
JOB_FILE = "ray_job.json"  # in the work dir: the submission id and attempt of the job to follow
DASHBOARD_PORT = 8265


def run_openrlhf(ctx: JobContext, *, policy_dir: Path, rm_dir: Path | None, reward_url: str | None,
                 prompts: list[PromptRecord]) -> dict:
    cfg = ctx.recipe.section("ppo")
    out, work = ctx.out_dir.resolve(), ctx.work_dir.resolve()
    reward_model = rm_dir.resolve() if rm_dir is not None else None
    if reward_model is not None and cfg.reward_scale != 1.0:
        reward_model = work / "reward_model"  # written below, unless this is a dry run
    paths = LaunchPaths(policy=policy_dir.resolve(), prompts=out / PROMPTS_FILE, checkpoint=out / "checkpoint",
                        deepspeed_checkpoints=work / "deepspeed", tensorboard=out / "tensorboard" / "openrlhf",
                        reward_model=reward_model, reward_url=reward_url)
    write_prompt_dataset(prompts, paths.prompts)
    argv = to_argv(cfg, paths, ctx.seed)
    write_json_atomic(out / ARGV_FILE, argv)
    needed = gpus_needed(cfg, remote_reward=reward_url is not None)
    log.info("ppo openrlhf: %d GPUs (%s); %s", sum(needed.values()), _breakdown(needed), entrypoint(argv))
    if ctx.dry_run:
        return {}
    check_cluster_gpus(ctx.cluster, needed, gpus_per_node_needed(cfg))
    if reward_model is not None and reward_model != rm_dir.resolve():
        write_scaled_reward_model(rm_dir, reward_model, cfg.reward_scale)
    job_id, logs = run_job(ctx, entrypoint(argv, python="python3"))
    records = metrics_from_logs(logs)
    with MetricsLog(out) as metrics:
        for record in records:
            metrics.write(record)
    _check_checkpoint(paths.checkpoint)
    return {"backend": "openrlhf", "iterations": len(records), "job_id": job_id, "gpus": needed,
            "final_reward_mean": records[-1].get("reward_mean") if records else None}


def write_prompt_dataset(prompts: list[PromptRecord], path: Path) -> Path:
    """JSONL in the form OpenRLHF reads with `--data.input_key input --data.apply_chat_template`."""
    lines = [json.dumps({"id": p.id, PROMPT_KEY: [{"role": "user", "content": p.prompt}]}) for p in prompts]
    write_atomic(path, "".join(line + "\n" for line in lines))
    return path


def check_cluster_gpus(cluster: ClusterConfig, needed: dict[str, int], per_node: int) -> None:
    """Fail before submitting when the cluster has fewer GPUs than OpenRLHF will wait for (forever).

    Raises:
        ClusterError: with the GPUs each role group needs and what the cluster has, per node.
    """
    import ray

    ensure_ray(cluster)
    total = int(ray.cluster_resources().get("GPU", 0))
    nodes = [int(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node["Alive"]]
    want = sum(needed.values())
    fix = ("lower ppo.openrlhf.<role>.nodes/gpus_per_node or vllm_engines, share GPUs with colocate_actor_ref, "
           "colocate_critic_reward or colocate_all, or add GPU nodes")
    if want > total:
        raise ClusterError(f"ppo (backend openrlhf) needs {want} GPUs ({_breakdown(needed)}), but the cluster at "
                           f"{cluster.address} has {total} (GPUs per node: {nodes}); {fix}")
    if per_node > max(nodes, default=0):
        raise ClusterError(f"ppo (backend openrlhf) places up to {per_node} GPUs of one role on a single node, but "
                           f"the largest node of the cluster at {cluster.address} has {max(nodes, default=0)} "
                           f"(GPUs per node: {nodes}); spread the role over more nodes (nodes x gpus_per_node)")


def _breakdown(needed: dict[str, int]) -> str:
    return ", ".join(f"{group} {n}" for group, n in needed.items())


def dashboard_url(cluster: ClusterConfig, configured: str | None) -> str:
    """Where the cluster's Job Submission API listens."""
    if configured:
        return configured
    if cluster.address in ("local", "auto"):
        return "auto"
    host = cluster.address.removeprefix("ray://").rpartition(":")[0] or cluster.address
    return f"http://{host}:{DASHBOARD_PORT}"


def run_job(ctx: JobContext, command: str) -> tuple[str, list[Path]]:
    """Submits (or re-attaches to) the PPO job and waits for it; returns its id and every attempt's log."""
    cfg = ctx.recipe.section("ppo").openrlhf
    address = dashboard_url(ctx.cluster, cfg.dashboard_url)
    job_file = ctx.work_dir / JOB_FILE
    job = json.loads(job_file.read_text()) if job_file.exists() else {"name": uuid.uuid4().hex[:8], "attempt": 0}
    submission_id = f"rlhf-stack-ppo-{job['name']}-{job['attempt']}"
    if job_file.exists() and _job_status(address, submission_id) in ("FAILED", "STOPPED"):
        job["attempt"] += 1
        submission_id = f"rlhf-stack-ppo-{job['name']}-{job['attempt']}"
    write_json_atomic(job_file, job)
    runtime_env = merge_runtime_envs(ctx.cluster.runtime_env, cfg.runtime_env)
    log_path = ctx.out_dir / LOG_DIR / f"attempt-{job['attempt']}.log"
    _submit_and_wait(address, command, runtime_env, log_path, submission_id, cfg.job_timeout_s)
    return submission_id, [ctx.out_dir / LOG_DIR / f"attempt-{i}.log" for i in range(job["attempt"] + 1)]


def merge_runtime_envs(*envs: dict) -> dict:
    """Later environments win key by key; their `env_vars` are merged variable by variable."""
    merged: dict = {}
    for env in envs:
        for key, value in env.items():
            merged[key] = {**merged[key], **value} if key == "env_vars" and key in merged else value
    return merged


def _submit_and_wait(address: str, command: str, runtime_env: dict, log_path: Path, submission_id: str,
                     timeout_s: float | None) -> None:
    """The one place that submits a Ray job (ray_cluster.jobs)."""
    submit_and_wait(address, command, runtime_env, log_path, submission_id=submission_id, timeout_s=timeout_s)


def _job_status(address: str, submission_id: str) -> str | None:
    try:
        return JobClient(address).status(submission_id)
    except ClusterError:
        return None  # never submitted (the process died before) or forgotten by the cluster: submit it


def metrics_from_logs(logs: list[Path]) -> list[dict]:
    """Per-step records from the job logs, in step order; a later attempt's record of a step replaces an earlier."""
    by_step: dict[int, dict] = {}
    for path in logs:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                record = parse_step_line(line)
                if record is not None:
                    by_step[record["iteration"]] = record
    return [by_step[i] for i in sorted(by_step)]


def _check_checkpoint(folder: Path) -> None:
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.bin")) if folder.exists() else []
    if not (folder / "config.json").exists() or not weights:
        raise ArtifactError(f"the OpenRLHF job succeeded but {folder} holds no Hugging Face checkpoint; the cluster "
                            "must write the run folder at the same path as this machine (a shared filesystem)")
