"""Stage 1: synthesize preference data with the teacher.

prompts (synthesize split) -> preference_data (PreferenceRecord shards, teacher top-k, drops.jsonl, stats.json)
"""

from __future__ import annotations

import logging

from rlhf_stack.core.artifacts import write_json_atomic
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.pipeline import Job, JobContext
from rlhf_stack.core.records import PreferenceRecord, TeacherAnswer, write_jsonl
from rlhf_stack.core.topk_store import write_topk
from rlhf_stack.core.recipe_view import RecipeView
from stages.s1_synthesize import steps
from stages.s1_synthesize.config import SynthesizeConfig
from stages.s1_synthesize.journal import RequestJournal
from stages.s1_synthesize.judge import Judge
from stages.s1_synthesize.session import ModelSession, cache_scope
from stages.s1_synthesize.stats import StageStats
from stages.s1_synthesize.llm_judge import LLMJudge
from stages.s1_synthesize.verifier_judge import RoutedJudge, VerifierJudge
from stages.sandbox import Verifier, constraints_path


log = logging.getLogger("rlhf_stack")
FOLDER = "s1_synthesize"
KIND = "preference_data"
RECORDS_PER_SHARD = 5000
JOURNAL = "requests.jsonl"  # in the work dir: finished requests, for resuming


def jobs(recipe: RecipeView) -> list[Job]:
    cfg = recipe.section("synthesize")
    key = {
        "synthesize": cfg.model_dump(mode="json", exclude={"generation_cache"}),
        "models": {a: recipe.models[a].model_dump(mode="json") for a in cfg.model_aliases().values()},
        "data": recipe.data.model_dump(mode="json", exclude={"prompts"}),
        "seed": recipe.seed,
    }
    files = (recipe.prompts_path,)
    if cfg.judges.uses("verifier"):
        files += (constraints_path(recipe.prompts_path),)
    return [Job(stage="synthesize", folder=FOLDER, kind=KIND, key=key, run=run, files=files)]


def run(ctx: JobContext) -> dict:
    cfg = ctx.recipe.section("synthesize")
    prompts = ctx.prompts("synthesize")
    empty = [p.id for p in prompts if not p.prompt.strip()]
    if empty:
        raise ArtifactError(f"synthesize: empty prompts in {ctx.recipe.prompts_path}: ids {empty}; give them text "
                            "or remove them")
    if ctx.dry_run:
        log.info("synthesize: would ask %d generator(s) and teacher %r about %d prompts", len(cfg.generators),
                 cfg.teacher, len(prompts))
        return {"prompts": len(prompts)}

    stats = StageStats()
    journal = RequestJournal(ctx.work_dir / JOURNAL)
    cache = RequestJournal(ctx.recipe.resolve_path(cfg.generation_cache)) if cfg.generation_cache else None
    seed = ctx.seed if cfg.generation_seed is None else cfg.generation_seed
    sessions = {}
    for alias in {cfg.teacher, *cfg.generators}:
        engine = cfg.teacher_engine if alias == cfg.teacher else cfg.generator_engine
        scope = cache_scope(ctx.recipe.models[alias].model_dump(mode="json"), engine, seed)
        sessions[alias] = ModelSession(alias, lambda a=alias: ctx.model(a), engine, cluster=ctx.cluster, seed=seed,
                                       journal=journal, stats=stats, teacher=alias == cfg.teacher, cache=cache,
                                       scope=scope)
    precision: dict[str, str | None] = {}
    try:
        teacher = sessions[cfg.teacher]
        judge = make_judge(cfg, teacher, ctx)
        candidates = steps.candidates(cfg, prompts, sessions, stats)
        pairs, consistent = steps.initial_pairs(cfg, prompts, candidates, judge, stats, ctx.seed)
        answers, topk = steps.teacher_answers(cfg, prompts, pairs, teacher, stats)
        refined = steps.refinements(prompts, pairs, answers, judge, stats)
        boosted = steps.rmboost(cfg, prompts, answers, teacher, stats, ctx.seed) if cfg.rmboost else {}
    finally:
        for alias, session in sessions.items():
            if session.precision is not None:
                precision[f"{alias} engine"] = session.precision
            session.close()
        journal.close()
        if cache is not None:
            cache.close()

    records = [PreferenceRecord(id=p.id, prompt=p.prompt, candidates=candidates[p.id], initial=pairs[p.id],
                                teacher_answer=answers.get(p.id), refinement=refined.get(p.id),
                                rmboost=boosted.get(p.id)) for p in prompts if p.id in pairs]
    shards = write_records(ctx, records, topk)
    write_jsonl(ctx.out_dir / "drops.jsonl", stats.drops)
    report = stats.to_json(margins=[r.margin for r in refined.values()],
                           edit_distances=[r.edit_distance for r in refined.values()], consistent=consistent)
    write_json_atomic(ctx.out_dir / "stats.json", report)
    log.info("synthesize: %d records (%d refined) from %d prompts; drops %s", len(records), len(refined),
             len(prompts), report["drops_by_reason"])
    return {"prompts": len(prompts), "records": len(records), "refined": len(refined),
            "teacher_answers": len(answers), "rmboost": len(boosted), "shards": shards,
            "dropped": len(stats.drops), "position_consistency_rate": report["position_consistency_rate"],
            "teacher_tokens": report["teacher_tokens"], **({"precision": precision} if precision else {})}


def make_judge(cfg: SynthesizeConfig, teacher: ModelSession, ctx: JobContext) -> Judge:
    """The judges the recipe names (`synthesize.judges`) for the pair scores, the refinement and the calibration."""
    built: dict[str, Judge] = {}
    for name in set(cfg.judges.model_dump().values()):
        if name == "llm":
            built[name] = LLMJudge(teacher, cfg)
        else:  # "verifier", the only other name the config allows
            built[name] = VerifierJudge(Verifier.from_prompt_file(ctx.recipe.prompts_path, cfg.verifier.noise,
                                                                  seed=ctx.seed))
    roles = cfg.judges
    return RoutedJudge(built[roles.initial_scores], built[roles.refine], built[roles.calibrate])


def write_records(ctx: JobContext, records: list[PreferenceRecord], topk: dict) -> int:
    """records-NNNNN.jsonl shards and, beside each, teacher_topk-NNNNN.safetensors with its records' y_T top-k."""
    shards = 0
    for start in range(0, max(1, len(records)), RECORDS_PER_SHARD):
        chunk = records[start : start + RECORDS_PER_SHARD]
        topk_name = f"teacher_topk-{shards:05d}.safetensors"
        entries = {r.id: topk[r.id] for r in chunk if r.id in topk}
        if entries:
            write_topk(ctx.out_dir / topk_name, entries)
            chunk = [r.model_copy(update={"teacher_answer": _with_topk(r.teacher_answer, topk_name)})
                     if r.id in entries else r for r in chunk]
        write_jsonl(ctx.out_dir / f"records-{shards:05d}.jsonl", chunk)
        shards += 1
    return shards


def _with_topk(answer: TeacherAnswer, name: str) -> TeacherAnswer:
    return answer.model_copy(update={"topk_file": name})

