"""A variant's training data: its pairs from the synthesis records, the held-out prompts, token ids, counts."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_stack.core.errors import ArtifactError, Problem, RecipeError
from rlhf_stack.core.records import PreferenceRecord, TeacherAnswer
from rlhf_stack.core.topk_store import read_topk
from stages.s2_distill.config import DistillConfig
from stages.s2_distill.encode import encode_answers, encode_pairs
from stages.s2_distill.pairs import PairText, in_training_share, is_held_out, loss_margin, pair_of, select_pairs
from stages.s2_distill.settings import TrainData
from stages.s2_distill.batching import total_steps

PAIR_TYPES = ("initial", "refined")


def prepare_data(records: list[PreferenceRecord], tokenizer: Any, cfg: DistillConfig, variant: str, source: Path,
                 seed: int) -> tuple[TrainData, dict[str, Any]]:
    """Token ids for training and held-out evaluation, and what the manifest records about them.

    Held-out prompts are the same for every variant; they are evaluated on both pair types.
    """
    vcfg = cfg.variants[variant]
    pairs, records_without_pairs = select_pairs(records, vcfg)
    held = {r.id for r in records if is_held_out(r.id, cfg.held_out_fraction, seed)}
    train_text = [p for p in pairs
                  if p.id not in held and in_training_share(p.id, cfg.train_prompt_fraction, seed)]
    answers = "topk" if vcfg.kl_weight > 0 else "sft" if vcfg.sft_weight > 0 else "none"
    train, stats = encode_pairs(tokenizer, train_text, [loss_margin(p, vcfg) for p in train_text],
                                cfg.max_length_tokens, answers, partial(stored_topk, source))
    if answers == "topk" and stats.pairs_without_answer == len(train):
        raise ArtifactError(f"{source}: no training pair has a teacher answer with top-k logprobs, so the KL "
                            f"term of variant {variant!r} has nothing to learn from; set its kl_weight: 0")
    held_records = [r for r in records if r.id in held]
    held_out = {}
    for kind in PAIR_TYPES:
        texts = [p for p in (pair_of(r, kind) for r in held_records) if p is not None]
        held_out[kind] = encode_pairs(tokenizer, texts, [None] * len(texts), cfg.max_length_tokens, "none")[0]
    answer_texts = [PairText(r.id, r.prompt, "", "", 0.0, r.teacher_answer) for r in held_records]
    held_answers = encode_answers(tokenizer, answer_texts, cfg.max_length_tokens)

    num_steps = total_steps(len(train), cfg.pairs_per_step, cfg.epochs)
    if num_steps == 0:
        raise RecipeError("distill", [Problem(
            "distill.pairs_per_step",
            f"variant {variant!r} has {len(train)} training pairs, fewer than pairs_per_step ({cfg.pairs_per_step})",
            "lower pairs_per_step or held_out_fraction, raise train_prompt_fraction, or synthesize more pairs")])
    summary: dict[str, Any] = {
        **vcfg.model_dump(mode="json"),
        "train_pairs": len(train), "train_prompt_fraction": cfg.train_prompt_fraction,
        "held_out_pairs": len(held_out[vcfg.pairs]), "held_out_prompts": len(held),
        "records_without_pairs": records_without_pairs, **stats.summary(),
        "steps": num_steps, "pairs_per_step": cfg.pairs_per_step,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "num_processes": cfg.num_processes,
        "zero_stage": cfg.zero_stage, "dtype": cfg.dtype, "max_length_tokens": cfg.max_length_tokens,
    }
    data = TrainData(train=train, held_out=held_out, held_out_answers=held_answers, own_pairs=vcfg.pairs)
    return data, summary


def stored_topk(source: Path, record_id: str, answer: TeacherAnswer) -> tuple[np.ndarray, np.ndarray] | None:
    """The teacher's top-k logprobs of an answer, stored by synthesis under the record id."""
    if answer.topk_file is None:
        return None
    path = (source / answer.topk_file).resolve()
    if source.resolve() not in path.parents or not path.is_file():
        raise ArtifactError(f"record {record_id}: top-k file {answer.topk_file!r} is not a file inside {source}")
    try:
        return read_topk(path, record_id)
    except KeyError as e:
        raise ArtifactError(f"record {record_id}: {path.name} holds no top-k entry for it") from e
