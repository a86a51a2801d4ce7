"""`rlhf-stack serve-rm` answers OpenRLHF's own HTTP reward client with the rewards a local RM gives the same
token ids, batches concurrent requests, and feeds the local PPO backend's remote-RM route."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from rlhf_stack.core.chat import sequence_ids, user_messages
from stages.s3_ppo.rewards import CheckpointReward, HttpReward
from stages.s3_ppo.rollout import pack

REPO = Path(__file__).resolve().parents[2]
PAIRS = [("Explain why the sky looks blue.", "Light scatters."), ("Write a haiku about autumn rain.", "Rain falls."),
         ("Give three tips for a job interview.", "Be on time, listen, ask."), ("Name a prime.", "Seven"),
         ("Say hi.", ""), ("What is a list?", "A sequence of items, in order."), ("Count to three.", "1 2 3"),
         ("Define entropy.", "Average surprise.")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(reward_checkpoint, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rlhf_stack.app.cli", "serve-rm", str(reward_checkpoint),
                                 "--port", str(port), "--max-batch", "4"], cwd=REPO, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve-rm did not start:\n{log.read_text()}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def queries(reward_checkpoint):
    """(token ids, the text OpenRLHF's rollout worker would send for them, its prompt text)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(reward_checkpoint)
    out = []
    for prompt, response in PAIRS:
        ids, prompt_len = sequence_ids(tok, user_messages(prompt), response)
        text = tok.decode(ids, skip_special_tokens=False)
        assert tok(text, add_special_tokens=False)["input_ids"] == ids  # the text route sees the same ids
        out.append((ids, text, tok.decode(ids[:prompt_len], skip_special_tokens=False)))
    return out


def _local_rewards(reward_checkpoint, queries) -> torch.Tensor:
    rollout = pack([q[0][:1] for q in queries], [q[0][1:] for q in queries], ["stop"] * len(queries), pad_id=3)
    return CheckpointReward(reward_checkpoint, device=torch.device("cpu"), dtype=torch.float32,
                            micro_batch_samples=8)(rollout, list(range(len(queries))))


def test_openrlhf_client_gets_the_local_rewards(server, reward_checkpoint, queries):
    sys.path.insert(0, str(Path(__file__).parent / "flash_attn_standin"))
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    client = SingleTurnAgentExecutor(remote_rm_url=f"{server}/get_reward")
    before = _get(f"{server}/health")

    async def one_request_per_query():  # what each rollout worker does, all at once
        return await asyncio.gather(*(client._fetch_rewards_via_http([text], [prompt], [""])
                                      for _, text, prompt in queries))

    answers = asyncio.run(one_request_per_query())
    served = torch.tensor([a[0]["rewards"][0] for a in answers])
    assert all(a[0]["scores"] == a[0]["rewards"] for a in answers)
    torch.testing.assert_close(served, _local_rewards(reward_checkpoint, queries), rtol=0, atol=1e-5)
    after = _get(f"{server}/health")
    assert after["queries"] - before["queries"] == len(queries)
    assert after["forward_passes"] - before["forward_passes"] <= len(queries)


def test_one_request_with_many_queries_is_split_into_batches(server, reward_checkpoint, queries):
    before = _get(f"{server}/health")
    body = json.dumps({"query": [q[1] for q in queries[:6]], "prompts": [q[2] for q in queries[:6]],
                       "labels": [""] * 6}).encode()
    request = urllib.request.Request(f"{server}/get_reward", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        rewards = json.loads(r.read())["rewards"]
    torch.testing.assert_close(torch.tensor(rewards), _local_rewards(reward_checkpoint, queries)[:6], rtol=0,
                               atol=1e-5)
    assert _get(f"{server}/health")["forward_passes"] - before["forward_passes"] == 2  # 6 queries, max_batch 4

    bad = urllib.request.Request(f"{server}/get_reward", data=b'{"queries": []}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError, match="422"):
        urllib.request.urlopen(bad, timeout=10)


def test_the_local_backend_remote_route_scores_rollouts_like_the_checkpoint(server, reward_checkpoint, queries):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(reward_checkpoint)
    prompt_lens = [len(tok(q[2], add_special_tokens=False)["input_ids"]) for q in queries]
    rollout = pack([q[0][:n] for q, n in zip(queries, prompt_lens)], [q[0][n:] for q, n in zip(queries, prompt_lens)],
                   ["stop"] * len(queries), pad_id=tok.pad_token_id)
    remote = HttpReward(f"{server}/get_reward", tok, queries_per_request=3)(rollout,
                                                                     list(range(len(queries))))
    torch.testing.assert_close(remote, _local_rewards(reward_checkpoint, queries), rtol=0, atol=1e-5)
