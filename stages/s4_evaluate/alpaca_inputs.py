"""What an AlpacaEval run needs before any model starts: instructions, the reference outputs, the judge prompt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.pipeline import JobContext
from stages.s4_evaluate.alpacaeval import TEMPLATE_MEMBER, TEMPLATE_NAME, TEMPLATE_PACKAGE
from stages.s4_evaluate.data_sources import ROW_KEY, load_source, read_rows
from stages.s4_evaluate.wheels import read_member

KEY = "evaluate.alpaca_eval"
REFERENCE_FILE = "reference_outputs.json"


@dataclass(frozen=True)
class AlpacaInputs:
    instructions: list[dict[str, Any]]  # {"instruction", "dataset", "index" (row in the file read, or None)}
    references: dict[str, dict[str, Any]]  # instruction -> {"output", "generator"}
    reference_name: str  # generator_1 in the annotations
    reference_source: str
    data_description: str
    stand_in: bool
    total_instructions: int
    template: str
    template_name: str


def load_instructions(ctx: JobContext) -> tuple[list[dict[str, Any]], Any]:
    """The instruction rows (deduplicated by instruction text, first kept) and how they were loaded."""
    cfg = ctx.recipe.section("evaluate").alpaca_eval
    loaded = load_source(cfg.instructions, "alpaca_eval", f"{KEY}.instructions", ctx.recipe.base_dir)
    bad = [i for i, row in enumerate(loaded.rows) if not isinstance(row.get("instruction"), str)]
    if bad:
        raise RecipeError(KEY, [Problem(f"{KEY}.instructions.source", f"rows {bad[:5]} have no 'instruction' text",
                                        "records need {'instruction', 'output'?, 'generator'?, 'dataset'?}")])
    first: dict[str, dict[str, Any]] = {}
    for row in loaded.rows:
        first.setdefault(row["instruction"], row)
    return list(first.values()), loaded


def load_alpaca_inputs(ctx: JobContext) -> AlpacaInputs:
    """Everything the policy job needs for AlpacaEval, or a RecipeError before any model starts."""
    cfg = ctx.recipe.section("evaluate").alpaca_eval
    rows, loaded = load_instructions(ctx)
    if cfg.reference_model:
        folder = ctx.input("s4_evaluate/alpaca_reference")
        ref_rows = json.loads((folder / REFERENCE_FILE).read_text())
        source = f"answers of model {cfg.reference_model} (s4_evaluate/alpaca_reference)"
    elif cfg.reference_outputs:
        path = (ctx.recipe.base_dir / cfg.reference_outputs).expanduser()
        ref_rows, source = read_rows(path), f"file {path}"
    else:
        ref_rows, source = rows, "the outputs stored with the instructions"
    references = {r["instruction"]: {"output": r["output"], "generator": str(r.get("generator") or "reference")}
                  for r in ref_rows if isinstance(r.get("output"), str)}
    if not cfg.reference_model:  # the reference job drops (and counts) instructions it could not answer
        missing = [r["instruction"] for r in rows if r["instruction"] not in references]
        if missing:
            raise RecipeError(KEY, [Problem(f"{KEY}.reference_outputs", f"{len(missing)} instruction(s) have no "
                                            f"reference output in {source} (first: {missing[0][:60]!r})",
                                            "give reference_outputs for every instruction, or a reference_model")])
    names = sorted({r["generator"] for r in references.values()})
    if len(names) > 1:
        raise RecipeError(KEY, [Problem(f"{KEY}.reference_outputs", f"the reference outputs come from several "
                                        f"generators {names[:5]}", "use one reference model's outputs")])
    template, template_name = judge_template(ctx)
    return AlpacaInputs(
        instructions=[{"instruction": r["instruction"], "dataset": r.get("dataset"), "index": r.get(ROW_KEY)}
                      for r in rows if r["instruction"] in references],
        references=references, reference_name=names[0] if names else "reference", reference_source=source,
        data_description=loaded.description, stand_in=loaded.stand_in, total_instructions=loaded.total_rows,
        template=template, template_name=template_name,
    )


def judge_template(ctx: JobContext) -> tuple[str, str]:
    """The judge prompt (ChatML text with {instruction}, {output_1}, {output_2}) and its name for the report."""
    path = ctx.recipe.section("evaluate").alpaca_eval.judge_template
    if path:
        full = (ctx.recipe.base_dir / path).expanduser()
        return full.read_text(), f"custom template {full}"
    return read_member(TEMPLATE_PACKAGE, TEMPLATE_MEMBER).decode(), f"{TEMPLATE_NAME}, from {TEMPLATE_PACKAGE}"
