"""Scoring (prompt, response) pairs with a reward model: length-sorted, token-budgeted batches.

Two renderings, chosen by the checkpoint:
- "policy", for reward models in the OpenRLHF layout this toolkit exports (`value_head_prefix` in config.json):
  sequences are rendered by `rlhf_stack.core.chat` exactly as PPO presents them (chat-templated prompt, response,
  EOS), and the reward is read at the last position whose attention mask is 1, as OpenRLHF's RewardModel does, so
  a score here is the reward PPO would see. Too-long sequences lose prompt tokens on the left.
- "conversation", for any other sequence-classification RM, as reward-bench scores one: the whole (user,
  assistant) conversation through the RM's own chat template, tokenized with the tokenizer's default special
  tokens (a doubled BOS loses its first copy), and the reward is the model's own output (`logits[:, 0]`). Too-long
  sequences are cut on the right, as reward-bench's pipeline cuts them.
Identical sequences are scored once.
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
    rendering: str = "policy"  # see the module docstring


def load_reward_model(folder: Path, dtype: str = "auto", max_length_tokens: int | None = None) -> RewardModel:
    """Loads an HF sequence-classification RM and checks it has a trained one-output head.

    Raises:
        ModelError: the folder is not a one-label sequence classifier with a saved head (or, for a "conversation"
            RM, has no chat template).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, info = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch_dtype(resolve(dtype, device)),
                                                                     output_loading_info=True)
    rendering = "policy" if getattr(model.config, "value_head_prefix", None) else "conversation"
    backbone = f"{model.base_model_prefix}."
    missing = [k for k in info["missing_keys"] if not k.startswith(backbone)]  # head weights left at random
    if model.config.num_labels != 1 or missing or (rendering == "policy" and not hasattr(model, "score")):
        raise ModelError(
            f"{folder} is not a reward model: it needs num_labels=1 and a saved head "
            f"(num_labels={model.config.num_labels}, missing head weights: {missing or 'none'}); "
            "export it with the distill stage or save a *ForSequenceClassification(num_labels=1) checkpoint"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.chat_template is None:
        raise ModelError(f"{folder}: the tokenizer has no chat template, so conversations cannot be rendered for it "
                         "(save the template the RM was trained with into the folder)")
    limit = max_length_tokens or getattr(model.config, "max_position_embeddings", None) or 4096
    return RewardModel(model.to(device).eval(), tokenizer, int(limit), rendering)


def encode(rm: RewardModel, prompt: str, response: str) -> tuple[tuple[int, ...], bool]:
    """Token ids of one (prompt, response) in the RM's rendering, and whether tokens were cut to fit."""
    if rm.rendering == "conversation":
        return conversation_ids(rm, prompt, response)
    return _fit(prompt_ids(rm.tokenizer, user_messages(prompt)), response_ids(rm.tokenizer, response),
                rm.max_length_tokens)


def encode_many(rm: RewardModel, pairs: Sequence[tuple[str, str]]) -> list[tuple[tuple[int, ...], bool]]:
    """`encode` for many (prompt, response) pairs: each prompt rendered once, responses tokenized in one call."""
    if rm.rendering == "conversation":
        return [conversation_ids(rm, p, r) for p, r in pairs]
    prompts = {p: prompt_ids(rm.tokenizer, user_messages(p)) for p in dict.fromkeys(p for p, _ in pairs)}
    responses = rm.tokenizer([r for _, r in pairs], add_special_tokens=False)["input_ids"] if pairs else []
    eos = rm.tokenizer.eos_token_id
    return [_fit(prompts[p], ids + [eos], rm.max_length_tokens) for (p, _), ids in zip(pairs, responses)]


def conversation_ids(rm: RewardModel, prompt: str, response: str) -> tuple[tuple[int, ...], bool]:
    """reward-bench's input: the conversation through the RM's chat template, default special tokens, one BOS."""
    tok = rm.tokenizer
    text = tok.apply_chat_template([*user_messages(prompt), {"role": "assistant", "content": response}],
                                   tokenize=False)
    ids = tok(text)["input_ids"]
    if tok.bos_token_id is not None and ids[:2] == [tok.bos_token_id] * 2:
        ids = ids[1:]
    return tuple(ids[: rm.max_length_tokens]), len(ids) > rm.max_length_tokens


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

    pad_id = rm.tokenizer.pad_token_id
    own_output = rm.rendering == "conversation"
    if own_output and pad_id is not None and rm.model.config.pad_token_id is None:
        rm.model.config.pad_token_id = pad_id  # the classifier finds each row's last token by it
    # Without a pad token a classifier cannot find the last token of a padded row: one sequence per forward pass.
    budget = 1 if own_output and pad_id is None else tokens_per_batch
    pad_id = pad_id if pad_id is not None else 0
    backbone = getattr(rm.model, rm.model.base_model_prefix)
    rewards = [0.0] * len(sequences)
    with torch.inference_mode():
        for batch in plan_batches([len(s) for s in sequences], budget):
            width = len(sequences[batch[0]])
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [b, t]
            mask = torch.zeros((len(batch), width), dtype=torch.long)  # [b, t]
            for row, i in enumerate(batch):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, : len(sequences[i])] = 1
            ids, mask = ids.to(rm.model.device), mask.to(rm.model.device)
            if own_output:
                values = rm.model(input_ids=ids, attention_mask=mask).logits[:, 0]  # [b]
            else:
                hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # [b, t, h]
                last = mask.sum(dim=1) - 1  # [b]: the last real token (EOS)
                values = rm.model.score(hidden[torch.arange(len(batch), device=ids.device), last]).squeeze(-1)
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

