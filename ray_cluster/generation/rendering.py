"""Prompt rendering shared by every engine: the chat template, the length budget, and the truncation rule.

The prompt is rendered by `rlhf_stack.core.chat.prompt_ids` (one rendering everywhere). A prompt must leave room for
`max_new_tokens` inside the engine's context. When it does not, `request.overflow` decides: "fail" returns an
error result, "truncate_left" drops tokens from the start of the last user message (the instruction's end, which
usually holds the question, survives) until the prompt fits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ray_cluster.generation.types import GenerationRequest, GenerationResult
from rlhf_stack.core.chat import prompt_ids

PROMPT_TOO_LONG = "prompt_too_long"
OVERFLOW_RULES = ("fail", "truncate_left")


@dataclass(frozen=True)
class RenderedPrompt:
    token_ids: list[int]
    messages: list[dict[str, str]]  # after truncation
    truncated: bool = False


def prompt_budget(request: GenerationRequest, max_model_len: int) -> int:
    """How many prompt tokens fit beside the request's completion."""
    return max_model_len - request.sampling.max_new_tokens


def render(tokenizer: Any, request: GenerationRequest, max_model_len: int) -> RenderedPrompt | None:
    """The request's prompt token ids, truncated per its overflow rule; None when it cannot fit.

    Raises:
        ValueError: for an unknown overflow rule.
    """
    if request.overflow not in OVERFLOW_RULES:
        raise ValueError(f"request {request.id!r}: overflow {request.overflow!r} is not one of {OVERFLOW_RULES}")
    messages = request.message_dicts()
    ids = prompt_ids(tokenizer, messages)
    budget = prompt_budget(request, max_model_len)
    if len(ids) <= budget:
        return RenderedPrompt(ids, messages)
    if request.overflow == "fail" or budget <= 0:
        return None
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    content_ids = tokenizer(messages[last_user]["content"], add_special_tokens=False)["input_ids"]
    cut = len(ids) - budget
    # Decoding and re-encoding a cut can merge or split tokens, so cut a little more until the prompt fits.
    while cut <= len(content_ids):
        trimmed = [*messages]
        trimmed[last_user] = {**messages[last_user], "content": tokenizer.decode(content_ids[cut:])}
        ids = prompt_ids(tokenizer, trimmed)
        if len(ids) <= budget:
            return RenderedPrompt(ids, trimmed, truncated=True)
        cut += max(1, len(ids) - budget)
    return None


def too_long(request: GenerationRequest) -> GenerationResult:
    return GenerationResult(id=request.id, error=PROMPT_TOO_LONG)


def request_seed(request: GenerationRequest, backend_seed: int) -> int:
    """The request's own seed, or one derived from the backend seed and the request id.

    A derived seed depends on nothing but the request, so a request gives the same sample whichever engine serves
    it, in whatever batch, and again after a resume.
    """
    if request.sampling.seed is not None:
        return request.sampling.seed
    digest = hashlib.sha256(f"{backend_seed}:{request.id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
