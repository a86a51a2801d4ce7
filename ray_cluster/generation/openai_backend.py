"""An OpenAI-compatible chat-completions client behind the same `generate` call as the engine pools.

At most `max_concurrency` requests are in flight. 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (a `Retry-After` header wins) up to `max_retries` times, then an `EngineError` ends the call;
results delivered before that have already reached `on_result`. The API key is read from the environment
variable `api_key_env` names; it goes into the Authorization header and nowhere else (not into logs or errors).

Servers give text, not token ids: completions carry `token_ids=()` and logprob entries carry `token_id=None`.
`top_k`, `min_p` and `regex` are vLLM extensions of the API and are sent only when set (a vLLM server honours
them; others may refuse them). So is `chat_template_kwargs: {enable_thinking: false}`, sent only when the model's
local tokenizer shows a template that reads it (Qwen3 style), so the server renders prompts as
`rlhf_stack.core.chat` does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.rendering import render, request_seed, too_long
from ray_cluster.generation.types import Completion, GenerationRequest, GenerationResult, TokenLogprob
from rlhf_stack.core.chat import THINKING_OFF, has_thinking_switch
from rlhf_stack.core.errors import EngineError

log = logging.getLogger("rlhf_stack")
_RETRY_STATUS = {408, 409, 425, 429}
_MAX_BACKOFF_S = 60.0
_CONTEXT_ERRORS = ("maximum context length", "context_length_exceeded", "too long", "max_model_len")


class OpenAIBackend:
    """See the module docstring. `model_dir`, when given, supplies the tokenizer that measures prompts."""

    def __init__(self, model_dir: Path | None, cfg: EngineConfig, *, seed: int, model_name: str):
        self.cfg = cfg
        self.seed = seed
        self.name = model_name
        self.model = cfg.served_model_name or (str(model_dir) if model_dir is not None else None)
        if self.model is None:
            raise EngineError(f"{model_name}: backend 'openai' needs served_model_name (the model name the server "
                              "knows) when no model folder is given")
        self._headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise EngineError(f"{model_name}: the environment variable {cfg.api_key_env} (api_key_env) is not "
                                  "set; export the endpoint's API key in it")
            self._headers["Authorization"] = f"Bearer {key}"
        self.tokenizer = None
        if model_dir is not None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.thinking_switch = self.tokenizer is not None and has_thinking_switch(self.tokenizer)
        self.retries = 0  # retried HTTP attempts, over the backend's life
        self.precision = None  # the server does not say what it computes in

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[GenerationResult], None] | None = None,
    ) -> list[GenerationResult]:
        return asyncio.run(self._generate_all(list(requests), on_result))

    def load_weights(self, folder: str) -> None:
        raise EngineError(f"{self.name}: an OpenAI-compatible endpoint cannot load weights; use backend 'vllm'")

    def update_weights(self, tensors) -> None:
        raise EngineError(f"{self.name}: an OpenAI-compatible endpoint cannot take new weights; use backend 'vllm'")

    def close(self) -> None:
        pass

    async def _generate_all(self, requests: list[GenerationRequest], on_result) -> list[GenerationResult]:
        import httpx

        limit = asyncio.Semaphore(self.cfg.max_concurrency)
        timeout = httpx.Timeout(self.cfg.request_timeout_s)
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers) as client:

            async def one(request: GenerationRequest) -> GenerationResult:
                async with limit:
                    result = await self._one(client, request)
                if on_result is not None:
                    on_result(result)
                return result

            tasks = [asyncio.create_task(one(r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _one(self, client: Any, request: GenerationRequest) -> GenerationResult:
        messages, truncated = request.message_dicts(), False
        if self.tokenizer is not None:
            rendered = render(self.tokenizer, request, self.cfg.max_model_len)
            if rendered is None:
                return too_long(request)
            messages, truncated = rendered.messages, rendered.truncated
        body = self._body(request, messages)
        url = f"{self.cfg.base_url.rstrip('/')}/chat/completions"
        for attempt in range(self.cfg.max_retries + 1):
            last = attempt == self.cfg.max_retries
            try:
                response = await client.post(url, json=body)
            except Exception as e:  # httpx timeouts and transport errors: the request may be fine, try again
                if last or not _is_transient(e):
                    raise EngineError(f"{self.name}: request {request.id!r} to {url} failed after {attempt + 1} "
                                      f"attempt(s): {type(e).__name__}: {e}") from e
                await self._backoff(attempt, None)
                continue
            if response.status_code == 200:
                return _result(request, response.json(), truncated)
            text = response.text[:500]
            if response.status_code == 400 and any(m in text.lower() for m in _CONTEXT_ERRORS):
                return too_long(request)
            if (response.status_code in _RETRY_STATUS or response.status_code >= 500) and not last:
                await self._backoff(attempt, response.headers.get("retry-after"))
                continue
            raise EngineError(f"{self.name}: request {request.id!r} to {url} got HTTP {response.status_code} "
                              f"after {attempt + 1} attempt(s): {text}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _backoff(self, attempt: int, retry_after: str | None) -> None:
        self.retries += 1
        wait = self.cfg.retry_backoff_s * 2**attempt * (1 + random.random() / 4)
        if retry_after is not None:
            try:
                wait = float(retry_after)
            except ValueError:
                pass
        await asyncio.sleep(min(wait, _MAX_BACKOFF_S))

    def _body(self, request: GenerationRequest, messages: list[dict[str, str]]) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": s.max_new_tokens, "temperature": s.temperature,
            "top_p": s.top_p, "n": s.n, "seed": request_seed(request, self.seed),
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if s.top_logprobs:
            body.update(logprobs=True, top_logprobs=s.top_logprobs)
        if s.top_k > 0:
            body["top_k"] = s.top_k
        if s.min_p > 0:
            body["min_p"] = s.min_p
        if s.regex is not None:
            body["structured_outputs"] = {"regex": s.regex}
        if self.thinking_switch:
            body["chat_template_kwargs"] = dict(THINKING_OFF)
        return body


def _is_transient(error: Exception) -> bool:
    import httpx

    return isinstance(error, (httpx.TimeoutException, httpx.TransportError))


def _result(request: GenerationRequest, payload: dict, truncated: bool) -> GenerationResult:
    completions = []
    for choice in sorted(payload["choices"], key=lambda c: c.get("index", 0)):
        top: tuple = ()
        content = (choice.get("logprobs") or {}).get("content") or []
        if request.sampling.top_logprobs and content:
            top = tuple(
                tuple(TokenLogprob(e["token"], None, float(e["logprob"])) for e in position.get("top_logprobs", []))
                for position in content
            )
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        completions.append(Completion(text=choice["message"].get("content") or "", token_ids=(),
                                      finish_reason=finish, top_logprobs=top))
    usage = payload.get("usage") or {}
    return GenerationResult(id=request.id, completions=tuple(completions),
                            prompt_tokens=int(usage.get("prompt_tokens", 0)),
                            completion_tokens=int(usage.get("completion_tokens", 0)), prompt_truncated=truncated)
