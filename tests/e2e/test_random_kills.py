"""The driver SIGKILLed at seeded random points across every stage of the tiny recipe, resumed after each kill.

One long sequence: each resumed `rlhf-stack run` continues to the next kill point, so ten points cost ten restarts,
not ten pipelines. After every kill, each published folder still matches its manifest and no finished request is
recorded twice. At the end, the folders hold exactly the records of an uninterrupted run: no record lost or
duplicated, no finished teacher request sent again, and the work that does not depend on float noise (the binary_bt
chain and the initial policy) gives the same numbers and the same checkpoint bytes. A second `run` during the first
attempt is refused with code 2; a folder changed afterwards is caught by `status --verify` and by `run`.
"""

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from rlhf_stack.app.cli import main
from rlhf_stack.app.run_folder import load_run
from rlhf_stack.core.artifacts import read_manifest, verify_artifact
from rlhf_stack.core.run_lock import LOCK
from rlhf_stack.core.topk_store import read_topk

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"
KILLS_PER_STAGE = {"synthesize": 3, "distill": 2, "ppo": 2, "evaluate": 3}
KILL_POINTS = sum(KILLS_PER_STAGE.values())  # docs/reliability.md quotes this number
SEED = int(os.environ.get("RLHF_STACK_KILL_SEED", "18"))
MAX_OFFSET_S = 60.0  # a kill lands at most this long after its job started
ATTEMPT_TIMEOUT_S = 600
# Work whose every number is the same on every run: it reads only texts (the initial pairs), never the calibrated
# margins, whose last digits move with the teacher's batch composition.
DETERMINISTIC = {"s2_distill/binary_bt", "s3_ppo/binary_bt", "s4_evaluate/rm/binary_bt", "s4_evaluate/policy/initial",
                 "s4_evaluate/policy/binary_bt"}
TIMING_KEYS = {"pairs_per_s", "tokens_per_s", "tstamp", "rollout_s", "scoring_s", "train_s", "weight_sync_s",
               "iteration_s"}
ID_KEYS = ("id", "step", "iteration", "final", "question_id", "turn", "instruction")
JOURNALS = ("s1_synthesize/_work/requests.jsonl", "s4_evaluate/policy/*/_work/generations.jsonl")
S1_STATS = "s1_synthesize/stats.json"
pytestmark = pytest.mark.slow


def test_random_kills_lose_and_duplicate_nothing(tiny_reference, tmp_path, capsys):
    jobs = load_run(tiny_reference).jobs()
    folders = [j.folder for j in jobs]
    plan = kill_plan(folders, [j.stage for j in jobs], tiny_reference, random.Random(SEED))
    run_dir = tmp_path / "killed"
    kills, journal_at_kill = [], []
    for attempt, point in enumerate(plan):
        kill = run_until_killed(run_dir, tmp_path / f"attempt-{attempt}.log", point, folders, second_run=attempt == 0)
        if attempt == 0:  # a second `run` while the first held the folder
            assert kill.second.returncode == 2, kill.second.stderr[-2000:]
            assert f"pid {kill.pid} on host" in kill.second.stderr, kill.second.stderr[-2000:]
        kills.append(kill)
        for folder in (f for f in folders if read_manifest(run_dir / f) is not None):
            assert verify_artifact(run_dir / folder, read_manifest(run_dir / folder), save_cache=False)[0] == []
        journal_at_kill.append(len(finished_ids(run_dir / JOURNALS[0])))
        for path in (p for pattern in JOURNALS for p in run_dir.glob(pattern)):
            ids = finished_ids(path)
            assert len(ids) == len(set(ids)), f"{path}: a finished request was recorded twice"
    final_log = tmp_path / "final.log"
    with open(final_log, "w") as log:
        assert start(run_dir, log).wait(timeout=ATTEMPT_TIMEOUT_S) == 0, final_log.read_text()[-3000:]

    lost_or_duplicated = compare_with_uninterrupted(run_dir, tiny_reference, folders)
    requests = json.loads((run_dir / "s1_synthesize" / "stats.json").read_text())["requests"]
    reference_requests = json.loads((tiny_reference / "s1_synthesize" / "stats.json").read_text())["requests"]
    resumed = sum(s["resumed"] for s in requests.values())
    extra = sum(s["resumed"] + s["sent"] for s in requests.values()) - sum(
        s["sent"] for s in reference_requests.values())
    s1_kills = [n for n, kill in zip(journal_at_kill, kills) if kill.folder == "s1_synthesize"]
    assert resumed == (s1_kills[-1] if s1_kills else 0)  # everything the last killed s1 had finished was reused
    with capsys.disabled():
        print(f"\nrandom kills (seed {SEED}): {len(kills)} trials, in (folder being written, seconds into that "
              "attempt): " + ", ".join(f"{k.folder} {k.seconds:.1f}s" for k in kills)
              + f"; teacher requests finished when s1 was killed: {s1_kills}; records lost or duplicated: "
                f"{lost_or_duplicated}; teacher requests resumed {resumed}, sent more than once {extra}")
    assert len(kills) >= 10 and lost_or_duplicated == 0 and extra == 0

    check_tampering_is_caught(run_dir, folders, capsys)


