"""The report's first table: each variant on the RM benchmarks and as a PPO reward; then what is missing."""

from __future__ import annotations

from rlhf_stack.app.report.ground_truth import GROUND_TRUTH_COLUMNS
from rlhf_stack.app.report.ground_truth import value as gt_value
from rlhf_stack.app.report.run_view import STAND_IN, RunView, cell, row_names
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table


def comparison(view: RunView) -> list[str]:
    """The first table: variant x (RewardBench, RM-Bench hard, AlpacaEval WR and LC WR, MT-Bench)."""
    rows, any_stand_in = [], False
    columns = [("rm", ("benchmarks", "rewardbench", "score"), 1), ("rm", ("benchmarks", "rm_bench", "hard"), 1),
               ("policy", ("alpaca_eval", "win_rate"), 1), ("policy", ("alpaca_eval", "length_controlled_winrate"), 1),
               ("policy", ("mt_bench", "score"), 2)]
    header = ["variant", "RewardBench", "RM-Bench hard", "AlpacaEval 2 WR", "AlpacaEval 2 LC WR", "MT-Bench"]
    sandbox = [(kind, path, title) for kind, path, title in GROUND_TRUTH_COLUMNS
               if any(gt_value((view.rm_eval if kind == "rm" else view.policy_eval).get(n), path) is not None
                      for n in row_names(view))]
    for name in row_names(view):
        label = "initial policy (before PPO)" if name == "initial" else name
        if name in view.extra:
            label += " (extra model)"
        row = [label]
        for kind, path, digits in columns:
            results = (view.rm_eval if kind == "rm" else view.policy_eval).get(name)
            text, stand_in = cell(results, path, digits)
            any_stand_in |= stand_in
            row.append(text)
        for kind, path, _ in sandbox:
            value = gt_value((view.rm_eval if kind == "rm" else view.policy_eval).get(name), path)
            row.append(_fmt(None if value is None else 100 * value))
        rows.append(row)
    if not rows:
        return ["No reward model or policy has been evaluated yet (no finished `s4_evaluate/` folder).", ""]
    header += [title for _, _, title in sandbox]
    if sandbox:  # a sandbox run: leave out the benchmark columns it did not evaluate
        keep = [0] + [c for c in range(1, len(header)) if c > len(columns) or any(r[c] != DASH for r in rows)]
        header, rows = [header[c] for c in keep], [[r[c] for c in keep] for r in rows]
    _bold_best(rows)
    benchmarks = any(h in header for h in ("RewardBench", "RM-Bench hard", "AlpacaEval 2 WR", "MT-Bench"))
    notes = ["RewardBench: mean of its sections; RM-Bench hard: plainer chosen vs fancier rejected answers (%); "
             "AlpacaEval WR / LC WR: win rate and alpaca_eval's length-controlled win rate (%) against the reference "
             "named below; MT-Bench: 1-10."] if benchmarks else []
    missing = sorted({r["alpaca_eval"]["lc_not_computed"] for r in view.policy_eval.values()
                      if r.get("alpaca_eval", {}).get("lc_not_computed")})
    notes += [f"AlpacaEval LC WR not computed: {why}." for why in missing]
    if sandbox:
        notes.append("GT pair acc: the RM's accuracy on held-out pairs ordered by the sandbox verifier (%); "
                     "compliance: the share of the prompts' constraints the policy's answers meet (%).")
    if any_stand_in:
        notes.append(f"{STAND_IN} computed on smoke-test stand-ins written by this project, not on the benchmark: "
                     "these numbers say nothing about the models.")
    return _table(header, rows) + [f"- {n}" for n in notes] + [""]


def _bold_best(rows: list[list[str]]) -> None:
    """Marks the best value of each column in bold, when at least two rows differ."""
    for col in range(1, len(rows[0])):
        values = [(float(r[col].rstrip(STAND_IN)), i) for i, r in enumerate(rows) if r[col] != DASH]
        if len(values) >= 2 and len({v for v, _ in values}) > 1:
            best = max(v for v, _ in values)
            for v, i in values:
                if v == best:
                    rows[i][col] = f"**{rows[i][col]}**"


def warnings(view: RunView) -> list[str]:
    out = []
    for name, res in view.policy_eval.items():
        if res.get("ppo_backend") == "dry_run":
            out.append(f"> **Policy `{name}` comes from a dry run: it is the initial policy, not trained by PPO.**")
    return out + ([""] if out else [])


def missing(view: RunView) -> list[str]:
    words = {"missing": "not run", "partial": "started but unfinished (rerun to resume)",
             "stale": "finished, but its config or inputs changed since (numbers may be out of date)"}
    lines = [f"- `{folder}`: {words[state]}" for folder, state in view.status if state != "done"]
    lines += [f"- {note}" for note in view.notes]
    return (["## What is missing", ""] + lines + [""]) if lines else []
