"""Connecting to a real Ray cluster started with `ray start --head` on 127.0.0.1."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.errors import ClusterError
from rlhf_stack.sections import ClusterConfig

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def head_node():
    port = "6391"
    temp_dir = tempfile.mkdtemp(prefix="rs-")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # bind to loopback
    subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    f"--temp-dir={temp_dir}", "--disable-usage-stats"], check=True, env=env, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_connects_to_a_running_cluster(head_node):
    import ray

    ensure_ray(ClusterConfig(address=head_node))
    try:
        assert ray.cluster_resources()["CPU"] == 1
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
    finally:
        shutdown()


def test_unreachable_address_is_a_cluster_error():
    with pytest.raises(ClusterError, match="nothing answers there"):
        ensure_ray(ClusterConfig(address="127.0.0.1:1"))
