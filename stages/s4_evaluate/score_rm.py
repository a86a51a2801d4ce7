"""`rlhf-stack score-rm`: any Hugging Face sequence-classification reward model on one RM benchmark.

The data is read and scored by the code the evaluate stage uses (data_sources, rm_items, rm_scorer, rm_metrics):
a hub dataset id or a local copy of the official files, the model's rendering chosen by its checkpoint
(rm_scorer), and the benchmark's official breakdown (rm_metrics.official_breakdown), printed and written as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_stack.core.artifacts import write_json_atomic
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.models import ModelSpec, resolve_model
from rlhf_stack.core.records import write_jsonl
from stages.s4_evaluate.data_sources import BENCHMARKS, DataSource, LoadedData, load_source, source_problems
from stages.s4_evaluate.rm_items import CONVERTERS, RMItem, to_items
from stages.s4_evaluate.rm_metrics import METRICS, official_breakdown
from stages.s4_evaluate.rm_scorer import load_reward_model, score_items

RM_BENCHMARKS = tuple(CONVERTERS)
KEY = "--data"


def load_benchmark(src: DataSource, benchmark: str, key: str, base_dir: Path) -> tuple[LoadedData, list[RMItem]]:
    """A benchmark's rows and items, checked before any model loads (RecipeError naming the key otherwise)."""
    problems = source_problems(src, key, base_dir)
    if problems:
        raise RecipeError(key, problems)
    loaded = load_source(src, benchmark, key, base_dir)
    return loaded, to_items(loaded.rows, benchmark, key)


def score_rm(model: str, benchmark: str, data: str, *, out: Path | None = None, split: str | None = None,
             file: str | None = None, max_items: int | None = None, max_length_tokens: int | None = None,
             tokens_per_batch: int = 16384, dtype: str = "auto", base_dir: Path = Path(".")) -> dict[str, Any]:
    """Scores the RM on the benchmark; returns the official breakdown with a `meta` entry (and writes it to `out`,
    with the per-item rewards beside it in `<out stem>.scores.jsonl`)."""
    if benchmark not in RM_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(RM_BENCHMARKS)}")
    loaded, items = load_benchmark(DataSource(source=data, split=split, file=file, max_items=max_items), benchmark,
                                   KEY, base_dir)
    folder = resolve_model(ModelSpec(source=model), base_dir)
    rm = load_reward_model(folder, dtype, max_length_tokens)
    records, truncated = score_items(rm, items, tokens_per_batch, f"{benchmark} rewards")
    result = {**official_breakdown(benchmark, METRICS[benchmark](records)), "meta": {
        "model": model, "benchmark": benchmark, "data": loaded.description, "hub_dataset": BENCHMARKS[benchmark][0],
        "items": len(items), "rendering": rm.rendering, "max_length_tokens": rm.max_length_tokens,
        "truncated_sequences": truncated, "stand_in": loaded.stand_in}}
    if out is not None:
        write_json_atomic(out, result)
        write_jsonl(scores_path(out), records)
    return result


def scores_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.scores.jsonl")


def format_breakdown(benchmark: str, result: dict[str, Any]) -> str:
    """The breakdown as a plain-text table (percentages)."""
    rows = {k: v for k, v in result.items() if k != "meta"}
    if benchmark == "rm_bench":
        lines = [f"{'domain':<10} {'n':>5} {'hard':>7} {'normal':>7} {'easy':>7} {'avg':>7}"]
        lines += [f"{name:<10} {r['n']:>5} {r['hard']:>7.2f} {r['normal']:>7.2f} {r['easy']:>7.2f} {r['avg']:>7.2f}"
                  for name, r in rows.items()]
    else:
        subsets = rows.pop("subsets", {})
        lines = [f"{name:<22} {_pct(v):>7}" for name, v in rows.items()]
        lines += [f"  {name:<20} {_pct(s['accuracy']):>7}  (n={s['n']})" for name, s in subsets.items()]
    meta = result.get("meta", {})
    if meta:
        lines.append(f"data: {meta['data']}; rendering: {meta['rendering']}; truncated sequences: "
                     f"{meta['truncated_sequences']}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
