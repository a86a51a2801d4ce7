"""Connecting to Ray: start an embedded local Ray, or join an existing cluster.

`ensure_ray` is idempotent; stages call it before they create actors. `shutdown` stops an embedded Ray and only
detaches from a shared cluster (ray.shutdown never stops a cluster this process merely joined).
"""

from __future__ import annotations

import logging
import os
import socket

from rlhf_stack.core.errors import ClusterError
from rlhf_stack.core.hardware import usable_cpus
from rlhf_stack.core.sections import ClusterConfig

log = logging.getLogger("rlhf_stack")
# Passed to every worker, so caches and thread counts behave the same in actors as in the driver.
_FORWARDED_ENV = ("RLHF_STACK_CACHE", "TORCH_EXTENSIONS_DIR", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "HF_HOME")


def ensure_ray(cluster: ClusterConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    env_vars = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    env_vars["TOKENIZERS_PARALLELISM"] = "false"
    if cluster.address == "local":
        ray.init(
            num_cpus=cluster.num_cpus or usable_cpus(),  # not os.cpu_count(): a cgroup quota or affinity mask counts
            num_gpus=cluster.num_gpus,
            include_dashboard=False,
            namespace=cluster.namespace,
            runtime_env={"env_vars": env_vars},
            log_to_driver=True,
        )
        log.info("started a local Ray: %s", ray.cluster_resources())
        return
    _check_reachable(cluster.address)
    runtime_env = dict(cluster.runtime_env)
    runtime_env["env_vars"] = {**env_vars, **runtime_env.get("env_vars", {})}
    try:
        ray.init(address=cluster.address, namespace=cluster.namespace, runtime_env=runtime_env)
    except ValueError as e:
        if "merge" not in str(e).lower():
            raise
        raise ClusterError(
            f"cluster.runtime_env conflicts with the runtime environment of the Ray job this driver runs in ({e}). "
            "Drop the conflicting keys from the recipe, or set RAY_OVERRIDE_JOB_RUNTIME_ENV=1 "
            "(`rlhf-stack submit` does)"
        ) from e
    except (ConnectionError, RuntimeError) as e:
        raise ClusterError(
            f"cluster.address {cluster.address!r}: cannot connect to Ray ({e}). Start the cluster "
            "(`ray start --head`), check the address (host:port of the GCS, or 'auto'), or use address: local"
        ) from e
    log.info("connected to Ray at %s: %s", cluster.address, ray.cluster_resources())


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a GCS address nobody listens on (ray.init would retry for minutes)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        raise ClusterError(
            f"cluster.address {address!r}: nothing answers there ({e}). Start the cluster (`ray start --head`), "
            "check host:port of its GCS, or use address: local"
        ) from e


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
