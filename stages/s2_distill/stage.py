"""Stage 2: distill the teacher's preferences into one reward model per variant.

preference_data -> reward_model (HF *ForSequenceClassification, num_labels=1, bias-free head `score`)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_stack.artifacts import write_atomic
from rlhf_stack.errors import ArtifactError, Problem, RecipeError
from rlhf_stack.pipeline import Job, JobContext
from rlhf_stack.records import PreferenceRecord, TeacherAnswer
from rlhf_stack.topk_store import read_topk
from stages.s2_distill.config import DistillConfig, VariantConfig
from stages.s2_distill.encode import encode_answers, encode_pairs
from stages.s2_distill.pairs import PairText, is_held_out, loss_margin, pair_of, read_records, select_pairs
from stages.s2_distill.tokenizers import load_student_tokenizer, tokenizer_mismatch

if TYPE_CHECKING:
    from rlhf_stack.recipe import Recipe

FOLDER = "s2_distill"
KIND = "reward_model"
SOURCE = "s1_synthesize"
PAIR_TYPES = ("initial", "refined")
NOT_IN_KEY = {"variants", "cpus_per_process", "checkpoint_every_steps"}  # settings that do not change the model
TOKENIZER_SAMPLE = 16  # teacher answers re-tokenized by both tokenizers before the KL term may run


def jobs(recipe: "Recipe") -> list[Job]:
    cfg = recipe.distill
    shared = cfg.model_dump(mode="json", exclude=NOT_IN_KEY)
    out = []
    for variant, vcfg in cfg.variants.items():
        key = {
            "distill": shared,
            "variant": vcfg.model_dump(mode="json"),
            "base_model": recipe.models[cfg.base_model].model_dump(mode="json"),
            "seed": recipe.seed,
        }
        out.append(Job(stage="distill", folder=f"{FOLDER}/{variant}", kind=KIND, key=key,
                       run=partial(run, variant=variant), inputs=(SOURCE,)))
    return out


def run(ctx: JobContext, variant: str) -> dict:
    cfg: DistillConfig = ctx.recipe.distill
    vcfg = cfg.variants[variant]
    source = ctx.input(SOURCE)
    records = read_records(source)
    model_dir = ctx.model(cfg.base_model)
    tokenizer = load_student_tokenizer(model_dir)
    _check_policy_tokenizer(ctx, tokenizer)
    if vcfg.kl_weight > 0:
        _check_teacher_tokenizer(ctx, tokenizer, records, variant)

    pairs, records_without_pairs = select_pairs(records, vcfg)
    held = {r.id for r in records if is_held_out(r.id, cfg.held_out_fraction, ctx.seed)}
    train_text = [p for p in pairs if p.id not in held]
    answers = "topk" if vcfg.kl_weight > 0 else "sft" if vcfg.sft_weight > 0 else "none"
    train, stats = encode_pairs(tokenizer, train_text, [loss_margin(p, vcfg) for p in train_text],
                                cfg.max_length_tokens, answers, partial(_stored_topk, source))
    if answers == "topk" and stats.pairs_without_answer == len(train):
        raise ArtifactError(f"{source}: no training pair has a teacher answer with top-k logprobs, so the KL "
                            f"term of variant {variant!r} has nothing to learn from; set its kl_weight: 0")
    held_records = [r for r in records if r.id in held]
    held_out = {}
    for kind in PAIR_TYPES:
        texts = [p for p in (pair_of(r, kind) for r in held_records) if p is not None]
        held_out[kind] = encode_pairs(tokenizer, texts, [None] * len(texts), cfg.max_length_tokens, "none")[0]
    held_answers = encode_answers(tokenizer, [_answer_pair(r) for r in held_records], cfg.max_length_tokens)

    from stages.s2_distill.batching import total_steps

    num_steps = total_steps(len(train), cfg.pairs_per_step, cfg.epochs)
    if num_steps == 0:
        raise RecipeError("distill", [Problem(
            "distill.pairs_per_step",
            f"variant {variant!r} has {len(train)} training pairs, fewer than pairs_per_step ({cfg.pairs_per_step})",
            "lower pairs_per_step or held_out_fraction, or synthesize more pairs")])
    summary: dict[str, Any] = {
        **vcfg.model_dump(mode="json"),
        "train_pairs": len(train), "held_out_pairs": len(held_out[vcfg.pairs]), "held_out_prompts": len(held),
        "records_without_pairs": records_without_pairs, **stats.summary(),
        "steps": num_steps, "pairs_per_step": cfg.pairs_per_step,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "num_processes": cfg.num_processes,
        "zero_stage": cfg.zero_stage, "dtype": cfg.dtype, "max_length_tokens": cfg.max_length_tokens,
    }
    if ctx.dry_run:
        return summary

    from stages.s2_distill.launch import run_training
    from stages.s2_distill.settings import TrainSettings
    from stages.s2_distill.trainer import TrainData

    settings = TrainSettings.build(cfg, vcfg, model_dir=model_dir, work_dir=ctx.work_dir, out_dir=ctx.out_dir,
                                   pad_token_id=tokenizer.pad_token_id, num_steps=num_steps, seed=ctx.seed)
    data = TrainData(train=train, held_out=held_out, held_out_answers=held_answers, own_pairs=vcfg.pairs)
    result = run_training(settings, data, ctx.cluster, cfg.cpus_per_process)
    final = _final_metrics(result.final, vcfg)
    lines = result.metrics + [{"final": True, **final}]
    write_atomic(ctx.out_dir / "metrics.jsonl", "".join(_json(x) + "\n" for x in lines))
    summary.update(final)
    summary["final_train_loss"] = result.metrics[-1]["loss"]
    summary["checkpoint"] = result.export
    return summary


def _final_metrics(final: dict[str, Any], vcfg: VariantConfig) -> dict[str, Any]:
    """Flat held-out metrics: the variant's own pair type first, then both types for comparisons."""
    own = final[vcfg.pairs]
    out = {"held_out_accuracy": own.get("accuracy"), "held_out_margin_spearman": own.get("margin_spearman"),
           "held_out_lm_loss": final["held_out_lm_loss"],
           "held_out_lm_loss_before": final["held_out_lm_loss_before"]}
    for kind in PAIR_TYPES:
        out[f"held_out_accuracy_{kind}"] = final[kind].get("accuracy")
        out[f"held_out_margin_spearman_{kind}"] = final[kind].get("margin_spearman")
        out[f"held_out_pairs_{kind}"] = final[kind]["pairs"]
    return out


