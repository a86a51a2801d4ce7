"""Training sequences on the tiny tokenizer: rendered as PPO presents them, truncated from the prompt's left, y_T rows
aligned with the teacher's top-k, the student tokenizer's pad token distinct from EOS, and the teacher vocabularies
the KL term accepts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rlhf_stack.core import chat
from rlhf_stack.core.errors import ArtifactError, ModelError
from rlhf_stack.core.records import TeacherAnswer
from stages.s2_distill.encode import encode_answer, encode_answers, encode_pairs, fit_sequence
from stages.s2_distill.pairs import PairText
from stages.s2_distill.tokenizers import kl_tokenizer_problem, load_student_tokenizer, tokenizer_mismatch


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_student_tokenizer(tiny_model)


def answer(tok, text: str, finish: str = "stop", k: int = 3) -> tuple[TeacherAnswer, tuple]:
    ids = chat.response_ids(tok, text) if finish == "stop" else tok(text, add_special_tokens=False)["input_ids"]
    topk = (np.arange(len(ids) * k, dtype=np.int32).reshape(len(ids), k),
            np.full((len(ids), k), -1.0, dtype=np.float32))
    return TeacherAnswer(text=text, token_ids=ids, finish_reason=finish, topk_file="t.safetensors"), topk


def test_pair_sequences_are_what_ppo_presents(tok):
    pair = PairText("a", "What is a list?", "A good answer.", "A bad answer.", 2.0, None)
    (encoded,), stats = encode_pairs(tok, [pair], [2.0], max_length=256, answers="none")
    prompt = chat.prompt_ids(tok, chat.user_messages(pair.prompt))
    # PPO hands the RM prompt ids (chat template, generation prompt, no extra special tokens) + generated ids,
    # which end with the EOS the policy stopped on: the reward token.
    assert encoded.chosen == prompt + tok("A good answer.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert encoded.rejected[: len(prompt)] == prompt and encoded.rejected[-1] == tok.eos_token_id
    assert tok.decode(encoded.chosen).startswith("<|im_start|>user\nWhat is a list?<|im_end|>\n<|im_start|>assistant\n")
    assert encoded.chosen.count(tok.bos_token_id) == 0  # the template has no BOS; none is added (D17)
    assert encoded.margin == 2.0 and stats.truncated_pairs == 0 and stats.pairs == 1


def test_long_prompts_lose_their_start_never_the_reward_token(tok):
    assert fit_sequence([1, 2, 3, 4], [7, 8, 2], max_length=5) == ([3, 4, 7, 8, 2], 2, True)
    assert fit_sequence([1, 2], [7, 2], max_length=5) == ([1, 2, 7, 2], 2, False)
    assert fit_sequence([1, 2], [6, 7, 8, 9, 2], max_length=5) is None  # the response alone fills the limit

    long = PairText("a", "word " * 200, "short answer", "an answer that is much too long " * 40, 1.0, None)
    ok = PairText("b", "word " * 200, "short answer", "another short answer", 1.0, None)
    encoded, stats = encode_pairs(tok, [long, ok], [1.0, 1.0], max_length=64, answers="none")
    assert [p.id for p in encoded] == ["b"] and stats.dropped_too_long == 1 and stats.truncated_pairs == 1
    assert len(encoded[0].chosen) == 64 and encoded[0].chosen[-1] == tok.eos_token_id
    summary = stats.summary()
    assert summary["truncated_pairs"] == 1 and summary["length_tokens"]["max"] == 64


def test_teacher_answers_carry_their_top_k(tok):
    ans, topk = answer(tok, "The teacher's careful answer.")
    pair = PairText("a", "Q?", "good", "bad", 1.0, ans)
    (encoded,), _ = encode_pairs(tok, [pair], [1.0], 256, "topk", lambda rid, a: topk)
    row = encoded.answer
    assert row.ids[row.prefix_len:] == ans.token_ids  # the teacher's own ids when the KL term is on
    assert row.ids[: row.prefix_len] == chat.prompt_ids(tok, chat.user_messages("Q?"))
    assert np.array_equal(row.topk_ids, topk[0])

    # A cut answer keeps the top-k rows of the tokens it keeps.
    (cut,), stats = encode_pairs(tok, [pair], [1.0], 6, "topk", lambda rid, a: topk)
    assert len(cut.answer.ids) == 6 and cut.answer.prefix_len == 1 and stats.truncated_answers == 1
    assert np.array_equal(cut.answer.topk_ids, topk[0][:5])

    wrong = (topk[0][:-1], topk[1][:-1])
    with pytest.raises(ArtifactError, match="top-k file holds"):
        encode_pairs(tok, [pair], [1.0], 256, "topk", lambda rid, a: wrong)
    (none,), stats = encode_pairs(tok, [pair], [1.0], 256, "topk", lambda rid, a: None)
    assert none.answer is None and stats.pairs_without_answer == 1


def test_re_tokenized_answers_end_with_eos_only_when_the_teacher_stopped(tok):
    stopped, _ = answer(tok, "A full answer.")
    cut, _ = answer(tok, "A cut off answ", finish="length")
    rows = encode_answers(tok, [PairText("a", "Q", "", "", 0.0, stopped), PairText("b", "Q", "", "", 0.0, cut),
                                PairText("c", "Q", "", "", 0.0, None)], 256)
    assert len(rows) == 2
    assert rows[0].ids[-1] == tok.eos_token_id and rows[1].ids[-1] != tok.eos_token_id


def test_pad_equal_to_eos_is_replaced_by_another_special_token(tmp_path, tiny_model):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    base = AutoTokenizer.from_pretrained(folder)
    base.pad_token = base.eos_token  # SmolLM2's tokenizer ships like this
    base.save_pretrained(folder)
    tok = load_student_tokenizer(folder)
    assert tok.pad_token_id != tok.eos_token_id and tok.pad_token in tok.all_special_tokens


def test_a_tokenizer_without_chat_template_is_refused(tmp_path, tiny_model):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(ModelError, match="no chat template"):
        load_student_tokenizer(folder)


def test_tokenizer_mismatch(tok, tiny_model):
    same = AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer_mismatch(tok, same, ["some text to compare"]) is None
    other = AutoTokenizer.from_pretrained(tiny_model)
    other.add_tokens(["<new_token>"])
    why = tokenizer_mismatch(tok, other, [])
    assert "vocabularies differ (2048 vs 2049 entries; 0 only in the student, 1 only" in why



def test_a_teacher_vocabulary_that_extends_the_students_is_accepted_for_kl(tok, tiny_model):
    # The tiny tokenizer plus four tokens after its last id, as Qwen3's extends Qwen2.5's (ids 151665-151668).
    teacher = AutoTokenizer.from_pretrained(tiny_model)
    teacher.add_tokens(["<think>", "</think>", "<tool_call>", "</tool_call>"])
    assert len(teacher) == len(tok) + 4 and teacher.convert_tokens_to_ids("<think>") == len(tok)
    samples = ["The teacher's careful answer.", "A list holds items in order."]
    assert kl_tokenizer_problem(tok, teacher, samples) is None
    assert tokenizer_mismatch(tok, teacher, samples) is not None  # PPO's policy<->RM rule stays exact


def test_a_teacher_vocabulary_with_moved_ids_is_refused(tok):
    data = json.loads(tok.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    vocab["the"], vocab["and"] = vocab["and"], vocab["the"]  # two tokens swap ids
    swapped = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)),
                                      eos_token=tok.eos_token, pad_token=tok.pad_token)
    why = kl_tokenizer_problem(tok, swapped, [])
    assert why is not None and "2 with another id" in why


def test_teacher_only_alternatives_are_masked_and_answers_using_them_dropped(tok):
    ans, (ids, logprobs) = answer(tok, "A short answer.", k=2)
    ids[0] = [len(tok) + 1, 5]  # the first position's best alternative is a teacher-only token
    row, _ = encode_answer_row(tok, ans, (ids, logprobs))
    assert np.isneginf(row.topk_logprobs[0, 0]) and row.topk_logprobs[0, 1] == -1.0
    thinking = TeacherAnswer(text="x", token_ids=[len(tok), tok.eos_token_id], finish_reason="stop", topk_file="t")
    assert encode_answer_row(tok, thinking, (np.zeros((2, 2), np.int32), np.zeros((2, 2), np.float32))) is None


def encode_answer_row(tok, ans, topk):
    prompt = chat.prompt_ids(tok, chat.user_messages("Q?"))
    return encode_answer(tok, prompt, ans, 256, "r", lambda rid, a: topk)
