"""Token choice and prompt rendering shared by the engines: pure functions, no model."""

import torch
from transformers import AutoTokenizer

from ray_cluster.generation.hf_sampling import pick_token
from ray_cluster.generation.rendering import render, request_seed
from ray_cluster.generation.types import GenerationRequest, Sampling

LOGITS = torch.tensor([0.0, 3.0, 2.9, -1.0, 1.0])  # token 1 is the argmax, token 2 a close second


def draws(sampling: Sampling, n: int = 400) -> list[int]:
    gen = torch.Generator().manual_seed(0)
    return [pick_token(LOGITS, sampling, gen) for _ in range(n)]


def test_greedy_takes_the_argmax():
    assert pick_token(LOGITS, Sampling(max_new_tokens=1), None) == 1


def test_top_k_1_and_a_tiny_top_p_are_greedy_even_when_sampling():
    assert set(draws(Sampling(max_new_tokens=1, temperature=1.0, top_k=1))) == {1}
    assert set(draws(Sampling(max_new_tokens=1, temperature=1.0, top_p=0.01))) == {1}


def test_top_k_2_keeps_only_the_two_best():
    assert set(draws(Sampling(max_new_tokens=1, temperature=1.0, top_k=2))) == {1, 2}


def test_min_p_drops_tokens_far_below_the_best():
    # p(token) / p(best): token 2 -> e^-0.1 = 0.90, token 4 -> e^-2 = 0.14, token 0 -> e^-3 = 0.05
    assert set(draws(Sampling(max_new_tokens=1, temperature=1.0, min_p=0.5))) == {1, 2}
    assert set(draws(Sampling(max_new_tokens=1, temperature=1.0, min_p=0.1))) == {1, 2, 4}


def test_sampling_follows_the_softmax():
    counts = torch.bincount(torch.tensor(draws(Sampling(max_new_tokens=1, temperature=1.0), n=4000)), minlength=5)
    expected = LOGITS.softmax(-1) * 4000
    assert torch.all((counts - expected).abs() < 4 * expected.sqrt() + 5)


def test_the_same_seed_gives_the_same_draws():
    s = Sampling(max_new_tokens=1, temperature=0.7, top_p=0.8)
    assert draws(s, 50) == draws(s, 50)


def test_request_seed_is_stable_and_depends_on_the_request():
    a = GenerationRequest(id="a", messages=(("user", "x"),), sampling=Sampling(max_new_tokens=1, temperature=1))
    b = GenerationRequest(id="b", messages=(("user", "x"),), sampling=Sampling(max_new_tokens=1, temperature=1))
    assert request_seed(a, 0) == request_seed(a, 0) != request_seed(b, 0)
    assert request_seed(a, 0) != request_seed(a, 1)
    fixed = GenerationRequest(id="a", messages=(), sampling=Sampling(max_new_tokens=1, seed=7))
    assert request_seed(fixed, 0) == 7


def test_render_truncates_the_start_of_the_last_user_message(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    words = " ".join(f"w{i}" for i in range(300)) + " FINAL QUESTION"
    req = GenerationRequest(id="r", messages=(("system", "be brief"), ("user", words)),
                            sampling=Sampling(max_new_tokens=16), overflow="truncate_left")
    out = render(tok, req, max_model_len=128)
    assert out.truncated and len(out.token_ids) <= 128 - 16
    assert out.messages[0] == {"role": "system", "content": "be brief"}  # only the last user message is cut
    assert out.messages[1]["content"].endswith("FINAL QUESTION") and "w0 " not in out.messages[1]["content"]


def test_render_fits_or_fails_by_the_overflow_rule(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    short = GenerationRequest(id="s", messages=(("user", "hi"),), sampling=Sampling(max_new_tokens=16))
    assert not render(tok, short, max_model_len=128).truncated
    long = GenerationRequest(id="l", messages=(("user", "word " * 500),), sampling=Sampling(max_new_tokens=16))
    assert render(tok, long, max_model_len=128) is None  # overflow="fail" is the default
    no_room = GenerationRequest(id="n", messages=(("user", "hi"),), sampling=Sampling(max_new_tokens=128),
                                overflow="truncate_left")
    assert render(tok, no_room, max_model_len=128) is None
