from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import hash_files, open_artifact, publish, read_manifest, write_atomic
from rlhf_stack.core.errors import ArtifactError


def _publish(folder: Path):
    return publish(folder, kind="k", stage="s", rel_folder="f", config_hash="h", inputs={}, summary={"a": 1},
                   wall_time_s=1.0)


def test_manifest_hashes_files_but_not_scratch(tmp_path):
    write_atomic(tmp_path / "x" / "data.txt", "hello")
    write_atomic(tmp_path / "x" / "_work" / "state.txt", "scratch")
    m = _publish(tmp_path / "x")
    assert list(m.files) == ["data.txt"]
    assert m.files["data.txt"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256("hello")
    assert not (tmp_path / "x" / "_work").exists()
    assert read_manifest(tmp_path / "x") == m


def test_digest_depends_on_content_only(tmp_path):
    for name in ("a", "b"):
        write_atomic(tmp_path / name / "data.txt", "same")
    assert _publish(tmp_path / "a").digest() == _publish(tmp_path / "b").digest()
    write_atomic(tmp_path / "b" / "data.txt", "different")
    assert hash_files(tmp_path / "a") != hash_files(tmp_path / "b")


def test_open_artifact_explains_unfinished_and_wrong_kind(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ArtifactError, match="has no manifest.json"):
        open_artifact(tmp_path / "x", "k")
    _publish(tmp_path / "x")
    with pytest.raises(ArtifactError, match="holds a 'k' artifact; 'reward_model' was expected"):
        open_artifact(tmp_path / "x", "reward_model")
