"""A transformers `generate` engine, run as a Ray actor by the pool: the fallback and the performance baseline.

Requests arrive one call each; the actor gathers the calls that are waiting into batches of up to `max_num_seqs`
rows (requests with the same `max_new_tokens` together, so short ones do not wait on long ones) and decodes each
batch with one `generate` call whose rows are controlled by `RowController`.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.hf_sampling import Row, RowController, row_completion
from ray_cluster.generation.rendering import RenderedPrompt, render, request_seed, too_long
from ray_cluster.generation.types import GenerationRequest, GenerationResult
from ray_cluster.generation.weights import SharedWeights, from_shared
from rlhf_stack.core.precision import of_model, resolve, torch_dtype

_GATHER_S = 0.005  # wait this long for a burst of calls to arrive before forming a batch


class HfEngine:
    """One model copy answering `generate(request)` calls; see the module docstring."""

    def __init__(self, model_dir: str, cfg: EngineConfig, seed: int):
        import torch

        torch.set_num_threads(max(1, int(cfg.cpus_per_engine)))
        self.cfg = cfg
        self.seed = seed
        self.device = "cuda" if cfg.gpus_per_engine and torch.cuda.is_available() else "cpu"
        self._load(model_dir)
        self._queue: list[tuple[GenerationRequest, RenderedPrompt, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1)
        self._grammars: dict[str, Any] = {}
        self._token_text: dict[int, str] = {}

    def _load(self, model_dir: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        precision = resolve(self.cfg.dtype, "cuda" if self.device == "cuda" else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(precision))
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.stop_ids = {self.tokenizer.eos_token_id, *eos} - {None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        self._grammar_compiler = None
        self._grammars = {}
        self.model_dir = model_dir

    async def ready(self) -> dict:
        import torch

        return {"pid": os.getpid(), "device": self.device, "model_dir": self.model_dir,
                "precision": of_model(self.model), "threads": torch.get_num_threads()}

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        rendered = render(self.tokenizer, request, self.cfg.max_model_len)
        if rendered is None:
            return too_long(request)
        future = asyncio.get_running_loop().create_future()
        self._queue.append((request, rendered, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await future

    async def load_weights(self, folder: str) -> dict:
        """Replaces the model with the one saved in `folder` (same architecture), once running batches finish."""
        from transformers import AutoConfig

        while self._worker is not None and not self._worker.done():
            await asyncio.sleep(0.01)
        new, old = AutoConfig.from_pretrained(folder), self.model.config
        if new.architectures != old.architectures or new.hidden_size != old.hidden_size:
            raise ValueError(f"{folder} holds {new.architectures} (hidden {new.hidden_size}); the engine serves "
                             f"{old.architectures} (hidden {old.hidden_size})")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load, folder)
        return await self.ready()

    async def update_weights(self, shared: SharedWeights) -> dict:
        """Copies weights handed over in memory (`ray_cluster.generation.weights`) into the served model."""
        while self._worker is not None and not self._worker.done():
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._copy_in, shared)
        return await self.ready()

    def _copy_in(self, shared: SharedWeights) -> None:
        import torch

        with torch.no_grad():
            missing, unexpected = self.model.load_state_dict(dict(from_shared(shared)), strict=False)
        tied = {name for name, _ in self.model.named_parameters(remove_duplicate=False)} - \
            {name for name, _ in self.model.named_parameters()}  # a tied copy is sent once, under its first name
        if unexpected or set(missing) - tied:
            raise ValueError(f"the new weights do not fit the served model: missing {sorted(set(missing) - tied)}, "
                             f"unexpected {sorted(unexpected)}")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            await asyncio.sleep(_GATHER_S)
            batch = self._take_batch()
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except Exception as e:  # reaches the caller as the failure of each request in the batch
                for _, _, future in batch:
                    future.set_exception(e)
                continue
            for (_, _, future), result in zip(batch, results):
                future.set_result(result)

    def _take_batch(self) -> list:
        first = self._queue[0][0].sampling.max_new_tokens
        batch, rows, rest = [], 0, []
        for item in self._queue:
            n = item[0].sampling.n
            if item[0].sampling.max_new_tokens == first and (not batch or rows + n <= self.cfg.max_num_seqs):
                batch.append(item)
                rows += n
            else:
                rest.append(item)
        self._queue = rest
        return batch

    def _run_batch(self, batch: list) -> list[GenerationResult]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        rows, prompts = [], []
        for request, rendered, _ in batch:
            seed = request_seed(request, self.seed)
            for j in range(request.sampling.n):
                rows.append(Row(request.sampling, seed + j, matcher=self._matcher(request.sampling.regex)))
                prompts.append(rendered.token_ids)
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        config = GenerationConfig(do_sample=False, max_new_tokens=max(r.sampling.max_new_tokens for r in rows),
                                  eos_token_id=sorted(self.stop_ids), pad_token_id=self.pad_id)
        controller = RowController(rows, self.tokenizer, self.stop_ids)
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                logits_processor=LogitsProcessorList([controller]))
        results, start = [], 0
        for request, rendered, _ in batch:
            n = request.sampling.n
            completions = tuple(row_completion(r, self.tokenizer, self.stop_ids, self._token_text)
                                for r in rows[start : start + n])
            start += n
            results.append(GenerationResult(
                id=request.id, completions=completions, prompt_tokens=len(rendered.token_ids),
                completion_tokens=sum(len(c.token_ids) for c in completions), prompt_truncated=rendered.truncated,
            ))
        return results

    def _matcher(self, regex: str | None):
        if regex is None:
            return None
        import xgrammar as xgr

        if self._grammar_compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size,
                                                      stop_token_ids=sorted(self.stop_ids))
            self._grammar_compiler = xgr.GrammarCompiler(info)
        if regex not in self._grammars:
            self._grammars[regex] = self._grammar_compiler.compile_regex(regex)
        return xgr.GrammarMatcher(self._grammars[regex])

