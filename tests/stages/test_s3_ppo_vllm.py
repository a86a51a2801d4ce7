"""The local backend's vLLM rollout path: engines in Ray actors that serve the policy as it is after each update."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ray_cluster.session import shutdown
from rlhf_stack.core.sections import ClusterConfig
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.local_backend import LocalPPO, RewardSource
from stages.s3_ppo.metrics import MetricsLog, read_metrics
from ray_cluster.generation import GenerationRequest, Sampling
from stages.s3_ppo.rollout import cut_at_eos, render_prompts
from stages.s3_ppo.rollout_engines import open_rollout_engine
from stages.s3_ppo.vllm_rollout import VLLMEngine
from test_s3_support import build_frequency_rm

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [json.loads(line)["prompt"] for line in (REPO / "recipes/data/tiny_prompts.jsonl").read_text().splitlines()]
CLUSTER = ClusterConfig(address="local", num_cpus=2)
VLLM = {"backend": "vllm", "max_model_len": 512, "dtype": "float32", "kv_cache_gib": 1}


@pytest.fixture(scope="module", autouse=True)
def _ray():
    yield
    shutdown()


def test_engines_sample_from_the_refreshed_policy(tiny_policy, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = PPOConfig(policy="policy", temperature=1e-6, max_new_tokens=6, max_length_tokens=512,
                    local={"rollout_engine": VLLM})  # vLLM raises it to 0.01: greedy enough below
    policy, tok = AutoModelForCausalLM.from_pretrained(tiny_policy), AutoTokenizer.from_pretrained(tiny_policy)
    prompts, _, _ = render_prompts(tok, PROMPTS[:4], max_length_tokens=512, max_new_tokens=6)
    with VLLMEngine.open(cfg, policy, tok, work_dir=tmp_path, cluster=CLUSTER, seed=0) as engine:
        before, _ = engine.generate(prompts, seed=0)
        # A random tiny model greedily repeats the prompt's last token (tied embeddings: a token's own logit is the
        # largest). Make token 1000 a scaled copy of each prompt's last token: it wins, and then repeats itself.
        last = prompts[0].token_ids[-1]
        assert all(p.token_ids[-1] == last for p in prompts)
        with torch.no_grad():
            embeddings = policy.model.embed_tokens.weight
            embeddings[1000] = 30 * embeddings[last]
        engine.refresh(policy)
        after, _ = engine.generate(prompts, seed=0)
    expected = []
    for p in prompts:
        out = policy.generate(torch.tensor([p.token_ids]), do_sample=False, max_new_tokens=6,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        expected.append(cut_at_eos(out[0, len(p.token_ids):].tolist(), tok.eos_token_id)[0])
    assert after == expected == [[1000] * 6] * 4
    assert before != after


def _greedy_from_engine(engine: VLLMEngine, prompts, max_new_tokens: int) -> list[list[int]]:
    requests = [GenerationRequest(id=str(i), messages=tuple((m["role"], m["content"]) for m in p.messages),
                                  sampling=Sampling(max_new_tokens=max_new_tokens, temperature=0.0))
                for i, p in enumerate(prompts)]
    return [cut_at_eos(list(r.completions[0].token_ids), engine.eos_id)[0] for r in engine.backend.generate(requests)]


def _greedy_in_process(policy, tok, prompts, max_new_tokens: int) -> list[list[int]]:
    out = []
    for p in prompts:
        ids = torch.tensor([p.token_ids])
        generated = policy.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id)
        out.append(cut_at_eos(generated[0, len(p.token_ids):].tolist(), tok.eos_token_id)[0])
    return out


def test_after_a_ppo_step_the_engine_samples_from_the_updated_weights(tiny_policy, tmp_path):
    """One real iteration (vLLM rollout, scoring, update, in-memory weight hand-over); greedy output of the engine
    follows the trainer's policy exactly, before and after the update, and the update changed it."""
    rm = build_frequency_rm(tiny_policy, tmp_path / "rm")
    cfg = PPOConfig(policy="policy", prompts_per_step=4, max_new_tokens=8, max_length_tokens=512, actor_lr=3e-2,
                    critic_lr=1e-3, local={"rollout_engine": VLLM})
    trainer = LocalPPO(cfg, policy_dir=tiny_policy, reward=RewardSource(rm, None), prompts=PROMPTS[:4],
                       work_dir=tmp_path / "_work", seed=0, cluster=CLUSTER)
    probe = trainer.prompts[:4]
    with open_rollout_engine(cfg, trainer.policy, trainer.tokenizer, work_dir=trainer.work_dir, cluster=CLUSTER,
                             seed=0, precision=trainer.precision) as engine:
        served = trainer.work_dir / "rollout_policy" / "model.safetensors"  # the engines' starting copy
        written = served.stat().st_mtime_ns
        before = _greedy_from_engine(engine, probe, 8)
        assert before == _greedy_in_process(trainer.policy, trainer.tokenizer, probe, 8)
        record = trainer.step(engine, 0)
        after = _greedy_from_engine(engine, probe, 8)
    assert after == _greedy_in_process(trainer.policy, trainer.tokenizer, probe, 8)
    assert after != before
    assert record["weight_sync_s"] > 0 and record["train_s"] > 0
    assert served.stat().st_mtime_ns == written  # handed over in memory, not through the folder


def test_ppo_iterations_with_vllm_rollouts(tiny_policy, tmp_path):
    rm = build_frequency_rm(tiny_policy, tmp_path / "rm")
    cfg = PPOConfig(policy="policy", prompts_per_step=8, samples_per_optimizer_step=4, max_new_tokens=8,
                    max_length_tokens=512, actor_lr=1e-3, critic_lr=1e-3, local={"rollout_engine": VLLM})
    trainer = LocalPPO(cfg, policy_dir=tiny_policy, reward=RewardSource(rm, None), prompts=PROMPTS[:16],
                       work_dir=tmp_path / "_work", seed=0, cluster=CLUSTER)
    with MetricsLog(tmp_path) as metrics:
        summary = trainer.run(metrics)
    records = read_metrics(tmp_path)
    assert summary["iterations"] == len(records) == 2
    assert all(math.isfinite(r["reward_mean"]) and r["response_length"] > 0 for r in records)
    assert records[1]["kl"] != 0  # the second rollout came from the updated policy, not the reference
