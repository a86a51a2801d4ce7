"""The report's sandbox section (docs/sandbox.md): ground-truth RM pair accuracy and policy compliance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_stack.app.report.run_view import RunView
from rlhf_stack.core import plots
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table


GROUND_TRUTH_COLUMNS = (("rm", ("ground_truth", "candidates", "accuracy"), "GT pair acc"),
                        ("policy", ("compliance", "mean_compliance"), "compliance"))


def value(results: dict | None, path: tuple[str, ...]) -> float | None:
    node: Any = results
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None or (isinstance(node, float) and node != node) else float(node)


def ground_truth_section(view: RunView, names: list[str], out: Path) -> list[str]:
    """Sandbox runs: RM pair accuracy and policy compliance, exact from the verifier; `names` in report order."""
    rms = [n for n in names if "ground_truth" in view.rm_eval.get(n, {})]
    policies = [n for n in names if "compliance" in view.policy_eval.get(n, {})]
    if not rms and not policies:
        return []
    lines = ["## Ground truth (sandbox)", "",
             "Exact numbers from the verifier of the sandbox prompts (docs/sandbox.md), not from the noisy teacher.", ""]
    if rms:
        kinds = (("candidates", "held-out candidate pairs"), ("edit", "edit pairs"))
        rows = [[n] + [f"{_fmt(100 * r['accuracy'])} ({r['pairs']})" if (r := view.rm_eval[n]["ground_truth"]
                                                                           .get(kind)) else DASH
                       for kind, _ in kinds] for n in rms]
        lines += _table(["reward model"] + [f"{title}: accuracy % (pairs)" for _, title in kinds], rows)
        lines += ["Held-out candidate pairs: answers to the evaluation prompts whose true scores differ, the better "
                  "one as chosen; edit pairs: each answer against the verifier's repair of it. A reward tie counts "
                  "as wrong.", ""]
        series = {n: [value(view.rm_eval[n], ("ground_truth", kind, "accuracy")) for kind, _ in kinds] for n in rms}
        series = {n: [None if v is None else 100 * v for v in values] for n, values in series.items()}
        plots.grouped_bars(out / "ground_truth_rm.png", "Ground-truth RM accuracy", [t for _, t in kinds], series,
                           "accuracy (%)")
        lines += ["![ground-truth RM accuracy](ground_truth_rm.png)", ""]
    if policies:
        kinds = sorted({k for n in policies for k in view.policy_eval[n]["compliance"]["by_kind"]})
        rows = []
        for n in policies:
            c = view.policy_eval[n]["compliance"]
            rows.append([n, _fmt(100 * c["mean_compliance"]) if c["answers"] else DASH,
                         _fmt(100 * c["full_compliance_rate"]) if c["answers"] else DASH, str(c["answers"])]
                        + [_fmt(100 * c["by_kind"][k]) if k in c["by_kind"] else DASH for k in kinds])
        lines += _table(["policy", "compliance %", "all met %", "answers"] + kinds, rows)
    return lines
