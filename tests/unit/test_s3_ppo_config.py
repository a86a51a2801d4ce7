"""The ppo section's rules, the OpenRLHF argument list, its GPU arithmetic and its log parsing."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from stages.s3_ppo import stage as ppo_stage
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.openrlhf_args import LaunchPaths, gpus_needed, parse_step_line, to_argv
from stages.s3_ppo.openrlhf_backend import dashboard_url, merge_runtime_envs
from rlhf_stack.core.sections import ClusterConfig

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
SANDBOX = TINY.with_name("sandbox_tiny.yaml")
PATHS = LaunchPaths(policy=Path("/m/policy"), prompts=Path("/r/prompts.jsonl"), checkpoint=Path("/r/checkpoint"),
                    deepspeed_checkpoints=Path("/r/_work/ds"), tensorboard=Path("/r/tb"), reward_model=Path("/r/rm"))


def ppo(**kw) -> PPOConfig:
    return PPOConfig(policy="policy", **kw)


@pytest.mark.parametrize("kw, message", [
    ({"estimator": "rloo"}, "samples_per_prompt must be at least 2"),
    ({"prompts_per_step": 4, "samples_per_optimizer_step": 3}, "must divide the samples of a rollout"),
    ({"max_new_tokens": 64, "max_length_tokens": 64}, "must be below max_length_tokens"),
    ({"openrlhf": {"colocate_all": True, "vllm_engines": 2}}, "must equal actor.nodes x actor.gpus_per_node"),
    ({"openrlhf": {"colocate_actor_ref": True, "ref": {"gpus_per_node": 2}}}, "colocate_actor_ref puts actor and ref"),
    ({"max_length_tokens": 2048, "local": {"rollout_engine": {"backend": "vllm", "max_model_len": 1024}}},
     r"max_model_len \(1024\) must hold max_length_tokens \(2048\)"),
])
def test_inconsistent_settings_are_refused(kw, message):
    with pytest.raises(ValidationError, match=message):
        ppo(**kw)


def test_cross_section_rules_name_the_key_and_a_fix():
    with pytest.raises(RecipeError) as err:
        load_recipe(TINY, ["ppo.variants=[binary_btt]", "ppo.backend=openrlhf", "ppo.whiten_rewards=true",
                           "ppo.reward_urls={nope: http://127.0.0.1:1}", "ppo.local.rollout_engine.backend=openai",
                           "ppo.local.rollout_engine.base_url=http://x"])
    text = str(err.value)
    assert "ppo.variants.0: 'binary_btt' is not a distill variant (did you mean 'binary_bt'?)" in text
    assert "ppo.reward_urls.nope: not a variant this stage trains" in text
    assert "ppo.whiten_rewards: the openrlhf backend cannot whiten rewards" in text
    assert "ppo.local.rollout_engine.backend: 'openai' cannot serve the policy" in text


def test_direct_judge_is_a_policy_without_an_rm_and_needs_the_sandbox():
    recipe = load_recipe(SANDBOX, ["ppo.variants=[binary_bt, direct_judge]"])
    jobs = {j.folder: j for j in ppo_stage.jobs(recipe)}
    assert jobs["s3_ppo/binary_bt"].inputs == ("s2_distill/binary_bt",)
    assert jobs["s3_ppo/direct_judge"].inputs == ()  # no RM to wait for
    assert jobs["s3_ppo/direct_judge"].key["judge_noise"] == recipe.synthesize.verifier.noise.model_dump(mode="json")
    noisier = load_recipe(SANDBOX, ["ppo.variants=[direct_judge]", "synthesize.verifier.noise.flip_prob=0.4"])
    assert ppo_stage.jobs(noisier)[0].key != jobs["s3_ppo/direct_judge"].key  # the teacher's noise is its reward

    with pytest.raises(RecipeError) as err:
        load_recipe(TINY, ["ppo.variants=[direct_judge]"])
    assert "ppo.variants.0: 'direct_judge' rewards rollouts with the sandbox teacher, and synthesize.verifier is " \
           "not configured" in str(err.value)
    with pytest.raises(RecipeError) as err:
        load_recipe(SANDBOX, ["ppo.variants=[direct_judge]", "ppo.backend=openrlhf",
                              "ppo.reward_urls={direct_judge: http://127.0.0.1:1}"])
    assert "ppo.variants.0: 'direct_judge' runs only on the local backend" in str(err.value)
    assert "ppo.reward_urls.direct_judge: the direct judge needs no RM server" in str(err.value)
    with pytest.raises(RecipeError, match="distill.variants.direct_judge: the name is reserved"):
        load_recipe(SANDBOX, ["distill.variants.direct_judge={pairs: initial, margin: none, objective: bt, "
                                      "sft_weight: 0, kl_weight: 0}"])


def test_argv_carries_the_recipe_values():
    cfg = ppo(estimator="gae", prompts_per_step=16, samples_per_prompt=2, samples_per_optimizer_step=8,
              kl_coef=0.02, reward_clip=5.0, openrlhf={"vllm_engines": 2, "actor": {"nodes": 2, "gpus_per_node": 4},
                                                      "colocate_actor_ref": True, "ref": {"nodes": 2, "gpus_per_node": 4}})
    argv = to_argv(cfg, PATHS, seed=7)
    flags = dict(zip(argv[::2], argv[1::2]))
    assert argv.count("--train.colocate_actor_ref") == 1 and "--train.colocate_all" not in argv
    assert flags["--actor.model_name_or_path"] == "/m/policy"
    assert flags["--reward.model_name_or_path"] == flags["--critic.model_name_or_path"] == "/r/rm"
    assert flags["--rollout.batch_size"] == "16" and flags["--rollout.n_samples_per_prompt"] == "2"
    assert flags["--algo.kl.init_coef"] == "0.02" and flags["--train.seed"] == "7"
    assert argv[argv.index("--reward.clip_range") + 1: argv.index("--reward.clip_range") + 3] == ["-5.0", "5.0"]
    assert not any("normalize" in a for a in argv)


def test_critic_free_and_remote_reward_argv():
    cfg = ppo(estimator="rloo", samples_per_prompt=4)
    argv = to_argv(cfg, LaunchPaths(**{**PATHS.__dict__, "reward_model": None, "reward_url": "http://h:5000/get_reward"}),
                   seed=0)
    assert "--critic.model_name_or_path" not in argv and "--reward.model_name_or_path" not in argv
    assert argv[argv.index("--reward.remote_url") + 1] == "http://h:5000/get_reward"


def test_gpus_needed_follows_colocation():
    plain = ppo(openrlhf={"actor": {"gpus_per_node": 4}, "ref": {"gpus_per_node": 2}, "critic": {"gpus_per_node": 2},
                          "reward": {"gpus_per_node": 1}, "vllm_engines": 2, "vllm_tensor_parallel_size": 2})
    assert gpus_needed(plain, remote_reward=False) == {"actor": 4, "ref": 2, "vllm": 4, "critic": 2, "reward": 1}
    assert gpus_needed(plain.model_copy(update={"kl_coef": 0.0}), remote_reward=True) == \
        {"actor": 4, "vllm": 4, "critic": 2}
    shared = ppo(openrlhf={"colocate_actor_ref": True, "colocate_critic_reward": True, "actor": {"gpus_per_node": 4},
                           "ref": {"gpus_per_node": 4}, "vllm_engines": 1})
    assert gpus_needed(shared, remote_reward=False) == {"actor+ref": 4, "vllm": 1, "critic+reward": 1}
    hybrid = ppo(estimator="group_norm", samples_per_prompt=2,
                 openrlhf={"colocate_all": True, **{r: {"gpus_per_node": 8} for r in ("actor", "ref", "critic", "reward")},
                           "vllm_engines": 4, "vllm_tensor_parallel_size": 2})
    assert gpus_needed(hybrid, remote_reward=False) == {"actor+ref+vllm+reward": 8}


def test_step_lines_become_metric_records():
    status = {"policy_loss": -0.01, "critic_loss": 0.5, "kl": 0.002, "entropy_loss": 2.5, "timing/generation": 4.0,
              "timing/step_total": 10.0, "rollout/reward_mean": 1.25, "rollout/num_samples": 32.0,
              "rollout/response_length_mean": 100.0, "rollout/truncated_rate": float("nan"),
              "timing/make_experience": 3.0, "timing/ppo_train": 2.5, "timing/broadcast": 0.5}
    line = f"[2026-01-01 00:00:00] INFO ✨ Global step 3: {status}"  # as PPOTrainer.fit logs it
    record = parse_step_line(line)
    assert record == {"iteration": 2, "reward_mean": 1.25, "kl": 0.002, "entropy": 2.5, "response_length": 100.0,
                      "policy_loss": -0.01, "value_loss": 0.5, "iteration_s": 10.0, "rollout_s": 4.0,
                      "scoring_s": 3.0, "train_s": 2.5, "weight_sync_s": 0.5, "tokens_per_s": 800.0}
    assert parse_step_line("Episode [1/1]: 50%") is None


def test_dashboard_address_and_runtime_env():
    assert dashboard_url(ClusterConfig(address="10.0.0.5:6379"), None) == "http://10.0.0.5:8265"
    assert dashboard_url(ClusterConfig(address="ray://head:10001"), None) == "http://head:8265"
    assert dashboard_url(ClusterConfig(address="10.0.0.5:6379"), "http://x:1") == "http://x:1"
    merged = merge_runtime_envs({"pip": ["a"], "env_vars": {"A": "1", "B": "1"}}, {"env_vars": {"B": "2"}})
    assert merged == {"pip": ["a"], "env_vars": {"A": "1", "B": "2"}}
