"""Connecting to a real Ray cluster started with `ray start --head` on 127.0.0.1."""

import pytest

from ray_cluster.launch.local import LocalCluster
from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.core.errors import ClusterError
from rlhf_stack.core.sections import ClusterConfig


def test_connects_to_a_running_cluster():
    import ray

    with LocalCluster(num_workers=0, cpus_per_node=1) as cluster:
        ensure_ray(ClusterConfig(address=cluster.address))
        try:
            assert ray.cluster_resources()["CPU"] == 1
            assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
        finally:
            shutdown()


def test_unreachable_address_is_a_cluster_error():
    with pytest.raises(ClusterError, match="nothing answers there"):
        ensure_ray(ClusterConfig(address="127.0.0.1:1"))