def _answer_pair(record: PreferenceRecord) -> PairText:
    return PairText(record.id, record.prompt, "", "", 0.0, record.teacher_answer)


def _stored_topk(source: Path, record_id: str, answer: TeacherAnswer) -> tuple[np.ndarray, np.ndarray] | None:
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


def _check_teacher_tokenizer(ctx: JobContext, tokenizer: Any, records: list[PreferenceRecord], variant: str) -> None:
    """The KL term compares token distributions, so the teacher must tokenize exactly as the student does."""
    from transformers import AutoTokenizer

    alias = ctx.recipe.synthesize.teacher
    teacher = AutoTokenizer.from_pretrained(ctx.model(alias))
    texts = [r.teacher_answer.text for r in records if r.teacher_answer is not None][:TOKENIZER_SAMPLE]
    why = tokenizer_mismatch(tokenizer, teacher, texts)
    if why:
        raise RecipeError("distill", [Problem(
            f"distill.variants.{variant}.kl_weight",
            f"the KL term needs the teacher's tokenizer ({alias!r}) to equal the student's "
            f"({ctx.recipe.distill.base_model!r}), but {why}",
            "set kl_weight: 0 (the SFT term on the teacher's answers still works) or use a student that shares "
            "the teacher's tokenizer")])


def _check_policy_tokenizer(ctx: JobContext, tokenizer: Any) -> None:
    """PPO hands token ids, not text, to the reward model: the RM must tokenize exactly as the policy."""
    ppo = ctx.recipe.ppo
    if ppo is None or ctx.recipe.models[ppo.policy] == ctx.recipe.models[ctx.recipe.distill.base_model]:
        return
    from transformers import AutoTokenizer

    why = tokenizer_mismatch(tokenizer, AutoTokenizer.from_pretrained(ctx.model(ppo.policy)), [])
    if why:
        raise RecipeError("distill", [Problem(
            "distill.base_model",
            f"the reward model's tokenizer must equal the policy's ({ppo.policy!r}), but {why}",
            "use a base model from the policy's family (same tokenizer)")])


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)
