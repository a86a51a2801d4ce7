"""Ground-truth metrics on sandbox prompts (docs/sandbox.md): the verifier knows every answer's true score.

    s4_evaluate/ground_truth/   answers.jsonl   held-out answers to the evaluate prompts, with their checks
                                pairs.jsonl     pairs of them with different true scores (kind "candidates"), and
                                                each answer against the verifier's repair of it (kind "edit")
                                best_of_n_samples.jsonl, best_of_n.json   with ground_truth.best_of_n: max(N)
                                                samples per prompt with their true scores, and the best-of-N
                                                curve of the verifier (the ceiling)
    s4_evaluate/best_of_n_direct_judge/   results.json["best_of_n"]: the curve of the noisy teacher used directly
                                (synthesize.verifier's noise, the run seed), scores.jsonl: its score of each sample
    s4_evaluate/rm/<name>/      results.json["ground_truth"]: the RM's pair accuracy per pair kind,
                                scores-ground_truth.jsonl: its rewards of every pair
                                results.json["best_of_n"]: its best-of-N curve on the same samples,
                                scores-best_of_n.jsonl: its reward of every sample
    s4_evaluate/policy/<name>/  results.json["compliance"]: the share of constraints its answers meet,
                                compliance/answers.jsonl: each answer with its checks

The verifier here is exact (no noise model): these are the numbers the noisy teacher of synthesis is measured by.
The held-out answers come from their own seed (`ground_truth.seed`), so runs with different seeds share them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray_cluster.generation import open_backend
from ray_cluster.generation.types import GenerationRequest, Sampling
from rlhf_stack.core.artifacts import write_json_atomic
from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.core.records import PromptRecord, read_json_lines, write_jsonl
from stages.s4_evaluate.request_log import Answer, RequestLog
from stages.s4_evaluate.rm_items import RMItem
from stages.sandbox import ScoredPair, Verifier, compliance_summary, pair_accuracy, true_pairs
from stages.sandbox.best_of_n import best_of_n_curve

log = logging.getLogger("rlhf_stack")
FOLDER = "s4_evaluate/ground_truth"
PAIR_KINDS = ("candidates", "edit")
BEST_OF_N_SAMPLES = "best_of_n_samples.jsonl"
BEST_OF_N = "best_of_n.json"


def verifier(ctx: JobContext) -> Verifier:
    return Verifier.from_prompt_file(ctx.recipe.prompts_path)  # exact: no noise


def answer_requests(prompts: list[PromptRecord], cfg: Any, copies: int, prefix: str) -> list[GenerationRequest]:
    """`copies` sampled answers per prompt, ids `<prefix>:<prompt id>:<k>` (seeds derived from the engine seed)."""
    sampling = Sampling(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                        top_k=cfg.top_k)
    return [GenerationRequest(id=f"{prefix}:{p.id}:{k}", messages=(("user", p.prompt),), sampling=sampling,
                              overflow="truncate_left") for p in prompts for k in range(copies)]


def write_pairs(ctx: JobContext) -> dict[str, Any]:
    """The ground_truth job: held-out answers from each generator, and the pairs the RMs are scored on."""
    cfg = ctx.recipe.section("evaluate").ground_truth
    prompts = ctx.prompts("evaluate")
    checker = verifier(ctx)  # fails here, before any engine starts, if the constraints do not match
    if ctx.dry_run:
        return {}
    requests_log = RequestLog(ctx.work_dir / "generations.jsonl")
    engine = ctx.recipe.section("evaluate").policy_engine
    answers: list[dict[str, Any]] = []
    for alias in cfg.generators:
        requests = answer_requests(prompts, cfg, cfg.answers_per_generator, alias)
        if requests_log.missing(requests):
            with open_backend(ctx.model(alias), engine, cluster=ctx.cluster, seed=cfg.seed,
                              model_name=alias) as backend:
                done = requests_log.run(backend, requests, f"ground truth: {alias} answers")
        else:
            done = requests_log.run(None, requests, "")
        for request in requests:
            _, pid, k = request.id.rsplit(":", 2)
            answer = done[request.id]
            if answer.text is not None:
                answers.append({"prompt_id": pid, "generator": alias, "index": int(k), "text": answer.text,
                                "finish_reason": answer.finish_reason, "checks": checker.checks(pid, answer.text)})
    text_of = {p.id: p.prompt for p in prompts}
    pairs = []
    for p in prompts:
        texts = list(dict.fromkeys(a["text"] for a in answers if a["prompt_id"] == p.id))
        pairs += [{"kind": "candidates", "prompt_id": p.id, "prompt": text_of[p.id], "chosen": t.chosen,
                   "rejected": t.rejected, "margin": t.margin} for t in true_pairs(checker, p.id, texts)]
        if cfg.edit_pairs:
            for text in texts:
                edited = checker.refine(p.id, text).text
                pairs += [{"kind": "edit", "prompt_id": p.id, "prompt": text_of[p.id], "chosen": t.chosen,
                           "rejected": t.rejected, "margin": t.margin} for t in true_pairs(checker, p.id, [edited, text])]
    write_jsonl(ctx.out_dir / "answers.jsonl", answers)
    write_jsonl(ctx.out_dir / "pairs.jsonl", pairs)
    summary = compliance_summary(checker, [(a["prompt_id"], a["text"]) for a in answers])
    counts = {kind: sum(p["kind"] == kind for p in pairs) for kind in PAIR_KINDS}
    log.info("ground truth: %d answers to %d prompts, pairs %s", len(answers), len(prompts), counts)
    out = {"prompts": len(prompts), "answers": len(answers), "pairs": counts,
           "prompts_with_pairs": len({p["prompt_id"] for p in pairs if p["kind"] == "candidates"}),
           "mean_compliance": summary["mean_compliance"]}
    if cfg.best_of_n:
        out["best_of_n"] = write_best_of_n(ctx, checker, prompts, requests_log)
    return out


def write_best_of_n(ctx: JobContext, checker: Verifier, prompts: list[PromptRecord],
                    requests_log: RequestLog) -> dict[str, Any]:
    """max(N) samples per prompt from the best-of-N generator, and the ceiling: best-of-N by the exact true score."""
    cfg = ctx.recipe.section("evaluate").ground_truth
    alias, most = cfg.best_of_n_generator, max(cfg.best_of_n)
    requests = answer_requests(prompts, cfg, most, "bon")
    if requests_log.missing(requests):
        with open_backend(ctx.model(alias), ctx.recipe.section("evaluate").policy_engine, cluster=ctx.cluster,
                          seed=cfg.seed, model_name=alias) as backend:
            done = requests_log.run(backend, requests, f"best-of-N: {alias} samples")
    else:
        done = requests_log.run(None, requests, "")
    text_of = {p.id: p.prompt for p in prompts}
    samples = []
    for request in requests:
        _, pid, k = request.id.rsplit(":", 2)
        text = done[request.id].text
        if text is not None:
            samples.append({"prompt_id": pid, "prompt": text_of[pid], "index": int(k), "text": text,
                            "finish_reason": done[request.id].finish_reason,
                            "true_score": checker.true_score(pid, text), "compliance": checker.compliance(pid, text)})
    write_jsonl(ctx.out_dir / BEST_OF_N_SAMPLES, samples)
    result = {"ns": cfg.best_of_n, "generator": alias, "samples": len(samples), "samples_file": BEST_OF_N_SAMPLES,
              "verifier": best_of_n_curve(samples, [s["true_score"] for s in samples], cfg.best_of_n)}
    write_json_atomic(ctx.out_dir / BEST_OF_N, result)
    log.info("best-of-N: %d samples from %s for %d prompts", len(samples), alias, len(prompts))
    return result


def write_direct_judge(ctx: JobContext) -> dict[str, Any]:
    """Best-of-N picked by the noisy teacher's direct 1-10 score of each sample (`Verifier.pointwise_score`)."""
    ns = ctx.recipe.section("evaluate").ground_truth.best_of_n
    noise = ctx.recipe.section("synthesize").verifier.noise
    judge = Verifier.from_prompt_file(ctx.recipe.prompts_path, noise, seed=ctx.seed)
    if ctx.dry_run:
        return {}
    samples = read_best_of_n_samples(ctx.input(FOLDER))
    scores = [judge.pointwise_score(s["prompt_id"], s["text"]) for s in samples]
    write_jsonl(ctx.out_dir / "scores.jsonl", [{"prompt_id": s["prompt_id"], "index": s["index"], "score": r}
                                               for s, r in zip(samples, scores, strict=True)])
    curve = best_of_n_curve(samples, scores, ns)
    write_json_atomic(ctx.out_dir / "results.json", {"best_of_n": curve, "seed": ctx.seed,
                                                     "noise": noise.model_dump(mode="json")})
    return {f"best_of_{n}_compliance": c["compliance_mean"] for n, c in curve.items()}


