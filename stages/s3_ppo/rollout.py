"""Rollouts of the local backend: sample responses from the policy and lay them out as one padded batch.

Layout of a batch of b samples: every prompt is left-padded to the longest prompt P, every response right-padded
to the longest response T, so position P + i holds response token i of every row. Log-probs, values and the
response mask then share one [b, T] frame. A response ends at its first EOS (kept: stopping is an action the
policy learns) or after max_new_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ray_cluster.generation.rendering import RenderedPrompt, render
from ray_cluster.generation.types import GenerationRequest, Sampling


@dataclass(frozen=True)
class Rollout:
    sequences: torch.Tensor  # [b, P + T] token ids
    attention_mask: torch.Tensor  # [b, P + T] 1 on real tokens
    action_mask: torch.Tensor  # [b, T] 1 on response tokens
    prompt_ids: tuple[tuple[int, ...], ...]  # per sample, unpadded
    response_ids: tuple[tuple[int, ...], ...]  # per sample, unpadded, EOS included when generation stopped
    finish_reasons: tuple[str, ...]  # "stop" (EOS) | "length"

    @property
    def prompt_width(self) -> int:
        return self.sequences.size(1) - self.action_mask.size(1)

    @property
    def response_tokens(self) -> int:
        return int(self.action_mask.sum())


def render_prompts(tokenizer, prompts: list[str], *, max_length_tokens: int,
                   max_new_tokens: int) -> tuple[list[RenderedPrompt], int, list[int]]:
    """Chat-rendered prompts that leave room for `max_new_tokens` within `max_length_tokens`.

    A longer prompt loses the start of its text (the project's one truncation rule,
    `ray_cluster.generation.rendering`), so the vLLM engines render the kept messages to the same ids.

    Returns:
        the prompts that fit (possibly shortened), how many were shortened, and each kept prompt's index in
        `prompts`; prompts that cannot fit even shortened are left out.
    """
    rendered, shortened, kept = [], 0, []
    for i, text in enumerate(prompts):
        request = GenerationRequest(id=str(i), messages=(("user", text),), sampling=Sampling(max_new_tokens),
                                    overflow="truncate_left")
        prompt = render(tokenizer, request, max_length_tokens)
        if prompt is not None:
            rendered.append(prompt)
            kept.append(i)
            shortened += prompt.truncated
    return rendered, shortened, kept


def cut_at_eos(ids: list[int], eos_id: int) -> tuple[list[int], str]:
    """The response up to and including its first EOS, and why it ended."""
    if eos_id in ids:
        return ids[: ids.index(eos_id) + 1], "stop"
    return ids, "length"


def pack(prompts: list[list[int]], responses: list[list[int]], finish_reasons: list[str], pad_id: int) -> Rollout:
    """Lays samples out as described in the module docstring."""
    width_p = max(len(p) for p in prompts)
    width_t = max(max(len(r) for r in responses), 1)
    b = len(prompts)
    sequences = torch.full((b, width_p + width_t), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width_p + width_t), dtype=torch.long)
    actions = torch.zeros((b, width_t), dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompts, responses)):
        sequences[row, width_p - len(p): width_p] = torch.tensor(p)
        sequences[row, width_p: width_p + len(r)] = torch.tensor(r, dtype=torch.long)
        attention[row, width_p - len(p): width_p + len(r)] = 1
        actions[row, : len(r)] = 1
    return Rollout(sequences, attention, actions, tuple(map(tuple, prompts)), tuple(map(tuple, responses)),
                   tuple(finish_reasons))


@torch.no_grad()
def generate_hf(model, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, top_p: float,
                eos_id: int, pad_id: int) -> tuple[list[list[int]], list[str]]:
    """Samples one response per prompt with transformers `generate` (the baseline rollout engine).

    Returns:
        response ids (cut at EOS) and finish reasons, in prompt order.
    """
    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, p in enumerate(prompts):
        input_ids[row, width - len(p):] = torch.tensor(p)
        attention[row, width - len(p):] = 1
    out = model.generate(
        input_ids=input_ids.to(device), attention_mask=attention.to(device), do_sample=True,
        temperature=temperature, top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
        eos_token_id=eos_id, pad_token_id=pad_id,
    )
    cut = [cut_at_eos(row[width:].tolist(), eos_id) for row in out.cpu()]
    return [ids for ids, _ in cut], [why for _, why in cut]
