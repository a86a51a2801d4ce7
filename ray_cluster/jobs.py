"""Ray jobs: submit a command to a cluster, stream its logs as they come, wait for its end.

The one module that talks to Ray's Job Submission API (the dashboard's HTTP endpoint, `http://HEAD:8265`).
`rlhf-stack submit` runs the whole pipeline through it, and the PPO stage runs OpenRLHF's `train_ppo_ray` through
it. A job that fails or is stopped raises `ClusterError` with its id, status and the tail of its log; Ctrl-C while
following a job stops the job before the interrupt goes on.

Token authentication: with `RAY_AUTH_MODE=token` in the environment, Ray's client sends the token from
`RAY_AUTH_TOKEN` or `~/.ray/auth_token` with every request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rlhf_stack.core.errors import ClusterError

log = logging.getLogger("rlhf_stack")

SUCCEEDED = "SUCCEEDED"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
LOG_TAIL_LINES = 40  # lines of a failed job's log quoted in its error
_TAIL_GRACE_S = 10.0  # how long the log stream may lag behind a finished job before the rest is fetched at once
_TAIL_RECONNECTS = 5  # a dropped log stream is reopened this many times, then the job is only polled
# Ray lets these variables override the address handed to its client; an explicit dashboard URL must win.
_ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_FIX_REACH = ("start the head with `ray start --head --include-dashboard=true`, or forward its port "
              "(`ray dashboard CLUSTER.yaml`, `kubectl port-forward svc/HEAD-svc 8265:8265`)")
_FIX_AUTH = ("the cluster uses token authentication: export RAY_AUTH_MODE=token and put the cluster's token in "
             "RAY_AUTH_TOKEN or ~/.ray/auth_token")


@dataclass(frozen=True)
class JobOutcome:
    """A job that reached SUCCEEDED."""

    job_id: str  # Ray's submission id, e.g. "raysubmit_..." or the id the caller chose
    status: str  # always "SUCCEEDED": other endings raise ClusterError
    wall_s: float  # from the start of following to the end of the job
    log_path: Path | None  # the job's whole log, when one was asked for


def submit_and_wait(
    address: str,
    entrypoint: str,
    runtime_env: dict[str, Any] | None = None,
    log_path: Path | None = None,
    *,
    submission_id: str | None = None,
    echo: bool = False,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Runs a shell command as a Ray job and waits for it to succeed.

    Example (the PPO stage):
        outcome = submit_and_wait("http://head:8265", "python3 -m openrlhf.cli.train_ppo_ray ...",
                                  {"working_dir": str(stage_dir), "env_vars": {...}}, stage_dir / "train.log",
                                  submission_id=f"ppo-{variant}-{config_hash[:8]}")

    Args:
        address: The cluster's dashboard URL, `http://HEAD:8265`; or "auto" for the cluster this process runs in
            (Ray finds it through RAY_ADDRESS, as inside a Ray job, or a cluster started on this machine).
        entrypoint: The shell command the job runs on the head node.
        runtime_env: Ray runtime environment of the job: `working_dir` (uploaded; `excludes` keeps folders out),
            `pip` or a requirements file, `env_vars`, ... The job's actors inherit it.
        log_path: File that receives the job's whole log as it comes (rewritten from the start, also on reattach).
        submission_id: A stable id makes the call resumable: when a job with this id already exists, it is
            followed instead of submitted again (a job that already succeeded returns at once; one that failed or
            was stopped raises, so a retry needs a new id).
        echo: Also write the log to stdout as it comes.
        poll_s: Seconds between status checks while the log streams.
        timeout_s: Stop the job and raise when it has not ended after this many seconds; None waits forever.

    Returns:
        The outcome of the job, which succeeded.

    Raises:
        ClusterError: The cluster cannot be reached or refuses the job, or the job failed, was stopped or timed out.
    """
    client = JobClient(address)
    job_id = client.submit_or_attach(entrypoint, runtime_env, submission_id=submission_id)
    return client.follow(job_id, log_path=log_path, echo=echo, poll_s=poll_s, timeout_s=timeout_s)


