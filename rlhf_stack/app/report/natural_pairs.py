"""The sweep report's natural-pair section: is the RM difference on held-out candidate pairs resolved, and if not,
how large an effect the sweep rules out; and what the pairs are made of (docs/sandbox.md, "Natural pairs").

Read from each cell's `s4_evaluate/ground_truth/` (answers.jsonl with every answer's checks, pairs.jsonl) and every
RM's `s4_evaluate/rm/<name>/scores-ground_truth.jsonl` (its rewards of the pairs, in pairs.jsonl's order).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from pathlib import Path
from typing import Any

from rlhf_stack.app.recipe import Cell, RecipeBase
from rlhf_stack.app.sweep_config import CELLS
from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.intervals import prompts_for_half_width, seeds_and_prompts_interval, sizing
from rlhf_stack.core.markdown import DASH, fmt, table
from rlhf_stack.core.records import read_json_lines

GROUND_TRUTH = "s4_evaluate/ground_truth"
NATURAL = "candidates"
SIZING_HALF_POINTS = 1.5  # the prompt part the sizing table aims at, leaving room for a seed part within 2 points


@dataclass(frozen=True)
class CellPairs:
    """One cell's ground-truth pairs and, per RM, whether it orders each pair as the verifier does."""

    seed: int
    pairs: list[dict[str, Any]]  # pairs.jsonl rows
    checks: dict[tuple[str, str], dict[str, bool]]  # (prompt id, answer text) -> the answer's checks
    right: dict[str, list[bool]]  # RM name -> per pair: chosen got the higher reward (a tie counts as wrong)


def read_cell(folder: Path, seed: int, names: list[str]) -> CellPairs | None:
    """The cell's pairs and RM verdicts; None until its ground-truth folder is finished."""
    gt = folder / GROUND_TRUTH
    if read_manifest(gt) is None:
        return None
    pairs = read_json_lines(gt / "pairs.jsonl")
    checks = {(a["prompt_id"], a["text"]): a["checks"] for a in read_json_lines(gt / "answers.jsonl")}
    right = {}
    for name in names:
        rm = folder / "s4_evaluate" / "rm" / name
        if read_manifest(rm) is None or not (rm / "scores-ground_truth.jsonl").exists():
            continue
        records = read_json_lines(rm / "scores-ground_truth.jsonl")
        if len(records) == len(pairs):
            right[name] = [r["chosen"][0] > r["rejected"][0] for r in records]
    return CellPairs(seed, pairs, checks, right)


def gap_distribution(checks: dict[tuple[str, str], dict[str, bool]]) -> dict[str, Any]:
    """Every pair of distinct answers to one prompt, by the gap in the share of constraints they meet.

    Returns:
        {"pairs": n, "by_gap": {"0" (a tie: no label) | "1/3" | ...: share of pairs}}.
    """
    by_prompt: dict[str, list[dict[str, bool]]] = {}
    for (prompt_id, _), c in checks.items():
        by_prompt.setdefault(prompt_id, []).append(c)
    gaps: Counter[Fraction] = Counter()
    for answers in by_prompt.values():
        for a, b in combinations(answers, 2):
            gaps[abs(_met(a) - _met(b))] += 1
    n = sum(gaps.values())
    return {"pairs": n, "by_gap": {str(g): gaps[g] / n for g in sorted(gaps)}}


def separating_kinds(pair: dict[str, Any], checks: dict[tuple[str, str], dict[str, bool]]) -> list[str]:
    """The constraint kinds the chosen answer of a pair meets and the rejected one does not."""
    chosen = checks.get((pair["prompt_id"], pair["chosen"]))
    rejected = checks.get((pair["prompt_id"], pair["rejected"]))
    if chosen is None or rejected is None:
        return []
    return sorted(k for k, ok in chosen.items() if ok and not rejected.get(k, False))


