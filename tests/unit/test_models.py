"""Model references resolve to local folders; tiny models are deterministic and share one tokenizer."""

from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import sha256_file
from rlhf_stack.core.errors import ModelError
from rlhf_stack.core.models import ModelSpec, check_model, resolve_model
from rlhf_stack.core.tiny_models import build


def test_tiny_models_are_deterministic_per_seed(tmp_path):
    a, b, c = (build("tiny-random-llama", tmp_path / n, seed=s) for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert sha256_file(a / "model.safetensors") == sha256_file(b / "model.safetensors")
    assert sha256_file(a / "model.safetensors") != sha256_file(c / "model.safetensors")
    assert sha256_file(a / "tokenizer.json") == sha256_file(c / "tokenizer.json")


def test_tiny_model_chat_template_and_special_tokens(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.pad_token_id != tok.eos_token_id


def test_local_folder_and_missing_folder(tiny_model, tmp_path):
    assert resolve_model(ModelSpec(source=str(tiny_model)), tmp_path) == tiny_model
    missing = ModelSpec(source="./nowhere/model")
    assert "does not exist" in check_model(missing, tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(missing, tmp_path)


def test_unreachable_hub_id_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="set the model's source to that folder"):
        resolve_model(ModelSpec(source="some-org/some-model"), tmp_path)
