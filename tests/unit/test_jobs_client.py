"""The job client's errors without a cluster, and the log sink that feeds files, terminals and error messages."""

import io
import socket
import time

import pytest

from ray_cluster.jobs import LOG_TAIL_LINES, JobClient, _LogSink
from rlhf_stack.core.errors import ClusterError


def test_an_address_without_scheme_names_the_fix():
    with pytest.raises(ClusterError, match=r"http://head:8265"):
        JobClient("head:8265")


def test_nothing_listening_fails_fast_with_the_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(ClusterError, match="cannot connect.*ray start --head --include-dashboard=true"):
        JobClient(address)
    assert time.monotonic() - start < 30


def test_the_log_sink_writes_everything_and_keeps_the_last_lines(tmp_path):
    terminal = io.StringIO()
    sink = _LogSink(tmp_path / "sub" / "job.log", terminal)
    chunks = ["first li", "ne\n", *(f"line {i}\n" for i in range(LOG_TAIL_LINES + 5)), "no newline yet"]
    for chunk in chunks:
        sink.write(chunk)
    sink.close()
    text = "".join(chunks)
    assert (tmp_path / "sub" / "job.log").read_text() == terminal.getvalue() == text
    assert sink.chars == len(text)
    tail = sink.tail().splitlines()
    assert len(tail) == LOG_TAIL_LINES and tail[-1] == "  | no newline yet" and tail[0] == "  | line 6"


def test_an_empty_log_says_so():
    assert "no log" in _LogSink(None, None).tail()
