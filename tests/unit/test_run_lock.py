"""One writer per run folder: a second `run` is refused at once with code 2, naming the holder; a killed holder
frees the folder; `status` reads it while it is held."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlhf_stack.app.cli import main
from rlhf_stack.core.errors import RunLockedError
from rlhf_stack.core.run_lock import LOCK, hold_run_lock

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"
HOLDER = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from rlhf_stack.core.run_lock import hold_run_lock

    with hold_run_lock(Path(sys.argv[1]), "rlhf-stack run held.yaml"):
        if sys.argv[2] == "fork" and os.fork() == 0:  # a child shares the lock and outlives its parent
            time.sleep(60)
            os._exit(0)
        print("held", flush=True)
        time.sleep(60)
''')


def _hold(run_dir: Path, mode: str = "plain") -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), mode], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_second_run_is_refused_with_code_2_naming_the_holder_and_a_killed_holder_frees_the_folder(
        tmp_path, capsys):
    holder = _hold(tmp_path)
    try:
        assert main(["run", str(TINY), "--set", f"run_dir={tmp_path}"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid} on host {socket.gethostname()}" in err and "rlhf-stack run held.yaml" in err
        assert not (tmp_path / "run.json").exists()  # refused before writing anything
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with hold_run_lock(tmp_path, "next"):  # the kernel released the killed holder's lock
        assert (tmp_path / LOCK).read_text().startswith(f'{{"pid": {os.getpid()}')


def test_a_forked_child_of_a_killed_holder_keeps_the_lock_and_the_refusal_says_so(tmp_path):
    holder = _hold(tmp_path, "fork")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    try:
        with pytest.raises(RunLockedError, match="that process has exited; a process it started still holds"):
            with hold_run_lock(tmp_path, "next"):
                pass
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the child, in the holder's session


def test_status_reads_a_folder_while_a_run_holds_it(tmp_path, capsys):
    assert main(["run", str(TINY), "--set", f"run_dir={tmp_path}", "--only", "synthesize", "--dry-run"]) == 0
    holder = _hold(tmp_path)
    try:
        capsys.readouterr()
        assert main(["status", str(tmp_path), "--verify"]) == 0
        assert "s1_synthesize" in capsys.readouterr().out
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
