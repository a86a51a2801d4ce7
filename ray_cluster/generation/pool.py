"""A pool of engine actors (vLLM or transformers) behind one `generate` call.

Requests are sent one call each to the least busy engine (at most `2 x max_num_seqs` in flight per engine, so a
slow engine does not hoard work), results are handed to `on_result` as they arrive and returned in input order.
When an engine actor dies (a crash, an out-of-memory kill, `ray.kill`), a new actor takes its slot, at most
`max_actor_restarts` times per slot, and the requests it had not finished are sent again; every request yields
exactly one result. On GPU each engine gets its own placement group of `gpus_per_engine` GPU bundles, as
OpenRLHF places its vLLM engines; tensor-parallel workers inside it are started by vLLM's Ray executor.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.types import GenerationRequest, GenerationResult
from rlhf_stack.errors import ClusterError, EngineError

log = logging.getLogger("rlhf_stack")
_PLACEMENT_TIMEOUT_S = 120
_FREE_WAIT_S = 5.0  # how long to wait for busy CPUs/GPUs to come free before giving up


@dataclass
class _Slot:
    index: int
    actor: Any = None
    generation: int = 0  # how many actors this slot has had
    restarts: int = 0
    in_flight: int = 0
    placement_group: Any = None
    cpu_bind: str | None = None
    last_error: str = ""
    pids: list[int] = field(default_factory=list)


class EnginePool:
    """Engine actors for one model; see the module docstring. Use as a context manager or call `close()`."""

    def __init__(self, backend: str, model_dir: str, cfg: EngineConfig, *, seed: int, name: str, namespace: str):
        import ray

        self.backend = backend
        self.model_dir = model_dir
        self.cfg = cfg
        self.seed = seed
        self.name = name
        self.namespace = namespace
        self._tag = uuid.uuid4().hex[:6]
        self._check_resources()
        binds = _cpu_binds(cfg, len(ray.nodes()) == 1)
        self.slots = [_Slot(i, cpu_bind=binds[i]) for i in range(cfg.num_engines)]
        try:
            for slot in self.slots:
                self._start(slot)
            for slot in self.slots:
                self._await_ready(slot)
        except BaseException:
            self.close()
            raise

    @property
    def actors(self) -> list[Any]:
        """The live engine actor handles, one per slot (for inspection and fault-injection tests)."""
        return [slot.actor for slot in self.slots]

    @property
    def restarts(self) -> int:
        return sum(slot.restarts for slot in self.slots)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_result: Callable[[GenerationResult], None] | None = None,
    ) -> list[GenerationResult]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        results: list[GenerationResult | None] = [None] * len(requests)
        pending = deque(range(len(requests)))
        in_flight: dict[Any, tuple[_Slot, int, int]] = {}  # ref -> (slot, slot generation, request index)
        cap = 2 * self.cfg.max_num_seqs
        while pending or in_flight:
            while pending:
                slot = min(self.slots, key=lambda s: s.in_flight)
                if slot.in_flight >= cap:
                    break
                index = pending.popleft()
                in_flight[slot.actor.generate.remote(requests[index])] = (slot, slot.generation, index)
                slot.in_flight += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                slot, generation, index = in_flight.pop(ref)
                slot.in_flight -= 1
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    if slot.generation == generation:  # the first failure seen from this actor: replace it
                        self._replace(slot, e)
                    pending.appendleft(index)
                    continue
                except RayTaskError as e:
                    raise EngineError(f"{self.name}: engine {slot.index} failed on request "
                                      f"{requests[index].id!r}: {e.cause or e}") from e
                results[index] = result
                if on_result is not None:
                    on_result(result)
        return results  # type: ignore[return-value]  # every index was filled exactly once

    def load_weights(self, folder: str) -> None:
        """Loads a saved HF folder of the same architecture into every engine; restarted engines load it too."""
        import ray
        from ray.exceptions import RayTaskError

        try:
            ray.get([slot.actor.load_weights.remote(str(folder)) for slot in self.slots])
        except RayTaskError as e:
            raise EngineError(f"{self.name}: cannot load weights from {folder}: {e.cause or e}") from e
        self.model_dir = str(folder)

    def close(self) -> None:
        import ray

        for slot in self.slots if hasattr(self, "slots") else []:
            if slot.actor is not None:
                ray.kill(slot.actor)
                slot.actor = None
            if slot.placement_group is not None:
                ray.util.remove_placement_group(slot.placement_group)
                slot.placement_group = None

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- actors -------------------------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        import ray

        from ray_cluster.generation.hf_engine import HfEngine
        from ray_cluster.generation.vllm_engine import VllmEngine, engine_env

        env = engine_env(self.cfg, slot.cpu_bind) if self.backend == "vllm" else {"TOKENIZERS_PARALLELISM": "false"}
        options: dict[str, Any] = dict(
            name=f"{self.name}-engine{slot.index}-{slot.generation}-{self._tag}", namespace=self.namespace,
            num_cpus=self.cfg.cpus_per_engine, num_gpus=0, max_restarts=0, runtime_env={"env_vars": env},
        )
        if self.cfg.gpus_per_engine:
            options.update(self._placement(slot))
        slot.generation += 1
        if self.backend == "vllm":
            slot.actor = ray.remote(VllmEngine).options(**options).remote(self.model_dir, self.cfg, self.seed, env)
        else:
            slot.actor = ray.remote(HfEngine).options(**options).remote(self.model_dir, self.cfg, self.seed)

    def _placement(self, slot: _Slot) -> dict[str, Any]:
        """One placement group per engine; the engine holds bundle 0's GPU itself unless vLLM runs TP workers."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if slot.placement_group is None:
            bundles = [{"GPU": 1, "CPU": self.cfg.cpus_per_engine}] * self.cfg.gpus_per_engine
            slot.placement_group = placement_group(bundles, strategy="PACK")
            ready, _ = ray.wait([slot.placement_group.ready()], timeout=_PLACEMENT_TIMEOUT_S)
            if not ready:
                raise ClusterError(f"{self.name}: no node offers {self.cfg.gpus_per_engine} GPU(s) for engine "
                                   f"{slot.index} within {_PLACEMENT_TIMEOUT_S} s: {ray.available_resources()}")
        strategy = PlacementGroupSchedulingStrategy(placement_group=slot.placement_group,
                                                    placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=True)
        return {"num_gpus": 1 if self.cfg.gpus_per_engine == 1 else 0, "scheduling_strategy": strategy}

    def _await_ready(self, slot: _Slot) -> None:
        import ray
        from ray.exceptions import RayActorError

        try:
            info = ray.get(slot.actor.ready.remote())
        except RayActorError as e:
            raise EngineError(f"{self.name}: engine {slot.index} ({self.backend}, {self.model_dir}) failed to "
                              f"start: {e}") from e
        slot.pids.append(info["pid"])
        log.info("%s: engine %d ready (%s, pid %d)", self.name, slot.index, self.backend, info["pid"])

    def _replace(self, slot: _Slot, error: Exception) -> None:
        slot.last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
        if slot.restarts >= self.cfg.max_actor_restarts:
            raise EngineError(
                f"{self.name}: engine {slot.index} died {slot.restarts + 1} time(s), more than max_actor_restarts "
                f"({self.cfg.max_actor_restarts}) allows; last error: {slot.last_error}. Check the actor logs "
                "(memory, model folder) or raise max_actor_restarts"
            ) from error
        slot.restarts += 1
        log.warning("%s: engine %d died (%s); restarting it (%d/%d) and resending its requests", self.name,
                    slot.index, slot.last_error, slot.restarts, self.cfg.max_actor_restarts)
        self._start(slot)

    def _check_resources(self) -> None:
        """Fail now, rather than wait forever for actors that cannot be placed."""
        import ray

        total = ray.cluster_resources()
        deadline = time.monotonic() + _FREE_WAIT_S
        for kind, per_engine in (("CPU", self.cfg.cpus_per_engine), ("GPU", self.cfg.gpus_per_engine)):
            need = self.cfg.num_engines * per_engine
            if need > total.get(kind, 0):
                raise ClusterError(
                    f"{self.name}: {self.cfg.num_engines} engine(s) x {per_engine:g} {kind}(s) need {need:g} "
                    f"{kind}s; the Ray cluster has {total.get(kind, 0):g}. Lower num_engines or "
                    f"{kind.lower()}s_per_engine, or give the cluster more {kind}s"
                )
            # Resources of actors that were just stopped come back after a moment.
            while need > (free := ray.available_resources().get(kind, 0)) and time.monotonic() < deadline:
                time.sleep(0.2)
            if need > free:
                raise ClusterError(
                    f"{self.name}: {self.cfg.num_engines} engine(s) need {need:g} {kind}s but only {free:g} of "
                    f"the cluster's {total.get(kind, 0):g} are free; other actors hold the rest (close the engines "
                    "you no longer need first)"
                )

def _cpu_binds(cfg: EngineConfig, single_node: bool) -> list[str | None]:
    """Disjoint core ranges for CPU engines on a one-machine cluster, so engines do not fight over cores."""
    cores = os.cpu_count() or 1
    per_engine = max(1, int(cfg.cpus_per_engine))
    if cfg.gpus_per_engine or not single_node or cfg.num_engines * per_engine > cores:
        return [None] * cfg.num_engines
    return [f"{i * per_engine}-{(i + 1) * per_engine - 1}" for i in range(cfg.num_engines)]
