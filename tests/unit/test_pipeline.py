"""The pipeline skips current jobs, reruns changed ones and what depends on them, and resumes killed ones."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.errors import ArtifactError, CorruptArtifactError
from rlhf_stack.core.pipeline import Job, job_states, run_jobs
from rlhf_stack.app.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
CALLS: list[str] = []


def _recipe(tmp_path):
    return load_recipe(REPO / "recipes" / "tiny.yaml", [f"run_dir={tmp_path}"])


def _jobs(a_value: int = 1, b_value: int = 1) -> list[Job]:
    def run_a(ctx):
        CALLS.append("a")
        (ctx.out_dir / "a.txt").write_text(str(a_value % 2))  # a=1 and a=3 give the same output
        return {"n": 1}

    def run_b(ctx):
        CALLS.append("b")
        a = (ctx.input("a") / "a.txt").read_text()
        (ctx.out_dir / "b.txt").write_text(a + str(b_value))
        return {}

    return [Job("synthesize", "a", "x", {"v": a_value}, run_a),
            Job("distill", "b", "y", {"v": b_value}, run_b, inputs=("a",))]


def test_second_run_skips_everything(tmp_path):
    recipe, CALLS[:] = _recipe(tmp_path), []
    assert run_jobs(recipe, _jobs(), {"synthesize", "distill"}) == {"a": "ran", "b": "ran"}
    assert run_jobs(recipe, _jobs(), {"synthesize", "distill"}) == {"a": "skipped", "b": "skipped"}
    assert CALLS == ["a", "b"]
    assert read_manifest(tmp_path / "a").summary == {"n": 1}
    assert [s.state for s in job_states(_jobs(), tmp_path)] == ["done", "done"]


def test_changed_key_reruns_the_job_and_dependents_whose_inputs_changed(tmp_path):
    recipe, CALLS[:] = _recipe(tmp_path), []
    run_jobs(recipe, _jobs(a_value=1), {"synthesize", "distill"})
    assert [s.state for s in job_states(_jobs(b_value=2), tmp_path)] == ["done", "stale"]
    run_jobs(recipe, _jobs(b_value=2), {"synthesize", "distill"})
    assert CALLS == ["a", "b", "b"]
    # a reruns with a new key, but writes the same bytes: b's inputs are unchanged, so b is skipped
    CALLS[:] = []
    run_jobs(recipe, _jobs(a_value=3, b_value=2), {"synthesize", "distill"})
    assert CALLS == ["a"]


def test_only_a_downstream_stage_needs_finished_upstream(tmp_path):
    recipe = _recipe(tmp_path)
    with pytest.raises(ArtifactError, match="needed by a selected stage but has not finished"):
        run_jobs(recipe, _jobs(), {"distill"})


def test_fresh_reruns(tmp_path):
    recipe, CALLS[:] = _recipe(tmp_path), []
    run_jobs(recipe, _jobs(), {"synthesize", "distill"})
    run_jobs(recipe, _jobs(), {"synthesize"}, fresh=True)
    assert CALLS == ["a", "b", "a"]


def test_a_changed_input_stops_the_run_before_any_job_and_names_file_stage_and_command(tmp_path):
    recipe, CALLS[:] = _recipe(tmp_path), []
    run_jobs(recipe, _jobs(), {"synthesize", "distill"})
    with open(tmp_path / "a" / "a.txt", "a") as f:
        f.write("x")
    assert [s.state for s in job_states(_jobs(), tmp_path, verify=True)] == ["corrupt", "done"]
    assert [s.state for s in job_states(_jobs(), tmp_path)] == ["done", "done"]  # without verify: manifests only
    for selected in ({"synthesize", "distill"}, {"distill"}):
        with pytest.raises(CorruptArtifactError) as e:
            run_jobs(recipe, _jobs(), selected, rerun_command="rlhf-stack run r.yaml")
        assert str(e.value) == (
            f"{tmp_path / 'a' / 'a.txt'}: 2 bytes, the manifest says 1. {tmp_path / 'a'} was published by the "
            "synthesize stage and has changed since; the stages that read it would use data it did not produce. "
            "Rebuild it with: rlhf-stack run r.yaml --from synthesize --rebuild-corrupt")
    assert CALLS == ["a", "b"]  # nothing ran


def test_rebuild_corrupt_reruns_the_changed_folder_and_only_what_its_new_output_changes(tmp_path):
    recipe, CALLS[:] = _recipe(tmp_path), []
    run_jobs(recipe, _jobs(), {"synthesize", "distill"})
    (tmp_path / "a" / "a.txt").write_text("9")
    with pytest.raises(CorruptArtifactError):  # only a selected folder is rebuilt; an input is not
        run_jobs(recipe, _jobs(), {"distill"}, rebuild_corrupt=True)
    CALLS[:] = []
    assert run_jobs(recipe, _jobs(), {"synthesize", "distill"}, rebuild_corrupt=True) == {"a": "ran", "b": "skipped"}
    assert CALLS == ["a"]  # a wrote what it wrote before, so b's input digest is unchanged
    assert [s.state for s in job_states(_jobs(), tmp_path, verify=True)] == ["done", "done"]


KILLABLE = textwrap.dedent('''
    import os, signal, sys, json
    from pathlib import Path
    from rlhf_stack.core.pipeline import Job, run_jobs
    from rlhf_stack.app.recipe import load_recipe

    def run(ctx):
        done = ctx.work_dir / "done.jsonl"
        finished = done.read_text().splitlines() if done.exists() else []
        for i in range(5):
            if str(i) in finished:
                continue  # finished work is never repeated
            with open(ctx.work_dir / "calls.log", "a") as f:
                f.write(f"{i}\\n")
            if i == 3 and os.environ.get("KILL_AT_3"):
                os.kill(os.getpid(), signal.SIGKILL)
            with open(done, "a") as f:
                f.write(f"{i}\\n")
        (ctx.out_dir / "out.txt").write_text(done.read_text())
        return {}

    recipe = load_recipe(Path(sys.argv[1]), [f"run_dir={sys.argv[2]}"])
    run_jobs(recipe, [Job("synthesize", "a", "x", {"v": 1}, run)], {"synthesize"})
''')


def test_sigkill_mid_job_then_rerun_resumes_and_matches_uninterrupted(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(KILLABLE)
    recipe = str(REPO / "recipes" / "tiny.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "KILL_AT_3": "1"}
    killed = subprocess.run([sys.executable, str(script), recipe, str(tmp_path / "k")], env=env)
    assert killed.returncode == -signal.SIGKILL
    assert read_manifest(tmp_path / "k" / "a") is None  # no manifest: unfinished by definition
    calls_before = (tmp_path / "k" / "a" / "_work" / "calls.log").read_text().split()
    env.pop("KILL_AT_3")
    subprocess.run([sys.executable, str(script), recipe, str(tmp_path / "k")], env=env, check=True)
    subprocess.run([sys.executable, str(script), recipe, str(tmp_path / "u")], env=env, check=True)
    assert calls_before == ["0", "1", "2", "3"]
    killed_then_resumed, uninterrupted = (read_manifest(tmp_path / d / "a") for d in ("k", "u"))
    assert killed_then_resumed.files == uninterrupted.files
    assert not (tmp_path / "k" / "a" / "_work").exists()  # scratch goes when the job publishes
