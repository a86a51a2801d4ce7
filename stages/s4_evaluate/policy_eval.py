"""One policy on AlpacaEval 2 and MT-Bench: answers from the policy's engines, then the judge's verdicts; on sandbox
prompts also its compliance with their constraints (ground_truth.py).

The policy and the judge never run at the same time. Every finished generation is kept in the job's scratch
folder, so a killed run resumes where it stopped. Nothing the judge did not say becomes a number: unanswered
instructions, unparseable judgments and engine errors are excluded and counted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from ray_cluster.generation.types import GenerationRequest, Sampling
from rlhf_stack.core.artifacts import read_manifest, write_json_atomic
from rlhf_stack.core.models import BUILTIN_MODELS, local_path
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.core.records import PromptRecord, write_jsonl
from stages.s4_evaluate import alpacaeval as ae_rules
from stages.s4_evaluate import ground_truth
from stages.s4_evaluate import mt_bench as mt_rules
from stages.s4_evaluate.engines import JobEngines
from stages.s4_evaluate.alpaca_inputs import REFERENCE_FILE, AlpacaInputs, load_alpaca_inputs, load_instructions
from stages.s4_evaluate.lc_winrate import EVAL_SET_SIZE, gamed_file_path, is_extreme_change, length_adjusted
from stages.s4_evaluate.request_log import Answer, RequestLog

log = logging.getLogger("rlhf_stack")
RESULTS = "results.json"


def model_dir_for(ctx: JobContext, alias: str, engine: Any) -> Path | None:
    """The model's local folder; None for a model only an OpenAI-compatible server knows (served_model_name)."""
    spec = ctx.recipe.models[alias]
    remote = spec.source not in BUILTIN_MODELS and local_path(spec, ctx.recipe.base_dir) is None
    if engine.backend == "openai" and engine.served_model_name and remote:
        return None
    return ctx.model(alias)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _user(text: str) -> tuple[tuple[str, str], ...]:
    return (("user", text),)


def evaluate_policy(ctx: JobContext, name: str, alias: str | None) -> dict[str, Any]:
    """AlpacaEval and MT-Bench for the policy `name` (an s3_ppo variant, or the model `alias`)."""
    cfg = ctx.recipe.section("evaluate")
    if alias is not None:
        model_dir, origin, ppo_backend = model_dir_for(ctx, alias, cfg.policy_engine), f"model {alias}", None
    else:
        folder = ctx.input(f"s3_ppo/{name}")
        model_dir, origin = folder / "checkpoint", f"s3_ppo/{name}"
        ppo_backend = read_manifest(folder).summary.get("backend")
    ae = load_alpaca_inputs(ctx) if cfg.alpaca_eval else None  # data problems surface before any model starts
    mt = mt_rules.load_mt_bench(cfg.mt_bench, ctx.recipe.base_dir) if cfg.mt_bench else None
    gt_prompts = ctx.prompts("evaluate") if cfg.ground_truth else None
    # Read here, so constraints that do not match the prompts fail before the policy starts.
    checker = ground_truth.verifier(ctx) if gt_prompts is not None else None
    if ctx.dry_run:
        return {}
    requests_log = RequestLog(ctx.work_dir / "generations.jsonl")
    precision: dict[str, str | None] = {}  # engines really started by this job (none when all was resumed)
    engines = JobEngines(ctx)
    try:
        results, verdicts, answers = _generate(ctx, engines, requests_log, model_dir, name, origin, ppo_backend,
                                               ae, mt, gt_prompts, precision)
    finally:
        engines.close()
    if ae:
        results["alpaca_eval"] = _alpaca_results(ctx, ae, answers, verdicts, name)
    if mt:
        results["mt_bench"] = _mt_results(ctx, mt, answers, verdicts, name)
    if gt_prompts is not None:
        results["compliance"] = ground_truth.compliance_results(ctx, checker, gt_prompts, answers)
    write_json_atomic(ctx.out_dir / RESULTS, results)
    summary: dict[str, Any] = {"precision": precision} if precision else {}
    if engines.starts or engines.swaps:
        summary.update(engine_starts=engines.starts, engine_weight_swaps=engines.swaps)
    if gt_prompts is not None:
        summary["mean_compliance"] = results["compliance"]["mean_compliance"]
    if ae:
        summary["alpaca_eval_lc_win_rate"] = results["alpaca_eval"]["length_controlled_winrate"]
        summary["alpaca_eval_win_rate"] = results["alpaca_eval"]["win_rate"]
        summary["alpaca_eval_minimal_glm_win_rate"] = results["alpaca_eval"]["minimal_glm_winrate"]
    if mt:
        summary["mt_bench"] = results["mt_bench"]["score"]
    return summary


