"""`rlhf-stack report RUN_DIR`: one Markdown report with PNG plots, from whatever the run has finished.

The first table answers the question a user came with: did each RM variant beat the baselines, on RM benchmarks
and as a PPO reward. Everything is read from finished stage folders (those with a manifest) in the layout of
docs/artifacts.md; a missing or unfinished folder is named, never silently skipped.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_stack.app.report.benchmarks import alpaca_section, mt_section, rm_section
from rlhf_stack.app.report.best_of_n import best_of_n_section
from rlhf_stack.app.report.comparison import comparison, missing, warnings
from rlhf_stack.app.report.ground_truth import ground_truth_section
from rlhf_stack.app.report.overoptimization import overoptimization_section
from rlhf_stack.app.report.run_view import REPORT_DIR, read_run, row_names
from rlhf_stack.app.report.stages import cost_section, distill_section, ppo_section, synthesis_section
from rlhf_stack.app.report.sweep import write_sweep_report
from rlhf_stack.app.run_folder import RESOLVED, load_run
from rlhf_stack.core.artifacts import write_atomic

__all__ = ["REPORT_DIR", "write_report"]


def write_report(run_dir: Path) -> Path:
    """Writes RUN_DIR/report/report.md and its plots (for a sweep, the aggregate over its cells); returns its path."""
    run_dir = Path(run_dir)
    sweep = _sweep_recipe(run_dir)
    if sweep is not None:
        return write_sweep_report(run_dir, sweep)
    view = read_run(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    lines = [f"# rlhf-stack report: {view.name}", "",
             "Each RM variant on the RM benchmarks, and the policy PPO trained with it on AlpacaEval 2 and MT-Bench "
             "(higher is better; the best of each column in bold).", ""]
    lines += warnings(view) + comparison(view) + missing(view) + ground_truth_section(view, row_names(view), out)
    lines += best_of_n_section(view, row_names(view), out)
    lines += rm_section(view, out) + alpaca_section(view, out) + mt_section(view, out)
    lines += ppo_section(view, out) + overoptimization_section(view, out) + distill_section(view, out)
    lines += synthesis_section(view, out)
    lines += cost_section(view)
    path = out / "report.md"
    write_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def _sweep_recipe(run_dir: Path):
    """The run's recipe when it is a sweep (rlhf_stack/app/sweep.py), else None."""
    if not (run_dir / RESOLVED).exists() or "sweep:" not in (run_dir / RESOLVED).read_text():
        return None
    recipe = load_run(run_dir)
    return recipe if recipe.sweep is not None else None
