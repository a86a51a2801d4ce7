"""The arithmetic of PPO and its critic-free relatives, as pure tensor functions.

Shapes: `b` sequences, `t` response (action) positions. `mask` [b, t] is 1 on response tokens, 0 on padding.
Conventions follow OpenRLHF 0.11.2 so a recipe gives the same algorithm on either backend (the contract tests
compare these functions with OpenRLHF's on random tensors).
"""

from __future__ import annotations

import torch

KL_BOUND = 10.0  # per-token KL estimates are clipped: one wild token must not dominate the shaped reward


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` where `mask` is 1 (over `dim`, or over everything)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def approx_kl(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens' log-probs (Schulman's k1/k2/k3).

    Args:
        logp: [b, t] log-probs of the sampled tokens under the policy.
        ref_logp: [b, t] the same under the reference model.
        estimator: "k1" (log-ratio, unbiased, can be negative), "k2" (half squared log-ratio) or "k3"
            (exp(-d) - 1 + d, unbiased and non-negative). http://joschu.net/blog/kl-approx.html

    Returns:
        [b, t] float32 estimates, clipped to +-KL_BOUND.
    """
    d = logp.float() - ref_logp.float()
    if estimator == "k1":
        kl = d
    elif estimator == "k2":
        kl = 0.5 * d.square()
    elif estimator == "k3":
        d = d.clamp(min=-KL_BOUND)  # exp(-d) would overflow far below the final clip
        kl = torch.expm1(-d) + d
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; use k1, k2 or k3")
    return kl.clamp(-KL_BOUND, KL_BOUND)


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-sequence KL(policy || reference): the per-token estimates (`approx_kl`) summed over response tokens.

    With "k1" this is the sampled sequence's log-ratio log pi(y|x) - log ref(y|x), whose mean over sequences
    drawn from the policy is an unbiased estimate of the sequence-level KL (the x axis of over-optimization
    curves); "k3" sums non-negative per-token terms, lower variance but biased at the sequence level.

    Returns:
        [b] float32 sums.
    """
    return (approx_kl(logp, ref_logp, estimator) * mask).sum(1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """[b] index of the last position where `mask` [b, t] is 1."""
    return mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1)


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                   score_clip: float | None = None) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL everywhere, plus the sequence score on its last response token.

    Args:
        scores: [b] one score per sequence (RM reward, possibly after a baseline).
        kl: [b, t] per-token KL estimates.
        mask: [b, t] response mask.
        kl_coef: weight of the KL penalty.
        score_clip: scores are clipped to +-score_clip first (None: not clipped).

    Returns:
        [b, t] rewards (zero on padding apart from the KL term, which the estimators mask).
    """
    if score_clip is not None:
        scores = scores.clamp(-score_clip, score_clip)
    rewards = -kl_coef * kl
    last = last_token_index(mask).unsqueeze(1)
    return rewards.scatter_add(1, last, scores.to(rewards.dtype).unsqueeze(1))


def gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2015, https://arxiv.org/abs/1506.02438).

    Args:
        values: [b, t] critic values V(s_i) of the state before each response token.
        rewards: [b, t] per-token rewards.
        mask: [b, t] response mask; padded positions contribute nothing.
        gamma: discount.
        lam: GAE lambda (1: Monte-Carlo returns minus values, 0: one-step TD errors).

    Returns:
        advantages [b, t] and returns [b, t] (= advantages + values, the critic's regression target).
    """
    values = values * mask
    rewards = rewards * mask
    t = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for i in reversed(range(t)):
        next_value = values[:, i + 1] if i + 1 < t else torch.zeros_like(running)
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        running = delta + gamma * lam * running
        advantages[:, i] = running
    return advantages, advantages + values


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """[b, t] reward-to-go sum_{j>=i} gamma^(j-i) r_j: the advantage of REINFORCE-style estimators."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for i in reversed(range(rewards.size(1))):
        running = rewards[:, i] + gamma * running
        out[:, i] = running
    return out


def group_baseline(scores: torch.Tensor, samples_per_prompt: int, estimator: str) -> torch.Tensor:
    """Scores after the estimator's per-prompt baseline.

    Args:
        scores: [p * k] scores, the k samples of each prompt adjacent.
        samples_per_prompt: k.
        estimator: "rloo" (minus the mean of the other k-1 samples), "group_norm" (standardized within the
            group, GRPO), anything else: unchanged.

    Returns:
        [p * k] adjusted scores.
    """
    if estimator not in ("rloo", "group_norm"):
        return scores
    groups = scores.float().view(-1, samples_per_prompt)
    if estimator == "rloo":
        others = (groups.sum(-1, keepdim=True) - groups) / (samples_per_prompt - 1)
        return (groups - others).view(-1)
    return ((groups - groups.mean(-1, keepdim=True)) / (groups.std(-1, keepdim=True) + 1e-9)).view(-1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries (all entries when mask is None)."""
    mask = torch.ones_like(x) if mask is None else mask
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean).square(), mask)
    out = (x - mean) * var.clamp(min=1e-8).rsqrt()
    return out if shift_mean else out + mean


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_eps: float, num_tokens: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss (https://arxiv.org/abs/1707.06347), averaged over response tokens.

    Args:
        logp: [b, t] log-probs under the policy being optimized.
        old_logp: [b, t] log-probs under the policy that sampled the rollout.
        advantages: [b, t].
        mask: [b, t] response mask.
        clip_eps: the ratio is clipped to [1 - clip_eps, 1 + clip_eps].
        num_tokens: divide the summed loss by this instead of mask.sum(), so micro-batches of one optimizer
            step add up to the step's token mean.

    Returns:
        the scalar loss and the fraction of tokens whose ratio was clipped.
    """
    ratio = (logp - old_logp).clamp(-20.0, 20.0).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages
    per_token = -torch.min(unclipped, clipped)
    denominator = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
    clip_fraction = masked_mean((clipped < unclipped).float(), mask)
    return (per_token * mask).sum() / denominator, clip_fraction


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None, num_tokens: float | None = None) -> torch.Tensor:
    """Half the squared error of the critic, pessimistically clipped around the rollout's values.

    Args:
        values: [b, t] current critic values.
        old_values: [b, t] values at rollout time.
        returns: [b, t] regression targets.
        mask: [b, t] response mask.
        clip: values may move at most this far from old_values before the clipped error takes over
            (None: plain squared error).
        num_tokens: as in `policy_loss`.

    Returns:
        the scalar loss.
    """
    error = (values - returns).square()
    if clip is not None:
        moved = old_values + (values - old_values).clamp(-clip, clip)
        error = torch.max(error, (moved - returns).square())
    denominator = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
    return 0.5 * (error * mask).sum() / denominator


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """[..., v] logits -> [...] entropy of the softmax distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def advantages_and_returns(estimator: str, scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor,
                           values: torch.Tensor | None, *, kl_coef: float, samples_per_prompt: int, gamma: float,
                           lam: float, score_clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns of one rollout for any supported estimator.

    Args:
        estimator: "gae" (needs values), "reinforce" (REINFORCE++), "rloo" or "group_norm".
        scores: [b] RM scores, samples of one prompt adjacent.
        kl: [b, t] per-token KL to the reference.
        mask: [b, t] response mask.
        values: [b, t] critic values (gae only).

    Returns:
        advantages [b, t] (whitened over the batch for gae and reinforce, as OpenRLHF does) and returns [b, t].
    """
    scores = group_baseline(scores, samples_per_prompt, estimator)
    rewards = shaped_rewards(scores, kl, mask, kl_coef, score_clip)
    if estimator == "gae":
        if values is None:
            raise ValueError("gae needs critic values")
        advantages, returns = gae(values, rewards, mask, gamma, lam)
    else:
        # Group baselines already centre the scores; their discount is always 1 (as in OpenRLHF).
        returns = discounted_returns(rewards, mask, gamma if estimator == "reinforce" else 1.0)
        advantages = returns.clone()
    if estimator in ("gae", "reinforce"):
        advantages = whiten(advantages, mask)
    return advantages, returns
