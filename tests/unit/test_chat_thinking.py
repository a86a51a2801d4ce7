"""Thinking is off wherever a model answers or judges: a tokenizer whose chat template reads `enable_thinking` the
way Qwen3's does (written here, no hub) gets the closed empty reasoning block in every generation prompt."""

import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.openai_backend import OpenAIBackend
from ray_cluster.generation.rendering import render
from ray_cluster.generation.types import GenerationRequest, Sampling
from rlhf_stack.core.chat import has_thinking_switch, prompt_ids, prompt_text, thinking_problem, user_messages

_TURNS = "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor %}"
# Qwen3's rule: the generation prompt closes an empty reasoning block only when enable_thinking is false.
QWEN3_STYLE = _TURNS + ("{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                        "{%- if enable_thinking is defined and enable_thinking is false %}"
                        "{{ '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}")
# A reasoning distill: the generation prompt always opens a reasoning block.
FORCED_THINK = _TURNS + "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{%- endif %}"
CLOSED = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def with_template(model: Path, folder: Path, template: str) -> Path:
    """A copy of `model` whose tokenizer carries `template` as its chat template."""
    shutil.copytree(model, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = template
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def qwen3_style(tiny_model, tmp_path):
    return with_template(tiny_model, tmp_path / "qwen3-style", QWEN3_STYLE)


def test_generation_prompts_close_the_reasoning_block(qwen3_style):
    tok = AutoTokenizer.from_pretrained(qwen3_style)
    assert prompt_text(tok, user_messages("Name a prime.")).endswith(CLOSED)
    ids = prompt_ids(tok, user_messages("Name a prime."))
    assert tok.decode(ids).endswith(CLOSED)
    assert has_thinking_switch(tok) and thinking_problem(tok) is None


def test_engine_requests_render_with_thinking_off(qwen3_style):
    """A judge request (the AlpacaEval judge reads one token) as every engine renders it."""
    tok = AutoTokenizer.from_pretrained(qwen3_style)
    request = GenerationRequest(id="judge-1", messages=(("system", "Pick m or M."), ("user", "Which is better?")),
                                sampling=Sampling(max_new_tokens=1, top_logprobs=5))
    rendered = render(tok, request, max_model_len=512)
    assert tok.decode(rendered.token_ids).endswith(CLOSED)


def test_an_openai_compatible_server_is_asked_for_thinking_off(qwen3_style, tiny_model):
    cfg = EngineConfig(backend="openai", base_url="http://127.0.0.1:9/v1")
    request = GenerationRequest(id="r", messages=(("user", "Hi"),), sampling=Sampling(max_new_tokens=4))
    qwen3 = OpenAIBackend(qwen3_style, cfg, seed=0, model_name="teacher")
    assert qwen3._body(request, request.message_dicts())["chat_template_kwargs"] == {"enable_thinking": False}
    plain = OpenAIBackend(tiny_model, cfg, seed=0, model_name="teacher")  # a template without the switch
    assert "chat_template_kwargs" not in plain._body(request, request.message_dicts())


def test_a_template_that_always_thinks_is_reported(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert not has_thinking_switch(tok) and thinking_problem(tok) is None
    tok.chat_template = FORCED_THINK
    assert "opens a <think> block" in thinking_problem(tok)


def test_validate_refuses_a_model_that_always_thinks(tiny_model, tmp_path):
    import yaml

    from rlhf_stack.app.recipe import load_recipe
    from rlhf_stack.core.errors import RecipeError

    folder = with_template(tiny_model, tmp_path / "thinker", FORCED_THINK)
    (tmp_path / "prompts.jsonl").write_text('{"id": "a", "prompt": "Hi"}\n')
    recipe = {"name": "t", "models": {"teacher": str(folder)}, "data": {"prompts": "prompts.jsonl"}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError, match=r"models\.teacher.*opens a <think> block"):
        load_recipe(tmp_path / "recipe.yaml")
