"""Our exported reward model, loaded by OpenRLHF 0.11.2's own loader, gives our rewards on the same token ids.

OpenRLHF is installed without its dependencies; a pure-torch stand-in for the few flash_attn helpers it imports
at module level (tests/contract/flash_attn_standin) is put on the path for this module only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf_stack.core import chat
from stages.s2_distill.batching import pad_rows
from stages.s2_distill.export import ExportError, export_reward_model
from stages.s2_distill.losses import bt_loss
from stages.s2_distill.student import load_student
from stages.s2_distill.tokenizers import load_student_tokenizer

STANDIN = str(Path(__file__).parent / "flash_attn_standin")
PROMPTS = ["What is a list?", "Name a prime number.", "Say hello politely."]
GOOD = ["A list holds values in order.", "Seven is prime.", "Hello, it is a pleasure to meet you."]
BAD = ["No.", "Four is prime, obviously.", "Go away."]


@pytest.fixture(scope="module")
def get_llm_for_sequence_regression():
    sys.path.insert(0, STANDIN)
    try:
        from openrlhf.models import get_llm_for_sequence_regression

        yield get_llm_for_sequence_regression
    finally:
        sys.path.remove(STANDIN)


@pytest.fixture(scope="module")
def tok(tiny_policy):
    return load_student_tokenizer(tiny_policy)


@pytest.fixture(scope="module")
def sequences(tok) -> list[list[int]]:
    return [chat.sequence_ids(tok, chat.user_messages(p), r)[0] for p, r in zip(PROMPTS * 2, GOOD + BAD)]


@pytest.fixture(scope="module")
def trained(tiny_policy, tok, sequences):
    """Our student after a few real AdamW steps of Bradley-Terry on good-vs-bad answers."""
    torch.manual_seed(0)
    student = load_student(tiny_policy, head_seed=0, gradient_checkpointing=False)
    head_init = student.score.weight.detach().clone()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    ids, mask = pad_rows(sequences, tok.pad_token_id)
    for _ in range(3):
        rewards, _ = student(ids, mask, num_reward_rows=len(sequences))
        loss = bt_loss(rewards[:3], rewards[3:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return student.eval(), head_init


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_policy, tok, trained, sequences) -> Path:
    student, head_init = trained
    out = tmp_path_factory.mktemp("rm") / "checkpoint"
    # bf16 on disk (OpenRLHF loads bf16 or fp16 only), so both sides below start from the same rounded weights.
    student = student.to(torch.bfloat16).float()
    with torch.no_grad():
        ids, mask = pad_rows(sequences, tok.pad_token_id)
        ours = student(ids, mask, num_reward_rows=len(sequences))[0].tolist()
    export_reward_model(student.state_dict(), head_init, model_dir=tiny_policy, tokenizer=tok, out_dir=out,
                        dtype="bf16", backbone_prefix=student.backbone_prefix, verify_rows=sequences,
                        expected_rewards=ours)
    return out


def student_rewards(student, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return student.to(torch.bfloat16).float()(ids, mask, num_reward_rows=ids.shape[0])[0]


def left_pad(ids: torch.Tensor, mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Moves each row's padding to the front (OpenRLHF pads left when it trains or serves RMs)."""
    out_ids, out_mask = torch.full_like(ids, pad_id), torch.zeros_like(mask)
    for i, n in enumerate(mask.sum(1).tolist()):
        out_ids[i, ids.shape[1] - n:], out_mask[i, ids.shape[1] - n:] = ids[i, :n], 1
    return out_ids, out_mask


def test_openrlhf_loads_our_head_and_gives_our_rewards(get_llm_for_sequence_regression, checkpoint, trained, tok,
                                                       sequences):
    model = get_llm_for_sequence_regression(str(checkpoint), "reward", param_dtype="bf16",
                                            attn_implementation="sdpa").eval()
    saved = load_file(checkpoint / "model.safetensors")
    assert torch.equal(model.score.weight, saved["score.weight"])  # the trained head, not a fresh random one
    assert model.score.bias is None and model.score.weight.shape == (1, 128)
    model = model.float()
    ids, mask = pad_rows(sequences, tok.pad_token_id)
    ours = student_rewards(trained[0], ids, mask)
    with torch.no_grad():
        right = model(ids, attention_mask=mask)  # PPO batches are right-padded
        left = model(*left_pad(ids, mask, tok.pad_token_id))  # RM training and serving pad left
    torch.testing.assert_close(right, ours, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(left, ours, rtol=1e-4, atol=1e-4)
    assert (ours[:3] > ours[3:]).all()  # it did learn the pairs, so equal rewards are not trivially equal


def test_transformers_and_openrlhf_agree(get_llm_for_sequence_regression, checkpoint, tok, sequences):
    """Same checkpoint, same ids: HF's sequence classifier (last non-pad token) and OpenRLHF (last attended
    position) read the same token, because the exported pad token differs from EOS."""
    from transformers import AutoModelForSequenceClassification

    config = json.loads((checkpoint / "config.json").read_text())
    assert config["pad_token_id"] != config["eos_token_id"] and config["value_head_prefix"] == "score"
    hf = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.bfloat16).eval()
    openrlhf = get_llm_for_sequence_regression(str(checkpoint), "reward", param_dtype="bf16",
                                               attn_implementation="sdpa").eval()
    ids, mask = pad_rows(sequences, tok.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids, attention_mask=mask).logits.squeeze(-1),
                                   openrlhf(ids, attention_mask=mask), rtol=0, atol=0)


def test_training_sequences_start_with_openrlhf_prompt_rendering(get_llm_for_sequence_regression, tok, sequences):
    """The RM trains on exactly the ids PPO will present: OpenRLHF's prompt rendering, then the response + EOS."""
    from openrlhf.datasets.prompts_dataset import preprocess_data

    for prompt, ids in zip(PROMPTS, sequences):
        text, _ = preprocess_data({"input": prompt}, input_key="input", apply_chat_template=tok.apply_chat_template)
        ppo_prompt = tok(text=text, add_special_tokens=False)["input_ids"]  # as openrlhf/utils/agent.py does
        assert ids[: len(ppo_prompt)] == ppo_prompt and ids[-1] == tok.eos_token_id


def test_export_refuses_an_untrained_head(tmp_path, tiny_policy, tok):
    student = load_student(tiny_policy, head_seed=0, gradient_checkpointing=False)
    with pytest.raises(ExportError, match="unchanged since initialization"):
        export_reward_model(student.state_dict(), student.score.weight.detach().clone(), model_dir=tiny_policy,
                            tokenizer=tok, out_dir=tmp_path / "ckpt", dtype="fp32",
                            backbone_prefix=student.backbone_prefix, verify_rows=[], expected_rewards=[])
    assert not (tmp_path / "ckpt").exists()


def test_export_refuses_a_checkpoint_whose_rewards_differ(tmp_path, tiny_policy, tok, trained, sequences):
    student, head_init = trained
    with pytest.raises(ExportError, match="rewards .* differ from the trained model's"):
        export_reward_model(student.state_dict(), head_init, model_dir=tiny_policy, tokenizer=tok,
                            out_dir=tmp_path / "ckpt", dtype="fp32", backbone_prefix=student.backbone_prefix,
                            verify_rows=sequences[:1], expected_rewards=[123.0])
    assert not (tmp_path / "ckpt").exists()
