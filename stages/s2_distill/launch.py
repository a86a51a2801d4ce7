"""Starts the training ranks: in this process for one local rank, otherwise as Ray actors (one per rank).

Ray ranks are placed with a placement group; rank 0 picks the rendezvous port on its node, and the process group
uses 127.0.0.1 on a local Ray or rank 0's node address on a cluster. On a multi-node cluster the run folder and
the model folders must be on storage every node sees (checkpoints are written there by every rank).
"""

from __future__ import annotations

import os
import socket

from rlhf_stack.core.errors import ClusterError, RlhfStackError
from rlhf_stack.core.sections import ClusterConfig
from stages.s2_distill.settings import TrainData, TrainSettings
from stages.s2_distill.trainer import RankResult, train_rank
from ray_cluster.session import ensure_ray

PLACEMENT_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def run_training(s: TrainSettings, data: TrainData, cluster: ClusterConfig,
                 cpus_per_process: int | None) -> RankResult:
    if s.world_size == 1 and cluster.address == "local":
        import torch

        if s.device == "cuda" and not torch.cuda.is_available():
            raise ClusterError("distill.gpus_per_process is 1, but this machine has no CUDA device; set "
                               "gpus_per_process: 0 to train on CPU, or run on a GPU machine")
        threads = torch.get_num_threads()
        torch.set_num_threads(cpus_per_process or threads)
        try:
            return train_rank(s, data, rank=0, master_addr="127.0.0.1", master_port=free_port())
        finally:
            torch.set_num_threads(threads)
    return _train_on_ray(s, data, cluster, cpus_per_process or 1)


class RankWorker:
    """A Ray actor hosting one training rank."""

    def __init__(self, threads: int):
        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)  # ranks sharing a node must not oversubscribe its cores
        torch.set_num_threads(threads)

    def rendezvous(self, local: bool) -> tuple[str, int]:
        import ray

        return ("127.0.0.1" if local else ray.util.get_node_ip_address()), free_port()

    def train(self, s: TrainSettings, data: TrainData, rank: int, addr: str, port: int) -> RankResult:
        return train_rank(s, data, rank, addr, port)


def _train_on_ray(s: TrainSettings, data: TrainData, cluster: ClusterConfig, cpus: int) -> RankResult:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ensure_ray(cluster)
    gpus = 1 if s.device == "cuda" else 0
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    group = placement_group([bundle] * s.world_size, strategy="PACK")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(group)
        raise ClusterError(
            f"distill: Ray cannot place {s.world_size} ranks of {bundle} within {PLACEMENT_TIMEOUT_S} s "
            f"(cluster has {ray.cluster_resources()}); lower distill.num_processes or cpus_per_process"
        )
    actor = ray.remote(RankWorker)
    workers = [
        actor.options(num_cpus=cpus, num_gpus=gpus,
                      scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i),
                      runtime_env={"env_vars": {"OMP_NUM_THREADS": str(cpus)}}).remote(cpus)
        for i in range(s.world_size)
    ]
    try:
        addr, port = ray.get(workers[0].rendezvous.remote(cluster.address == "local"))
        data_ref = ray.put(data)
        pending = [w.train.remote(s, data_ref, rank, addr, port) for rank, w in enumerate(workers)]
        first = pending[0]
        results = {}
        while pending:  # a failed rank would leave the others waiting in a collective: stop at the first error
            done, pending = ray.wait(pending, num_returns=1)
            results[done[0]] = _get(done[0])
        return results[first]
    finally:
        for w in workers:
            ray.kill(w)
        remove_placement_group(group)


def _get(ref) -> RankResult:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, RlhfStackError):
            raise cause from None
        raise
