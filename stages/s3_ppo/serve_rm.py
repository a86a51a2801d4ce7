"""`rlhf-stack serve-rm`: a reward model over HTTP in OpenRLHF's remote-RM schema, with request batching.

    POST /get_reward  {"query": [text, ...], "prompts": [...], "labels": [...]}
                   -> {"rewards": [float, ...], "scores": [float, ...], "extra_logs": {}}
    GET  /health   -> {"status": "ok", "requests": n, "queries": n, "forward_passes": n}

Each query is the full text of prompt + response as OpenRLHF's rollout workers send it (chat template and EOS
included); it is tokenized without adding special tokens and scored at its last token, exactly as a local RM
scores the same ids. OpenRLHF posts one query per request and many requests at once, so queries that arrive
together are scored in shared forward passes of up to `max_batch` sequences.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at runtime.
import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_stack.core.errors import Problem, RecipeError
from stages.s3_ppo.value_models import check_reward_checkpoint, load_value_model, sequence_rewards

log = logging.getLogger("rlhf_stack")
BATCH_WINDOW_S = 0.005  # after the first query arrives, wait this long for others to share its forward pass


class RewardScorer:
    """A reward checkpoint that scores texts."""

    def __init__(self, checkpoint: Path, *, device: str = "auto", dtype: torch.dtype = torch.float32):
        from transformers import AutoTokenizer

        check_reward_checkpoint(checkpoint)
        self.device = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.model = load_value_model(checkpoint, dtype=dtype, device=self.device).eval().requires_grad_(False)
        self.max_tokens = getattr(self.model.config, "max_position_embeddings", None)
        self.forward_passes = 0
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        # The reward sits on the last token; a text longer than the model's context keeps its end.
        return ids[-self.max_tokens:] if self.max_tokens else ids

    def score(self, texts: list[str]) -> list[float]:
        """Rewards of `texts`, in one forward pass (left-padded; padding side does not change rewards)."""
        encoded = [self.encode(t) for t in texts]
        width = max(len(ids) for ids in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids):] = 1
        with self._lock:
            self.forward_passes += 1
            rewards = sequence_rewards(self.model, input_ids.to(self.device), mask.to(self.device))
        return rewards.cpu().tolist()


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future


class Batcher:
    """Collects queries from concurrent requests and scores them together, at most `max_batch` per pass."""

    def __init__(self, scorer: RewardScorer, max_batch: int, window_s: float = BATCH_WINDOW_S):
        self.scorer, self.max_batch, self.window_s = scorer, max_batch, window_s
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.requests = self.queries = 0

    async def score(self, texts: list[str]) -> list[float]:
        self.requests += 1
        self.queries += len(texts)
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + self.window_s
            while sum(len(p.texts) for p in batch) < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            await self._score(batch)

    async def _score(self, batch: list[_Pending]) -> None:
        texts = [t for p in batch for t in p.texts]
        try:
            rewards: list[float] = []
            for start in range(0, len(texts), self.max_batch):
                rewards += await asyncio.to_thread(self.scorer.score, texts[start: start + self.max_batch])
        except Exception as e:  # the requests in this batch fail; the server keeps serving
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
            return
        for p in batch:
            p.future.set_result(rewards[: len(p.texts)])
            rewards = rewards[len(p.texts):]


def make_app(scorer: RewardScorer, max_batch: int):
    """The FastAPI application serving `scorer`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request

    batcher = Batcher(scorer, max_batch)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="rlhf-stack reward model", lifespan=lifespan)

    @app.post("/get_reward")
    async def get_reward(request: Request) -> dict:
        body = await request.json()
        queries = body.get("query") if isinstance(body, dict) else None
        if isinstance(queries, str):
            queries = [queries]
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) for q in queries):
            raise HTTPException(422, 'expected {"query": [text, ...]} with at least one text')
        rewards = await batcher.score(queries)
        return {"rewards": rewards, "scores": rewards, "extra_logs": {}}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "requests": batcher.requests, "queries": batcher.queries,
                "forward_passes": scorer.forward_passes}

    return app


def serve(checkpoint: Path, *, host: str = "127.0.0.1", port: int = 5000, max_batch: int = 16) -> None:
    """Serves `checkpoint` until interrupted (the `rlhf-stack serve-rm` command)."""
    import uvicorn

    if max_batch < 1:
        raise RecipeError("serve-rm", [Problem("--max-batch", f"{max_batch} is below 1", "use 1 or more")])
    scorer = RewardScorer(Path(checkpoint))
    log.info("serving reward model %s on http://%s:%d/get_reward (device %s, up to %d queries per pass)",
             checkpoint, host, port, scorer.device, max_batch)
    uvicorn.run(make_app(scorer, max_batch), host=host, port=port, log_level="warning")
