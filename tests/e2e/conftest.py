"""Shared by the end-to-end tests that ask for them: a real two-node Ray cluster on 127.0.0.1, and one
uninterrupted run of the tiny recipe."""

from pathlib import Path

import pytest

from ray_cluster.launch.local import LocalCluster
from rlhf_stack.app.cli import main

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"

# The head declares a node dead after 4 failed health checks 0.5 s apart (about 3 s) instead of Ray's 5 x 3 s, so
# the tests that stop a node wait less. A check fails only when the node does not answer at all.
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}


@pytest.fixture(scope="session")
def two_node_cluster():
    """A head and one worker node, each a `ray start` process of its own offering 4 CPUs (Ray only counts them).

    Stopped at the end of the session, also when a test or the start failed; nothing of it may outlive it.
    """
    cluster = LocalCluster(num_workers=1, cpus_per_node=4, system_config=FAST_NODE_DEATH)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
    assert cluster.leftover_processes() == []
    assert not cluster.root.exists()


@pytest.fixture
def cluster(two_node_cluster):
    """The shared cluster with a live worker node: a new one joins when an earlier test stopped the last one."""
    if not any(worker.alive for worker in two_node_cluster.workers):
        two_node_cluster.add_worker()
    return two_node_cluster


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory) -> Path:
    """recipes/tiny.yaml run once through the CLI, never interrupted. Read-only: a test that changes it copies it."""
    run_dir = tmp_path_factory.mktemp("tiny_reference")
    assert main(["run", str(TINY), "--set", f"run_dir={run_dir}"]) == 0
    return run_dir