@dataclass(order=True)
class KillPoint:
    job: int  # index of the job in pipeline order
    after_requests: int  # finished teacher requests in the s1 journal before the clock starts (s1 only)
    offset_s: float  # then this long


def kill_plan(folders: list[str], stages: list[str], reference: Path, rng: random.Random) -> list[KillPoint]:
    """KILLS_PER_STAGE kill points in each stage. In synthesize, after a random number of finished teacher
    requests (of those the uninterrupted run sent) and up to a second more. Elsewhere, a job drawn by its share of
    the stage's time in the uninterrupted run, and a moment uniformly within that time. The last job is never a
    target, so a kill that comes after its target job finished still finds work to kill."""
    wall = [read_manifest(reference / folder).wall_time_s for folder in folders]
    requests = sum(s["sent"] for s in json.loads((reference / S1_STATS).read_text())["requests"].values())
    plan = []
    for stage, n in KILLS_PER_STAGE.items():
        index = [i for i, s in enumerate(stages) if s == stage and i < len(folders) - 1]
        for i in rng.choices(index, weights=[max(wall[i], 0.5) for i in index], k=n):
            if folders[i] == JOURNALS[0].split("/")[0]:
                plan.append(KillPoint(i, rng.randint(1, requests - 1), rng.uniform(0.0, 1.0)))
            else:
                plan.append(KillPoint(i, 0, rng.uniform(0.0, min(wall[i], MAX_OFFSET_S))))
    return sorted(plan)


@dataclass
class Kill:
    folder: str  # the job folder being written when the run was killed
    seconds: float  # since the attempt started
    pid: int  # of the killed `rlhf-stack run`
    second: subprocess.CompletedProcess | None  # a second `run` started while this one held the folder


def start(run_dir: Path, log, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rlhf_stack.app.cli", "run", str(TINY), "--set", f"run_dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                            **({"stdout": log, "stderr": subprocess.STDOUT} if log else popen))


def run_until_killed(run_dir: Path, log_path: Path, point: KillPoint, folders: list[str], second_run: bool) -> Kill:
    """Runs the recipe until the kill point (or a later job) is reached, then SIGKILLs the run and the Ray it
    started. With `second_run`, a second `run` starts once the first holds the lock, and the kill waits for it to
    return."""
    started = re.compile(rf"run \w+ -> {re.escape(str(run_dir))}/(\S+) \(hash")
    with open(log_path, "w") as log:
        proc = start(run_dir, log)
    begin, kill_at, current, seen, second = time.monotonic(), None, None, 0, None
    try:
        while proc.poll() is None:
            text = log_path.read_text(errors="replace")
            for match in started.finditer(text, seen):
                current = folders.index(match.group(1))
            seen = text.rfind("\n") + 1
            if current is not None and current > point.job:  # past the target (it ran faster here): kill now
                kill_at = time.monotonic() if kill_at is None else min(kill_at, time.monotonic())
            elif kill_at is None and current == point.job \
                    and len(finished_ids(run_dir / JOURNALS[0])) >= point.after_requests:
                kill_at = time.monotonic() + point.offset_s
            if second_run and second is None and f'"pid": {proc.pid},' in _text(run_dir / LOCK):
                second = start(run_dir, None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            waiting = second_run and (second is None or second.poll() is None)
            if kill_at is not None and time.monotonic() >= kill_at and not waiting:
                kill_session(proc.pid)
                answer = subprocess.CompletedProcess(second.args, second.returncode, *second.communicate()) \
                    if second else None
                return Kill(folders[current], time.monotonic() - begin, proc.pid, answer)
            assert time.monotonic() - begin < ATTEMPT_TIMEOUT_S, text[-3000:]
            time.sleep(0.05)
    finally:
        kill_session(proc.pid)
    raise AssertionError(f"the run ended (code {proc.returncode}) before its kill point:\n"
                         + log_path.read_text()[-3000:])


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session the run started (the run and the local Ray it started)."""
    procs = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == session_id:
                proc.send_signal(signal.SIGKILL)
                procs.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            pass
    psutil.wait_procs(procs, timeout=30)


def finished_ids(path: Path) -> list[str]:
    """Ids of the finished requests in a request journal (a last line cut by the kill is not finished)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line)["id"] for line in lines]


