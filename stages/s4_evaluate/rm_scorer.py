"""Scoring (prompt, response) pairs with a reward model: length-sorted, token-budgeted batches.

Sequences are rendered by `rlhf_stack.core.chat` exactly as PPO presents them (chat-templated prompt, response, EOS),
and the reward is read at the last position whose attention mask is 1, as OpenRLHF's RewardModel does, so a score
here is the reward PPO would see. Identical sequences are scored once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_stack.core.chat import prompt_ids, response_ids, user_messages
from rlhf_stack.core.errors import ModelError
from rlhf_stack.core.precision import resolve, torch_dtype
from rlhf_stack.core.progress import Progress
from stages.s4_evaluate.rm_items import RMItem


@dataclass
class RewardModel:
    model: Any  # transformers *ForSequenceClassification, eval mode
    tokenizer: Any
    max_length_tokens: int


def load_reward_model(folder: Path, dtype: str = "auto", max_length_tokens: int | None = None) -> RewardModel:
    """Loads an HF sequence-classification RM and checks it has a trained one-output `score` head.

    Raises:
        ModelError: the folder is not a one-label sequence classifier with a saved `score` head.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch_dtype(resolve(dtype, device)),
                                                                     output_loading_info=True)
    missing = [k for k in info["missing_keys"] if k.startswith("score.")]
    if model.config.num_labels != 1 or missing or not hasattr(model, "score"):
        raise ModelError(
            f"{folder} is not a reward model: it needs num_labels=1 and a saved `score` head "
            f"(num_labels={model.config.num_labels}, missing head weights: {missing or 'none'}); "
            "export it with the distill stage or save a *ForSequenceClassification(num_labels=1) checkpoint"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    limit = max_length_tokens or getattr(model.config, "max_position_embeddings", None) or 4096
    return RewardModel(model.to(device).eval(), tokenizer, int(limit))


def encode(rm: RewardModel, prompt: str, response: str) -> tuple[tuple[int, ...], bool]:
    """Token ids of prompt + response + EOS, and whether prompt tokens were cut on the left to fit."""
    return _fit(prompt_ids(rm.tokenizer, user_messages(prompt)), response_ids(rm.tokenizer, response),
                rm.max_length_tokens)


def encode_many(rm: RewardModel, pairs: Sequence[tuple[str, str]]) -> list[tuple[tuple[int, ...], bool]]:
    """`encode` for many (prompt, response) pairs: each prompt rendered once, responses tokenized in one call."""
    prompts = {p: prompt_ids(rm.tokenizer, user_messages(p)) for p in dict.fromkeys(p for p, _ in pairs)}
    responses = rm.tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"] if pairs else []
    eos = rm.tokenizer.eos_token_id
    return [_fit(prompts[p], ids + [eos], rm.max_length_tokens) for (p, _), ids in zip(pairs, responses)]


def _fit(prompt: list[int], response: list[int], max_length: int) -> tuple[tuple[int, ...], bool]:
    room = max_length - len(response)
    if len(prompt) <= room:
        return tuple(prompt + response), False
    return tuple((prompt[-room:] if room > 0 else []) + response)[-max_length:], True


def plan_batches(lengths: Sequence[int], tokens_per_batch: int) -> list[list[int]]:
    """Indices grouped into batches, longest first, each padded batch within the token budget (at least one)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= tokens_per_batch:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def score_sequences(rm: RewardModel, sequences: Sequence[Sequence[int]], tokens_per_batch: int,
                    on_batch: Callable[[int], None] | None = None) -> list[float]:
    """Reward of each token sequence, shape [n]; right-padded batches sorted by length."""
    import torch

    pad_id = rm.tokenizer.pad_token_id if rm.tokenizer.pad_token_id is not None else 0
    backbone = getattr(rm.model, rm.model.base_model_prefix)
    rewards = [0.0] * len(sequences)
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in sequences], tokens_per_batch):
            width = len(sequences[batch[0]])
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [b, t]
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # [b, t]
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, : len(sequences[i])] = 1
            ids, mask = ids.to(rm.model.device), mask.to(rm.model.device)
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, t, h]
            last = mask.sum(dim=1) - 1  # [b]: the last real token (EOS)
            values = rm.model.score(hidden[torch.arange(len(batch), device=ids.device), last]).squeeze(-1)  # [b]
            for i, value in zip(batch, values.float().tolist()):
                rewards[i] = value
            if on_batch:
                on_batch(len(batch))
    return rewards


def score_items(rm: RewardModel, items: Sequence[RMItem], tokens_per_batch: int,
                description: str = "reward scores") -> tuple[list[dict[str, Any]], int]:
    """Per-item records {"id", "group", "chosen": [r...], "rejected": [r...]} and the number of truncated sequences."""
    pairs = [(item.prompt, answer) for item in items for answer in (*item.chosen, *item.rejected)]
    encoded = iter(encode_many(rm, pairs))
    index: dict[tuple[int, ...], int] = {}
    truncated: set[int] = set()
    slots = []  # per item: (chosen sequence indices, rejected sequence indices)
    for item in items:
        sides = []
        for answers in (item.chosen, item.rejected):
            refs = []
            for _ in answers:
                ids, cut = next(encoded)
                k = index.setdefault(ids, len(index))
                if cut:
                    truncated.add(k)
                refs.append(k)
            sides.append(refs)
        slots.append(sides)
    unique = list(index)
    with Progress(description, total=len(unique)) as progress:
        rewards = score_sequences(rm, unique, tokens_per_batch, progress.advance)
    records = [{"id": item.id, "group": item.group, "chosen": [rewards[k] for k in c],
                "rejected": [rewards[k] for k in r]} for item, (c, r) in zip(items, slots)]
    return records, len(truncated)