class JobClient:
    """A connection to one cluster's job server.

    Args:
        address: The dashboard URL `http://HEAD:8265` (https also works), or "auto" (see `submit_and_wait`).

    Raises:
        ClusterError: The address is malformed, nothing answers there, or the cluster refuses our credentials.
    """

    def __init__(self, address: str):
        if address != "auto" and not address.startswith(("http://", "https://")):
            raise ClusterError(f"job server address {address!r}: expected the dashboard URL, e.g. "
                               f"http://{address if address else 'HEAD'}:8265 (port 8265 unless the head was started "
                               "with another --dashboard-port), or 'auto' inside the cluster")
        from ray.job_submission import JobSubmissionClient

        self.address = address
        with _cluster_errors(f"job server {address}: cannot connect", _FIX_REACH):
            with _hidden_env(_ADDRESS_ENV if address != "auto" else ()):
                self._client = JobSubmissionClient(address)

    def submit(self, entrypoint: str, runtime_env: dict[str, Any] | None = None, *,
               submission_id: str | None = None, metadata: dict[str, str] | None = None) -> str:
        """Submits a job and returns its id without waiting (the working_dir is uploaded first)."""
        fix = ("check the runtime environment: working_dir must exist and stay under Ray's package limit (keep "
               "big folders out with `excludes`); pip packages must be installable on the cluster")
        with _cluster_errors(f"job server {self.address}: the job was refused", fix):
            job_id = self._client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                             submission_id=submission_id, metadata=metadata)
        log.info("submitted Ray job %s to %s: %s", job_id, self.address, entrypoint)
        return job_id

    def submit_or_attach(self, entrypoint: str, runtime_env: dict[str, Any] | None = None, *,
                         submission_id: str | None = None) -> str:
        """Submits a job, unless a job with `submission_id` exists already: then returns that id to follow it."""
        if submission_id is not None:
            existing = self._details(submission_id, missing_ok=True)
            if existing is not None:
                if existing.entrypoint != entrypoint:
                    raise ClusterError(
                        f"Ray job {submission_id} exists with another command ({existing.entrypoint!r}, not "
                        f"{entrypoint!r}); give this job a new submission id")
                log.info("Ray job %s exists (%s): following it instead of submitting again",
                         submission_id, existing.status)
                return submission_id
        return self.submit(entrypoint, runtime_env, submission_id=submission_id)

    def status(self, job_id: str) -> str:
        """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
        return str(self._details(job_id).status)

    def logs(self, job_id: str) -> str:
        """The job's whole log so far."""
        with _cluster_errors(f"Ray job {job_id}: cannot read its log from {self.address}", _FIX_REACH):
            return self._client.get_job_logs(job_id)

    def stop(self, job_id: str, wait_s: float = 30.0) -> str:
        """Asks the job to stop and waits up to `wait_s` for it to end; returns its last status."""
        with _cluster_errors(f"Ray job {job_id}: cannot stop it through {self.address}",
                             f"stop it with `ray job stop --address {self.address} {job_id}`"):
            self._client.stop_job(job_id)
        deadline = time.monotonic() + wait_s
        status = self.status(job_id)
        while status not in TERMINAL_STATUSES and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.status(job_id)
        return status

    def follow(self, job_id: str, *, log_path: Path | None = None, echo: bool = False, poll_s: float = 2.0,
               timeout_s: float | None = None) -> JobOutcome:
        """Streams a job's log to `log_path` and/or stdout until the job ends.

        Args:
            job_id: The job to follow.
            log_path: File that receives the job's whole log (rewritten from the start).
            echo: Also write the log to stdout as it comes.
            poll_s: Seconds between status checks while the log streams.
            timeout_s: Stop the job and raise when it has not ended after this many seconds.

        Returns:
            The outcome of the job, which succeeded.

        Raises:
            ClusterError: The job failed, was stopped or timed out; the message quotes the end of its log.
            KeyboardInterrupt: After stopping the job, when the user pressed Ctrl-C.
        """
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        sink = _LogSink(log_path, sys.stdout if echo else None)
        try:
            timed_out = asyncio.run(self._stream(job_id, sink, poll_s, deadline))
        except KeyboardInterrupt:
            log.warning("interrupted: stopping Ray job %s", job_id)
            status = self.stop(job_id)
            log.warning("Ray job %s is %s", job_id, status)
            raise
        finally:
            sink.close()
        if timed_out:
            status = self.stop(job_id)
            raise ClusterError(f"Ray job {job_id} did not end within timeout_s={timeout_s:g}; it was stopped "
                               f"({status}). Raise the timeout or look at the log:\n{sink.tail()}")
        details = self._details(job_id)
        status = str(details.status)
        if status != SUCCEEDED:
            where = f" (whole log: {log_path})" if log_path else ""
            exit_code = f", exit code {details.driver_exit_code}" if details.driver_exit_code is not None else ""
            raise ClusterError(f"Ray job {job_id} {status}{exit_code}: {_first_line(details.message or '').rstrip(':')}"
                               f"\nlast lines of its log{where}:\n{sink.tail()}")
        return JobOutcome(job_id=job_id, status=status, wall_s=time.monotonic() - start, log_path=log_path)

    async def _stream(self, job_id: str, sink: "_LogSink", poll_s: float, deadline: float | None) -> bool:
        """Copies the log until the job ends; True when the deadline passed first."""
        tail: asyncio.Task | None = asyncio.create_task(self._tail(job_id, sink))
        reconnects, ended_at = 0, None
        while True:
            if tail is not None:
                await asyncio.wait({tail}, timeout=poll_s)
            else:
                await asyncio.sleep(poll_s)
            ended = await asyncio.to_thread(self.status, job_id) in TERMINAL_STATUSES
            if tail is not None and tail.done():
                error, tail = tail.exception(), None
                if error is None and ended:
                    return False  # the server closes the stream after the job's last line: nothing is missing
                if error is not None:
                    log.warning("log stream of Ray job %s broke (%s)", job_id, _first_line(error))
                if not ended and reconnects < _TAIL_RECONNECTS:
                    reconnects += 1
                    tail = asyncio.create_task(self._tail(job_id, sink))
            now = time.monotonic()
            if ended:
                ended_at = ended_at or now
                if tail is None or now - ended_at > _TAIL_GRACE_S:
                    break
            elif deadline is not None and now > deadline:
                break
        if tail is not None:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await tail
        # The stream was cut short: fetch what it missed in one request.
        sink.write((await asyncio.to_thread(self.logs, job_id))[sink.chars:])
        return not ended

    async def _tail(self, job_id: str, sink: "_LogSink") -> None:
        skip_chars = sink.chars  # a reopened stream starts again from the first line
        async for text in self._client.tail_job_logs(job_id):
            if skip_chars:
                text, skip_chars = text[skip_chars:], max(0, skip_chars - len(text))
            sink.write(text)

    def _details(self, job_id: str, missing_ok: bool = False):
        with _cluster_errors(f"Ray job {job_id}: cannot get its status from {self.address}", _FIX_REACH):
            try:
                return self._client.get_job_info(job_id)
            except RuntimeError as e:
                if missing_ok and "status code 404" in str(e):
                    return None
                raise


class _LogSink:
    """Where a job's log goes: a file, a terminal, and the last lines kept for error messages."""

    def __init__(self, path: Path | None, terminal: TextIO | None):
        self.chars = 0
        self._last_lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""
        self._terminal = terminal
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w")

    def write(self, text: str) -> None:
        if not text:
            return
        self.chars += len(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self._last_lines.extend(lines)
        for out in (self._file, self._terminal):
            if out is not None:
                out.write(text)
                out.flush()

    def tail(self) -> str:
        lines = list(self._last_lines) + ([self._partial] if self._partial else [])
        return "\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:]) or "  (the job wrote no log)"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@contextlib.contextmanager
def _hidden_env(names: tuple[str, ...]):
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _cluster_errors(what: str, fix: str):
    """Turns the job client's exceptions into one ClusterError that says what failed and how to fix it."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as e:
        raise ClusterError(f"{what}: the cluster refused our credentials ({_first_line(e)}); {_FIX_AUTH}") from e
    except (RuntimeError, ValueError, OSError) as e:  # OSError covers ConnectionError and requests' errors
        raise ClusterError(f"{what} ({_first_line(e)}); {fix}") from e


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