def _generate(ctx: JobContext, engines: JobEngines, requests_log: RequestLog, model_dir: Path | None, name: str,
              origin: str, ppo_backend: str | None, ae: AlpacaInputs | None, mt: mt_rules.MTBenchData | None,
              gt_prompts: list[PromptRecord] | None, precision: dict[str, str | None]) -> tuple[dict, dict, dict]:
    """The policy's answers, then the judge's verdicts on them; the results dict begun."""
    cfg = ctx.recipe.section("evaluate")
    answers = _policy_answers(ctx, engines, requests_log, model_dir, name, ae, mt, gt_prompts, precision)
    results: dict[str, Any] = {"kind": "policy", "name": name, "origin": origin, "ppo_backend": ppo_backend}
    verdicts: dict[str, Answer] = {}
    if ae or mt:
        judge_dir = model_dir_for(ctx, cfg.judge, cfg.judge_engine)
        results["judge"] = {"model": cfg.judge, "source": ctx.recipe.models[cfg.judge].source,
                            "backend": cfg.judge_engine.backend, "temperature": 0.0, "seed": ctx.seed}
        judge_requests = (_alpaca_judge_requests(ctx, ae, answers, name) if ae else []) + \
                         (_mt_judge_requests(ctx, mt, answers) if mt else [])
        verdicts = _run(engines, requests_log, judge_dir, cfg.judge_engine, cfg.judge, judge_requests,
                        f"{name}: judge", precision, "judge engine")
    return results, verdicts, answers


def _run(engines: JobEngines, requests_log: RequestLog, model_dir: Path | None, engine: Any, model_name: str,
         requests: list[GenerationRequest], description: str, precision: dict[str, str | None],
         role: str) -> dict[str, Answer]:
    """Results of `requests`, starting (or reusing) an engine only when some are not finished yet (its precision
    under `role` in `precision`)."""
    if requests_log.missing(requests):
        backend = engines.get(model_dir, engine, model_name)
        precision[role] = backend.precision
        return requests_log.run(backend, requests, description)
    return requests_log.run(None, requests, description)


def _policy_answers(ctx: JobContext, engines: JobEngines, requests_log: RequestLog, model_dir: Path | None, name: str,
                    ae: AlpacaInputs | None, mt: mt_rules.MTBenchData | None,
                    gt_prompts: list[PromptRecord] | None, precision: dict[str, str | None]) -> dict[str, Answer]:
    cfg = ctx.recipe.section("evaluate")
    first = (alpaca_answer_requests(ae.instructions, cfg.alpaca_eval.max_new_tokens, ctx.seed) if ae else []) + \
            (_mt_turn_requests(ctx, mt, 1, {}) if mt else []) + \
            (ground_truth.answer_requests(gt_prompts, cfg.ground_truth, 1, "gt") if gt_prompts is not None else [])
    if not requests_log.missing(first):  # resumed after the policy's answers were finished
        answers = requests_log.run(None, first, "")
        second = _mt_turn_requests(ctx, mt, 2, answers) if mt else []
        if not requests_log.missing(second):
            return {**answers, **requests_log.run(None, second, "")}
    backend = engines.get(model_dir, cfg.policy_engine, name)
    precision["policy engine"] = backend.precision
    answers = requests_log.run(backend, first, f"{name}: answers")
    if mt:  # the second turn follows the policy's own first answer
        answers.update(requests_log.run(backend, _mt_turn_requests(ctx, mt, 2, answers),
                                        f"{name}: MT-Bench turn 2"))
    return answers


def alpaca_answer_requests(instructions: list[dict[str, Any]], max_new_tokens: int,
                           seed: int) -> list[GenerationRequest]:
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    return [GenerationRequest(id=f"ae:{_key(row['instruction'])}", messages=_user(row["instruction"]),
                              sampling=sampling) for row in instructions]


def _mt_turn_requests(ctx: JobContext, mt: mt_rules.MTBenchData, turn: int,
                      answers: dict[str, Answer]) -> list[GenerationRequest]:
    cfg = ctx.recipe.section("evaluate").mt_bench
    out = []
    for q in mt.questions:
        temperature = mt_rules.answer_temperature(q["category"], cfg.category_temperatures)
        sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=temperature, seed=ctx.seed)
        if turn == 1:
            messages = _user(q["turns"][0])
        else:
            previous = answers.get(f"mt:{q['question_id']}:1")
            if previous is None or previous.text is None:
                continue  # no first answer: the question is counted as unanswered
            messages = (("user", q["turns"][0]), ("assistant", previous.text), ("user", q["turns"][1]))
        out.append(GenerationRequest(id=f"mt:{q['question_id']}:{turn}", messages=messages, sampling=sampling))
    return out


