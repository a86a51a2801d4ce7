"""Stage folders and their manifests: a folder is finished only when its manifest.json exists.

The manifest is written last and atomically. It records what produced the folder (kind, schema, config hash,
input digests) and the size and sha256 of every file, so a later stage can tell whether its inputs changed, and
`verify_artifact` whether a file changed after the folder was published.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.file_check import CACHE, RACY_MARGIN_S, FileProblem, HashCache, check_files, sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SCRATCH = "_work"  # resumable state inside a stage folder; not part of the artifact


class Manifest(StrictModel):
    kind: str  # what the folder holds: "preference_data", "reward_model", "policy", "evaluation"
    schema_version: int
    stage: str  # stage name, e.g. "distill"
    folder: str  # relative to the run dir, e.g. "s2_distill/rm_distiller"
    config_hash: str  # hash(job key + input digests + external file digests): decides skip/rerun
    inputs: dict[str, str]  # upstream folder -> its digest (the lineage)
    files: dict[str, str]  # relative path -> sha256
    sizes: dict[str, int] = {}  # relative path -> bytes (empty in manifests written before sizes were recorded)
    summary: dict[str, Any] = {}  # for people and the report
    wall_time_s: float
    created_at: str

    def digest(self) -> str:
        """Content digest: identical outputs give identical digests, whenever they were made."""
        payload = {"kind": self.kind, "schema": self.schema_version, "files": self.files}
        return sha256_text(canonical_json(payload))[:16]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_files(folder: Path) -> list[str]:
    """Every file under `folder` that belongs to the artifact: all but the manifest, its check cache and scratch."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (path.is_file() and rel not in (MANIFEST, CACHE) and not rel.startswith(SCRATCH + "/")
                and "/" + SCRATCH + "/" not in rel):
            out.append(rel)
    return out


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of the artifact in `folder`."""
    return {rel: sha256_file(folder / rel) for rel in artifact_files(folder)}


def write_atomic(path: Path, text: str) -> None:
    """Write through a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_manifest(folder: Path) -> Manifest | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    return Manifest.model_validate_json(path.read_text())


def open_artifact(folder: Path, kind: str) -> Manifest:
    """The manifest of a finished folder of the expected kind, or an error that says how to make it."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise ArtifactError(
            f"{folder} has no {MANIFEST}: the stage that writes it has not finished. "
            f"Run it with: rlhf-stack run <recipe> (or --from that stage)"
        )
    if manifest.kind != kind:
        raise ArtifactError(f"{folder} holds a '{manifest.kind}' artifact; '{kind}' was expected")
    if manifest.schema_version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{folder} was written with schema {manifest.schema_version}, this version reads {SCHEMA_VERSION}; "
            "rerun that stage with --fresh"
        )
    return manifest


def verify_artifact(folder: Path, manifest: Manifest, *, save_cache: bool,
                    racy_margin_s: float = RACY_MARGIN_S) -> tuple[list[FileProblem], int]:
    """Checks every file of a finished folder against its manifest: (problems, bytes read to check them).

    Only the process that may write the folder (the one holding the run lock) saves the check cache.
    """
    cache = HashCache(folder, racy_margin_s=racy_margin_s)
    problems = check_files(cache, artifact_files(folder), manifest.files, manifest.sizes)
    if save_cache:
        cache.save()
    return problems, cache.hashed_bytes


def publish(
    folder: Path,
    *,
    kind: str,
    stage: str,
    rel_folder: str,
    config_hash: str,
    inputs: dict[str, str],
    summary: dict[str, Any],
    wall_time_s: float,
) -> Manifest:
    """Hash the folder's files and write its manifest last; the scratch folder is removed first."""
    shutil.rmtree(folder / SCRATCH, ignore_errors=True)
    cache = HashCache(folder)
    facts = {rel: cache.sha256_and_size(rel) for rel in artifact_files(folder)}
    cache.save()
    manifest = Manifest(
        kind=kind,
        schema_version=SCHEMA_VERSION,
        stage=stage,
        folder=rel_folder,
        config_hash=config_hash,
        inputs=inputs,
        files={rel: sha for rel, (sha, _) in facts.items()},
        sizes={rel: size for rel, (_, size) in facts.items()},
        summary=summary,
        wall_time_s=round(wall_time_s, 3),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_atomic(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")
    return manifest
