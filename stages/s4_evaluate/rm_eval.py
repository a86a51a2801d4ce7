"""One reward model on the RM benchmarks the recipe names: per-item rewards saved, then scored."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from rlhf_stack.core.precision import of_model
from rlhf_stack.core.artifacts import write_json_atomic
from rlhf_stack.core.pipeline import JobContext
from rlhf_stack.core.records import write_jsonl
from stages.s4_evaluate.config import RMBenchmarksConfig
from stages.s4_evaluate.rm_metrics import METRICS, official_breakdown
from stages.s4_evaluate import ground_truth as gt
from stages.s4_evaluate.rm_scorer import load_reward_model, score_items
from stages.s4_evaluate.score_rm import load_benchmark
from stages.sandbox.best_of_n import best_of_n_curve

log = logging.getLogger("rlhf_stack")
RESULTS = "results.json"
GROUND_TRUTH = "ground_truth"
BEST_OF_N = "best_of_n"


def scores_file(benchmark: str) -> str:
    return f"scores-{benchmark}.jsonl"


def evaluate_reward_model(ctx: JobContext, name: str, model_dir: Path, origin: str) -> dict[str, Any]:
    """Scores every benchmark item (and the ground-truth pairs) with the RM; writes scores-*.jsonl and results.json.

    The data is loaded and checked before the model, so a missing dataset fails fast. A benchmark whose scores
    file a killed run already wrote is not scored again.
    """
    cfg = ctx.recipe.section("evaluate").rm_benchmarks or RMBenchmarksConfig()
    data = {}
    for bench, src in cfg.sources().items():
        key = f"evaluate.rm_benchmarks.{bench}"
        data[bench] = load_benchmark(src, bench, key, ctx.recipe.base_dir)
    gt_cfg = ctx.recipe.section("evaluate").ground_truth
    pairs = gt.read_pairs(ctx.input(gt.FOLDER)) if gt_cfg else None
    if ctx.dry_run:
        return {}
    samples = gt.read_best_of_n_samples(ctx.input(gt.FOLDER)) if gt_cfg and gt_cfg.best_of_n else None
    rm = None

    def scores(bench: str, items: list, description: str) -> tuple[list[dict], int]:
        nonlocal rm
        path, info_path = ctx.out_dir / scores_file(bench), ctx.work_dir / f"{bench}.json"
        if path.exists() and info_path.exists():
            log.info("%s: %s scores kept from the interrupted run", name, bench)
            records = [json.loads(line) for line in path.read_text().splitlines()]
            return records, json.loads(info_path.read_text())["truncated_sequences"]
        rm = rm or load_reward_model(model_dir, cfg.dtype, cfg.max_length_tokens)
        records, truncated = score_items(rm, items, cfg.tokens_per_batch, description)
        write_jsonl(path, records)
        write_json_atomic(info_path, {"truncated_sequences": truncated})
        return records, truncated

    results: dict[str, Any] = {}
    for bench, (loaded, items) in data.items():
        records, truncated = scores(bench, items, f"{name}: {bench} rewards")
        metrics = METRICS[bench](records)
        results[bench] = {**metrics, "breakdown": official_breakdown(bench, metrics), "data": loaded.description,
                          "stand_in": loaded.stand_in,
                          "total_items": loaded.total_rows, "truncated_sequences": truncated,
                          "scores_file": scores_file(bench)}
    out: dict[str, Any] = {"kind": "reward_model", "name": name, "origin": origin, "benchmarks": results}
    summary = {bench: r["score"] for bench, r in results.items()}
    if pairs is not None:
        records, truncated = scores(GROUND_TRUTH, gt.pair_items(pairs), f"{name}: ground-truth pair rewards")
        out[GROUND_TRUTH] = {**gt.pair_results(gt.verifier(ctx), pairs, records), "truncated_sequences": truncated,
                             "scores_file": scores_file(GROUND_TRUTH)}
        summary.update({f"ground_truth_{kind}_accuracy": r["accuracy"] for kind, r in out[GROUND_TRUTH].items()
                        if kind in gt.PAIR_KINDS})
    if samples is not None:
        records, truncated = scores(BEST_OF_N, gt.best_of_n_items(samples), f"{name}: best-of-N sample rewards")
        curve = best_of_n_curve(samples, [r["chosen"][0] for r in records], gt_cfg.best_of_n)
        out[BEST_OF_N] = curve
        out[f"{BEST_OF_N}_scoring"] = {"samples": len(samples), "truncated_sequences": truncated,
                                       "scores_file": scores_file(BEST_OF_N)}
        summary.update({f"best_of_{n}_compliance": c["compliance_mean"] for n, c in curve.items()})
    if rm is not None:  # None when every score was kept from an interrupted run
        summary["precision"] = {"reward model scoring": of_model(rm.model)}
        summary["threads"] = torch.get_num_threads()
    write_json_atomic(ctx.out_dir / RESULTS, out)
    return summary
