"""Benchmark rows in their official schemas -> one item shape the RM scorer understands.

An item is a prompt with one or more chosen and one or more rejected answers:
RewardBench (1 + 1), RewardBench 2 (num_correct + the rest, best-of-4), RM-Bench (3 styles + 3 styles).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlhf_stack.core.errors import Problem, RecipeError
from stages.s4_evaluate.data_sources import FILE_KEY, ROW_KEY

# RM-Bench's domains as upstream's total_dataset.json names them; its per-domain files are named after them
# (data/chat_filtered.json, data/safety-refuse_filtered.json, ...) and carry no domain field.
RM_BENCH_DOMAINS = ("chat", "code", "math", "safety-refuse", "safety-response")


@dataclass(frozen=True)
class RMItem:
    id: str
    group: str  # subset (RewardBench, RewardBench 2) or domain (RM-Bench)
    prompt: str
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]


def _rewardbench(row: dict[str, Any]) -> RMItem:
    return RMItem(str(row["id"]), row["subset"], _prompt(row["prompt"]), (row["chosen"],), (row["rejected"],))


def _rewardbench2(row: dict[str, Any]) -> RMItem:
    chosen, rejected = tuple(row["chosen"]), tuple(row["rejected"])
    if not chosen or not rejected:
        raise ValueError("needs at least one chosen and one rejected answer")
    return RMItem(str(row["id"]), row["subset"], _prompt(row["prompt"]), chosen, rejected)


def _rm_bench(row: dict[str, Any]) -> RMItem:
    chosen, rejected = tuple(row["chosen"]), tuple(row["rejected"])
    if len(chosen) != 3 or len(rejected) != 3:
        raise ValueError(f"needs 3 chosen and 3 rejected styles, got {len(chosen)} and {len(rejected)}")
    domain = row.get("domain") or rm_bench_domain_of_file(row.get(FILE_KEY))
    return RMItem(str(row["id"]), str(domain), _prompt(row["prompt"]), chosen, rejected)


def rm_bench_domain_of_file(name: str | None) -> str:
    """The domain a per-domain RM-Bench file is named after: `safety-refuse_filtered.json` -> `safety-refuse`.

    (Those files' `subset` field is the source set, e.g. alpacaeval or xstest-should-refuse, not the domain.)

    Raises:
        ValueError: the row has no `domain` and its file name starts with no RM-Bench domain.
    """
    stem = (name or "").split(".")[0]
    for domain in sorted(RM_BENCH_DOMAINS, key=len, reverse=True):
        if stem == domain or stem.startswith((f"{domain}_", f"{domain}-")):
            return domain
    raise ValueError(f"no column 'domain', and the file {name!r} is not named after a domain "
                     f"({', '.join(RM_BENCH_DOMAINS)})")


def _prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise ValueError("prompt must be a string (single-turn sets only)")
    return prompt


CONVERTERS: dict[str, Callable[[dict[str, Any]], RMItem]] = {
    "rewardbench": _rewardbench,
    "rewardbench2": _rewardbench2,
    "rm_bench": _rm_bench,
}
SCHEMAS = {
    "rewardbench": "prompt, chosen, rejected, subset, id",
    "rewardbench2": "id, prompt, chosen (list), rejected (list), subset",
    "rm_bench": "id, prompt, chosen (3 styles), rejected (3 styles), and domain (or a per-domain file name "
                "such as chat_filtered.json)",
}


def to_items(rows: list[dict[str, Any]], benchmark: str, key: str) -> list[RMItem]:
    """Converts every row, or raises a RecipeError naming the first bad rows and the schema expected."""
    items, bad = [], []
    for i, row in enumerate(rows):
        try:
            items.append(CONVERTERS[benchmark](row))
        except (KeyError, TypeError, ValueError) as e:
            where = f"{row[FILE_KEY]} row {row.get(ROW_KEY, i)}" if FILE_KEY in row else f"row {i}"
            what = f"no column {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            bad.append(f"{where}: {what}")
    if bad:
        raise RecipeError(key, [Problem(f"{key}.source", f"{len(bad)} row(s) not in the {benchmark} schema "
                                        f"({'; '.join(bad[:3])})", f"rows need {SCHEMAS[benchmark]}")])
    keys = [(it.group, it.id) for it in items]
    if len(set(keys)) != len(keys):
        raise RecipeError(key, [Problem(f"{key}.source", f"duplicate item ids within a subset in {benchmark} data",
                                        "each row needs a unique id")])
    return items
