"""A finished folder proves itself: every change to a file after publishing is caught, also one that keeps the
file's size and mtime, and an unchanged folder is checked again without reading a byte."""

import os
from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import publish, read_manifest, verify_artifact, write_atomic
from rlhf_stack.core.file_check import CACHE

SETTLED = 0.0  # treat every file as settled, so a check caches it at once (the default waits a second)


def _published(folder: Path):
    write_atomic(folder / "records.jsonl", '{"id": 1}\n{"id": 2}\n')
    write_atomic(folder / "checkpoint" / "weights.bin", "w" * 4096)
    return publish(folder, kind="k", stage="synthesize", rel_folder=folder.name, config_hash="h", inputs={},
                   summary={}, wall_time_s=1.0)


def test_the_manifest_records_sizes_and_the_cache_is_not_part_of_the_artifact(tmp_path):
    manifest = _published(tmp_path / "a")
    assert manifest.sizes == {"checkpoint/weights.bin": 4096, "records.jsonl": 20}
    verify_artifact(tmp_path / "a", manifest, save_cache=True, racy_margin_s=SETTLED)
    assert (tmp_path / "a" / CACHE).exists() and CACHE not in manifest.files
    assert verify_artifact(tmp_path / "a", manifest, save_cache=True)[0] == []


def test_an_unchanged_folder_is_checked_again_without_reading_its_files(tmp_path):
    manifest = _published(tmp_path / "a")
    problems, read = verify_artifact(tmp_path / "a", manifest, save_cache=True, racy_margin_s=SETTLED)
    assert problems == [] and read == 4096 + 20  # written just before publishing: read once more
    assert verify_artifact(tmp_path / "a", manifest, save_cache=True) == ([], 0)


def test_a_file_written_just_before_its_check_is_read_again_next_time(tmp_path):
    manifest = _published(tmp_path / "a")
    assert verify_artifact(tmp_path / "a", manifest, save_cache=True)[1] == 4096 + 20
    assert verify_artifact(tmp_path / "a", manifest, save_cache=True)[1] == 4096 + 20  # not settled yet: not cached


def test_a_check_that_may_not_write_leaves_the_cache_alone(tmp_path):
    manifest = _published(tmp_path / "a")
    (tmp_path / "a" / CACHE).unlink(missing_ok=True)
    verify_artifact(tmp_path / "a", manifest, save_cache=False, racy_margin_s=SETTLED)
    assert not (tmp_path / "a" / CACHE).exists()


def _append_a_line(folder: Path) -> None:
    with open(folder / "records.jsonl", "a") as f:
        f.write('{"id": 3}\n')


def _same_size_edit_with_mtime_put_back(folder: Path) -> None:
    path = folder / "checkpoint" / "weights.bin"
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns


def _truncate(folder: Path) -> None:
    os.truncate(folder / "records.jsonl", 10)


def _delete(folder: Path) -> None:
    (folder / "records.jsonl").unlink()


def _add_a_shard(folder: Path) -> None:
    (folder / "records-00001.jsonl").write_text('{"id": 9}\n')


@pytest.mark.parametrize("change, expected", [
    (_append_a_line, "records.jsonl: 30 bytes, the manifest says 20"),
    (_same_size_edit_with_mtime_put_back, "checkpoint/weights.bin: content changed (sha256 differs from the manifest's)"),
    (_truncate, "records.jsonl: 10 bytes, the manifest says 20"),
    (_delete, "records.jsonl: missing"),
    (_add_a_shard, "records-00001.jsonl: not in the manifest: added after the folder was published"),
])
def test_every_change_after_publishing_is_caught_even_with_a_warm_cache(tmp_path, change, expected):
    folder = tmp_path / "a"
    manifest = _published(folder)
    assert verify_artifact(folder, manifest, save_cache=True, racy_margin_s=SETTLED)[0] == []
    assert verify_artifact(folder, manifest, save_cache=True)[1] == 0  # the cache holds every file now
    change(folder)
    problems, _ = verify_artifact(folder, read_manifest(folder), save_cache=True, racy_margin_s=SETTLED)
    assert [str(p) for p in problems] == [expected]
