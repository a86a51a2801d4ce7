"""The cluster launch files: the Ray autoscaler YAML passes Ray's own checks, the KubeRay manifest is well formed."""

import copy
import re
from pathlib import Path

import pytest
import yaml

LAUNCH = Path(__file__).resolve().parents[2] / "ray_cluster" / "launch"
# Kubernetes resource quantities (e.g. "8", 32Gi, 500m) and container names (DNS labels).
QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)([KMGTPE]i|[numkMGTPE])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _ray_checks(config: dict) -> dict:
    """What `ray up` does with the file before it contacts the cloud: fill in defaults, then validate the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def ray_config() -> dict:
    return yaml.safe_load((LAUNCH / "ray-cluster.yaml").read_text())


def test_ray_cluster_yaml_passes_rays_schema(ray_config):
    prepared = _ray_checks(ray_config)
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["max_workers"] == 0
    workers = {name: t for name, t in prepared["available_node_types"].items() if name != prepared["head_node_type"]}
    assert workers and all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in workers.values())
    assert any("[gpu]" in command for command in prepared["worker_setup_commands"])  # the project, gpu extra
    assert any("--head" in command for command in prepared["head_start_ray_commands"])
    assert {".venv", ".git", "runs", ".cache"} <= set(prepared["rsync_exclude"])


def test_rays_schema_check_would_catch_a_typo(ray_config):
    from jsonschema import ValidationError

    broken = copy.deepcopy(ray_config)
    broken["available_node_types"]["gpu.1x"]["max_worker"] = 2
    with pytest.raises(ValidationError, match="max_worker"):
        _ray_checks(broken)


def test_kuberay_manifest_has_what_kuberay_requires():
    documents = list(yaml.safe_load_all((LAUNCH / "kuberay-cluster.yaml").read_text()))
    clusters = [d for d in documents if d and d.get("kind") == "RayCluster"]
    assert len(clusters) == 1
    cluster = clusters[0]
    assert cluster["apiVersion"] == "ray.io/v1" and DNS_LABEL.match(cluster["metadata"]["name"])
    spec = cluster["spec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # the CRD wants a map of strings
    pods = {"head": head["template"]}
    groups = spec["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        pods[group["groupName"]] = group["template"]
    for name, template in pods.items():
        containers = template["spec"]["containers"]
        assert containers, name
        declared_volumes = {v["name"] for v in template["spec"].get("volumes", [])}
        for container in containers:
            assert DNS_LABEL.match(container["name"]) and container["image"], name
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert all(QUANTITY.match(str(q)) for q in resources[kind].values()), (name, kind)
            gpus = int(resources["limits"].get("nvidia.com/gpu", 0))
            assert (gpus == 0) == (name == "head"), name  # GPUs on every worker group, none on the head
            assert {m["name"] for m in container.get("volumeMounts", [])} <= declared_volumes, name
    claims = {d["metadata"]["name"] for d in documents if d and d.get("kind") == "PersistentVolumeClaim"}
    used = {v["persistentVolumeClaim"]["claimName"] for t in pods.values() for v in t["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v}
    assert used <= claims
