"""The student's tokenizer: a pad token distinct from EOS, and checks against the teacher's and the policy's.

With pad == EOS, transformers' sequence classifiers read the reward at the last non-pad token (the token before
EOS) while OpenRLHF reads it at the last attended position (EOS), so the two disagree (DESIGN.md §5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_stack.core.errors import ModelError


def load_student_tokenizer(model_dir: Path) -> Any:
    """The base model's tokenizer with a usable pad token (an existing special token other than EOS)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.eos_token_id is None:
        raise ModelError(f"{model_dir}: the tokenizer has no EOS token, so no reward token can be placed")
    if tok.chat_template is None:
        raise ModelError(f"{model_dir}: the tokenizer has no chat template; the reward model must see prompts "
                         "rendered as the policy sees them")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        tok.pad_token = _spare_pad_token(tok, model_dir)
    if not 0 <= tok.pad_token_id < len(tok):
        raise ModelError(f"{model_dir}: pad token id {tok.pad_token_id} is outside the vocabulary ({len(tok)})")
    return tok


def _spare_pad_token(tok: Any, model_dir: Path) -> str:
    """An existing special token that is not EOS (padding is masked, so its meaning does not matter)."""
    for token in [tok.unk_token, tok.bos_token, *tok.all_special_tokens]:
        if token is not None and tok.convert_tokens_to_ids(token) != tok.eos_token_id:
            return token
    raise ModelError(
        f"{model_dir}: the pad token equals EOS ({tok.eos_token!r}) and the tokenizer has no other special token "
        "to pad with. Add a pad token to the base model's tokenizer (and resize its embeddings) before distilling"
    )


def kl_tokenizer_problem(student: Any, teacher: Any, sample_texts: list[str]) -> str | None:
    """Why the teacher's top-k token ids cannot be read as the student's, or None when they can.

    The teacher may extend the student's vocabulary (Qwen3 adds four tokens, ids 151665-151668, to Qwen2.5's
    151,665): every student token must keep its id, and tokens only the teacher has must come after the student's
    ids. Those extra tokens are masked out of the KL term (encode.py). Both must end answers with the same EOS id
    and tokenize each sample text (teacher answers y_T) identically.
    """
    a, b = student.get_vocab(), teacher.get_vocab()
    missing = [t for t in a if t not in b]
    moved = [t for t in a if t in b and a[t] != b[t]]
    inside = sorted(b[t] for t in b.keys() - a.keys() if b[t] < len(student))
    if missing or moved or inside:
        return (f"the teacher's vocabulary does not extend the student's ({len(a)} vs {len(b)} entries; "
                f"{len(missing)} student token(s) missing from the teacher, e.g. {missing[:3]}; {len(moved)} with "
                f"another id, e.g. {moved[:3]}; {len(inside)} teacher-only token(s) at ids the student uses, "
                f"e.g. {inside[:3]})")
    return _same_ids_problem(student, teacher, sample_texts)


def tokenizer_mismatch(student: Any, other: Any, sample_texts: list[str]) -> str | None:
    """Why two tokenizers would give different ids for the same text, or None when they are identical."""
    a, b = student.get_vocab(), other.get_vocab()
    if a != b:
        only_a, only_b = len(a.keys() - b.keys()), len(b.keys() - a.keys())
        moved = sum(1 for t in a.keys() & b.keys() if a[t] != b[t])
        return (f"vocabularies differ ({len(a)} vs {len(b)} entries; {only_a} only in the student, "
                f"{only_b} only in the other, {moved} with different ids)")
    return _same_ids_problem(student, other, sample_texts)


def _same_ids_problem(student: Any, other: Any, sample_texts: list[str]) -> str | None:
    """Why two tokenizers with compatible vocabularies still disagree (EOS id, ids of a sample text), or None."""
    if student.eos_token_id != other.eos_token_id:
        return f"EOS ids differ ({student.eos_token_id} vs {other.eos_token_id})"
    for text in sample_texts:
        ids_a = student(text, add_special_tokens=False)["input_ids"]
        ids_b = other(text, add_special_tokens=False)["input_ids"]
        if ids_a != ids_b:
            return f"the same text tokenizes differently: {text[:40]!r} -> {ids_a[:8]}... vs {ids_b[:8]}..."
    return None
