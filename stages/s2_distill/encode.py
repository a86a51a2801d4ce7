"""Token ids for training, rendered exactly as PPO presents a sequence to the reward model.

A pair's sequences are `chat.sequence_ids`: the chat-template prompt, the response, then EOS (the reward token).
Too-long sequences lose prompt tokens from the left, never the response end (METHOD.md D14); a response that alone
does not fit drops the pair. A teacher answer y_T becomes a regularizer row: prompt + y_T tokens, with the
teacher's top-k logprobs of each y_T token when the KL term is on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhf_stack.core import chat
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.records import TeacherAnswer
from stages.s2_distill.pairs import PairText


@dataclass(frozen=True)
class AnswerRow:
    """A teacher answer y_T for the LM terms: ids = prompt + y_T, y_T starting at prefix_len."""

    ids: list[int]
    prefix_len: int
    topk_ids: np.ndarray | None = None  # [n, k] int32, n = len(ids) - prefix_len
    topk_logprobs: np.ndarray | None = None  # [n, k] float32, the teacher's logprobs at temperature 1


@dataclass(frozen=True)
class EncodedPair:
    id: str
    chosen: list[int]  # prompt + y_w (or y*_w) + EOS
    rejected: list[int]  # prompt + y_l + EOS
    margin: float | None  # what the loss sees; None for margin-free objectives
    teacher_margin: float
    answer: AnswerRow | None = None

    @property
    def length(self) -> int:
        """Longest row this pair adds to a batch."""
        return max(len(self.chosen), len(self.rejected), len(self.answer.ids) if self.answer else 0)


@dataclass
class EncodeStats:
    pairs: int = 0
    dropped_too_long: int = 0  # the response alone does not fit max_length_tokens
    truncated_pairs: int = 0  # prompt shortened from the left
    truncated_answers: int = 0  # y_T rows shortened (prompt from the left, then the answer's end)
    # no usable y_T: none, empty, without top-k when the KL term needs it, or holding a teacher-only token
    pairs_without_answer: int = 0
    lengths: list[int] = field(default_factory=list)  # tokens of every kept chosen and rejected sequence

    def summary(self) -> dict[str, Any]:
        lengths = np.array(self.lengths or [0])
        return {
            "pairs_dropped_too_long": self.dropped_too_long,
            "truncated_pairs": self.truncated_pairs,
            "truncated_answers": self.truncated_answers,
            "pairs_without_answer": self.pairs_without_answer,
            "length_tokens": {"p50": int(np.percentile(lengths, 50)), "p90": int(np.percentile(lengths, 90)),
                              "max": int(lengths.max())},
        }


def fit_sequence(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], int, bool] | None:
    """prompt + response within max_length, cutting the prompt from the left; None when the response cannot fit.

    Returns:
        (ids, prompt length kept, whether the prompt was cut).
    """
    if len(response) >= max_length:  # at least one prompt token must stay
        return None
    keep = min(len(prompt), max_length - len(response))
    return prompt[len(prompt) - keep:] + response, keep, keep < len(prompt)


def answer_ids(tokenizer: Any, answer: TeacherAnswer, use_teacher_ids: bool) -> list[int]:
    """y_T as student token ids: the teacher's own ids when the tokenizers are identical, else re-tokenized.

    Re-tokenized answers end with EOS only if the teacher stopped on its own; a cut-off answer gets none.
    """
    if use_teacher_ids:
        return list(answer.token_ids)
    if answer.finish_reason == "stop":
        return chat.response_ids(tokenizer, answer.text)
    return tokenizer(answer.text, add_special_tokens=False)["input_ids"]


# record id, answer -> the answer's top-k (ids [n, k], logprobs [n, k]), or None when synthesis stored none
TopkReader = Callable[[str, TeacherAnswer], tuple[np.ndarray, np.ndarray] | None]


def encode_answer(tokenizer: Any, prompt_ids: list[int], answer: TeacherAnswer, max_length: int,
                  record_id: str, topk: TopkReader | None) -> tuple[AnswerRow, bool] | None:
    """A y_T row (with top-k when `topk` is given); the bool says it was cut.

    None for an empty answer, or (when `topk` is given) one without stored top-k or with a token id outside the
    student's vocabulary. Top-k alternatives outside it are masked (logprob -inf).
    """
    ids = answer_ids(tokenizer, answer, use_teacher_ids=topk is not None)
    if not ids:
        return None
    topk_ids = topk_lp = None
    if topk is not None:
        stored = topk(record_id, answer)
        if stored is None:
            return None
        topk_ids, topk_lp = stored
        if topk_ids.shape[0] != len(ids):
            raise ArtifactError(f"record {record_id}: the teacher answer has {len(ids)} tokens but its top-k file "
                                f"holds {topk_ids.shape[0]} rows; the synthesis artifact is inconsistent")
        if max(ids) >= len(tokenizer):  # the answer holds a token only the teacher's (extended) vocabulary has
            return None
        # Alternatives only the teacher has carry no student probability: masked like positions without k entries.
        topk_lp = np.where(topk_ids < len(tokenizer), topk_lp, -np.inf).astype(np.float32)
    keep_answer = min(len(ids), max_length - 1)  # the regularizer may lose the answer's end, not all its prompt
    fitted = fit_sequence(prompt_ids, ids[:keep_answer], max_length)
    if fitted is None:  # cannot happen: keep_answer < max_length
        return None
    seq, prefix_len, cut_prompt = fitted
    if topk_ids is not None:
        topk_ids, topk_lp = topk_ids[:keep_answer], topk_lp[:keep_answer]
    return AnswerRow(seq, prefix_len, topk_ids, topk_lp), cut_prompt or keep_answer < len(ids)


def encode_pairs(tokenizer: Any, pairs: list[PairText], margins: list[float | None], max_length: int,
                 answers: str, topk: TopkReader | None = None) -> tuple[list[EncodedPair], EncodeStats]:
    """Tokenizes pairs; `answers`: "none" (no y_T rows), "sft" (re-tokenized y_T) or "topk" (teacher ids + top-k)."""
    stats = EncodeStats()
    out = []
    for pair, margin in zip(pairs, margins, strict=True):
        prompt_ids = chat.prompt_ids(tokenizer, chat.user_messages(pair.prompt))
        chosen = fit_sequence(prompt_ids, chat.response_ids(tokenizer, pair.chosen), max_length)
        rejected = fit_sequence(prompt_ids, chat.response_ids(tokenizer, pair.rejected), max_length)
        if chosen is None or rejected is None:
            stats.dropped_too_long += 1
            continue
        stats.truncated_pairs += int(chosen[2] or rejected[2])
        row = None
        if answers != "none":
            encoded = None
            if pair.answer is not None:
                encoded = encode_answer(tokenizer, prompt_ids, pair.answer, max_length, pair.id,
                                        topk if answers == "topk" else None)
            if encoded is None:
                stats.pairs_without_answer += 1
            else:
                row, cut = encoded
                stats.truncated_answers += int(cut)
        out.append(EncodedPair(pair.id, chosen[0], rejected[0], margin, pair.teacher_margin, row))
        stats.lengths += [len(chosen[0]), len(rejected[0])]
    stats.pairs = len(out)
    return out, stats


def encode_answers(tokenizer: Any, pairs: list[PairText], max_length: int) -> list[AnswerRow]:
    """Re-tokenized y_T rows of the given pairs (for the held-out LM loss, identical for every variant)."""
    rows = []
    for pair in pairs:
        if pair.answer is not None:
            prompt_ids = chat.prompt_ids(tokenizer, chat.user_messages(pair.prompt))
            encoded = encode_answer(tokenizer, prompt_ids, pair.answer, max_length, pair.id, None)
            if encoded is not None:
                rows.append(encoded[0])
    return rows