def breakdown(cells: list[CellPairs], name: str) -> dict[str, dict[str, tuple[int, int]]]:
    """An RM's (right, judged) over every cell, by the pairs' gap in constraints met, by the kind separating them,
    and for edit vs natural pairs of the prompts that have natural pairs."""
    out: dict[str, dict[str, list[int]]] = {"gap": {}, "kind": {}, "same prompts": {}}

    def add(group: str, key: str, ok: bool) -> None:
        tally = out[group].setdefault(key, [0, 0])
        tally[0] += ok
        tally[1] += 1

    for cell in cells:
        if name not in cell.right:
            continue
        natural_prompts = {p["prompt_id"] for p in cell.pairs if p["kind"] == NATURAL}
        for pair, ok in zip(cell.pairs, cell.right[name]):
            if pair["prompt_id"] in natural_prompts:
                add("same prompts", pair["kind"], ok)
            if pair["kind"] != NATURAL:
                continue
            add("gap", _gap_label(pair, cell.checks), ok)
            for kind in separating_kinds(pair, cell.checks):
                add("kind", kind, ok)
    return {group: {k: (v[0], v[1]) for k, v in sorted(tallies.items())} for group, tallies in out.items()}


def _gap_label(pair: dict[str, Any], checks: dict[tuple[str, str], dict[str, bool]]) -> str:
    chosen = checks.get((pair["prompt_id"], pair["chosen"]))
    rejected = checks.get((pair["prompt_id"], pair["rejected"]))
    if chosen is None or rejected is None:
        return "?"
    return str(_met(chosen) - _met(rejected))


def _met(checks: dict[str, bool]) -> Fraction:
    """The exact share of its constraints an answer meets."""
    return Fraction(sum(checks.values()), len(checks))


def difference(cells: list[CellPairs], name: str, baseline: str) -> dict[str, Any] | None:
    """`name` - `baseline` natural-pair accuracy over the cells (the seeds of one grid point), with the interval of
    `seeds_and_prompts_interval` and, under "sizing", the parts of `sizing`; None unless every cell holds the same
    pairs and both RMs' verdicts."""
    usable = [c for c in cells if name in c.right and baseline in c.right]
    if not usable:
        return None
    natural = [i for i, p in enumerate(usable[0].pairs) if p["kind"] == NATURAL]
    keys = [(usable[0].pairs[i]["prompt_id"], usable[0].pairs[i]["chosen"], usable[0].pairs[i]["rejected"])
            for i in natural]
    for c in usable[1:]:
        if [(c.pairs[i]["prompt_id"], c.pairs[i]["chosen"], c.pairs[i]["rejected"]) for i in natural] != keys \
                or len(c.pairs) != len(usable[0].pairs):
            return None
    diffs = {c.seed: [float(c.right[name][i]) - float(c.right[baseline][i]) for i in natural] for c in usable}
    prompts = [k[0] for k in keys]
    return {**seeds_and_prompts_interval(diffs, prompts), "sizing": sizing(diffs, prompts)}


def verdict(d: dict[str, Any]) -> str:
    """A resolved difference, or the largest effect the interval leaves possible."""
    if d["low"] is None:
        return "needs two seeds and two prompts"
    if d["low"] > 0 or d["high"] < 0:
        return f"resolved: {100 * d['mean']:+.1f}"
    return f"null: no effect larger than {100 * max(-d['low'], d['high']):.1f}"


