"""The only module that knows OpenRLHF's PPO command line (pinned: openrlhf==0.11.2, dotted flags).

`to_argv` translates the recipe's `ppo` section into the arguments of `python -m openrlhf.cli.train_ppo_ray`;
`gpus_needed` derives how many GPUs those arguments make OpenRLHF ask Ray for; `parse_step_line` reads the
per-step metrics OpenRLHF prints. The contract test feeds `to_argv`'s output to OpenRLHF's own parser.
"""

from __future__ import annotations

import ast
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from stages.s3_ppo.config import PPOConfig

OPENRLHF_VERSION = "0.11.2"
ENTRY_MODULE = "openrlhf.cli.train_ppo_ray"
PROMPT_KEY = "input"  # the prompt dataset's column: a list of chat messages, rendered by OpenRLHF's chat template
VALUE_HEAD = "score"
ROLES = ("actor", "ref", "critic", "reward")


@dataclass(frozen=True)
class LaunchPaths:
    """Folders the job reads and writes; they must be visible at these paths on the cluster's nodes."""

    policy: Path
    prompts: Path  # JSONL, one {"id", PROMPT_KEY: [messages]} per prompt
    checkpoint: Path  # the trained actor is saved here (Hugging Face format)
    deepspeed_checkpoints: Path  # resumable DeepSpeed state
    tensorboard: Path
    reward_model: Path | None = None  # a reward checkpoint, or
    reward_url: str | None = None  # an RM server in the remote-RM schema


def to_argv(cfg: PPOConfig, paths: LaunchPaths, seed: int) -> list[str]:
    """The arguments for `python -m openrlhf.cli.train_ppo_ray` (without the interpreter and module)."""
    o = cfg.openrlhf
    flags: dict[str, object] = {"--actor.model_name_or_path": paths.policy}
    if paths.reward_url is not None:
        flags["--reward.remote_url"] = paths.reward_url
    else:
        flags["--reward.model_name_or_path"] = paths.reward_model
    if cfg.uses_critic:
        # The critic starts from the RM; with an RM server (other tokenizer) it starts from the policy.
        flags["--critic.model_name_or_path"] = paths.reward_model if paths.reward_url is None else paths.policy
    flags["--ds.value_head_prefix"] = VALUE_HEAD
    for role in ROLES:
        res = getattr(o, role)
        flags[f"--{role}.num_nodes"] = res.nodes
        flags[f"--{role}.num_gpus_per_node"] = res.gpus_per_node
    flags.update({
        "--vllm.num_engines": o.vllm_engines,
        "--vllm.tensor_parallel_size": o.vllm_tensor_parallel_size,
        "--vllm.gpu_memory_utilization": o.vllm_gpu_memory_utilization,
        "--vllm.enforce_eager": o.vllm_enforce_eager,
        "--train.colocate_actor_ref": o.colocate_actor_ref,
        "--train.colocate_critic_reward": o.colocate_critic_reward,
        "--train.colocate_all": o.colocate_all,
        "--data.prompt_dataset": paths.prompts,
        "--data.input_key": PROMPT_KEY,
        "--data.apply_chat_template": True,
        "--data.max_len": cfg.max_length_tokens,
        "--rollout.max_new_tokens": cfg.max_new_tokens,
        "--rollout.batch_size": cfg.prompts_per_step,
        "--rollout.n_samples_per_prompt": cfg.samples_per_prompt,
        "--rollout.micro_batch_size": o.micro_rollout_samples_per_gpu,
        "--rollout.temperature": cfg.temperature,
        "--rollout.top_p": cfg.top_p,
        "--train.batch_size": cfg.optimizer_step_samples,
        "--train.micro_batch_size": o.micro_train_samples_per_gpu,
        "--train.max_epochs": cfg.ppo_epochs,
        "--train.num_episodes": cfg.episodes,
        "--train.seed": seed,
        "--actor.adam.lr": cfg.actor_lr,
        "--critic.adam.lr": cfg.critic_lr,
        "--actor.lr_scheduler": "constant",  # the local backend's schedule too
        "--critic.lr_scheduler": "constant",
        "--actor.max_norm": cfg.max_grad_norm,
        "--critic.max_norm": cfg.max_grad_norm,
        "--actor.eps_clip": cfg.clip_eps,
        "--critic.value_clip": cfg.value_clip,
        "--actor.entropy_coef": 0,  # 0: entropy is logged, not optimized
        "--algo.advantage.estimator": cfg.estimator,
        "--algo.advantage.gamma": cfg.gamma,
        "--algo.advantage.lambd": cfg.gae_lambda,
        "--algo.kl.init_coef": cfg.kl_coef,
        "--algo.kl.estimator": cfg.kl_estimator,
        "--reward.clip_range": (-cfg.reward_clip, cfg.reward_clip),
        # Never --reward.normalize_enable: its mean/std buffers are corrupted on load in 0.11.2.
        "--ds.zero_stage": o.zero_stage,
        "--ds.param_dtype": o.param_dtype,
        "--ds.attn_implementation": o.attn_implementation,
        "--actor.gradient_checkpointing_enable": o.gradient_checkpointing,
        "--ds.adam_offload": o.adam_offload,
        "--ckpt.output_dir": paths.checkpoint,
        "--ckpt.path": paths.deepspeed_checkpoints,
        "--ckpt.load_enable": True,  # a resubmitted job continues from the last DeepSpeed checkpoint
        "--logger.tensorboard_dir": paths.tensorboard,
        "--logger.logging_steps": 1,
    })
    if o.checkpoint_every_steps is not None:
        flags["--ckpt.save_steps"] = o.checkpoint_every_steps
    argv: list[str] = []
    for flag, value in flags.items():
        if value is True:
            argv.append(flag)
        elif value is False:
            continue
        elif isinstance(value, tuple):
            argv += [flag, *(_text(v) for v in value)]
        else:
            argv += [flag, _text(value)]
    return argv