def read_best_of_n_samples(folder: Path) -> list[dict[str, Any]]:
    """The ground_truth job's best-of-N samples (every RM scores these same samples)."""
    path = folder / BEST_OF_N_SAMPLES
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: the ground_truth job wrote no best-of-N samples; rerun it "
                            "(evaluate.ground_truth.best_of_n is set)")
    return read_json_lines(path)


def best_of_n_items(samples: list[dict[str, Any]]) -> list[RMItem]:
    """One RM item per sample, the sample as its only answer: the RM's reward of each sample."""
    return [RMItem(str(i), "best_of_n", s["prompt"], (s["text"],), ()) for i, s in enumerate(samples)]


def read_pairs(folder: Path) -> list[dict[str, Any]]:
    return read_json_lines(folder / "pairs.jsonl")


def pair_items(pairs: list[dict[str, Any]]) -> list[RMItem]:
    return [RMItem(str(i), p["kind"], p["prompt"], (p["chosen"],), (p["rejected"],)) for i, p in enumerate(pairs)]


def pair_results(checker: Verifier, pairs: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The RM's pair accuracy per pair kind, from its rewards `records` (one per pair, in order)."""
    out: dict[str, Any] = {}
    for kind in PAIR_KINDS:
        scored = [ScoredPair(p["prompt_id"], p["chosen"], p["rejected"], r["chosen"][0], r["rejected"][0])
                  for p, r in zip(pairs, records) if p["kind"] == kind]
        if scored:
            out[kind] = pair_accuracy(checker, scored)
    return out


def compliance_results(ctx: JobContext, checker: Verifier, prompts: list[PromptRecord],
                       answers: dict[str, Answer]) -> dict[str, Any]:
    """Compliance of a policy's answers (`gt:<prompt id>:0` requests); writes compliance/answers.jsonl."""
    rows, unanswered = [], 0
    for p in prompts:
        answer = answers[f"gt:{p.id}:0"]
        if answer.text is None:
            unanswered += 1
            continue
        rows.append({"prompt_id": p.id, "text": answer.text, "finish_reason": answer.finish_reason,
                     "checks": checker.checks(p.id, answer.text)})
    write_jsonl(ctx.out_dir / "compliance" / "answers.jsonl", rows)
    summary = compliance_summary(checker, [(r["prompt_id"], r["text"]) for r in rows])
    return {**summary, "n_prompts": len(prompts), "n_unanswered": unanswered,
            "n_truncated_answers": sum(r["finish_reason"] == "length" for r in rows),
            "answers_file": "compliance/answers.jsonl"}
