"""Our argument list goes through OpenRLHF 0.11.2's own parser and post-processing (`train_ppo_ray`'s __main__),
and the namespace its `train()` would receive holds the recipe's values."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "flash_attn_standin"))  # OpenRLHF's models import flash_attn

from stages.s3_ppo.config import PPOConfig  # noqa: E402
from stages.s3_ppo.openrlhf_args import ENTRY_MODULE, LaunchPaths, to_argv  # noqa: E402

PATHS = LaunchPaths(policy=Path("/shared/models/policy"), prompts=Path("/shared/run/s3_ppo/v/prompts.jsonl"),
                    checkpoint=Path("/shared/run/s3_ppo/v/checkpoint"),
                    deepspeed_checkpoints=Path("/shared/run/s3_ppo/v/_work/deepspeed"),
                    tensorboard=Path("/shared/run/s3_ppo/v/tensorboard/openrlhf"),
                    reward_model=Path("/shared/run/s2_distill/v/checkpoint"))


class _Captured(Exception):
    def __init__(self, args):
        super().__init__("captured")
        self.namespace = args


def parse_with_openrlhf(argv: list[str], monkeypatch):
    """The hierarchized, validated namespace `train_ppo_ray.train(args)` receives for `argv`."""
    import openrlhf.utils
    import ray

    def capture(args):  # train()'s first call after its Ray check
        raise _Captured(args)

    monkeypatch.setattr(openrlhf.utils, "get_strategy", capture)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # train() must not start a Ray
    monkeypatch.setattr(sys, "argv", [ENTRY_MODULE, *argv])
    with pytest.raises(_Captured) as caught:
        runpy.run_module(ENTRY_MODULE, run_name="__main__")
    return caught.value.namespace


def test_gae_with_a_local_reward_model(monkeypatch):
    cfg = PPOConfig(
        policy="policy", backend="openrlhf", estimator="gae", prompts_per_step=64, samples_per_prompt=2,
        samples_per_optimizer_step=32, ppo_epochs=2, episodes=3, max_new_tokens=512, max_length_tokens=2048,
        temperature=0.9, top_p=0.95, kl_coef=0.02, kl_estimator="k3", clip_eps=0.25, value_clip=0.4, gamma=0.99,
        gae_lambda=0.9, reward_clip=6.0, actor_lr=5e-7, critic_lr=4e-6, max_grad_norm=0.8,
        openrlhf={"actor": {"nodes": 2, "gpus_per_node": 4}, "ref": {"nodes": 2, "gpus_per_node": 4},
                  "critic": {"gpus_per_node": 2}, "reward": {"gpus_per_node": 2}, "vllm_engines": 2,
                  "vllm_tensor_parallel_size": 2, "vllm_gpu_memory_utilization": 0.6, "colocate_actor_ref": True,
                  "colocate_critic_reward": True, "zero_stage": 3, "attn_implementation": "sdpa",
                  "gradient_checkpointing": True, "micro_rollout_samples_per_gpu": 4,
                  "micro_train_samples_per_gpu": 2, "checkpoint_every_steps": 10})
    args = parse_with_openrlhf(to_argv(cfg, PATHS, seed=11), monkeypatch)
    o = cfg.openrlhf

    assert args.actor.model_name_or_path == str(PATHS.policy)
    assert args.reward.model_name_or_path == args.critic.model_name_or_path == str(PATHS.reward_model)
    assert args.reward.remote_url is None and args.ds.value_head_prefix == "score"
    assert args.reward.normalize_enable is False
    for role in ("actor", "ref", "critic", "reward"):
        assert (getattr(args, role).num_nodes, getattr(args, role).num_gpus_per_node) == \
            (getattr(o, role).nodes, getattr(o, role).gpus_per_node)
    assert (args.vllm.num_engines, args.vllm.tensor_parallel_size, args.vllm.gpu_memory_utilization) == (2, 2, 0.6)
    assert args.train.colocate_actor_ref and args.train.colocate_critic_reward and not args.train.colocate_all
    assert (args.data.prompt_dataset, args.data.input_key, args.data.apply_chat_template) == \
        (str(PATHS.prompts), "input", True)
    assert (args.data.max_len, args.rollout.max_new_tokens) == (2048, 512)
    assert (args.rollout.batch_size, args.rollout.n_samples_per_prompt, args.rollout.micro_batch_size) == (64, 2, 4)
    assert (args.rollout.temperature, args.rollout.top_p) == (0.9, 0.95)
    assert (args.train.batch_size, args.train.micro_batch_size, args.train.max_epochs) == (32, 2, 2)
    assert (args.train.num_episodes, args.train.seed) == (3, 11)
    assert (args.actor.adam.lr, args.critic.adam.lr) == (5e-7, 4e-6)
    assert (args.actor.max_norm, args.critic.max_norm) == (0.8, 0.8)
    assert args.actor.lr_scheduler == args.critic.lr_scheduler == "constant"
    assert args.actor.eps_clip_low_high == (0.25, 0.25) and args.critic.value_clip == 0.4
    assert (args.algo.kl.init_coef, args.algo.kl.estimator) == (0.02, "k3")
    assert (args.algo.advantage.estimator, args.algo.advantage.gamma, args.algo.advantage.lambd) == ("gae", 0.99, 0.9)
    assert list(args.reward.clip_range) == [-6.0, 6.0]
    assert (args.ds.zero_stage, args.ds.param_dtype, args.ds.attn_implementation) == (3, "bf16", "sdpa")
    assert args.actor.gradient_checkpointing_enable and args.actor.entropy_coef == 0
    assert (args.ckpt.output_dir, args.ckpt.path) == (str(PATHS.checkpoint), str(PATHS.deepspeed_checkpoints))
    assert args.ckpt.load_enable and args.ckpt.save_steps == 10
    assert args.logger.tensorboard_dir == str(PATHS.tensorboard)


def test_group_estimator_with_a_reward_server(monkeypatch):
    url = "http://10.0.0.7:5000/get_reward"
    cfg = PPOConfig(policy="policy", backend="openrlhf", estimator="group_norm", prompts_per_step=8,
                    samples_per_prompt=4, kl_coef=0.0, openrlhf={"colocate_all": True})
    paths = LaunchPaths(**{**PATHS.__dict__, "reward_model": None, "reward_url": url})
    args = parse_with_openrlhf(to_argv(cfg, paths, seed=0), monkeypatch)
    assert args.reward.remote_url == [url] and args.reward.model_name_or_path is None
    assert args.critic.model_name_or_path is None  # critic-free
    assert (args.algo.advantage.estimator, args.rollout.n_samples_per_prompt) == ("group_norm", 4)
    assert args.train.colocate_all and args.algo.kl.init_coef == 0.0
    assert args.train.batch_size == 32  # default: the whole rollout in one optimizer step


def test_the_gpu_smoke_recipe_colocates_every_role_on_one_gpu(monkeypatch):
    """recipes/gpu_smoke.yaml's PPO section, as ray_cluster/gpu_smoke.sh launches it, through OpenRLHF's parser."""
    from rlhf_stack.app.recipe import load_recipe
    from stages.s3_ppo.openrlhf_args import gpus_needed

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "gpu_smoke.yaml")
    cfg = recipe.section("ppo")
    assert gpus_needed(cfg, remote_reward=False) == {"actor+ref+vllm+critic+reward": 1}
    args = parse_with_openrlhf(to_argv(cfg, PATHS, seed=recipe.seed), monkeypatch)
    assert args.train.colocate_all
    for role in ("actor", "ref", "critic", "reward"):
        assert (getattr(args, role).num_nodes, getattr(args, role).num_gpus_per_node) == (1, 1)
    assert (args.vllm.num_engines, args.vllm.tensor_parallel_size, args.vllm.gpu_memory_utilization) == (1, 1, 0.3)
    assert args.vllm.enforce_eager
    assert (args.ds.zero_stage, args.ds.param_dtype, args.ds.attn_implementation) == (2, "bf16", "sdpa")
    assert args.reward.model_name_or_path == args.critic.model_name_or_path == str(PATHS.reward_model)
    assert (args.rollout.batch_size, args.rollout.n_samples_per_prompt, args.rollout.max_new_tokens) == (8, 2, 64)
    assert args.algo.advantage.estimator == "gae" and args.train.num_episodes == 1
