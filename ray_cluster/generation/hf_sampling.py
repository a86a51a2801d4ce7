"""Per-row decoding control for transformers `generate`: each row keeps its own sampling settings, seed, regex
constraint, length limit and stop strings, so one batch can mix requests and a request's sample does not depend
on its batch-mates.

`RowController` is a `LogitsProcessor`. At every step it masks each row's logits with its grammar (xgrammar, the
library vLLM's structured outputs use), records the row's top-k logprobs, picks the row's next token itself and
leaves only that token finite, so `generate` (run greedy) emits exactly the chosen token. Logprobs are those of the
model at temperature 1 after the grammar mask, as vLLM reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ray_cluster.generation.types import Completion, Sampling, TokenLogprob

GREEDY_BELOW = 1e-5  # temperatures below this decode greedily (vLLM's rule)


@dataclass
class Row:
    """One completion being decoded."""

    sampling: Sampling
    seed: int
    matcher: Any = None  # xgrammar.GrammarMatcher when the request has a regex
    tokens: list[int] = field(default_factory=list)
    top: list[tuple[list[int], list[float]]] = field(default_factory=list)  # per token: (ids, logprobs), best first
    finish: str | None = None  # "stop" or "length" once decided
    stop_text_at: int | None = None  # where a stop string begins in the decoded text
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.sampling.temperature >= GREEDY_BELOW:
            self.generator = torch.Generator().manual_seed(self.seed)


class RowController:
    """A transformers logits processor that decodes every row by its own rules (see module docstring)."""

    def __init__(self, rows: list[Row], tokenizer: Any, stop_ids: set[int]):
        self.rows = rows
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self._eos = min(stop_ids)
        self._bitmask = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Args: input_ids [b, t]; scores [b, vocab]. Returns [b, vocab]: 0 at each row's token, -inf elsewhere."""
        scores = scores.float()
        active = [i for i, row in enumerate(self.rows) if row.finish is None]
        self._apply_grammar(scores, [i for i in active if self.rows[i].matcher is not None])
        wanted = [i for i in active if self.rows[i].sampling.top_logprobs > 0]
        if wanted:
            k = max(self.rows[i].sampling.top_logprobs for i in wanted)
            values, ids = torch.log_softmax(scores[wanted], dim=-1).topk(k, dim=-1)
            for j, i in enumerate(wanted):
                keep = self.rows[i].sampling.top_logprobs
                self.rows[i].top.append((ids[j, :keep].tolist(), values[j, :keep].tolist()))
        chosen = torch.full(scores.shape, float("-inf"))
        for i, row in enumerate(self.rows):
            token = self._eos if row.finish is not None else self._step(row, scores[i])
            chosen[i, token] = 0.0
        return chosen.to(scores.device)

    def _apply_grammar(self, scores: torch.Tensor, rows: list[int]) -> None:
        if not rows:
            return
        import xgrammar as xgr

        if self._bitmask is None or self._bitmask.shape[0] != scores.shape[0]:
            self._bitmask = xgr.allocate_token_bitmask(scores.shape[0], scores.shape[1])
        for i in rows:
            self.rows[i].matcher.fill_next_token_bitmask(self._bitmask, i)
        xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device), indices=rows)

    def _step(self, row: Row, logits: torch.Tensor) -> int:
        token = pick_token(logits, row.sampling, row.generator)
        row.tokens.append(token)
        if row.matcher is not None and not row.matcher.accept_token(token):
            raise RuntimeError(f"token {token} violates the row's regex {row.sampling.regex!r}")
        if token in self.stop_ids:
            row.finish = "stop"
        elif row.sampling.stop:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            hits = [text.find(s) for s in row.sampling.stop if s in text]
            if hits:
                row.finish, row.stop_text_at = "stop", min(hits)
        if row.finish is None and len(row.tokens) >= row.sampling.max_new_tokens:
            row.finish = "length"
        return token


def pick_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Next token from one row's logits [vocab]: greedy, or temperature, min_p, top_k, top_p, then a draw."""
    if generator is None:
        return int(logits.argmax())
    logits = logits / sampling.temperature
    if sampling.min_p > 0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < sampling.min_p * probs.max(), float("-inf"))
    if sampling.top_k > 0:
        kth = logits.topk(min(sampling.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1:
        ordered, order = logits.sort(descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative - ordered.softmax(-1) > sampling.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


def row_completion(row: Row, tokenizer: Any, stop_ids: set[int], token_text: dict[int, str]) -> Completion:
    """The finished row as a Completion; `token_text` caches the text of single tokens."""
    body = [t for t in row.tokens if t not in stop_ids]
    text = tokenizer.decode(body, skip_special_tokens=True)
    if row.stop_text_at is not None:
        text = text[: row.stop_text_at]
    top = tuple(
        tuple(TokenLogprob(_text(tokenizer, t, token_text), t, lp) for t, lp in zip(ids, lps)) for ids, lps in row.top
    )
    return Completion(text=text, token_ids=tuple(row.tokens), finish_reason=row.finish or "length", top_logprobs=top)


def _text(tokenizer: Any, token_id: int, cache: dict[int, str]) -> str:
    if token_id not in cache:
        cache[token_id] = tokenizer.decode([token_id])
    return cache[token_id]
