"""The local backend computes what OpenRLHF 0.11.2 computes: KL, shaped rewards, advantages and returns for every
estimator, the policy and value losses (random tensors), and the log-probs, values and rewards of one packed batch
(tiny models, OpenRLHF's own model classes)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "flash_attn_standin"))  # OpenRLHF's models import flash_attn

from openrlhf.models import Actor, get_llm_for_sequence_regression  # noqa: E402
from openrlhf.models.loss import PolicyLoss, ValueLoss  # noqa: E402
from openrlhf.models.utils import compute_approx_kl, compute_reward  # noqa: E402
from openrlhf.trainer.ppo_utils.experience import Experience  # noqa: E402
from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker  # noqa: E402

from stages.s3_ppo import ppo_math  # noqa: E402
from stages.s3_ppo.policy_forward import action_logprobs, critic_values  # noqa: E402
from stages.s3_ppo.rollout import pack  # noqa: E402
from stages.s3_ppo.value_models import load_value_model, sequence_rewards, write_scaled_reward_model

B, T, K = 8, 6, 2  # sequences, response positions, samples per prompt


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 3, 1, 6, 5, 2, 4, 6])
    mask = (torch.arange(T) < lengths.unsqueeze(1)).float()
    return SimpleNamespace(
        mask=mask,
        logp=-torch.rand(B, T, generator=g) * 3,
        ref_logp=-torch.rand(B, T, generator=g) * 3,
        old_logp=-torch.rand(B, T, generator=g) * 3,
        values=torch.randn(B, T, generator=g),
        old_values=torch.randn(B, T, generator=g),
        returns=torch.randn(B, T, generator=g),
        advantages=torch.randn(B, T, generator=g),
        scores=torch.randn(B, generator=g) * 8,  # some beyond the clip range of 10 after scaling
    )


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl(batch, estimator):
    torch.testing.assert_close(ppo_math.approx_kl(batch.logp, batch.ref_logp, estimator),
                               compute_approx_kl(batch.logp, batch.ref_logp, kl_estimator=estimator))


def test_shaped_rewards(batch):
    kl = compute_approx_kl(batch.logp, batch.ref_logp, kl_estimator="k1")
    ours = ppo_math.shaped_rewards(batch.scores * 2, kl, batch.mask, kl_coef=0.05, score_clip=10.0)
    theirs = compute_reward(batch.scores * 2, 0.05, kl, action_mask=batch.mask, reward_clip_range=(-10, 10))
    torch.testing.assert_close(ours * batch.mask, theirs * batch.mask)


def _openrlhf_maker(estimator: str, kl_coef: float, gamma: float, lam: float) -> RemoteExperienceMaker:
    args = SimpleNamespace(
        algo=SimpleNamespace(advantage=SimpleNamespace(estimator=estimator, gamma=gamma, lambd=lam, no_std_norm=False)),
        rollout=SimpleNamespace(n_samples_per_prompt=K),
        reward=SimpleNamespace(clip_range=(-10, 10), overlong_buffer_len=None, stop_properly_penalty_coef=None),
    )
    return RemoteExperienceMaker(None, None, None, None, SimpleNamespace(value=kl_coef),
                                 SimpleNamespace(args=args), tokenizer=None)


@pytest.mark.parametrize("estimator", ["gae", "reinforce", "rloo", "group_norm"])
def test_advantages_and_returns(batch, estimator):
    gamma, lam, kl_coef = 0.99, 0.95, 0.05
    kl = compute_approx_kl(batch.logp, batch.ref_logp, kl_estimator="k1")
    ours_adv, ours_ret = ppo_math.advantages_and_returns(
        estimator, batch.scores, kl, batch.mask, batch.values, kl_coef=kl_coef, samples_per_prompt=K, gamma=gamma,
        lam=lam, score_clip=10.0)
    # OpenRLHF's maker on the same numbers, split into two experiences as its actors would hand them over
    experiences = []
    for rows in (slice(0, 4), slice(4, 8)):
        experiences.append(Experience(rewards=batch.scores[rows].clone(), kl=kl[rows], action_mask=batch.mask[rows].bool(),
                                      values=batch.values[rows], index=list(range(B))[rows], info={}))
    _openrlhf_maker(estimator, kl_coef, gamma, lam).compute_advantages_and_returns(experiences)
    theirs_adv = torch.cat([e.advantages for e in experiences])
    theirs_ret = torch.cat([e.returns for e in experiences])
    torch.testing.assert_close(ours_adv * batch.mask, theirs_adv * batch.mask, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_ret * batch.mask, theirs_ret * batch.mask, rtol=1e-5, atol=1e-5)


def test_gae_alone(batch):
    rewards = torch.randn(B, T, generator=torch.Generator().manual_seed(1))
    maker = _openrlhf_maker("gae", 0.0, 1.0, 1.0)
    for gamma, lam in [(1.0, 1.0), (0.9, 0.8)]:
        theirs = maker.get_advantages_and_returns(batch.values, rewards, batch.mask, gamma, lam)
        ours = ppo_math.gae(batch.values, rewards, batch.mask, gamma, lam)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a * batch.mask, b * batch.mask)
    torch.testing.assert_close(ppo_math.discounted_returns(rewards, batch.mask, 0.9),
                               maker.get_cumulative_returns(rewards, batch.mask, 0.9))


def test_policy_and_value_losses(batch):
    ours, clip_fraction = ppo_math.policy_loss(batch.logp, batch.old_logp, batch.advantages, batch.mask, 0.2)
    theirs, their_clip, *_ = PolicyLoss(0.2, 0.2)(batch.logp, batch.old_logp, batch.advantages, batch.mask)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(clip_fraction, their_clip)
    for clip in (0.5, None):
        torch.testing.assert_close(
            ppo_math.value_loss(batch.values, batch.old_values, batch.returns, batch.mask, clip),
            ValueLoss(clip)(batch.values, batch.old_values, batch.returns, batch.mask))


@pytest.fixture(scope="module")
def packed(tiny_model):
    """A packed batch in the local backend's layout: left-padded prompts, right-padded responses (ragged)."""
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(4, 2000, (n,), generator=g).tolist() for n in (5, 9, 7)]
    responses = [torch.randint(4, 2000, (n,), generator=g).tolist() for n in (4, 1, 6)]
    responses[0].append(2)  # ends on EOS
    return pack(prompts, responses, ["stop", "length", "length"], pad_id=3)


