"""A pool of engine actors (vLLM or transformers) behind one `generate` call.

Requests are sent one call each to the least busy engine (at most `2 x max_num_seqs` in flight per engine, so a
slow engine does not hoard work), results are handed to `on_result` as they arrive and returned in input order.

Placement: on CPU the pool reserves one placement group with a bundle per engine, spread over the nodes (SPREAD:
distinct nodes while there are enough, several per node otherwise). On GPU each engine gets its own placement
group of `gpus_per_engine` GPU bundles, as OpenRLHF places its vLLM engines; tensor-parallel workers inside it are
started by vLLM's Ray executor.

Failures: when an engine actor dies (a crash, an out-of-memory kill, `ray.kill`, its node lost), a new actor takes
its slot, at most `max_actor_restarts` times per slot, and the requests it had not finished are sent again; every
request yields exactly one result. An actor that stops answering (its node unreachable) gets no work until Ray
decides: it answers again, or it is declared dead (Ray declares a node dead once its health checks fail) and is
replaced. A replacement starts in the slot's bundle, which Ray moves to a surviving node, and gets work once it is
ready; meanwhile the other engines carry the work. A bundle that finds no node within `_PLACEMENT_TIMEOUT_S` stops
the pool with ClusterError.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.types import GenerationRequest, GenerationResult
from ray_cluster.generation.weights import to_shared
from rlhf_stack.core.errors import ClusterError, EngineError
from rlhf_stack.core.hardware import usable_cpus
from ray_cluster.generation.hf_engine import HfEngine
from ray_cluster.generation.vllm_engine import VllmEngine, engine_env

log = logging.getLogger("rlhf_stack")
_PLACEMENT_TIMEOUT_S = 120  # for a placement group to find its node(s), at start and after a node is lost
_FREE_WAIT_S = 5.0  # how long to wait for busy CPUs/GPUs to come free before giving up
_SILENT_LIMIT_S = 180.0  # an actor silent this long is replaced even if Ray has not declared it dead
_PROBE_INTERVAL_S = 1.0  # between two checks of a silent actor
_WATCH_S = 1.0  # how often generate looks at silent and waiting engines while it has any


@dataclass
class _Slot:
    index: int
    actor: Any = None
    generation: int = 0  # how many actors this slot has had
    restarts: int = 0
    in_flight: int = 0
    placement_group: Any = None  # the pool's group (CPU) or the engine's own (GPU)
    bundle_index: int = 0
    cpu_bind: str | None = None
    last_error: str = ""
    pids: list[int] = field(default_factory=list)
    precision: str | None = None  # of the weights the engine loaded, as it reports them
    threads: int | None = None  # torch threads of the engine process
    ready: bool = False  # the current actor has answered ready(); it gets work only then
    check: Any = None  # a ready() call to the current actor not yet looked at
    checked_at: float = 0.0
    silent_since: float | None = None  # the actor stopped answering; no work until Ray says whether it is dead
    replaced_at: float | None = None  # a replacement whose bundle may still be looking for a node

    @property
    def serving(self) -> bool:
        return self.ready and self.silent_since is None


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
        self._weights: Any = None  # object ref of the latest in-memory weights (update_weights), if any
        self._check_resources()
        binds = _cpu_binds(cfg, len(ray.nodes()) == 1)
        self.slots = [_Slot(i, cpu_bind=binds[i], bundle_index=0 if cfg.gpus_per_engine else i)
                      for i in range(cfg.num_engines)]
        try:
            if not cfg.gpus_per_engine:
                group = self._reserve([{"CPU": cfg.cpus_per_engine}] * cfg.num_engines, "SPREAD", "its engines")
                for slot in self.slots:
                    slot.placement_group = group
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

    @property
    def precision(self) -> str | None:
        """The precision the engines really run at ("bf16", "fp32", ...; several joined by "/" if they differ)."""
        found = sorted({slot.precision for slot in self.slots if slot.precision})
        return "/".join(found) or None

    def node_ids(self) -> list[str | None]:
        """The Ray node each engine's bundle is on, one per slot (None while a bundle looks for a node)."""
        from ray.util import placement_group_table

        return [placement_group_table(slot.placement_group)["bundles_to_node_id"].get(slot.bundle_index)
                for slot in self.slots]

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
            watching = self._watch()
            serving = [slot for slot in self.slots if slot.serving]
            while pending and serving:
                slot = min(serving, key=lambda s: s.in_flight)
                if slot.in_flight >= cap:
                    break
                index = pending.popleft()
                in_flight[slot.actor.generate.remote(requests[index])] = (slot, slot.generation, index)
                slot.in_flight += 1
            refs = [*in_flight, *(slot.check for slot in self.slots if slot.check is not None)]
            if not refs:  # every engine is silent, between two probes
                time.sleep(_WATCH_S)
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=_WATCH_S if watching else None)
            for ref in ready:
                if ref not in in_flight:
                    continue  # a ready() check: the next _watch reads it
                slot, generation, index = in_flight.pop(ref)
                slot.in_flight -= 1
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    pending.appendleft(index)  # sent again, to whichever engine serves next
                    if generation == slot.generation:  # not an actor this slot has replaced already
                        self._failed(slot, e)
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
        self._weights = None

    def update_weights(self, tensors: Mapping[str, Any]) -> None:
        """Hands every engine new weights from memory (HF parameter names, the served architecture).

        One copy goes into Ray's object store; engines on the same node read it from shared memory. An engine
        that is restarted later gets the same weights before it serves.
        """
        import ray
        from ray.exceptions import RayTaskError

        ref = ray.put(to_shared(tensors))
        try:
            ray.get([slot.actor.update_weights.remote(ref) for slot in self.slots])
        except RayTaskError as e:
            raise EngineError(f"{self.name}: cannot take the new weights: {e.cause or e}") from e
        self._weights = ref  # keeps the object alive for replacements

    def close(self) -> None:
        import ray

        groups = {}
        for slot in self.slots if hasattr(self, "slots") else []:
            if slot.actor is not None:
                ray.kill(slot.actor)
                slot.actor = None
            if slot.placement_group is not None:
                groups[slot.placement_group.id] = slot.placement_group
                slot.placement_group = None
        for group in groups.values():
            ray.util.remove_placement_group(group)

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- actors -------------------------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        env = engine_env(self.cfg, slot.cpu_bind) if self.backend == "vllm" else {"TOKENIZERS_PARALLELISM": "false"}
        if slot.placement_group is None:  # GPU: the engine's own group, kept across restarts
            bundles = [{"GPU": 1, "CPU": self.cfg.cpus_per_engine}] * self.cfg.gpus_per_engine
            slot.placement_group = self._reserve(bundles, "PACK", f"engine {slot.index}")
        # Bundle 0's GPU is held by the engine itself unless vLLM starts tensor-parallel workers in the group.
        strategy = PlacementGroupSchedulingStrategy(placement_group=slot.placement_group,
                                                    placement_group_bundle_index=slot.bundle_index,
                                                    placement_group_capture_child_tasks=bool(self.cfg.gpus_per_engine))
        options: dict[str, Any] = dict(
            name=f"{self.name}-engine{slot.index}-{slot.generation}-{self._tag}", namespace=self.namespace,
            num_cpus=self.cfg.cpus_per_engine, num_gpus=1 if self.cfg.gpus_per_engine == 1 else 0, max_restarts=0,
            runtime_env={"env_vars": env}, scheduling_strategy=strategy,
        )
        slot.generation += 1
        if self.backend == "vllm":
            slot.actor = ray.remote(VllmEngine).options(**options).remote(self.model_dir, self.cfg, self.seed, env)
        else:
            slot.actor = ray.remote(HfEngine).options(**options).remote(self.model_dir, self.cfg, self.seed)

    def _reserve(self, bundles: list[dict[str, float]], strategy: str, what: str) -> Any:
        """A placement group for `what`, once Ray has found node(s) for every bundle."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        group = placement_group(bundles, strategy=strategy)
        ready, _ = ray.wait([group.ready()], timeout=_PLACEMENT_TIMEOUT_S)
        if not ready:
            remove_placement_group(group)
            raise ClusterError(f"{self.name}: no node(s) of the cluster offer {bundles} for {what} within "
                               f"{_PLACEMENT_TIMEOUT_S} s; free: {ray.available_resources()}")
        return group

    def _await_ready(self, slot: _Slot) -> None:
        import ray
        from ray.exceptions import RayActorError

        try:
            info = ray.get(slot.actor.ready.remote())
        except RayActorError as e:
            raise EngineError(f"{self.name}: engine {slot.index} ({self.backend}, {self.model_dir}) failed to "
                              f"start: {e}") from e
        slot.pids.append(info["pid"])
        slot.precision, slot.threads = info.get("precision"), info.get("threads")
        slot.ready = True
        node = self.node_ids()[slot.index] or "?"
        log.info("%s: engine %d ready (%s, %s, %s threads, pid %d, node %s)", self.name, slot.index, self.backend,
                 slot.precision, slot.threads, info["pid"], node[:8])

    # -- failures -----------------------------------------------------------------------------------------------

    def _failed(self, slot: _Slot, error: Exception) -> None:
        """A call to the slot's current actor raised `error` (a RayActorError)."""
        from ray.exceptions import ActorUnavailableError

        if not isinstance(error, ActorUnavailableError):
            self._replace(slot, error)
        elif slot.silent_since is None:
            # The connection broke: the process or its whole node may be gone, or the network hiccuped. Ray
            # knows which only once the node's health checks have failed; until then the engine gets no work.
            slot.silent_since = time.monotonic()
            slot.last_error = _first_line(error)
            log.warning("%s: engine %d stopped answering (%s); its requests go to the other engines until Ray "
                        "knows whether it is dead", self.name, slot.index, slot.last_error)

    def _watch(self) -> bool:
        """Reads answered ready() checks, probes silent actors, follows replacements to their node.

        Returns:
            Whether an engine is not serving (generate then wakes up every _WATCH_S to look again).

        Raises:
            ClusterError: A replacement's bundle found no node within _PLACEMENT_TIMEOUT_S.
            EngineError: An engine died more often than max_actor_restarts allows.
        """
        import ray
        from ray.exceptions import RayActorError
        from ray.util import placement_group_table

        checks = {slot.check: slot for slot in self.slots if slot.check is not None}
        done, _ = ray.wait(list(checks), num_returns=len(checks), timeout=0) if checks else ([], [])
        for ref in done:
            slot = checks[ref]
            slot.check = None
            try:
                ray.get(ref)
            except RayActorError as e:
                self._failed(slot, e)
                continue
            if slot.silent_since is not None:
                log.info("%s: engine %d answers again", self.name, slot.index)
            slot.ready, slot.silent_since = True, None
        now = time.monotonic()
        for slot in self.slots:
            if slot.silent_since is not None and slot.check is None:
                if now - slot.silent_since > _SILENT_LIMIT_S:
                    self._replace(slot, TimeoutError(f"silent for {_SILENT_LIMIT_S:.0f} s ({slot.last_error})"))
                elif now - slot.checked_at >= _PROBE_INTERVAL_S:
                    slot.check, slot.checked_at = slot.actor.ready.remote(), now
            if slot.replaced_at is not None:
                if placement_group_table(slot.placement_group)["state"] == "CREATED":
                    slot.replaced_at = None
                elif now - slot.replaced_at > _PLACEMENT_TIMEOUT_S:
                    raise ClusterError(
                        f"{self.name}: engine {slot.index} was lost ({slot.last_error}) and no node of the cluster "
                        f"can host its replacement ({self.cfg.cpus_per_engine:g} CPUs, "
                        f"{self.cfg.gpus_per_engine} GPUs) within {_PLACEMENT_TIMEOUT_S} s; free: "
                        f"{ray.available_resources()}. Add a node, or lower num_engines or the resources per engine"
                    )
        return any(not slot.serving for slot in self.slots)

    def _replace(self, slot: _Slot, error: Exception) -> None:
        import ray

        slot.last_error = _first_line(error)
        if slot.restarts >= self.cfg.max_actor_restarts:
            raise EngineError(
                f"{self.name}: engine {slot.index} died {slot.restarts + 1} time(s), more than max_actor_restarts "
                f"({self.cfg.max_actor_restarts}) allows; last error: {slot.last_error}. Check the actor logs "
                "(memory, model folder, lost nodes) or raise max_actor_restarts"
            ) from error
        slot.restarts += 1
        log.warning("%s: engine %d died (%s); restarting it (%d/%d) and resending its requests", self.name,
                    slot.index, slot.last_error, slot.restarts, self.cfg.max_actor_restarts)
        ray.kill(slot.actor)  # a silent actor may still hold its bundle; for a dead one this does nothing
        self._start(slot)
        slot.ready, slot.silent_since = False, None
        # It gets work once this answers; when the trainer has handed over weights, it serves those.
        slot.check = (slot.actor.ready.remote() if self._weights is None
                      else slot.actor.update_weights.remote(self._weights))
        slot.replaced_at = time.monotonic()  # until its bundle is placed (at once unless its node was lost)

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

def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _cpu_binds(cfg: EngineConfig, single_node: bool) -> list[str | None]:
    """Disjoint CPU sets ("0,1") for CPU engines on a one-machine cluster, so engines do not fight over cores."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cores = cores[:usable_cpus()]
    per_engine = max(1, int(cfg.cpus_per_engine))
    if cfg.gpus_per_engine or not single_node or not cores or cfg.num_engines * per_engine > len(cores):
        return [None] * cfg.num_engines
    return [",".join(map(str, cores[i * per_engine:(i + 1) * per_engine])) for i in range(cfg.num_engines)]
