"""The tiny recipe on a real two-node Ray cluster on 127.0.0.1 (tests/e2e/conftest.py): run against its address,
submitted as a Ray job, and with the worker node SIGKILLed mid-synthesis; engine pools that lose a node.

The pipeline runs twice in full (by address, then submitted), synthesis once more alone (the node-loss run, checked
against the first run's records).
"""

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.app.cli import main as cli_main
from rlhf_stack.core.errors import ClusterError
from rlhf_stack.core.records import PreferenceRecord, read_jsonl
from rlhf_stack.app.run_folder import load_run
from rlhf_stack.core.sections import ClusterConfig
from stages.s1_synthesize import stage as s1

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"
# Two engines of one CPU for the teacher and for the generators: the pool spreads them over both nodes, and the
# head alone can host all four once the worker is gone.
ENGINES = [f"synthesize.{engine}.{key}" for engine in ("teacher_engine", "generator_engine")
           for key in ("num_engines=2", "cpus_per_engine=1")]


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def run_args(run_dir: Path, address: str) -> list[str]:
    """`rlhf-stack run` arguments for the tiny recipe against a cluster (num_cpus only sizes a local Ray)."""
    return [str(TINY), *sets(f"run_dir={run_dir}", f"cluster.address={address}", "cluster.num_cpus=null", *ENGINES)]


def engine_actors(cluster) -> dict[str, tuple[str, str]]:
    """Every engine actor the cluster has seen: id -> (name, node id)."""
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard_url, filters=[("class_name", "=", "HfEngine")], detail=True,
                         limit=10_000, raise_on_missing_output=False)
    return {a.actor_id: (a.name, a.node_id) for a in actors}


def records(run_dir: Path) -> list[PreferenceRecord]:
    return [r for f in sorted((run_dir / s1.FOLDER).glob("records-*.jsonl")) for r in read_jsonl(f, PreferenceRecord)]


def assert_every_stage_published(run_dir: Path) -> None:
    jobs = load_run(run_dir).jobs()
    assert {j.stage for j in jobs} == {"synthesize", "distill", "ppo", "evaluate"}
    for job in jobs:
        manifest = read_manifest(run_dir / job.folder)
        assert manifest is not None and manifest.kind == job.kind, job.folder
    assert "rm_distiller" in (run_dir / "report" / "report.md").read_text()


@pytest.fixture(scope="module")
def address_run(two_node_cluster, tmp_path_factory):
    """The whole tiny recipe from this process against the cluster's GCS address; its engine actors."""
    run_dir = tmp_path_factory.mktemp("address_run")
    before = engine_actors(two_node_cluster)
    assert cli_main(["run", *run_args(run_dir, two_node_cluster.address)]) == 0
    actors = {k: v for k, v in engine_actors(two_node_cluster).items() if k not in before}
    return run_dir, actors


def test_the_pipeline_runs_against_the_cluster_address(address_run):
    run_dir, _ = address_run
    assert_every_stage_published(run_dir)
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    assert resolved["cluster"]["address"].startswith("127.0.0.1:")


def pools(actors: dict[str, tuple[str, str]], model: str) -> dict[str, dict[str, str]]:
    """The engine pools of one model alias: pool tag -> {actor name: node id} (names end in the pool's tag)."""
    found: dict[str, dict[str, str]] = {}
    for name, node in actors.values():
        if name.startswith(f"{model}-engine"):
            found.setdefault(name.rsplit("-", 1)[1], {})[name] = node
    return found


def assert_synthesis_engines_on_both_nodes(actors: dict[str, tuple[str, str]], cluster) -> None:
    nodes = {cluster.node_id(cluster.head), cluster.node_id(cluster.workers[-1])}
    for model in ("teacher", "policy"):  # the teacher's other pools (evaluate's judge) have a single engine
        synthesis = [pool for pool in pools(actors, model).values() if len(pool) == 2]
        assert len(synthesis) == 1 and set(synthesis[0].values()) == nodes, (model, pools(actors, model))


def test_the_synthesis_engines_land_on_both_nodes(address_run, two_node_cluster):
    assert_synthesis_engines_on_both_nodes(address_run[1], two_node_cluster)