def _alpaca_judge_requests(ctx: JobContext, ae: AlpacaInputs, answers: dict[str, Answer],
                           name: str) -> list[GenerationRequest]:
    cfg = ctx.recipe.section("evaluate").alpaca_eval
    sampling = Sampling(max_new_tokens=1, temperature=0.0, top_logprobs=cfg.top_logprobs, seed=ctx.seed)
    out = []
    for row in ae.instructions:
        instruction = row["instruction"]
        model = answers[f"ae:{_key(instruction)}"].text
        reference = ae.references[instruction]["output"]
        if model is None or model == reference:
            continue  # unanswered (counted) or identical (a draw, as alpaca_eval decides without a judge)
        switched = ae_rules.is_switched(instruction, ctx.seed)
        orders = (switched, not switched) if cfg.both_orders else (switched,)
        for shown_switched in orders:
            first, second = (model, reference) if shown_switched else (reference, model)
            messages = ae_rules.judge_messages(ae.template, instruction, first, second)
            out.append(GenerationRequest(id=f"ae-judge:{_key(instruction)}:{int(shown_switched)}",
                                         messages=messages, sampling=sampling))
    return out


def _mt_judge_requests(ctx: JobContext, mt: mt_rules.MTBenchData,
                       answers: dict[str, Answer]) -> list[GenerationRequest]:
    cfg = ctx.recipe.section("evaluate").mt_bench
    sampling = Sampling(max_new_tokens=cfg.judge_max_new_tokens, temperature=0.0, seed=ctx.seed,
                        regex=mt_rules.RATING_REGEX if cfg.constrain_rating else None)
    out = []
    for q in mt.questions:
        turns = [answers.get(f"mt:{q['question_id']}:{t}") for t in (1, 2)]
        if any(a is None or a.text is None for a in turns):
            continue
        for turn in (1, 2):
            _, messages = mt_rules.judge_messages(mt, q, [a.text for a in turns], turn)
            out.append(GenerationRequest(id=f"mt-judge:{q['question_id']}:{turn}", messages=messages,
                                         sampling=sampling))
    return out


def _eval_set_index(ae: AlpacaInputs, row: dict[str, Any]) -> dict[str, int]:
    """The instruction's row in AlpacaEval's eval set (the official LC looks difficulties up by it), when known."""
    if ae.stand_in or ae.total_instructions != EVAL_SET_SIZE or row.get("index") is None:
        return {}
    return {"index": row["index"]}


def _alpaca_results(ctx: JobContext, ae: AlpacaInputs, answers: dict[str, Answer], verdicts: dict[str, Answer],
                    name: str) -> dict[str, Any]:
    cfg = ctx.recipe.section("evaluate").alpaca_eval
    judge_name = f"{ctx.recipe.section('evaluate').judge} ({ae.template_name})"
    outputs, annotations, pairs = [], [], []
    unanswered = unjudged = identical = truncated = 0
    for row in ae.instructions:
        instruction, k = row["instruction"], _key(row["instruction"])
        answer = answers[f"ae:{k}"]
        if answer.text is None:
            unanswered += 1
            continue
        truncated += answer.finish_reason == "length"
        reference = ae.references[instruction]["output"]
        outputs.append({"instruction": instruction, "output": answer.text, "generator": name,
                        "dataset": row["dataset"]})
        switched = ae_rules.is_switched(instruction, ctx.seed)
        if answer.text == reference:
            identical += 1
            preference, shown = 1.5, []
        else:
            shown = [_shown_preference(verdicts.get(f"ae-judge:{k}:{int(s)}"), s)
                     for s in ((switched, not switched) if cfg.both_orders else (switched,))]
            preference = sum(shown) / len(shown) if shown and None not in shown else None
            if len(shown) == 2:
                pairs.append((shown[0], shown[1]))
            unjudged += preference is None
        annotations.append({"instruction": instruction, "output_1": reference, "generator_1": ae.reference_name,
                            "output_2": answer.text, "generator_2": name, "preference": preference,
                            "annotator": judge_name, "is_switched_outputs": switched, "dataset": row["dataset"],
                            "preferences_per_order": shown, **_eval_set_index(ae, row)})
    folder = ctx.out_dir / "alpaca_eval"
    write_json_atomic(folder / "model_outputs.json", outputs)
    write_json_atomic(folder / "annotations.json", annotations)
    rates = ae_rules.win_rate([a["preference"] for a in annotations])
    gamed, why_not = (gamed_file_path(cfg.lc_gamed_file, ctx.recipe.resolve_path) if cfg.lc_gamed_file else
                      (None, "no df_gamed.csv (set evaluate.alpaca_eval.lc_gamed_file to its path or to 'hub')"))
    lc = length_adjusted(annotations, gamed, why_not)
    extreme = (rates["win_rate"] is not None and lc["length_controlled_winrate"] is not None
               and is_extreme_change(rates["win_rate"], lc["length_controlled_winrate"]))
    return {
        **rates, **lc, "lc_extreme_change": extreme,
        "reference": ae.reference_name, "reference_source": ae.reference_source, "data": ae.data_description,
        "stand_in": ae.stand_in, "total_instructions": ae.total_instructions, "n_instructions": len(ae.instructions),
        "n_unanswered": unanswered, "n_unjudged": unjudged, "n_identical_outputs": identical,
        "n_truncated_answers": truncated, "judge_template": ae.template_name, "both_orders": cfg.both_orders,
        "position_flip_rate": ae_rules.position_flip_rate(pairs) if cfg.both_orders else None,
        "annotations_file": "alpaca_eval/annotations.json", "model_outputs_file": "alpaca_eval/model_outputs.json",
    }


