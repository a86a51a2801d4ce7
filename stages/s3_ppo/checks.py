"""Checks the PPO stage runs before any model is loaded for training."""

from __future__ import annotations

from pathlib import Path

from rlhf_stack.core.errors import ArtifactError, Problem, RecipeError


def tokenizer_mismatch(policy_dir: Path, rm_dir: Path) -> str | None:
    """Why the RM cannot read the policy's token ids, or None when both use one tokenizer."""
    from transformers import AutoTokenizer

    policy, rm = AutoTokenizer.from_pretrained(policy_dir), AutoTokenizer.from_pretrained(rm_dir)
    if policy.eos_token_id != rm.eos_token_id:
        return f"EOS ids differ (policy {policy.eos_token_id} {policy.eos_token!r}, RM {rm.eos_token_id} " \
               f"{rm.eos_token!r})"
    p_vocab, r_vocab = policy.get_vocab(), rm.get_vocab()
    if p_vocab != r_vocab:
        differ = sorted(t for t in p_vocab.keys() | r_vocab.keys() if p_vocab.get(t) != r_vocab.get(t))
        return f"vocabularies differ ({len(p_vocab)} vs {len(r_vocab)} tokens; {len(differ)} tokens map " \
               f"differently, e.g. {differ[:3]})"
    return None


def check_same_tokenizer(policy_dir: Path, rm_dir: Path, variant: str) -> None:
    """PPO hands the RM token ids, so the RM must share the policy's tokenizer.

    Raises:
        ArtifactError: naming both folders, the difference and the remote-RM route.
    """
    why = tokenizer_mismatch(policy_dir, rm_dir)
    if why:
        raise ArtifactError(
            f"ppo: the reward model of variant {variant!r} ({rm_dir}) does not share the policy's tokenizer "
            f"({policy_dir}): {why}. PPO passes token ids to a local RM, so they must be identical. Serve this RM "
            f"over HTTP instead (it then reads text): `rlhf-stack serve-rm {rm_dir} --port 5000`, and set "
            f"ppo.reward_urls.{variant}: http://127.0.0.1:5000/get_reward"
        )


def check_enough_prompts(num_prompts: int, prompts_per_step: int) -> None:
    if num_prompts < prompts_per_step:
        raise RecipeError("recipe", [Problem(
            "ppo.prompts_per_step", f"the ppo split has {num_prompts} prompt(s), fewer than prompts_per_step "
            f"({prompts_per_step}), so not one rollout step can run",
            "lower ppo.prompts_per_step, raise data.splits.ppo or add prompts")])
