"""Weights handed to engines in memory: what goes into the object store comes back bit for bit, ties sent once."""

from __future__ import annotations

import pickle

import pytest
import torch

from ray_cluster.generation.weights import from_shared, shared_bytes, to_shared


def test_round_trip_keeps_values_dtypes_and_names():
    g = torch.Generator().manual_seed(0)
    tensors = {"a.weight": torch.randn(3, 4, generator=g), "b.weight": torch.randn(5, generator=g).bfloat16(),
               "c.bias": torch.randn(2, 2, generator=g).half(), "steps": torch.tensor([7], dtype=torch.int64)}
    shared = pickle.loads(pickle.dumps(to_shared(tensors)))  # what Ray's serializer does to numpy arrays
    back = dict(from_shared(shared))
    assert list(back) == list(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape
        assert torch.equal(back[name], tensor), name
    assert shared_bytes(shared) == 3 * 4 * 4 + 5 * 2 + 4 * 2 + 8


def test_views_share_memory_and_tied_weights_travel_once():
    embed = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embed.weight  # tied, as in SmolLM2
    state = {"model.embed_tokens.weight": embed.weight, "lm_head.weight": head.weight,
             "slice": embed.weight[2:4]}  # same storage, another view: not a tie
    shared = to_shared(state)
    assert list(shared) == ["model.embed_tokens.weight", "slice"]
    array, _ = shared["model.embed_tokens.weight"]
    with torch.no_grad():
        embed.weight[0, 0] = 123.0
    assert array[0, 0] == 123.0  # a view, not a copy: the object store makes the only copy


def test_unsupported_dtype_is_named():
    with pytest.raises(TypeError, match="'q'.*complex64"):
        to_shared({"q": torch.zeros(2, dtype=torch.complex64)})
