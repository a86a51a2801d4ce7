"""Ray jobs and `rlhf-stack submit` on a real two-node Ray cluster on 127.0.0.1 (head + one worker node).

The cluster is started once for the module. Tests that need a cluster of their own (a node stopped mid-run, a
driver killed) start one with `LocalCluster` the same way, so they leave this one intact.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from ray_cluster.jobs import JobClient, submit_and_wait
from ray_cluster.launch.local import LocalCluster
from rlhf_stack.app.submit import plan_submission
from rlhf_stack.app.cli import main as cli_main
from rlhf_stack.core.errors import ClusterError

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture(scope="module")
def cluster():
    """Head (dashboard on a free port) + one worker node that alone offers the custom resource `worker`."""
    local = LocalCluster(num_workers=1, cpus_per_node=1, worker_resources={"worker": 1})
    local.start()
    try:
        yield local
    finally:
        local.stop()
        assert local.leftover_processes() == []  # nothing of the cluster outlives it, job drivers included
        assert not local.root.exists()


def _script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def test_a_job_streams_its_log_and_reaches_the_worker_node(cluster, tmp_path, capsys):
    (tmp_path / "data.txt").write_text("from the working dir")
    _script(tmp_path, "probe.py", """
        import json, os, ray
        ray.init()
        @ray.remote(resources={"worker": 1})
        def on_worker():
            return ray.get_runtime_context().get_node_id(), open("data.txt").read(), os.environ["PROBE"]
        here = ray.get_runtime_context().get_node_id()
        there, text, probe = ray.get(on_worker.remote())
        print("probe:", json.dumps({"driver_node": here, "task_node": there, "text": text, "env": probe}), flush=True)
        """)
    log_path = tmp_path / "logs" / "job.log"
    outcome = submit_and_wait(cluster.dashboard_url, f"{PY} probe.py",
                              {"working_dir": str(tmp_path), "env_vars": {"PROBE": "42"}}, log_path,
                              echo=True, poll_s=0.5, timeout_s=120)
    assert outcome.status == "SUCCEEDED" and outcome.job_id.startswith("raysubmit_")
    line = next(line for line in log_path.read_text().splitlines() if line.startswith("probe: "))
    probe = json.loads(line.removeprefix("probe: "))
    assert probe["driver_node"] != probe["task_node"]  # the task ran on the second node
    assert probe["text"] == "from the working dir" and probe["env"] == "42"
    assert line in capsys.readouterr().out  # echoed as it came
    assert log_path.read_text() == JobClient(cluster.dashboard_url).logs(outcome.job_id)  # the whole log, once


def test_a_failing_job_raises_with_id_status_and_log_tail(cluster, tmp_path):
    log_path = tmp_path / "job.log"
    with pytest.raises(ClusterError) as caught:
        submit_and_wait(cluster.dashboard_url, "echo 'the cause is here' && exit 3", log_path=log_path,
                        poll_s=0.5, timeout_s=120)
    message = str(caught.value)
    assert "raysubmit_" in message and "FAILED" in message and "exit code 3" in message
    assert "| the cause is here" in message and str(log_path) in message


def test_a_known_submission_id_is_followed_not_submitted_twice(cluster, tmp_path):
    client = JobClient(cluster.dashboard_url)
    entrypoint = "echo once"
    job_id = client.submit(entrypoint, submission_id="rs-test-reattach")
    outcome = submit_and_wait(cluster.dashboard_url, entrypoint, log_path=tmp_path / "job.log",
                              submission_id="rs-test-reattach", poll_s=0.5, timeout_s=120)
    assert outcome.job_id == job_id == "rs-test-reattach"
    assert (tmp_path / "job.log").read_text().splitlines().count("once") == 1  # ran once, followed once
    assert [j for j in client._client.list_jobs() if j.submission_id == job_id][0].entrypoint == entrypoint
    with pytest.raises(ClusterError, match="exists with another command"):
        submit_and_wait(cluster.dashboard_url, "echo twice", submission_id="rs-test-reattach")


def test_a_job_past_its_timeout_is_stopped(cluster):
    with pytest.raises(ClusterError, match="did not end within timeout_s=3") as caught:
        submit_and_wait(cluster.dashboard_url, "echo started && sleep 600", poll_s=0.5, timeout_s=3)
    job_id = str(caught.value).split()[2]
    assert JobClient(cluster.dashboard_url).status(job_id) == "STOPPED"


def test_ctrl_c_stops_the_job(cluster, tmp_path):
    log_path = tmp_path / "job.log"
    # A process started in the background by a non-interactive shell (as CI runners may start the tests) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt: the follower restores it, as a terminal has it.
    follower = subprocess.Popen(
        [PY, "-c", "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "from pathlib import Path; from ray_cluster.jobs import submit_and_wait; "
                   f"submit_and_wait({cluster.dashboard_url!r}, 'echo started && sleep 600', log_path=Path({str(log_path)!r}),"
                   " poll_s=0.5)"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while "started" not in (log_path.read_text() if log_path.exists() else ""):
        assert follower.poll() is None and time.monotonic() < deadline, follower.communicate()[0]
        time.sleep(0.2)
    follower.send_signal(signal.SIGINT)
    output, _ = follower.communicate(timeout=90)  # stopping waits up to 30 s for the job to end
    assert follower.returncode != 0 and "KeyboardInterrupt" in output
    job_id = next(j.submission_id for j in JobClient(cluster.dashboard_url)._client.list_jobs()
                  if j.entrypoint == "echo started && sleep 600" and j.submission_id in output)
    assert JobClient(cluster.dashboard_url).status(job_id) == "STOPPED"


def _project(tmp_path: Path, recipe: dict) -> Path:
    """A minimal project checkout: pyproject.toml, a recipe and its prompts, and a cache that must not travel."""
    (tmp_path / "recipes" / "data").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'probe'\n")
    (tmp_path / "recipes" / "data" / "p.jsonl").write_text('{"id": "p1", "prompt": "Say hi."}\n')
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "big.bin").write_text("not uploaded")
    path = tmp_path / "recipes" / "r.yaml"
    path.write_text(yaml.safe_dump({"models": {"m": "tiny-random-llama"}, "data": {"prompts": "data/p.jsonl"},
                                    **recipe}))
    return path


def test_the_driver_joins_the_cluster_with_the_recipes_runtime_env(cluster, tmp_path):
    """The job's runtime env and the one the driver's ensure_ray passes again merge instead of clashing."""
    recipe = _project(tmp_path, {"name": "probe", "cluster": {"runtime_env": {"env_vars": {"PROBE": "7"}}}})
    _script(tmp_path, "driver.py", """
        import os, ray
        from ray_cluster.session import ensure_ray
        from rlhf_stack.app.recipe import load_recipe
        from rlhf_stack.app.submit import CLUSTER_OVERRIDES
        ensure_ray(load_recipe("recipes/r.yaml", CLUSTER_OVERRIDES).cluster)
        @ray.remote(resources={"worker": 1})
        def probe():
            return os.environ["PROBE"], os.path.exists("recipes/r.yaml"), os.path.exists(".cache/big.bin")
        print("probe", *ray.get(probe.remote()), flush=True)
        from ray_cluster.jobs import JobClient
        print("inside", JobClient("auto").status("rs-test-driver"), flush=True)  # the cluster it runs in
        """)
    plan = plan_submission(recipe)
    submit_and_wait(cluster.dashboard_url, f"{PY} driver.py", plan.runtime_env, tmp_path / "job.log",
                    submission_id="rs-test-driver", poll_s=0.5, timeout_s=120)
    log = (tmp_path / "job.log").read_text()
    assert "probe 7 True False" in log and "inside RUNNING" in log


def test_rlhf_stack_submit_runs_the_recipe_on_the_cluster(cluster, tmp_path, capsys):
    run_dir = tmp_path / "out" / "probe"
    recipe = _project(tmp_path / "project", {"name": "probe", "cluster": {"address": "local", "num_cpus": 2}})
    code = cli_main(["submit", str(recipe), "--address", cluster.dashboard_url, "--set", f"run_dir={run_dir}",
                     "--set", "seed=3", "--no-follow"])
    assert code == 0
    job_id = capsys.readouterr().out.split()[3]
    outcome = JobClient(cluster.dashboard_url).follow(job_id, log_path=tmp_path / "job.log", poll_s=0.5,
                                                      timeout_s=180)
    assert outcome.status == "SUCCEEDED"
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["overrides"] == [f"run_dir={run_dir}", "seed=3", "cluster.address=auto", "cluster.num_cpus=null",
                                     "cluster.num_gpus=null"]
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["cluster"]["address"] == "auto"
    assert Path(run_info["recipe"]).parent.name == "recipes"  # the job's copy of the checkout, not ours
    assert not Path(run_info["recipe"]).is_relative_to(tmp_path)


def test_rlhf_stack_submit_follows_the_job_log(cluster, tmp_path, capsys):
    recipe = _project(tmp_path, {"name": "probe", "run_dir": str(tmp_path / "out")})
    assert cli_main(["submit", str(recipe), "--address", cluster.dashboard_url]) == 0
    out = capsys.readouterr().out
    assert "Running entrypoint for job" in out and "rlhf-stack run recipes/r.yaml --set cluster.address=auto" in out
    assert "wall time per stage" in out and "SUCCEEDED" in out.splitlines()[-1]


def test_a_client_without_the_token_is_told_how_to_get_in(cluster):
    result = subprocess.run(
        [PY, "-c", f"from ray_cluster.jobs import JobClient; JobClient({cluster.dashboard_url!r})"],
        cwd=REPO, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refused our credentials" in result.stderr and "RAY_AUTH_MODE=token" in result.stderr