def _shown_preference(verdict: Answer | None, switched: bool) -> float | None:
    """The judge's preference mapped to (output_1 = reference, output_2 = model), or None without m/M logprobs."""
    if verdict is None or verdict.first_token_logprobs is None:
        return None
    shown = ae_rules.preference_from_logprobs(verdict.first_token_logprobs)
    return None if shown is None else ae_rules.shown_to_reference_order(shown, switched)


def _mt_results(ctx: JobContext, mt: mt_rules.MTBenchData, answers: dict[str, Answer],
                verdicts: dict[str, Answer], name: str) -> dict[str, Any]:
    judge = ctx.recipe.section("evaluate").judge
    answer_rows, judgments = [], []
    unanswered = judge_errors = 0
    for q in mt.questions:
        turns = [answers.get(f"mt:{q['question_id']}:{t}") for t in (1, 2)]
        if any(a is None or a.text is None for a in turns):
            unanswered += 1
            continue
        answer_rows.append({"question_id": q["question_id"], "answer_id": _key(f"{name}:{q['question_id']}"),
                            "model_id": name, "choices": [{"index": 0, "turns": [a.text for a in turns]}],
                            "tstamp": time.time()})
        for turn in (1, 2):
            prompt_name, messages = mt_rules.judge_messages(mt, q, [a.text for a in turns], turn)
            verdict = verdicts[f"mt-judge:{q['question_id']}:{turn}"]
            judge_errors += verdict.text is None
            score = mt_rules.UNPARSED if verdict.text is None else mt_rules.parse_rating(verdict.text)
            judgments.append({"question_id": q["question_id"], "model": name, "judge": [judge, prompt_name],
                              "user_prompt": messages[1][1], "judgment": verdict.text or "", "score": score,
                              "turn": turn, "category": q["category"], "error": verdict.error,
                              "tstamp": time.time()})
    write_jsonl(ctx.out_dir / "mt_bench" / "answers.jsonl", answer_rows)
    write_jsonl(ctx.out_dir / "mt_bench" / "judgments.jsonl", judgments)
    return {**mt_rules.aggregate(judgments), "data": mt.description, "reference_answers": mt.reference_set,
            "constrained_rating": ctx.recipe.section("evaluate").mt_bench.constrain_rating,
            "n_questions": len(mt.questions), "total_questions": mt.total_questions,
            "n_unanswered_questions": unanswered, "n_judge_errors": judge_errors,
            "answers_file": "mt_bench/answers.jsonl", "judgments_file": "mt_bench/judgments.jsonl"}


def write_reference_outputs(ctx: JobContext) -> dict[str, Any]:
    """AlpacaEval reference outputs written by the recipe's reference model (unanswered ones dropped, counted)."""
    cfg = ctx.recipe.section("evaluate")
    alias = cfg.alpaca_eval.reference_model
    rows, loaded = load_instructions(ctx)
    if ctx.dry_run:
        return {}
    requests = alpaca_answer_requests(rows, cfg.alpaca_eval.max_new_tokens, ctx.seed)
    model_dir = model_dir_for(ctx, alias, cfg.policy_engine)
    precision: dict[str, str | None] = {}
    engines = JobEngines(ctx)
    try:
        answers = _run(engines, RequestLog(ctx.work_dir / "generations.jsonl"), model_dir, cfg.policy_engine, alias,
                       requests, f"{alias}: AlpacaEval reference", precision, "reference engine")
    finally:
        engines.close()
    out = [{"instruction": row["instruction"], "output": answers[req.id].text, "generator": alias,
            "dataset": row.get("dataset")} for row, req in zip(rows, requests) if answers[req.id].text is not None]
    write_json_atomic(ctx.out_dir / REFERENCE_FILE, out)
    log.info("AlpacaEval reference: %d of %d instructions answered by %s", len(out), len(rows), alias)
    return {"reference_model": alias, "answered": len(out), "instructions": len(rows), "data": loaded.description,
            **({"precision": precision} if precision else {})}

