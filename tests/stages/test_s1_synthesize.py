"""Stage s1 on tiny models in a local Ray: the artifact, an engine actor killed mid-run, a SIGKILLed run resumed,
over-long prompts, and the vLLM backend through the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rlhf_stack.app.cli import main
from rlhf_stack.core.pipeline import run_jobs
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.records import PreferenceRecord, read_jsonl
from rlhf_stack.core.topk_store import read_topk
from stages.s1_synthesize import stage
from ray_cluster.session import shutdown

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"
QUESTIONS = ["Explain why the sky looks blue.", "Write a haiku about rain.", "Give three tips for sleep.",
             "What is a prime number?", "Describe a cat in one line.", "How do I boil an egg?"]
LONG_ID = "long"


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"id": f"q{i}", "prompt": q} for i, q in enumerate(QUESTIONS)]
    # Longer than the teacher's context (1024 tokens): generators see it cut, judges cannot see it at all.
    rows.append({"id": LONG_ID, "prompt": " ".join(f"clause{i} of the story;" for i in range(900))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def overrides(run_dir: Path, prompts: Path, *extra: str) -> list[str]:
    return [f"run_dir={run_dir}", f"data.prompts={prompts}", "data.splits={synthesize: 1.0, ppo: 0.0, evaluate: 0.0}",
            "synthesize.rmboost=true", *extra]


def journal_lines(run_dir: Path) -> int:
    path = run_dir / "s1_synthesize" / "_work" / stage.JOURNAL
    return path.read_bytes().count(b"\n") if path.exists() else 0


def records(run_dir: Path) -> list[dict]:
    return [r.model_dump(mode="json") for f in sorted((run_dir / "s1_synthesize").glob("records-*.jsonl"))
            for r in read_jsonl(f, PreferenceRecord)]


def difference(a, b, path: str = "") -> str | None:
    """Where a and b differ, or None; floats may differ by rounding (scores read from logprobs move by ~1e-7
    with the batch a request shared)."""
    if isinstance(a, float) or isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b else f"{path}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prompts_file):
    """A full run in this process, during which the teacher's engine actor is killed once."""
    import ray

    run_dir = tmp_path_factory.mktemp("reference")
    recipe = load_recipe(TINY, overrides(run_dir, prompts_file))
    killed = []

    def kill_teacher_engine_mid_run():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if journal_lines(run_dir) >= 10:  # the policy's candidates are in, the teacher is writing its own
                for actor in ray.util.list_named_actors(all_namespaces=True):
                    if actor["name"].startswith("teacher-engine0-"):
                        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))
                        killed.append(actor["name"])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_teacher_engine_mid_run, daemon=True)
    killer.start()
    try:
        run_jobs(recipe, stage.jobs(recipe), {"synthesize"})
    finally:
        killed.append("stop")
        shutdown()
    killer.join()
    assert killed[0].startswith("teacher-engine0-"), killed
    return run_dir


def test_every_prompt_ends_as_a_record_or_a_counted_drop(reference):
    out = reference / "s1_synthesize"
    recs = records(reference)
    drops = [json.loads(line) for line in (out / "drops.jsonl").read_text().splitlines()]
    stats = json.loads((out / "stats.json").read_text())
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)) >= 4  # no duplicates
    early = {d["id"] for d in drops if d["step"] in ("candidates", "initial_scores")}
    assert set(ids) | early == {f"q{i}" for i in range(len(QUESTIONS))} | {LONG_ID} and not set(ids) & early
    for r in recs:
        assert len(r["candidates"]) == 2 and r["initial"]["chosen"] != r["initial"]["rejected"]
        assert len(r["initial"]["judgments"]) == 2  # both presentation orders
        later = {d["step"] for d in drops if d["id"] == r["id"]}
        assert r["refinement"] is not None or later & {"teacher_answer", "refine", "calibrate"}
        if r["refinement"]:
            ref = r["refinement"]
            assert ref["margin"] == pytest.approx(ref["calibrated_score"] - r["initial"]["rejected_score"])
            assert ref["chosen"] != r["initial"]["rejected"] and 0 < ref["edit_distance"]
            assert "<Start of Modified Response>" in ref["completion"]
        assert r["rmboost"] is not None or "rmboost" in later
    assert sum(stats["drops_by_reason"].values()) == len(drops)
    assert stats["engine_restarts"]["teacher"] == 1  # the killed actor was replaced, and nothing was lost
    assert stats["counts"]["calibrate"]["kept"] == sum(r["refinement"] is not None for r in recs)
    assert stats["teacher_tokens"]["completion"] > 0 and stats["wall_time_s"]["refine"] > 0


def test_over_long_prompts_are_cut_for_generators_and_dropped_for_judges(reference):
    stats = json.loads((reference / "s1_synthesize" / "stats.json").read_text())
    drops = [json.loads(line) for line in (reference / "s1_synthesize" / "drops.jsonl").read_text().splitlines()]
    assert stats["prompts_truncated"]["candidates"] == 2  # the long prompt, once per generator
    assert {"id": LONG_ID, "step": "initial_scores", "reason": "prompt_too_long"} in drops


def test_teacher_top_k_is_stored_beside_the_records(reference):
    out = reference / "s1_synthesize"
    for r in records(reference):
        answer = r["teacher_answer"]
        ids, logprobs = read_topk(out / answer["topk_file"], r["id"])
        assert ids.shape == logprobs.shape == (len(answer["token_ids"]), 8)
        assert (logprobs[:, :-1] >= logprobs[:, 1:]).all()  # best first


def test_a_sigkilled_run_resumes_without_resending_and_matches(reference, prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlhf_stack.app.cli", "run", str(TINY), "--only", "synthesize",
           *[a for o in overrides(run_dir, prompts_file) for a in ("--set", o)]]
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while journal_lines(run_dir) < 30:  # well into the judging steps
            assert first.poll() is None, f"the run ended before it could be killed:\n{log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)
    finally:
        kill_session(first.pid)
    finished_before = journal_lines(run_dir)
    assert not (run_dir / "s1_synthesize" / "manifest.json").exists()

    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    stats = json.loads((run_dir / "s1_synthesize" / "stats.json").read_text())
    reference_stats = json.loads((reference / "s1_synthesize" / "stats.json").read_text())
    resumed = sum(s["resumed"] for s in stats["requests"].values())
    sent = sum(s["sent"] for s in stats["requests"].values())
    assert resumed == finished_before  # every finished request was reused, none sent again
    assert resumed + sent == sum(s["sent"] for s in reference_stats["requests"].values())
    assert difference(records(run_dir), records(reference)) is None


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session the run was started in (the run and the Ray it started)."""
    import psutil

    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.info["pid"]) == session_id:
                os.kill(proc.info["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_the_cli_runs_the_stage_on_vllm_engines(tmp_path, prompts_file):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(line + "\n" for line in prompts_file.read_text().splitlines()[:3]))
    args = overrides(tmp_path / "run", small, "synthesize.teacher_engine.backend=vllm",
                     "synthesize.generators=[teacher]", "synthesize.responses_per_generator=2",
                     "synthesize.rmboost=false")
    assert main(["run", str(TINY), "--only", "synthesize", *[a for o in args for a in ("--set", o)]]) == 0
    out = tmp_path / "run" / "s1_synthesize"
    manifest = json.loads((out / "manifest.json").read_text())
    recs = records(tmp_path / "run")
    assert manifest["kind"] == "preference_data" and manifest["summary"]["records"] == len(recs) >= 1
    assert all(c["generator"] == "teacher" for r in recs for c in r["candidates"])
    assert any(r["refinement"] for r in recs)
