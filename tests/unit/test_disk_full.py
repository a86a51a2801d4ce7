"""A disk that fills up mid-shard: the kernel's ENOSPC, from a 1 MiB tmpfs, becomes one clear error, nothing is
published, and the rerun after space is freed finishes the job with every record."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.errors import DiskFullError
from rlhf_stack.core.pipeline import Job, run_jobs
from rlhf_stack.core.records import write_jsonl

REPO = Path(__file__).resolve().parents[2]
RECORDS = 2000  # about 300 KiB of JSON lines: more than the space left beside the ballast


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs; mounting needs root (CAP_SYS_ADMIN), so elsewhere the test is skipped with the reason."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _write_shard(ctx):
    rows = [{"id": f"r{i}", "text": "x" * 120} for i in range(RECORDS)]
    write_jsonl(ctx.out_dir / "records-00000.jsonl", rows)
    return {"records": len(rows)}


def test_a_full_disk_mid_shard_publishes_nothing_says_so_and_the_rerun_finishes(small_disk):
    ballast = small_disk / "ballast.bin"
    ballast.write_bytes(b"\0" * (800 << 10))
    recipe = load_recipe(REPO / "recipes" / "tiny.yaml", [f"run_dir={small_disk / 'run'}"])
    jobs = [Job("synthesize", "s1_synthesize", "preference_data", {"v": 1}, _write_shard)]
    with pytest.raises(DiskFullError) as e:
        run_jobs(recipe, jobs, {"synthesize"}, rerun_command="rlhf-stack run tiny.yaml")
    folder = small_disk / "run" / "s1_synthesize"
    message = str(e.value)
    assert message.startswith("s1_synthesize: No space left on device (")
    assert f"on the file system of {folder}). Nothing was published: the folder has no manifest.json" in message
    assert message.endswith("Free space, then rerun rlhf-stack run tiny.yaml: the synthesize job resumes.")
    assert read_manifest(folder) is None
    assert sorted(p.name for p in folder.iterdir()) == ["_work"]  # no half-written shard left behind

    ballast.unlink()
    assert run_jobs(recipe, jobs, {"synthesize"}) == {"s1_synthesize": "ran"}
    rows = [json.loads(line) for line in (folder / "records-00000.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(RECORDS)]
    assert read_manifest(folder).summary == {"records": RECORDS}
    assert shutil.disk_usage(small_disk).total == 1 << 20
