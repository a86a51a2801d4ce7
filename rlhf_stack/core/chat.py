"""The one way a (prompt, response) becomes token ids, shared by synthesis, RM training, PPO and evaluation.

The prompt is the model's chat template with the generation prompt appended, tokenized without extra special
tokens (the template already has them). A response is tokenized on its own and ends with the EOS token, which is
exactly the sequence PPO hands to the reward model after generation stopped on EOS (METHOD.md D15, D17, D18).

Thinking is off everywhere: templates that read `enable_thinking` (Qwen3 style) close an empty reasoning block in
the generation prompt, so a teacher's answer, a judge's first token and a refinement start with the answer itself
(METHOD.md steps 1-5 call Qwen3 with `enable_thinking=False`). Templates that do not read it ignore the keyword.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def user_messages(prompt: str) -> Messages:
    return [{"role": "user", "content": prompt}]


THINKING_OFF = {"enable_thinking": False}
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def prompt_text(tokenizer: Any, messages: Messages) -> str:
    """The chat template's rendering of `messages` with the generation prompt appended and thinking off."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **THINKING_OFF)


def prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    return tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def has_thinking_switch(tokenizer: Any) -> bool:
    """Whether the chat template reads `enable_thinking` (its generation prompt changes when thinking is off)."""
    messages = user_messages("Hi")
    default = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt_text(tokenizer, messages) != default


def thinking_problem(tokenizer: Any) -> str | None:
    """Why prompts rendered with thinking off would still make the model reason first, or None.

    A template that opens a `<think>` block in the generation prompt whatever `enable_thinking` says (reasoning
    distills) makes every answer start with a reasoning trace, and a judge's first token be `<think>`.
    """
    text = prompt_text(tokenizer, user_messages("Hi"))
    start = text.rfind(THINK_OPEN)
    if start >= 0 and THINK_CLOSE not in text[start:]:
        return (f"its chat template opens a {THINK_OPEN} block in the generation prompt even with "
                "enable_thinking=False, so its answers would start with a reasoning trace and a judge's first "
                "token would be <think>")
    return None


def response_ids(tokenizer: Any, response: str) -> list[int]:
    """Token ids of a response as the policy would have emitted them: the text, then EOS."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def sequence_ids(tokenizer: Any, messages: Messages, response: str) -> tuple[list[int], int]:
    """prompt + response + EOS, and the prompt's length (where the response starts)."""
    p = prompt_ids(tokenizer, messages)
    return p + response_ids(tokenizer, response), len(p)
