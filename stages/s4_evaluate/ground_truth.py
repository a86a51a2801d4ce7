"""Ground-truth metrics on sandbox prompts (docs/sandbox.md): the verifier knows every answer's true score.

    s4_evaluate/ground_truth/   answers.jsonl   held-out answers to the evaluate prompts, with their checks
                                pairs.jsonl     pairs of them with different true scores (kind "candidates"), and
                                                each answer against the verifier's repair of it (kind "edit")
    s4_evaluate/rm/<name>/      results.json["ground_truth"]: the RM's pair accuracy per pair kind,
                                scores-ground_truth.jsonl: its rewards of every pair
    s4_evaluate/policy/<name>/  results.json["compliance"]: the share of constraints its answers meet,
                                compliance/answers.jsonl: each answer with its checks

The verifier here is exact (no noise model): these are the numbers the noisy teacher of synthesis is measured by.
The held-out answers come from their own seed (`ground_truth.seed`), so runs with different seeds share them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ray_cluster.generation.types import GenerationRequest, Sampling
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.core.records import PromptRecord, write_jsonl
from stages.sandbox import ScoredPair, Verifier, compliance_summary, pair_accuracy, true_pairs
from stages.s4_evaluate.request_log import Answer, RequestLog
from stages.s4_evaluate.rm_items import RMItem
from ray_cluster.generation import open_backend

log = logging.getLogger("rlhf_stack")
FOLDER = "s4_evaluate/ground_truth"
PAIR_KINDS = ("candidates", "edit")


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
    return {"prompts": len(prompts), "answers": len(answers), "pairs": counts,
            "prompts_with_pairs": len({p["prompt_id"] for p in pairs if p["kind"] == "candidates"}),
            "mean_compliance": summary["mean_compliance"]}


def read_pairs(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines() if line.strip()]


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
