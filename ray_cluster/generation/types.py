"""What callers send to a generation backend and what comes back. Plain frozen dataclasses: they cross Ray."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    n: int = 1  # completions per request
    seed: int | None = None
    top_logprobs: int = 0  # record the top-k logprobs of every generated token (0 = none)
    regex: str | None = None  # constrain the output to this regular expression (vLLM structured outputs)
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    id: str  # stable across runs: used to resume and to match results
    messages: tuple[tuple[str, str], ...]  # ((role, content), ...), rendered with the model's chat template
    sampling: Sampling
    # Over-long prompts: "truncate_left" keeps the last tokens of the last user message that fit; "fail" returns
    # the result with error="prompt_too_long" (judge prompts must not be cut).
    overflow: str = "fail"

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    token_id: int | None  # None where the backend gives only text (OpenAI-compatible servers)
    logprob: float


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]  # () where the backend does not return ids
    finish_reason: str  # "stop" | "length"
    top_logprobs: tuple[tuple[TokenLogprob, ...], ...] = ()  # per generated token, best first


@dataclass(frozen=True)
class GenerationResult:
    id: str
    completions: tuple[Completion, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_truncated: bool = False
    error: str | None = None  # e.g. "prompt_too_long"; completions are empty then
    meta: dict = field(default_factory=dict)
