"""PPO arithmetic on hand-worked numbers (OpenRLHF parity on random tensors is in tests/contract)."""

import math

import pytest
import torch

from stages.s3_ppo import ppo_math as m

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # second response: 2 tokens, then padding


def test_kl_estimators():
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    d = math.log(2)
    assert m.approx_kl(logp, ref, "k1").item() == pytest.approx(d)
    assert m.approx_kl(logp, ref, "k2").item() == pytest.approx(d * d / 2)
    assert m.approx_kl(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + d)  # exp(-d) - 1 + d
    assert m.approx_kl(torch.tensor([[0.0]]), torch.tensor([[-50.0]]), "k1").item() == 10.0  # clipped
    with pytest.raises(ValueError, match="k4"):
        m.approx_kl(logp, ref, "k4")


def test_sequence_kl_sums_the_response_tokens_only():
    logp = torch.tensor([[math.log(0.5), math.log(0.5), 0.0], [math.log(0.25), 0.0, -3.0]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5), 0.0], [math.log(0.5), 0.0, 0.0]])
    d = math.log(2)
    # k1: row 1 = d + 0 + 0; row 2 = -d + 0, the padded third token (-3) is left out
    torch.testing.assert_close(m.sequence_kl(logp, ref, MASK, "k1"), torch.tensor([d, -d]))
    # k3 per token: exp(-d) - 1 + d; for -d: exp(d) - 1 - d
    torch.testing.assert_close(m.sequence_kl(logp, ref, MASK, "k3"), torch.tensor([0.5 - 1 + d, 2 - 1 - d]))


def test_shaped_rewards_put_the_score_on_the_last_response_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.0]])
    rewards = m.shaped_rewards(torch.tensor([2.0, 20.0]), kl, MASK, kl_coef=0.5, score_clip=10.0)
    expected = torch.tensor([[-0.05, -0.1, -0.15 + 2.0], [-0.2, -0.25 + 10.0, 0.0]])
    torch.testing.assert_close(rewards, expected)


def test_gae_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    adv, ret = m.gae(values, rewards, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # deltas: 0+2-1=1, 0+3-2=1, 1+0-3=-2; A2=-2, A1=1+0.5*-2=0, A0=1+0.5*0=1
    torch.testing.assert_close(adv, torch.tensor([[1.0, 0.0, -2.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.0, 2.0, 1.0]]))


def test_gae_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 9.0]])
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    adv, _ = m.gae(values, rewards, torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=1.0)
    # the padded value 9 and reward 5 are masked: A1 = 1 + 0 - 2 = -1, A0 = 0 + 2 - 1 + (-1) = 0
    torch.testing.assert_close(adv[:, :2], torch.tensor([[0.0, -1.0]]))


def test_discounted_returns():
    ret = m.discounted_returns(torch.tensor([[1.0, 0.0, 2.0]]), torch.ones(1, 3), gamma=0.5)
    torch.testing.assert_close(ret, torch.tensor([[1.5, 1.0, 2.0]]))


def test_group_baselines():
    scores = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    rloo = m.group_baseline(scores, 3, "rloo")
    torch.testing.assert_close(rloo, torch.tensor([1 - 2.5, 2 - 2.0, 3 - 1.5, 0.0, 0.0, 0.0]))
    grpo = m.group_baseline(scores, 3, "group_norm")
    torch.testing.assert_close(grpo[:3], torch.tensor([-1.0, 0.0, 1.0]))  # std of (1, 2, 3) is 1
    torch.testing.assert_close(grpo[3:], torch.zeros(3))
    assert m.group_baseline(scores, 3, "gae") is scores


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    loss, clipped = m.policy_loss(logp, old, adv, torch.ones(1, 2), clip_eps=0.2)
    # token 0: min(1.5, 1.2) = 1.2; token 1: min(-0.5, -0.8) = -0.8; loss = -(1.2 - 0.8) / 2
    assert loss.item() == pytest.approx(-0.2)
    assert clipped.item() == pytest.approx(1.0)
    half, _ = m.policy_loss(logp, old, adv, torch.ones(1, 2), clip_eps=0.2, num_tokens=4)
    assert half.item() == pytest.approx(-0.1)


def test_value_loss_is_pessimistically_clipped():
    old, returns = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[2.0, 0.9]])
    loss = m.value_loss(values, old, returns, torch.ones(1, 2), clip=0.5)
    # token 0: max((2-1)^2, (0.5-1)^2) = 1; token 1: max(0.01, (0.5-1)^2 = 0.25) = 0.25
    assert loss.item() == pytest.approx(0.5 * (1 + 0.25) / 2)


def test_whiten_and_entropy():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    out = m.whiten(x, torch.tensor([[1.0, 1.0, 0.0]]))
    torch.testing.assert_close(out[:, :2], torch.tensor([[-1.0, 1.0]]), atol=1e-6, rtol=0)
    assert m.entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("estimator", ["gae", "reinforce", "rloo", "group_norm"])
def test_every_estimator_gives_masked_finite_advantages(estimator):
    torch.manual_seed(0)
    b, t = 4, 3
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv, ret = m.advantages_and_returns(estimator, torch.randn(b), torch.randn(b, t) * 0.1, mask,
                                        torch.randn(b, t), kl_coef=0.1, samples_per_prompt=2, gamma=1.0, lam=0.95,
                                        score_clip=10.0)
    assert adv.shape == ret.shape == (b, t) and torch.isfinite(adv).all()
    if estimator in ("gae", "reinforce"):  # whitened over the response tokens
        assert m.masked_mean(adv, mask).item() == pytest.approx(0.0, abs=1e-6)
