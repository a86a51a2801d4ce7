"""One writer per run folder: `rlhf-stack run` holds an exclusive kernel lock on `<run dir>/run.lock` while it runs.

flock(2) belongs to the open file, so the kernel releases it when the holder exits, also when it is killed; a
process forked from the holder shares it while it lives (it could still write). The file stays after the run:
deleting it would let a second run lock a new file while the first still holds the old one. The holder writes
who it is into the file, so a refused run can say which process to wait for. On NFS, Linux maps flock onto the
server's byte-range locks, so runs on two machines sharing the folder exclude each other too.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlhf_stack.core.errors import RunLockedError

LOCK = "run.lock"
HOLDER_WAIT_S = 1.0  # how long a refused run waits for a holder that has just locked to write its name


@contextmanager
def hold_run_lock(run_dir: Path, command: str) -> Iterator[None]:
    """Holds the run folder's lock for the body of the `with`; raises RunLockedError at once if another has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(_refusal(run_dir, fd)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)


def _refusal(run_dir: Path, fd: int) -> str:
    holder = _read_holder(fd)
    if holder is None:
        who = "another process (it has not written its name into the lock file)"
    else:
        who = f"pid {holder['pid']} on host {holder['host']}, started {holder['started_at']}: {holder['command']}"
        if holder["host"] == socket.gethostname() and not _alive(holder["pid"]):
            who += " (that process has exited; a process it started still holds the lock)"
    return (f"{run_dir} is being written by another `rlhf-stack run`: {who}. Two runs would write the same shards. "
            f"Wait for it to finish or stop it; `rlhf-stack status {run_dir}` and `rlhf-stack report {run_dir}` "
            f"read the folder meanwhile.")


def _read_holder(fd: int) -> dict | None:
    """The holder's record; waits briefly while the file is empty or names a process that has gone (the new
    holder has locked but not written yet)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    holder = None
    while True:
        try:
            holder = json.loads(os.pread(fd, 1 << 16, 0))
        except ValueError:
            holder = None
        settled = holder is not None and (holder["host"] != socket.gethostname() or _alive(holder["pid"]))
        if settled or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
