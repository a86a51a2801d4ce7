"""Reward-model checkpoints and run folders for the PPO stage's tests (no tests here).

`build_frequency_rm` makes a reward model a tiny policy can learn to please within a few iterations on CPU: the tiny
policy's own weights with uniform causal attention (query and key projections zeroed) whose first layer copies the
mean of the normalized token embeddings into the residual stream, no MLPs, and a head along a fixed random
direction u. Its reward is u . norm(e_last + mean of the sequence's embeddings): it grows with how often the response
uses tokens whose embeddings point along u. The policy shares those embeddings (tied), so it can raise the
probability of all such tokens at once by moving its final hidden state along u.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rlhf_stack.core.artifacts import publish


def build_frequency_rm(policy_dir: Path, out: Path, *, scale: float = 4.0, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    rm = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    hidden = rm.config.hidden_size
    with torch.no_grad():
        for i, layer in enumerate(rm.model.layers):
            attention = layer.self_attn
            attention.q_proj.weight.zero_()
            attention.k_proj.weight.zero_()
            if i == 0:
                attention.v_proj.weight.copy_(torch.eye(attention.v_proj.weight.shape[0], hidden))
                attention.o_proj.weight.copy_(torch.eye(hidden, attention.o_proj.weight.shape[1]))
            else:
                attention.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        direction = torch.randn(hidden)
        rm.score.weight.copy_(scale * direction / direction.norm())
    rm.config.value_head_prefix = "score"
    rm.save_pretrained(out)
    AutoTokenizer.from_pretrained(policy_dir).save_pretrained(out)
    return out


def publish_reward_models(run_dir: Path, checkpoints: dict[str, Path]) -> None:
    """Finished `s2_distill/<variant>` folders holding the given checkpoints, as the distill stage leaves them."""
    for variant, checkpoint in checkpoints.items():
        folder = run_dir / "s2_distill" / variant
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(checkpoint, folder / "checkpoint")
        publish(folder, kind="reward_model", stage="distill", rel_folder=f"s2_distill/{variant}",
                config_hash="fixture", inputs={}, summary={}, wall_time_s=0.0)
