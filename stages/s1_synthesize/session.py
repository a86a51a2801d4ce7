"""One model's engines behind a journaled `generate`: answered requests come from the journal (or from a generation
cache shared by runs), the rest go to the engines (started only when something is left to send), and every step's
counts, tokens and time are recorded."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import (
    GenerationRequest,
    GenerationResult,
    Sampling,
    open_backend,
)
from rlhf_stack.core.progress import Progress
from rlhf_stack.core.sections import ClusterConfig
from stages.s1_synthesize.journal import RequestJournal
from stages.s1_synthesize.stats import StageStats


def make_request(step: str, model: str, key: str, messages: tuple[tuple[str, str], ...], sampling: Sampling,
                 overflow: str = "fail") -> GenerationRequest:
    """A request whose id names the step and item and ends in a digest of everything that decides its answer."""
    content = json.dumps([model, messages, asdict(sampling), overflow], sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    return GenerationRequest(id=f"{step}/{key}#{digest}", messages=messages, sampling=sampling, overflow=overflow)


def cache_scope(model: dict, engine: EngineConfig, seed: int) -> str:
    """What, besides a request's own content, decides its answer: the model, its engine and the engine seed."""
    content = json.dumps([model, engine.model_dump(mode="json"), seed], sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


class ModelSession:
    """See the module docstring. `teacher=True` counts this model's tokens as teacher tokens in stats.json.

    Args:
        cache: a generation cache shared by runs, or None; entries are keyed by `scope` and the request id.
        scope: `cache_scope(...)` of this model, engine and seed.
    """

    def __init__(self, alias: str, model_dir: Callable[[], Path], engine: EngineConfig, *, cluster: ClusterConfig,
                 seed: int, journal: RequestJournal, stats: StageStats, teacher: bool,
                 cache: RequestJournal | None = None, scope: str = ""):
        self.alias = alias
        self._model_dir = model_dir
        self.engine = engine
        self.cluster = cluster
        self.seed = seed
        self.journal = journal
        self.stats = stats
        self.teacher = teacher
        self.cache = cache
        self.scope = scope
        self._stack = ExitStack()
        self._backend = None
        self.precision: str | None = None  # what the engines really run at, once started

    def generate(self, step: str, requests: list[GenerationRequest]) -> list[GenerationResult]:
        st = self.stats.steps[step]
        if self.teacher:
            self.stats.teacher_steps.add(step)
        start = time.perf_counter()
        results = {r.id: self.journal.get(r.id) for r in requests}
        st.resumed += sum(result is not None for result in results.values())
        if self.cache is not None:
            for r in requests:
                if results[r.id] is None and (hit := self.cache.get(self._cache_id(r.id))) is not None:
                    results[r.id] = replace(hit, id=r.id)
                    st.shared += 1
        todo = [r for r in requests if results[r.id] is None]
        st.sent += len(todo)
        if todo:
            opening = time.perf_counter()
            backend = self.backend()
            started = time.perf_counter() - opening  # engine start-up is reported apart from the step's time
            self.stats.engine_start_s[self.alias] += started
            start += started
            with Progress(f"{step} ({self.alias})", total=len(todo)) as progress:

                def on_result(result: GenerationResult) -> None:
                    self.journal.add(result)
                    if self.cache is not None and not result.error:
                        self.cache.add(replace(result, id=self._cache_id(result.id)))
                    progress.advance()

                for result in backend.generate(todo, on_result=on_result):
                    results[result.id] = result
                    st.fresh_completion_tokens += result.completion_tokens
        st.wall_time_s += time.perf_counter() - start
        ordered = [results[r.id] for r in requests]
        for result in ordered:
            st.prompt_tokens += result.prompt_tokens
            st.completion_tokens += result.completion_tokens
            st.truncated += result.prompt_truncated
        return ordered

    def _cache_id(self, request_id: str) -> str:
        return f"{self.scope}/{request_id}"

    def backend(self):
        if self._backend is None:
            model_dir = None if self.engine.backend == "openai" and self.engine.served_model_name else self._model_dir()
            self._backend = self._stack.enter_context(open_backend(
                model_dir, self.engine, cluster=self.cluster, seed=self.seed, model_name=self.alias))
            self.precision = self._backend.precision
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self.stats.engine_restarts[self.alias] += getattr(self._backend, "restarts", 0)
        self._stack.close()
        self._backend = None
