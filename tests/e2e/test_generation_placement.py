"""GPU placement of engines, exercised on CPU: a local Ray that declares two GPUs gives each engine its own
placement group (the engines themselves run on CPU here, since no CUDA device exists)."""

import time

import pytest

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.core.errors import ClusterError
from rlhf_stack.core.sections import ClusterConfig

CLUSTER = ClusterConfig(address="local", num_cpus=2, num_gpus=2)


@pytest.fixture(scope="module")
def gpu_ray():
    ensure_ray(CLUSTER)
    yield
    shutdown()


def test_each_engine_gets_a_placement_group_of_its_gpus(gpu_ray, tiny_model):
    import ray
    from ray.util import placement_group_table

    cfg = EngineConfig(backend="hf", num_engines=2, cpus_per_engine=0.5, gpus_per_engine=1)
    with open_backend(tiny_model, cfg, cluster=CLUSTER, model_name="placed") as backend:
        groups = [slot.placement_group for slot in backend.slots]
        assert len({g.id for g in groups}) == 2
        for group in groups:
            table = placement_group_table(group)
            assert table["state"] == "CREATED" and table["bundles"] == {0: {"GPU": 1.0, "CPU": 0.5}}
        assert ray.available_resources().get("GPU", 0) == 0  # both GPUs held by the engines
        request = GenerationRequest(id="q", messages=(("user", "hi"),), sampling=Sampling(max_new_tokens=4))
        assert backend.generate([request])[0].completions
    deadline = time.monotonic() + 10  # closing the backend frees its placement groups (Ray does it shortly after)
    while ray.available_resources().get("GPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("GPU", 0) == 2


def test_more_gpus_than_the_cluster_has_is_refused_before_any_engine_starts(gpu_ray, tiny_model):
    cfg = EngineConfig(backend="vllm", num_engines=3, cpus_per_engine=0.5, gpus_per_engine=1)
    with pytest.raises(ClusterError, match="need 3 GPUs; the Ray cluster has 2"):
        with open_backend(tiny_model, cfg, cluster=CLUSTER):
            pass