def natural_pairs_section(run_dir: Path, recipe: RecipeBase, points: dict[str, list[Cell]]) -> list[str]:
    """The section's Markdown; `points` maps each grid point's label to its cells."""
    if recipe.evaluate is None or recipe.evaluate.ground_truth is None or recipe.distill is None:
        return []
    names = list(recipe.distill.variants)
    baseline = recipe.sweep.baseline
    by_point = {label: [c for c in (read_cell(run_dir / CELLS / cell.name, cell.seed, names) for cell in members)
                        if c is not None] for label, members in points.items()}
    cells = [c for members in by_point.values() for c in members]
    if not cells:
        return []
    lines = ["## Natural pairs: resolved, or bounded", "",
             "Accuracy difference on held-out candidate pairs (percentage points). The interval covers both ways "
             "the number was sampled: the seeds (training and teacher noise) and the prompts the pairs come from "
             "(the pair set is the same for every seed, so an interval over seeds alone treats it as the whole "
             "population). Half-widths of each part are shown; docs/sandbox.md sizes an experiment from them.", ""]
    rows, sizes = [], []
    for label, members in by_point.items():
        for name in names:
            if name == baseline or (d := difference(members, name, baseline)) is None or d["mean"] is None:
                continue
            sizes.append([label, f"{name} - {baseline}"] + _sizing_cells(d["sizing"]))
            bounds = f"[{fmt(100 * d['low'], 1)}, {fmt(100 * d['high'], 1)}]" if d["low"] is not None else DASH
            rows.append([label, f"{name} - {baseline}", f"{100 * d['mean']:+.1f}", bounds,
                         _half(d["seed_half"]), _half(d["prompt_half"]),
                         f"{d['items']} / {d['prompts']} / {d['seeds']}", verdict(d)])
    if rows:
        lines += table(["grid point", "difference", "mean", "95% interval", "± seeds", "± prompts",
                        "pairs / prompts / seeds", "verdict"], rows)
        lines += [f"Sizing the next run (docs/sandbox.md, \"The power calculation\"): the variance (points²) of a "
                  "prompt's mean difference between prompts and of one pair's about its prompt's mean; from them the "
                  f"prompts with a natural pair that give a prompt part of ±{SIZING_HALF_POINTS:g} points, at this "
                  "many pairs per prompt and at any number (the floor no number of answers per prompt gets under; "
                  "extra pairs from more answers to a prompt share answers, so they narrow less than independent "
                  "pairs would). Last, the standard deviation of the per-seed "
                  "differences beside the one pair-level noise alone would give: where they are alike, more pairs "
                  "narrow the seed part as surely as more seeds.", ""]
        lines += table(["grid point", "difference", "var between prompts", "var within prompts", "pairs per prompt",
                        f"prompts for ±{SIZING_HALF_POINTS:g}", "at any pairs per prompt", "sd over seeds",
                        "sd from pair noise"], sizes)
    gaps = gap_distribution(cells[0].checks)
    lines += ["### What the pairs are made of", "",
              f"Every two distinct held-out answers to one prompt ({gaps['pairs']} pairs), by the gap in the share of "
              "constraints they meet; a gap of 0 is a tie, which no RM can be right or wrong on and which is not "
              "in the pair set. The held-out answers are the same in every cell.", ""]
    lines += table(["gap in constraints met"] + list(gaps["by_gap"]),
                   [["share of pairs %"] + [fmt(100 * v, 1) for v in gaps["by_gap"].values()]])
    per_rm = {name: breakdown(cells, name) for name in names}
    for group, title in (("gap", "by the gap between chosen and rejected"),
                         ("kind", "by the constraint the chosen answer meets and the rejected one does not "
                                  "(a pair counts under each such kind)"),
                         ("same prompts", "edit vs natural pairs of the same prompts")):
        keys = sorted({k for tallies in per_rm.values() for k in tallies[group]})
        if not keys:
            continue
        rows = [[name] + [_accuracy(per_rm[name][group].get(k)) for k in keys] for name in names]
        lines += [f"Accuracy % (pairs judged), all cells pooled, {title}:", ""] + table(["reward model"] + keys, rows)
    return lines


def _sizing_cells(s: dict[str, Any]) -> list[str]:
    if s["between"] is None:
        needed = [DASH, DASH]
    else:
        needed = [str(prompts_for_half_width(s["between"], s["within"], m, SIZING_HALF_POINTS / 100))
                  for m in (s["items_per_prompt"], math.inf)]
    return ([DASH if s[k] is None else fmt(1e4 * s[k], 0) for k in ("between", "within")]
            + [fmt(s["items_per_prompt"], 1)] + needed + [_half(s["seed_sd"]), _half(s["pair_noise_sd"])])


def _half(value: float | None) -> str:
    return DASH if value is None else fmt(100 * value, 1)


def _accuracy(tally: tuple[int, int] | None) -> str:
    return DASH if not tally else f"{fmt(100 * tally[0] / tally[1], 1)} ({tally[1]})"
