"""Forward passes of the local backend on a packed rollout batch (layout in `rollout.py`).

Token i of the response is predicted from the position before it, so action log-probs and critic values both come
from the T positions just left of the response frame.
"""

from __future__ import annotations

import torch

from stages.s3_ppo.ppo_math import entropy_from_logits
from stages.s3_ppo.value_models import position_ids, token_values


def action_logprobs(model, sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int,
                    temperature: float, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the response tokens under `model`, sampled at `temperature`.

    Args:
        model: causal LM.
        sequences: [b, P + T] packed ids.
        attention_mask: [b, P + T].
        num_actions: T.
        temperature: the rollout's sampling temperature; logits are divided by it so the log-probs describe the
            distribution the tokens were drawn from.
        with_entropy: also return the per-token entropy of that distribution.

    Returns:
        log-probs [b, T] (float32) and entropy [b, T] or None.
    """
    # Only the T positions that predict response tokens need the (vocabulary-wide) LM head.
    out = model(input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                logits_to_keep=num_actions + 1)
    logits = out.logits[:, :-1].float() / temperature  # [b, T, v]
    labels = sequences[:, -num_actions:]
    logp = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    entropy = entropy_from_logits(logits).detach() if with_entropy else None
    return logp, entropy


def critic_values(critic, sequences: torch.Tensor, attention_mask: torch.Tensor, num_actions: int) -> torch.Tensor:
    """[b, T] V(state before response token i)."""
    return token_values(critic, sequences, attention_mask)[:, -num_actions - 1: -1]
