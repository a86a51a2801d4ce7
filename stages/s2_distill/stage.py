"""Stage 2: distill the teacher's preferences into one reward model per variant.

preference_data -> reward_model (HF *ForSequenceClassification, num_labels=1, bias-free head `score`)
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from rlhf_stack.core.artifacts import write_atomic
from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.pipeline import Job, JobContext
from rlhf_stack.core.records import PreferenceRecord
from rlhf_stack.core.recipe_view import RecipeView
from stages.s2_distill.config import DistillConfig, VariantConfig
from stages.s2_distill.pairs import read_records
from stages.s2_distill.prepare import PAIR_TYPES, prepare_data
from stages.s2_distill.settings import TrainSettings
from stages.s2_distill.tokenizers import kl_tokenizer_problem, load_student_tokenizer, tokenizer_mismatch
from stages.s2_distill.launch import run_training


FOLDER = "s2_distill"
KIND = "reward_model"
SOURCE = "s1_synthesize"
NOT_IN_KEY = {"variants", "cpus_per_process", "checkpoint_every_steps"}  # settings that do not change the model
TOKENIZER_SAMPLE = 16  # teacher answers re-tokenized by both tokenizers before the KL term may run


def jobs(recipe: RecipeView) -> list[Job]:
    cfg = recipe.section("distill")
    # train_prompt_fraction enters the key only below 1, so that adding the setting kept earlier runs' hashes
    shared = cfg.model_dump(mode="json", exclude=NOT_IN_KEY | ({"train_prompt_fraction"}
                                                               if cfg.train_prompt_fraction == 1.0 else set()))
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
    cfg: DistillConfig = ctx.recipe.section("distill")
    vcfg = cfg.variants[variant]
    source = ctx.input(SOURCE)
    records = read_records(source)
    model_dir = ctx.model(cfg.base_model)
    tokenizer = load_student_tokenizer(model_dir)
    _check_policy_tokenizer(ctx, tokenizer)
    if vcfg.kl_weight > 0:
        _check_teacher_tokenizer(ctx, tokenizer, records, variant)
    data, summary = prepare_data(records, tokenizer, cfg, variant, source, ctx.seed)
    if ctx.dry_run:
        return summary

    settings = TrainSettings.build(cfg, vcfg, model_dir=model_dir, work_dir=ctx.work_dir, out_dir=ctx.out_dir,
                                   pad_token_id=tokenizer.pad_token_id, num_steps=summary["steps"], seed=ctx.seed)
    result = run_training(settings, data, ctx.cluster, cfg.cpus_per_process)
    final = _final_metrics(result.final, vcfg)
    lines = result.metrics + [{"final": True, **final}]
    write_atomic(ctx.out_dir / "metrics.jsonl", "".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    return {**summary, **final, "final_train_loss": result.metrics[-1]["loss"], "checkpoint": result.export,
            "precision": {"reward model training": result.precision}, "threads": result.threads}


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


def _check_teacher_tokenizer(ctx: JobContext, tokenizer: Any, records: list[PreferenceRecord], variant: str) -> None:
    """The KL term reads the teacher's token ids as the student's: the teacher's vocabulary must extend the
    student's with the same ids, and sample answers must tokenize identically."""
    from transformers import AutoTokenizer

    alias = ctx.recipe.section("synthesize").teacher
    teacher = AutoTokenizer.from_pretrained(ctx.model(alias))
    texts = [r.teacher_answer.text for r in records if r.teacher_answer is not None][:TOKENIZER_SAMPLE]
    why = kl_tokenizer_problem(tokenizer, teacher, texts)
    if why:
        raise RecipeError("distill", [Problem(
            f"distill.variants.{variant}.kl_weight",
            f"the KL term needs the teacher's tokenizer ({alias!r}) to extend the student's "
            f"({ctx.recipe.section('distill').base_model!r}), but {why}",
            "set kl_weight: 0 (the SFT term on the teacher's answers still works) or use a student that shares "
            "the teacher's tokenizer")])


def _check_policy_tokenizer(ctx: JobContext, tokenizer: Any) -> None:
    """PPO hands token ids, not text, to the reward model: the RM must tokenize exactly as the policy."""
    ppo = ctx.recipe.section("ppo")
    if ppo is None or ctx.recipe.models[ppo.policy] == ctx.recipe.models[ctx.recipe.section("distill").base_model]:
        return
    from transformers import AutoTokenizer

    why = tokenizer_mismatch(tokenizer, AutoTokenizer.from_pretrained(ctx.model(ppo.policy)), [])
    if why:
        raise RecipeError("distill", [Problem(
            "distill.base_model",
            f"the reward model's tokenizer must equal the policy's ({ppo.policy!r}), but {why}",
            "use a base model from the policy's family (same tokenizer)")])

