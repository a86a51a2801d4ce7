"""Checking a folder's files against the sizes and sha256s recorded for them, without rereading unchanged files.

A small cache beside the manifest remembers, per file, the sha256 the file had while its stat read
(size, mtime_ns, ctime_ns, inode). A file whose stat still reads the same is not read again, so checking a large,
unchanged folder costs one stat per file. The kernel moves ctime on every write, truncate, rename over the file
and utime, and user space cannot set it back, so an edited file never matches an old entry, even when its size and
mtime were restored. A file changed twice within one timestamp tick can keep its stat; an entry is therefore only
kept for a file whose ctime lies at least `RACY_MARGIN_S` before its hashing began (git's "racily clean" rule):
a file written just before it was hashed is hashed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = ".manifest.verified.json"  # beside the manifest; not part of the artifact
CACHE_VERSION = 1
RACY_MARGIN_S = 1.0  # wider than the timestamp granularity of local file systems and of NFS servers


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class FileProblem:
    """One file of a finished folder that no longer is what its manifest says."""

    path: str  # relative to the folder
    problem: str  # what differs, e.g. "1290 bytes, the manifest says 1207"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class HashCache:
    """sha256 and size of the files of one folder, read from the cache when a file's stat is unchanged."""

    def __init__(self, folder: Path, *, racy_margin_s: float = RACY_MARGIN_S):
        self.folder = folder
        self.racy_margin_ns = int(racy_margin_s * 1e9)
        self.hashed_bytes = 0  # bytes read in this check: 0 when every file came from the cache
        self._entries = _load(folder / CACHE)
        self._changed = False

    def sha256_and_size(self, rel: str) -> tuple[str, int]:
        path = self.folder / rel
        key = _stat_key(path)
        entry = self._entries.get(rel)
        if entry is not None and entry[:4] == key:
            return entry[4], key[0]
        started_ns = time.time_ns()
        sha = sha256_file(path)
        self.hashed_bytes += key[0]
        settled = started_ns - key[2] >= self.racy_margin_ns
        if settled and _stat_key(path) == key:
            self._entries[rel] = [*key, sha]
            self._changed = True
        elif self._entries.pop(rel, None) is not None:
            self._changed = True
        return sha, key[0]

    def save(self) -> None:
        """Writes the cache (never creating the folder); a cache that cannot be written only costs time."""
        if not self._changed or not self.folder.is_dir():
            return
        tmp = self.folder / f"{CACHE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": self._entries}))
            os.replace(tmp, self.folder / CACHE)
        except OSError:
            tmp.unlink(missing_ok=True)


def check_files(cache: HashCache, present: list[str], sha256: dict[str, str],
                sizes: dict[str, int]) -> list[FileProblem]:
    """Problems of the folder's `present` files against the recorded sha256 (and size, where recorded)."""
    problems = [FileProblem(rel, "missing") for rel in sha256 if rel not in present]
    problems += [FileProblem(rel, "not in the manifest: added after the folder was published")
                 for rel in present if rel not in sha256]
    for rel in (r for r in present if r in sha256):
        try:
            size = (cache.folder / rel).stat().st_size
            if rel in sizes and size != sizes[rel]:
                problems.append(FileProblem(rel, f"{size} bytes, the manifest says {sizes[rel]}"))
            elif cache.sha256_and_size(rel)[0] != sha256[rel]:
                problems.append(FileProblem(rel, "content changed (sha256 differs from the manifest's)"))
        except FileNotFoundError:  # removed while it was being checked
            problems.append(FileProblem(rel, "missing"))
    return problems


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _load(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return {rel: e for rel, e in data["files"].items() if isinstance(e, list) and len(e) == 5}
