"""The local PPO backend on tiny models: it learns, it resumes exactly, and the stage writes a policy artifact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.app.runner import run_recipe
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.gold import VerifierGold
from stages.s3_ppo.local_backend import LocalPPO, RewardSource
from stages.s3_ppo.metrics import MetricsLog, read_metrics
from test_s3_support import build_frequency_rm, publish_reward_models
from stages.s3_ppo.value_models import check_reward_checkpoint
from stages.sandbox import NoiseConfig, Verifier, load_sandbox_prompts, write_sandbox_prompts

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [json.loads(line)["prompt"] for line in (REPO / "recipes/data/tiny_prompts.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def frequency_rm(tiny_policy, tmp_path_factory) -> Path:
    return build_frequency_rm(tiny_policy, tmp_path_factory.mktemp("rm") / "checkpoint")


def _train(cfg: PPOConfig, policy: Path, rm: Path, out: Path, on_iteration=None) -> LocalPPO:
    trainer = LocalPPO(cfg, policy_dir=policy, reward=RewardSource(rm, None), prompts=PROMPTS,
                       work_dir=out / "_work", seed=0, cluster=None)
    with MetricsLog(out, trainer.start_iteration) as metrics:
        trainer.run(metrics, on_iteration=on_iteration)
    return trainer


@pytest.mark.parametrize("estimator, samples_per_prompt", [("gae", 1), ("group_norm", 2)])
def test_mean_reward_rises_and_kl_stays_finite(tiny_policy, frequency_rm, tmp_path, estimator, samples_per_prompt):
    # Every iteration samples all 24 prompts, so iterations differ only by the policy.
    cfg = PPOConfig(policy="policy", estimator=estimator, prompts_per_step=24, samples_per_prompt=samples_per_prompt,
                    samples_per_optimizer_step=8, ppo_epochs=2, max_new_tokens=16, episodes=8, kl_coef=0.01,
                    actor_lr=1e-3, critic_lr=1e-3)
    _train(cfg, tiny_policy, frequency_rm, tmp_path)
    records = read_metrics(tmp_path)
    assert [r["iteration"] for r in records] == list(range(8))
    rewards = [r["reward_mean"] for r in records]
    spread = records[0]["reward_std"] / math.sqrt(24 * samples_per_prompt)  # standard error of one iteration's mean
    assert sum(rewards[-3:]) / 3 > rewards[0] + 2 * spread, rewards
    assert all(math.isfinite(r["kl"]) and math.isfinite(r["policy_loss"]) for r in records)
    assert records[-1]["kl"] > 0  # the policy moved away from the reference, by a finite amount
    # the sequence KL to the reference (summed over response tokens): k3 terms are non-negative
    assert all(r["kl_seq_k3"] >= 0 and math.isfinite(r["kl_seq_k1"]) for r in records)
    assert records[-1]["kl_seq_k3"] > 0
    assert ("value_loss" in records[-1]) == (estimator == "gae")


@pytest.mark.parametrize("flip_prob, estimator", [(0.0, "reinforce"), (1.0, "gae")])
def test_direct_judge_rewards_are_the_noisy_teachers_scores(tiny_policy, tmp_path, flip_prob, estimator):
    """Variant direct_judge: each rollout's reward is the teacher's pointwise score of its text. Without Gaussian
    noise that is the exact true score (flip 0) or its mirror 11 - score (flip 1), per sample, so the iteration's
    mean reward must equal the gold mean (or 11 minus it) that the exact verifier logs for the same rollouts."""
    prompts_file, _ = write_sandbox_prompts(tmp_path / "sandbox.jsonl", seed=0, count=8)
    sandbox = load_sandbox_prompts(prompts_file)
    ids = list(sandbox)
    noise = NoiseConfig(flip_prob=flip_prob, score_sigma_points=0.0, position_bias_points=2.0)  # no pointwise bias
    judge = Verifier.from_prompt_file(prompts_file, noise, seed=3)
    cfg = PPOConfig(policy="policy", estimator=estimator, prompts_per_step=4, max_new_tokens=12, episodes=2,
                    actor_lr=1e-3, critic_lr=1e-3)
    trainer = LocalPPO(cfg, policy_dir=tiny_policy, reward=RewardSource(judge=judge, prompt_ids=ids),
                       prompts=[p.prompt for p in sandbox.values()], work_dir=tmp_path / "_work", seed=0,
                       cluster=None, gold=VerifierGold(Verifier.from_prompt_file(prompts_file), ids))
    with MetricsLog(tmp_path, 0) as metrics:
        trainer.run(metrics)
    records = read_metrics(tmp_path)
    assert len(records) == 4
    for r in records:
        assert r["reward_mean"] == pytest.approx(11 - r["gold_mean"] if flip_prob else r["gold_mean"], abs=1e-5)


def test_a_reward_source_is_exactly_one_thing(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        RewardSource(checkpoint=tmp_path, url="http://127.0.0.1:5000/get_reward")
    with pytest.raises(ValueError, match="prompt ids"):
        RewardSource(judge=Verifier({}))


def test_a_killed_run_resumes_where_it_stopped(tiny_policy, frequency_rm, tmp_path):
    cfg = PPOConfig(policy="policy", prompts_per_step=6, samples_per_optimizer_step=3, max_new_tokens=8,
                    episodes=1, actor_lr=1e-3, critic_lr=1e-3, local={"save_every_iterations": 2})
    whole = _train(cfg, tiny_policy, frequency_rm, tmp_path / "whole")

    def kill_after_iteration_2(iteration, record):
        if iteration == 2:  # its state was saved after iteration 1: iteration 2 is redone
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tiny_policy, frequency_rm, tmp_path / "killed", on_iteration=kill_after_iteration_2)
    resumed = _train(cfg, tiny_policy, frequency_rm, tmp_path / "killed")

    assert resumed.start_iteration == 2
    assert [r["iteration"] for r in read_metrics(tmp_path / "killed")] == [0, 1, 2, 3]
    assert ([r["reward_mean"] for r in read_metrics(tmp_path / "killed")]
            == [r["reward_mean"] for r in read_metrics(tmp_path / "whole")])
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b)


@pytest.fixture
def run_dir(tmp_path, tiny_policy, frequency_rm) -> Path:
    publish_reward_models(tmp_path, {"binary_bt": frequency_rm})
    return tmp_path


def test_stage_publishes_a_policy_and_skips_when_current(run_dir):
    from transformers import AutoModelForCausalLM

    overrides = [f"run_dir={run_dir}", "ppo.variants=[binary_bt]"]
    outcomes = run_recipe(REPO / "recipes/tiny.yaml", overrides, only="ppo")
    folder = run_dir / "s3_ppo/binary_bt"
    assert outcomes == {"s3_ppo/binary_bt": "ran"}
    manifest = read_manifest(folder)
    assert manifest.kind == "policy" and manifest.summary["backend"] == "local"
    assert manifest.summary["iterations"] >= 1
    records = read_metrics(folder)
    assert len(records) == manifest.summary["iterations"]
    assert {"iteration", "reward_mean", "kl", "entropy", "response_length", "policy_loss", "value_loss",
            "tokens_per_s"} <= records[0].keys()
    assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    policy = AutoModelForCausalLM.from_pretrained(folder / "checkpoint")
    assert policy.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, do_sample=False).shape == (1, 5)

    assert run_recipe(REPO / "recipes/tiny.yaml", overrides, only="ppo") == {"s3_ppo/binary_bt": "skipped"}


def test_a_reward_model_with_another_tokenizer_is_refused_before_training(run_dir, frequency_rm):
    from transformers import AutoTokenizer

    checkpoint = run_dir / "other_tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(frequency_rm)
    tokenizer.add_tokens(["<|tool|>"])
    import shutil

    shutil.copytree(frequency_rm, checkpoint)
    tokenizer.save_pretrained(checkpoint)
    publish_reward_models(run_dir, {"binary_bt": checkpoint})

    with pytest.raises(ArtifactError, match=r"does not share the policy's tokenizer.*vocabularies differ.*"
                                            r"rlhf-stack serve-rm .*ppo\.reward_urls\.binary_bt"):
        run_recipe(REPO / "recipes/tiny.yaml", [f"run_dir={run_dir}", "ppo.variants=[binary_bt]"], only="ppo")
    assert not (run_dir / "s3_ppo/binary_bt/checkpoint").exists()


def test_reward_checkpoints_without_the_contract_head_are_refused(tiny_policy, frequency_rm, tmp_path):
    import shutil

    from transformers import AutoModelForSequenceClassification

    check_reward_checkpoint(frequency_rm)
    with pytest.raises(ArtifactError, match="no 'score.weight' tensor: its value head was never trained"):
        check_reward_checkpoint(tiny_policy)  # a causal LM: loaders would invent a random head
    two = AutoModelForSequenceClassification.from_pretrained(tiny_policy, num_labels=2)
    two.save_pretrained(tmp_path / "two")
    with pytest.raises(ArtifactError, match=r"shape \[2, 128\], expected \[1, 128\]"):
        check_reward_checkpoint(tmp_path / "two")
    shutil.copytree(frequency_rm, tmp_path / "prefix")
    config = json.loads((tmp_path / "prefix/config.json").read_text())
    (tmp_path / "prefix/config.json").write_text(json.dumps({**config, "value_head_prefix": "value_head"}))
    with pytest.raises(ArtifactError, match="value_head_prefix is 'value_head'"):
        check_reward_checkpoint(tmp_path / "prefix")