def test_policy_logprobs_match_openrlhfs_actor(tiny_model, packed):
    from transformers import AutoModelForCausalLM

    actor = Actor(str(tiny_model), attn_implementation="eager", param_dtype="bf16", temperature=0.7).eval()
    ours = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16, attn_implementation="eager").eval()
    T_ = packed.action_mask.size(1)
    with torch.no_grad():
        mine, _ = action_logprobs(ours, packed.sequences, packed.attention_mask, T_, temperature=0.7)
        theirs = actor(packed.sequences, packed.action_mask, packed.attention_mask)
    mask = packed.action_mask.float()
    torch.testing.assert_close(mine * mask, theirs * mask, rtol=0, atol=1e-5)


def test_rewards_and_values_match_openrlhfs_loader(reward_checkpoint, packed):
    kwargs = dict(param_dtype="bf16", attn_implementation="eager")
    rm = get_llm_for_sequence_regression(str(reward_checkpoint), "reward", **kwargs).eval()
    critic = get_llm_for_sequence_regression(str(reward_checkpoint), "critic", **kwargs).eval()
    ours = load_value_model(reward_checkpoint, dtype=torch.bfloat16, device=torch.device("cpu")).eval()
    ours.set_attn_implementation("eager")  # as OpenRLHF's; in bf16 sdpa and eager differ by a few ulps
    T_ = packed.action_mask.size(1)
    with torch.no_grad():
        torch.testing.assert_close(sequence_rewards(ours, packed.sequences, packed.attention_mask),
                                   rm(packed.sequences, packed.attention_mask).float(), rtol=0, atol=1e-6)
        mask = packed.action_mask.float()
        theirs = critic(packed.sequences, packed.action_mask.bool(), packed.attention_mask).float()
        torch.testing.assert_close(critic_values(ours, packed.sequences, packed.attention_mask, T_) * mask,
                                   theirs * mask, rtol=0, atol=1e-6)


def test_a_scaled_reward_model_stays_scaled_through_openrlhfs_loader(reward_checkpoint, packed, tmp_path):
    scaled = write_scaled_reward_model(reward_checkpoint, tmp_path / "scaled", 0.25)
    kwargs = dict(param_dtype="bf16", attn_implementation="eager")
    with torch.no_grad():
        base = get_llm_for_sequence_regression(str(reward_checkpoint), "reward", **kwargs).eval()
        small = get_llm_for_sequence_regression(str(scaled), "reward", **kwargs).eval()
        torch.testing.assert_close(small(packed.sequences, packed.attention_mask).float(),
                                   0.25 * base(packed.sequences, packed.attention_mask).float(), rtol=0, atol=1e-6)