def compare_with_uninterrupted(run_dir: Path, reference: Path, folders: list[str]) -> int:
    """Asserts that every folder holds what the uninterrupted run's holds; returns the records lost or duplicated."""
    lost_or_duplicated = 0
    for folder in folders:
        mine, theirs = read_manifest(run_dir / folder), read_manifest(reference / folder)
        assert mine is not None, folder
        assert file_names(mine.files) == file_names(theirs.files), folder
        for rel in (r for r in theirs.files if r.endswith((".json", ".jsonl"))):
            a, b = rows(run_dir / folder / rel), rows(reference / folder / rel)
            ids_a, ids_b = [identity(r) for r in a], [identity(r) for r in b]
            lost_or_duplicated += sum(abs(ids_a.count(i) - ids_b.count(i)) for i in set(ids_a) | set(ids_b))
            if folder in DETERMINISTIC or rel in ("records-00000.jsonl", "drops.jsonl"):
                assert (d := difference(a, b)) is None, f"{folder}/{rel}{d}"
        if folder in DETERMINISTIC:
            for rel in (r for r in theirs.files if r.endswith(".safetensors")):
                assert mine.files[rel] == theirs.files[rel], f"{folder}/{rel}: other bytes than uninterrupted"
    stats, reference_stats = (json.loads((d / "s1_synthesize" / "stats.json").read_text()) for d in (run_dir, reference))
    for key in ("counts", "drops_by_reason", "teacher_tokens", "prompts_truncated"):
        assert stats[key] == reference_stats[key], key
    topk_file = run_dir / "s1_synthesize" / "teacher_topk-00000.safetensors"
    for record in rows(run_dir / "s1_synthesize" / "records-00000.jsonl"):
        ids, logprobs = read_topk(topk_file, record["id"])
        ref_ids, ref_logprobs = read_topk(reference / "s1_synthesize" / "teacher_topk-00000.safetensors", record["id"])
        assert (ids == ref_ids).all() and abs(logprobs - ref_logprobs).max() < 1e-4, record["id"]
    return lost_or_duplicated


def file_names(files: dict[str, str]) -> list[str]:
    """A folder's file names but TensorBoard's: each attempt opens an event file named by time, host and pid (the
    scalars in them are those of metrics.jsonl, compared line by line)."""
    return sorted(rel for rel in files if not rel.startswith("tensorboard/"))


def rows(path: Path) -> list:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def identity(row) -> tuple:
    return tuple(str(row.get(k)) for k in ID_KEYS) if isinstance(row, dict) else (str(row),)


def difference(a, b, path: str = "") -> str | None:
    """Where a and b differ, or None. Floats may differ in their last digits (judge scores read from logprobs move
    by ~1e-7 with the batch a request shared); timings are not compared."""
    if isinstance(a, float) or isinstance(b, float):
        return None if math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) else f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if k not in TIMING_KEYS and (d := difference(a[k], b[k], f"{path}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b else f"{path}: {a!r} != {b!r}"


def check_tampering_is_caught(run_dir: Path, folders: list[str], capsys) -> None:
    """A line appended to a finished input stops `run` before any work; a truncated folder is rebuilt when asked."""
    manifests = {f: (run_dir / f / "manifest.json").read_text() for f in folders}
    capsys.readouterr()
    assert main(["status", str(run_dir), "--verify"]) == 0
    drops = run_dir / "s1_synthesize" / "drops.jsonl"
    original = drops.read_bytes()
    drops.write_bytes(original + b'{"id": "forged", "reason": "x", "step": "refine"}\n')
    capsys.readouterr()
    assert main(["status", str(run_dir), "--verify"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"^s1_synthesize +corrupt +\(drops.jsonl: \d+ bytes, the manifest says \d+\)$", out, re.M), out
    assert "--rebuild-corrupt" in err
    assert main(["run", str(TINY), "--set", f"run_dir={run_dir}"]) == 1
    err = capsys.readouterr().err
    assert f"{drops}: " in err and "published by the synthesize stage" in err, err
    assert f"--set run_dir={run_dir} --from synthesize --rebuild-corrupt" in err, err
    assert {f: (run_dir / f / "manifest.json").read_text() for f in folders} == manifests  # nothing ran

    drops.write_bytes(original)
    scores = run_dir / "s4_evaluate" / "rm" / "binary_bt" / "scores-rewardbench.jsonl"
    os.truncate(scores, scores.stat().st_size // 2)
    assert main(["run", str(TINY), "--set", f"run_dir={run_dir}", "--rebuild-corrupt"]) == 0
    rebuilt = {f for f in folders if (run_dir / f / "manifest.json").read_text() != manifests[f]}
    assert rebuilt == {"s4_evaluate/rm/binary_bt"}  # its new output is the old one: nothing downstream reran
    assert read_manifest(scores.parent).files == json.loads(manifests["s4_evaluate/rm/binary_bt"])["files"]
    assert main(["status", str(run_dir), "--verify"]) == 0