def test_the_pipeline_runs_as_a_submitted_job(cluster, tmp_path, capsys):
    run_dir = tmp_path / "submitted"  # absolute: the job writes here, not in its copy of the checkout
    args = sets(f"run_dir={run_dir}", *ENGINES)  # submit points the driver at the cluster it runs in itself
    before = engine_actors(cluster)
    assert cli_main(["submit", str(TINY), "--address", cluster.dashboard_url, *args]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out.splitlines()[-1]
    assert_every_stage_published(run_dir)
    assert_synthesis_engines_on_both_nodes({k: v for k, v in engine_actors(cluster).items() if k not in before},
                                           cluster)
    overrides = json.loads((run_dir / "run.json").read_text())["overrides"]
    assert "cluster.address=auto" in overrides and f"run_dir={run_dir}" in overrides


def journal_text(run_dir: Path) -> str:
    path = run_dir / s1.FOLDER / "_work" / s1.JOURNAL
    return path.read_text() if path.exists() else ""


def test_a_worker_node_killed_mid_synthesis_the_run_completes_on_the_head(cluster, address_run, tmp_path):
    """The worker node is SIGKILLed while the teacher's engines (one per node) write candidates; the head's engine
    takes over, and the records are exactly those of the clean run."""
    clean_dir, _ = address_run
    run_dir = tmp_path / "node_lost"
    worker = cluster.workers[-1]
    worker_id, head_id = cluster.node_id(worker), cluster.node_id(cluster.head)
    before = engine_actors(cluster)
    killed: list[int] = []  # journal lines when the node was killed

    def kill_the_worker_once_the_teacher_writes():
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline:
            text = journal_text(run_dir)
            if '"candidates/' in text and "/teacher/" in text:  # the generators are done, the teacher is at work
                worker.kill()
                killed.append(text.count("\n"))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker_once_the_teacher_writes, daemon=True)
    killer.start()
    try:
        assert cli_main(["run", *run_args(run_dir, cluster.address), "--only", "synthesize"]) == 0
    finally:
        killed.append(-1)
        killer.join()
    stats = json.loads((run_dir / s1.FOLDER / "stats.json").read_text())
    clean_stats = json.loads((clean_dir / s1.FOLDER / "stats.json").read_text())
    sent = sum(step["sent"] for step in stats["requests"].values())
    assert 0 < killed[0] < sent, killed  # mid-synthesis: some requests were answered, most were not yet
    assert sent == sum(step["sent"] for step in clean_stats["requests"].values())

    lost, clean = records(run_dir), records(clean_dir)
    ids = [r.id for r in lost]
    assert len(ids) == len(set(ids))  # none twice
    assert ids == [r.id for r in clean]  # none missing, none added
    for a, b in zip(lost, clean):  # the same answers: a request's sample depends only on its seed, not its engine
        assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
        assert (a.refinement and a.refinement.completion) == (b.refinement and b.refinement.completion)
    assert (run_dir / s1.FOLDER / "drops.jsonl").read_text() == (clean_dir / s1.FOLDER / "drops.jsonl").read_text()

    [teacher] = pools({k: v for k, v in engine_actors(cluster).items() if k not in before}, "teacher").values()
    assert worker_id in teacher.values(), teacher  # the teacher had an engine on the killed node
    # Names are <model>-engine<slot>-<generation>-<tag>: generation 1 replaced a lost engine. It exists when Ray
    # declared the node dead (about 3 s) before the teacher's last step; it never goes to the lost node (None: the
    # run ended before Ray placed it).
    replacements = [node for name, node in teacher.items() if name.split("-")[2] != "0"]
    assert set(replacements) <= {head_id, None}, teacher
    assert stats["engine_restarts"]["teacher"] == len(replacements)


def ask(i: int) -> GenerationRequest:
    return GenerationRequest(id=f"q{i}", messages=(("user", f"question number {i}?"),),
                             sampling=Sampling(max_new_tokens=8, temperature=0.7))


def test_engines_of_a_lost_node_are_replaced_on_the_survivor_or_fail_clearly(cluster, tiny_model, monkeypatch):
    """A pool of two engines of 2 CPUs has one on each node; another actor holds the head's other 2 CPUs. The worker
    node is SIGKILLed while the pool generates: the head's engine finishes, each request yields one result, the
    same as before. Once Ray declares the node dead, the lost engine is replaced, but its bundle finds no room: a
    ClusterError says so. When the head's CPUs come free, the replacement starts there and serves."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    config = ClusterConfig(address=cluster.address)
    worker = cluster.workers[-1]
    head_id, worker_id = cluster.node_id(cluster.head), cluster.node_id(worker)
    requests = [ask(i) for i in range(24)]
    ensure_ray(config)
    try:
        # max_num_seqs=1: an engine decodes one request at a time, so both have requests in flight at any moment.
        cfg = EngineConfig(backend="hf", num_engines=2, cpus_per_engine=2, max_model_len=96, max_num_seqs=1)
        with open_backend(tiny_model, cfg, cluster=config, seed=5, model_name="lossy") as pool:
            assert sorted(pool.node_ids()) == sorted([head_id, worker_id])
            lost = pool.node_ids().index(worker_id)

            class Holder:
                def ping(self) -> bool:
                    return True

            holder = ray.remote(Holder).options(
                num_cpus=2, scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote()
            assert ray.get(holder.ping.remote())
            reference = [r.completions for r in pool.generate(requests)]
            seen: list[str] = []

            def kill_at_first_result(result):
                seen.append(result.id)
                if len(seen) == 1:
                    worker.kill()

            results = pool.generate(requests, on_result=kill_at_first_result)
            assert sorted(seen) == sorted(r.id for r in requests)  # each request reported exactly once
            assert [r.completions for r in results] == reference
            cluster.wait_until_dead(worker)

            monkeypatch.setattr("ray_cluster.generation.pool._PLACEMENT_TIMEOUT_S", 0)
            with pytest.raises(ClusterError, match="no node of the cluster can host its replacement"):
                pool.generate(requests)  # finds the silent engine dead and replaces it: no room on the head
            assert pool.restarts == 1
            monkeypatch.undo()

            ray.kill(holder)
            deadline = time.monotonic() + 60
            while pool.node_ids() != [head_id, head_id]:  # Ray moves the lost bundle to the head
                assert time.monotonic() < deadline, pool.node_ids()
                time.sleep(0.2)
            ray.get(pool.actors[lost].ready.remote())  # the replacement has started
            assert [r.completions for r in pool.generate(requests)] == reference
            assert pool.restarts == 1
    finally:
        shutdown()
