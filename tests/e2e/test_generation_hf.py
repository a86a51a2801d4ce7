"""The engine pool with the transformers backend, in a local Ray: order, batching independence, regex, logprobs,
truncation, actor death and restart, weight loading."""

import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.session import ensure_ray, shutdown
from rlhf_stack.core.chat import prompt_ids, user_messages
from rlhf_stack.core.errors import ClusterError, EngineError
from rlhf_stack.core.sections import ClusterConfig

CLUSTER = ClusterConfig(address="local", num_cpus=2)
SCORES = r"([1-9]|10) ([1-9]|10)"


def ask(i: int, **sampling) -> GenerationRequest:
    return GenerationRequest(id=f"q{i}", messages=(("user", f"question number {i}?"),),
                             sampling=Sampling(**{"max_new_tokens": 8, **sampling}))


def hf_greedy(model_dir, prompt: str, max_new_tokens: int) -> list[int]:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([prompt_ids(tok, user_messages(prompt))])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def hf_first_logprobs(model_dir, prompt: str, k: int) -> list[tuple[int, float]]:
    """The model's top-k (token id, logprob) for the first response token, straight from transformers."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids(tok, user_messages(prompt))])).logits[0, -1]
    values, ids = logits.float().log_softmax(-1).topk(k)
    return list(zip(ids.tolist(), values.tolist()))


def first_logprobs(result) -> list[tuple[int, float]]:
    return [(e.token_id, e.logprob) for e in result.completions[0].top_logprobs[0]]


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    return [i for i, _ in a] == [i for i, _ in b] and all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(a, b))


@pytest.fixture(scope="module")
def pool(tiny_model):
    ensure_ray(CLUSTER)
    # Half a CPU each, so the other tests can start engines beside these.
    cfg = EngineConfig(backend="hf", num_engines=2, cpus_per_engine=0.5, max_model_len=96, max_num_seqs=8)
    with open_backend(tiny_model, cfg, cluster=CLUSTER, seed=3, model_name="tiny") as backend:
        yield backend
    shutdown()


def test_results_come_in_input_order_with_one_callback_each(pool):
    requests = [ask(i, temperature=0.7 if i % 2 else 0.0) for i in range(24)]
    seen = []
    results = pool.generate(requests, on_result=lambda r: seen.append(r.id))
    assert [r.id for r in results] == [r.id for r in requests]
    assert sorted(seen) == sorted(r.id for r in requests)
    assert all(r.completions and r.prompt_tokens > 0 for r in results)


def test_greedy_matches_transformers_generate(pool, tiny_model):
    result = pool.generate([ask(0)])[0]
    assert list(result.completions[0].token_ids) == hf_greedy(tiny_model, "question number 0?", 8)


def test_a_sample_does_not_depend_on_its_batch_or_engine(pool):
    requests = [ask(i, temperature=0.9, top_k=50, n=2) for i in range(10)]
    together = pool.generate(requests)
    alone = [pool.generate([r])[0] for r in requests[:3]]
    assert [r.completions for r in alone] == [r.completions for r in together[:3]]
    assert together[0].completions[0] != together[0].completions[1]  # n=2 gives two different samples


def test_regex_constrains_the_output_and_logprobs_come_per_token(pool):
    result = pool.generate([ask(1, regex=SCORES, top_logprobs=3)])[0]
    completion = result.completions[0]
    assert re.fullmatch(SCORES, completion.text), completion.text
    assert len(completion.top_logprobs) == len(completion.token_ids)
    first = completion.top_logprobs[0]
    assert len(first) == 3 and first[0].logprob >= first[1].logprob >= first[2].logprob
    assert first[0].token_id == completion.token_ids[0]  # greedy picks the best allowed token
    assert all(re.fullmatch(r"\s*\d+", entry.token) for entry in first)  # the mask applies before the logprobs


def test_over_long_prompts_are_truncated_or_refused(pool):
    long = (("user", "tell me " * 200 + "the end"),)
    cut = GenerationRequest(id="cut", messages=long, sampling=Sampling(max_new_tokens=8), overflow="truncate_left")
    refused = GenerationRequest(id="refused", messages=long, sampling=Sampling(max_new_tokens=8))
    cut_result, refused_result = pool.generate([cut, refused])
    assert cut_result.prompt_truncated and cut_result.prompt_tokens <= 96 - 8 and cut_result.completions
    assert refused_result.error == "prompt_too_long" and not refused_result.completions


def test_a_killed_engine_is_restarted_and_nothing_is_lost_or_duplicated(pool):
    import ray

    requests = [ask(i, temperature=0.7 if i % 3 else 0.0) for i in range(30)]
    reference = pool.generate(requests)
    restarts_before, seen = pool.restarts, []

    def kill_once(result):
        seen.append(result.id)
        if len(seen) == 4:
            ray.kill(pool.actors[0])

    results = pool.generate(requests, on_result=kill_once)
    assert pool.restarts == restarts_before + 1
    assert sorted(seen) == sorted(r.id for r in requests)  # each request reported exactly once
    assert [r.completions for r in results] == [r.completions for r in reference]


def test_restarts_are_bounded(tiny_model):
    import ray

    ensure_ray(CLUSTER)
    cfg = EngineConfig(backend="hf", num_engines=1, cpus_per_engine=0.5, max_actor_restarts=0)
    with open_backend(tiny_model, cfg, cluster=CLUSTER, model_name="fragile") as backend:
        ray.kill(backend.actors[0])
        with pytest.raises(EngineError, match="max_actor_restarts"):
            backend.generate([ask(0)])


def test_asking_for_more_cpus_than_the_cluster_has_or_has_free_fails_at_once(pool, tiny_model, monkeypatch):
    monkeypatch.setattr("ray_cluster.generation.pool._FREE_WAIT_S", 0.5)
    with pytest.raises(ClusterError, match="need 4 CPUs; the Ray cluster has 2"):
        with open_backend(tiny_model, EngineConfig(backend="hf", num_engines=4), cluster=CLUSTER):
            pass
    with pytest.raises(ClusterError, match="only 1 of the cluster's 2 are free"):  # the module's pool holds one
        with open_backend(tiny_model, EngineConfig(backend="hf", num_engines=2), cluster=CLUSTER):
            pass


def test_loaded_weights_serve_and_survive_an_engine_restart(pool, tiny_model, tiny_policy):
    """Runs last: it leaves the module's pool serving the other model."""
    import ray

    request = ask(5, top_logprobs=5)
    before = first_logprobs(pool.generate([request])[0])
    pool.load_weights(str(tiny_policy))
    after = first_logprobs(pool.generate([request])[0])
    assert same(before, hf_first_logprobs(tiny_model, "question number 5?", 5))
    assert same(after, hf_first_logprobs(tiny_policy, "question number 5?", 5))
    assert not same(before, after)
    restarts = pool.restarts
    ray.kill(pool.actors[1])  # its replacement must start from the loaded weights, not the original ones
    copies = [GenerationRequest(id=f"copy{i}", messages=request.messages, sampling=request.sampling)
              for i in range(4)]  # spread over both engines
    results = pool.generate(copies)
    assert pool.restarts == restarts + 1
    assert all(same(first_logprobs(r), after) for r in results)


def test_weights_handed_over_in_memory_serve_and_survive_an_engine_restart(pool, tiny_model, tiny_policy):
    """Runs last: it leaves the module's pool serving in-memory weights."""
    import ray

    request = ask(6, top_logprobs=5)
    pool.load_weights(str(tiny_policy))
    served = first_logprobs(pool.generate([request])[0])
    pool.update_weights(AutoModelForCausalLM.from_pretrained(tiny_model).state_dict())  # through the object store
    after = first_logprobs(pool.generate([request])[0])
    assert same(served, hf_first_logprobs(tiny_policy, "question number 6?", 5))
    assert same(after, hf_first_logprobs(tiny_model, "question number 6?", 5))
    restarts = pool.restarts
    ray.kill(pool.actors[0])  # its replacement starts from the folder, then takes the in-memory weights
    copies = [GenerationRequest(id=f"mem{i}", messages=request.messages, sampling=request.sampling)
              for i in range(4)]
    results = pool.generate(copies)
    assert pool.restarts == restarts + 1
    assert all(same(first_logprobs(r), after) for r in results)
