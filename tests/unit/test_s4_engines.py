"""When a policy job may load the judge's weights into the policy's running engine: same architecture and tokenizer."""

import json
from pathlib import Path

from stages.s4_evaluate.engines import swappable

CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100, "tie_word_embeddings": True}


def folder(root: Path, name: str, config: dict | None = None, tokenizer_config: dict | None = None,
           template: str = "{{ messages }}") -> Path:
    path = root / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**CONFIG, **(config or {})}))
    (path / "tokenizer.json").write_text('{"model": "same"}')
    (path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", **(tokenizer_config or {})}))
    (path / "chat_template.jinja").write_text(template)
    return path


def test_same_architecture_and_tokenizer_swap_whatever_the_weights_dtype_or_load_path(tmp_path):
    judge = folder(tmp_path, "judge", {"dtype": "bfloat16"})
    policy = folder(tmp_path, "policy", {"dtype": "float32"}, {"is_local": True, "local_files_only": False})
    assert swappable(policy, judge) and swappable(policy, policy)


def test_another_architecture_or_tokenizer_or_chat_template_needs_its_own_engine(tmp_path):
    policy = folder(tmp_path, "policy")
    assert not swappable(policy, folder(tmp_path, "wider", {"hidden_size": 128}))
    assert not swappable(policy, folder(tmp_path, "other_eos", tokenizer_config={"eos_token": "<|im_end|>"}))
    assert not swappable(policy, folder(tmp_path, "other_template", template="{{ other }}"))