def _text(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def entrypoint(argv: list[str], python: str = "python") -> str:
    """The shell command of a Ray job running OpenRLHF's PPO with `argv`."""
    return shlex.join([python, "-m", ENTRY_MODULE, *argv])


def gpus_needed(cfg: PPOConfig, remote_reward: bool) -> dict[str, int]:
    """GPUs OpenRLHF asks Ray for, per group of roles that share GPUs (e.g. {"actor+ref": 8, "vllm": 4}).

    Mirrors `train_ppo_ray.train`: colocated roles share one placement group of the first role's size; vLLM
    engines take engines x tensor-parallel GPUs unless colocate_all folds them into the actor's group.
    """
    o = cfg.openrlhf
    groups: dict[str, int] = {}
    actor_group = ["actor"]
    if cfg.kl_coef > 0:
        if o.colocate_actor_ref or o.colocate_all:
            actor_group.append("ref")
        else:
            groups["ref"] = o.ref.gpus
    if o.colocate_all:
        actor_group.append("vllm")
    else:
        groups["vllm"] = o.vllm_engines * o.vllm_tensor_parallel_size
    late = (["critic"] if cfg.uses_critic else []) + ([] if remote_reward else ["reward"])
    if cfg.uses_critic and o.colocate_critic_reward:
        groups["+".join(late)] = o.critic.gpus
    elif o.colocate_all:
        actor_group += late
    else:
        groups.update({role: getattr(o, role).gpus for role in late})
    return {"+".join(actor_group): o.actor.gpus, **groups}


def gpus_per_node_needed(cfg: PPOConfig) -> int:
    """The most GPUs one role wants on a single node."""
    o = cfg.openrlhf
    return max(o.actor.gpus_per_node, o.ref.gpus_per_node, o.critic.gpus_per_node, o.reward.gpus_per_node,
               o.vllm_tensor_parallel_size)


# `✨ Global step 3: {'policy_loss': 0.1, ...}`: PPOTrainer.fit's log line, a Python dict repr.
_STEP_LINE = re.compile(r"Global step (\d+): (\{.*\})\s*$")
_METRICS = {  # OpenRLHF's name -> ours
    "rollout/reward_mean": "reward_mean",
    "rollout/reward_std": "reward_std",
    "kl": "kl",
    "entropy_loss": "entropy",
    "rollout/response_length_mean": "response_length",
    "rollout/truncated_rate": "truncated_rate",
    "policy_loss": "policy_loss",
    "critic_loss": "value_loss",
    "timing/step_total": "iteration_s",
    "timing/generation": "rollout_s",
    "timing/make_experience": "scoring_s",
    "timing/ppo_train": "train_s",
    "timing/broadcast": "weight_sync_s",
}


def parse_step_line(line: str) -> dict | None:
    """Our metrics record from one OpenRLHF step line, or None for any other line.

    `tokens_per_s` is the step's generated tokens over its generation time.
    """
    match = _STEP_LINE.search(line)
    if not match:
        return None
    try:
        # nan/inf are not literals; a non-finite metric is kept as None
        raw = ast.literal_eval(re.sub(r"-?\b(?:nan|inf)\b", "None", match.group(2)))
    except (ValueError, SyntaxError):
        return None
    record: dict = {"iteration": int(match.group(1)) - 1}
    for theirs, ours in _METRICS.items():
        if isinstance(raw.get(theirs), (int, float)):
            record[ours] = float(raw[theirs])
    samples, length, seconds = (raw.get("rollout/num_samples"), raw.get("rollout/response_length_mean"),
                                raw.get("timing/generation"))
    if all(isinstance(v, (int, float)) for v in (samples, length, seconds)) and seconds > 0:
        record["tokens_per_s"] = samples * length / seconds
    return {k: v for k, v in record.items() if not isinstance(v, float) or math.isfinite(v)}
