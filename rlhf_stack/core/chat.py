"""The one way a (prompt, response) becomes token ids, shared by synthesis, RM training, PPO and evaluation.

The prompt is the model's chat template with the generation prompt appended, tokenized without extra special
tokens (the template already has them). A response is tokenized on its own and ends with the EOS token, which is
exactly the sequence PPO hands to the reward model after generation stopped on EOS (METHOD.md D15, D17, D18).
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def user_messages(prompt: str) -> Messages:
    return [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def response_ids(tokenizer: Any, response: str) -> list[int]:
    """Token ids of a response as the policy would have emitted them: the text, then EOS."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def sequence_ids(tokenizer: Any, messages: Messages, response: str) -> tuple[list[int], int]:
    """prompt + response + EOS, and the prompt's length (where the response starts)."""
    p = prompt_ids(tokenizer, messages)
    return p + response_ids(tokenizer, response), len(p)
