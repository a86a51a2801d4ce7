"""`rlhf-stack report RUN_DIR`: one Markdown report with PNG plots, from whatever the run has finished.

The first table answers the question a user came with: did each RM variant beat the baselines, on RM benchmarks
and as a PPO reward. Everything is read from finished stage folders (those with a manifest) in the layout of
docs/artifacts.md; a missing or unfinished folder is named, never silently skipped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_stack import plots
from rlhf_stack.artifacts import Manifest, read_manifest, write_atomic
from rlhf_stack.markdown import DASH
from rlhf_stack.markdown import fmt as _fmt
from rlhf_stack.markdown import table as _table
from rlhf_stack.report_ground_truth import GROUND_TRUTH_COLUMNS, ground_truth_section, value as gt_value

log = logging.getLogger("rlhf_stack")
REPORT_DIR = "report"
STAND_IN = "†"


@dataclass
class RunView:
    """The finished parts of a run."""

    run_dir: Path
    name: str
    rm_order: list[str] = field(default_factory=list)  # planned RM variants, in recipe order
    extra: set[str] = field(default_factory=set)  # RMs and policies the evaluate section adds
    status: list[tuple[str, str]] = field(default_factory=list)  # (folder, done|stale|partial|missing)
    notes: list[str] = field(default_factory=list)
    s1: dict[str, Any] | None = None
    distill: dict[str, tuple[Manifest, list[dict]]] = field(default_factory=dict)
    ppo: dict[str, tuple[Manifest, list[dict]]] = field(default_factory=dict)
    rm_eval: dict[str, dict] = field(default_factory=dict)
    policy_eval: dict[str, dict] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)


def write_report(run_dir: Path) -> Path:
    """Writes RUN_DIR/report/report.md and its plots (for a sweep, the aggregate over its cells); returns its path."""
    run_dir = Path(run_dir)
    sweep = _sweep_recipe(run_dir)
    if sweep is not None:
        from rlhf_stack.sweep_report import write_sweep_report

        return write_sweep_report(run_dir, sweep)
    view = read_run(run_dir)
    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    lines = [f"# rlhf-stack report: {view.name}", "",
             "Each RM variant on the RM benchmarks, and the policy PPO trained with it on AlpacaEval 2 and MT-Bench "
             "(higher is better; the best of each column in bold).", ""]
    lines += _warnings(view) + comparison(view) + _missing(view) + ground_truth_section(view, _names(view), out)
    lines += _rm_section(view, out) + _alpaca_section(view, out) + _mt_section(view, out)
    lines += _ppo_section(view, out) + _distill_section(view, out) + _synthesis_section(view, out)
    lines += _cost_section(view)
    path = out / "report.md"
    write_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def _sweep_recipe(run_dir: Path):
    """The run's recipe when it is a sweep (rlhf_stack/sweep.py), else None."""
    from rlhf_stack.runner import RESOLVED, load_run

    if not (run_dir / RESOLVED).exists() or "sweep:" not in (run_dir / RESOLVED).read_text():
        return None
    recipe = load_run(run_dir)
    return recipe if recipe.sweep is not None else None


def read_run(run_dir: Path) -> RunView:
    view = RunView(run_dir=run_dir, name=run_dir.name)
    try:
        from rlhf_stack.pipeline import job_states
        from rlhf_stack.runner import all_jobs, load_run

        recipe = load_run(run_dir)
        view.name = recipe.name
        view.rm_order = list(recipe.distill.variants) if recipe.distill else []
        if recipe.evaluate:
            view.extra = set(recipe.evaluate.reward_models) | set(recipe.evaluate.policies)
        view.status = [(s.job.folder, s.state) for s in job_states(all_jobs(recipe), run_dir)]
    except Exception as e:  # a copied or partial run folder: report what is on disk
        view.notes.append(f"The run's recipe could not be read ({type(e).__name__}: {e}); the report lists only "
                          "the finished folders it found.")
    for folder in sorted(p for p in run_dir.rglob("manifest.json") if REPORT_DIR not in p.parts):
        manifest = read_manifest(folder.parent)
        view.manifests[manifest.folder] = manifest
    for rel in view.manifests:
        parts, folder = rel.split("/"), run_dir / rel
        try:
            if rel == "s1_synthesize":
                view.s1 = json.loads((folder / "stats.json").read_text())
            elif parts[0] == "s2_distill":
                view.distill[parts[1]] = (view.manifests[rel], _jsonl(folder / "metrics.jsonl"))
            elif parts[0] == "s3_ppo":
                view.ppo[parts[1]] = (view.manifests[rel], _jsonl(folder / "metrics.jsonl"))
            elif parts[:2] == ["s4_evaluate", "rm"]:
                view.rm_eval[parts[2]] = json.loads((folder / "results.json").read_text())
            elif parts[:2] == ["s4_evaluate", "policy"]:
                view.policy_eval[parts[2]] = json.loads((folder / "results.json").read_text())
        except (OSError, ValueError) as e:
            view.notes.append(f"`{rel}` is finished but could not be read ({type(e).__name__}: {e}).")
    return view


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _names(view: RunView) -> list[str]:
    """Rows of the comparison: planned variants first, then the initial policy, then extra models."""
    found = set(view.rm_eval) | set(view.policy_eval) | set(view.distill) | set(view.ppo)
    ordered = [n for n in view.rm_order if n in found or view.status]
    rest = sorted(found - set(ordered) - {"initial"})
    return ordered + rest + (["initial"] if "initial" in found else [])


def _cell(results: dict | None, path: tuple[str, ...], digits: int = 1) -> tuple[str, bool]:
    """A value out of nested results, and whether it was computed on a stand-in set."""
    node: Any = results
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return DASH, False
        node = node[part]
    stand_in = bool(results and results.get("benchmarks", {}).get(path[1], {}).get("stand_in")) \
        if path[0] == "benchmarks" else bool(results and results.get(path[0], {}).get("stand_in"))
    text = _fmt(node, digits)
    return (text + STAND_IN if stand_in and text != DASH else text), stand_in


def comparison(view: RunView) -> list[str]:
    """The first table: variant x (RewardBench, RM-Bench hard, AlpacaEval LC WR, MT-Bench)."""
    rows, any_stand_in = [], False
    columns = [("rm", ("benchmarks", "rewardbench", "score"), 1), ("rm", ("benchmarks", "rm_bench", "hard"), 1),
               ("policy", ("alpaca_eval", "length_controlled_winrate"), 1), ("policy", ("mt_bench", "score"), 2)]
    header = ["variant", "RewardBench", "RM-Bench hard", "AlpacaEval 2 LC WR", "MT-Bench"]
    sandbox = [(kind, path, title) for kind, path, title in GROUND_TRUTH_COLUMNS
               if any(gt_value((view.rm_eval if kind == "rm" else view.policy_eval).get(n), path) is not None
                      for n in _names(view))]
    for name in _names(view):
        label = "initial policy (before PPO)" if name == "initial" else name
        if name in view.extra:
            label += " (extra model)"
        row = [label]
        for kind, path, digits in columns:
            results = (view.rm_eval if kind == "rm" else view.policy_eval).get(name)
            text, stand_in = _cell(results, path, digits)
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
        keep = [0] + [c for c in range(1, len(header)) if c > 4 or any(r[c] != DASH for r in rows)]
        header, rows = [header[c] for c in keep], [[r[c] for c in keep] for r in rows]
    _bold_best(rows)
    benchmarks = any(h in header for h in ("RewardBench", "RM-Bench hard", "AlpacaEval 2 LC WR", "MT-Bench"))
    notes = ["RewardBench: mean of its sections; RM-Bench hard: plainer chosen vs fancier rejected answers (%); "
             "AlpacaEval LC WR: length-controlled win rate (%) against the reference named below; MT-Bench: 1-10."
             ] if benchmarks else []
    lc_notes = {r["alpaca_eval"].get("lc_note") for r in view.policy_eval.values() if "alpaca_eval" in r}
    notes += [f"AlpacaEval LC WR is non-official here: {n}." for n in sorted(x for x in lc_notes if x)]
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


def _warnings(view: RunView) -> list[str]:
    out = []
    for name, res in view.policy_eval.items():
        if res.get("ppo_backend") == "dry_run":
            out.append(f"> **Policy `{name}` comes from a dry run: it is the initial policy, not trained by PPO.**")
    return out + ([""] if out else [])


def _missing(view: RunView) -> list[str]:
    words = {"missing": "not run", "partial": "started but unfinished (rerun to resume)",
             "stale": "finished, but its config or inputs changed since (numbers may be out of date)"}
    lines = [f"- `{folder}`: {words[state]}" for folder, state in view.status if state != "done"]
    lines += [f"- {note}" for note in view.notes]
    return (["## What is missing", ""] + lines + [""]) if lines else []


def _rm_section(view: RunView, out: Path) -> list[str]:
    if not view.rm_eval:
        return []
    lines = ["## Reward-model benchmarks", ""]
    names = [n for n in _names(view) if view.rm_eval.get(n, {}).get("benchmarks")]
    if not names:
        return []
    series: dict[str, list[float | None]] = {}
    groups = ["RewardBench", "RewardBench 2", "RM-Bench"]
    for name in names:
        b = view.rm_eval[name]["benchmarks"]
        series[name] = [b.get(k, {}).get("score") for k in ("rewardbench", "rewardbench2", "rm_bench")]
    first = view.rm_eval[names[0]]["benchmarks"]
    if any("rewardbench" in view.rm_eval[n]["benchmarks"] for n in names):
        sections = ["Chat", "Chat Hard", "Safety", "Reasoning"]
        rows = [[n] + [_fmt(view.rm_eval[n]["benchmarks"].get("rewardbench", {}).get("sections", {}).get(s))
                       for s in sections] + [_fmt(series[n][0])] for n in names]
        lines += ["### RewardBench", ""] + _table(["variant"] + sections + ["score"], rows)
        lines += [f"Sections weight subsets by the official example counts (math-prm as 984); the score is "
                  f"{first.get('rewardbench', {}).get('aggregate', 'the mean of the sections')}; a tie is wrong.", ""]
    if any("rewardbench2" in view.rm_eval[n]["benchmarks"] for n in names):
        subsets = sorted({s for n in names for s in view.rm_eval[n]["benchmarks"].get("rewardbench2", {})
                          .get("subsets", {})})
        rows = [[n] + [_fmt(view.rm_eval[n]["benchmarks"].get("rewardbench2", {}).get("subsets", {}).get(s, {})
                            .get("accuracy")) for s in subsets] + [_fmt(series[n][1])] for n in names]
        lines += ["### RewardBench 2", ""] + _table(["variant"] + subsets + ["score"], rows)
        lines += ["Best-of-4 accuracy (ties at the top share the credit), the Ties formula, and the unweighted "
                  "mean of the subsets.", ""]
    if any("rm_bench" in view.rm_eval[n]["benchmarks"] for n in names):
        keys = ["easy", "normal", "hard", "average"]
        domains = sorted({d for n in names for d in view.rm_eval[n]["benchmarks"].get("rm_bench", {})
                          .get("domains", {})})
        rows = [[n] + [_fmt(view.rm_eval[n]["benchmarks"].get("rm_bench", {}).get(k)) for k in keys]
                + [_fmt(view.rm_eval[n]["benchmarks"].get("rm_bench", {}).get("domains", {}).get(d, {})
                        .get("average")) for d in domains] for n in names]
        lines += ["### RM-Bench", ""] + _table(["variant"] + keys + domains, rows)
        lines += ["Per domain a 3x3 style matrix (chosen style x rejected style); hard = upper triangle, normal = "
                  "diagonal, easy = lower triangle; each figure is the mean over domains.", ""]
    lines += ["Data and limits:", ""]
    for bench, res in first.items():
        truncated = sum(view.rm_eval[n]["benchmarks"].get(bench, {}).get("truncated_sequences", 0) for n in names)
        lines.append(f"- {bench}: {res['data']}; {res['n_items']} items"
                     + (f"; {truncated} sequence(s) lost prompt tokens to fit the length limit" if truncated else ""))
    stand_in = any(r.get("stand_in") for n in names for r in view.rm_eval[n]["benchmarks"].values())
    title = "RM benchmarks" + (" (smoke-test stand-ins, not the benchmarks)" if stand_in else "")
    plots.grouped_bars(out / "rm_benchmarks.png", title, groups, series, "score (%)")
    return lines + ["", "![RM benchmarks](rm_benchmarks.png)", ""]


def _alpaca_section(view: RunView, out: Path) -> list[str]:
    names = [n for n in _names(view) if "alpaca_eval" in view.policy_eval.get(n, {})]
    if not names:
        return []
    rows = []
    for n in names:
        a = view.policy_eval[n]["alpaca_eval"]
        se = f" ± {_fmt(a['standard_error'])}" if a.get("standard_error") is not None else ""
        rows.append([n, _fmt(a["win_rate"]) + se, _fmt(a["length_controlled_winrate"]), str(a["n_total"]),
                     str(a["n_unjudged"] + a["n_unanswered"]), a["reference"], _fmt(a.get("position_flip_rate"), 2)])
    lines = ["## AlpacaEval 2", ""]
    lines += _table(["policy", "WR", "LC WR (non-official)", "judged", "excluded", "reference", "flip rate"], rows)
    a = view.policy_eval[names[0]]["alpaca_eval"]
    judge = view.policy_eval[names[0]]["judge"]
    lines += [f"- Reference (output_1): `{a['reference']}` from {a['reference_source']}.",
              f"- Instructions: {a['data']}; {a['n_instructions']} with a reference output.",
              f"- Judge: `{judge['model']}` ({judge['backend']}, temperature 0, seed {judge['seed']}), prompt "
              f"{a['judge_template']}; preference from the first token's logprobs of `m` / `M`, output order "
              f"randomized per instruction" + (", judged in both orders" if a["both_orders"] else "") + ".",
              f"- LC WR: {a['lc_note']}."]
    for n in names:
        r = view.policy_eval[n]["alpaca_eval"]
        if r.get("lc_not_computed"):
            lines.append(f"- `{n}`: LC WR not computed: {r['lc_not_computed']}.")
        if r.get("lc_extreme_change"):
            lines.append(f"- `{n}`: LC WR moved far from WR (alpaca_eval would warn the GLM may have failed).")
    series = {"WR": [view.policy_eval[n]["alpaca_eval"]["win_rate"] for n in names],
              "LC WR": [view.policy_eval[n]["alpaca_eval"]["length_controlled_winrate"] for n in names]}
    if all(v is None for values in series.values() for v in values):
        return lines + ["", "No instruction was judged, so there is no win rate to plot.", ""]
    title = f"AlpacaEval 2 vs {a['reference']}" + (" (stand-in instructions)" if a["stand_in"] else "")
    plots.grouped_bars(out / "alpaca_eval.png", title, names, series, "win rate (%)")
    return lines + ["", "![AlpacaEval](alpaca_eval.png)", ""]


def _mt_section(view: RunView, out: Path) -> list[str]:
    names = [n for n in _names(view) if "mt_bench" in view.policy_eval.get(n, {})]
    if not names:
        return []
    cats = sorted({c for n in names for c in view.policy_eval[n]["mt_bench"]["categories"]})
    rows = []
    for n in names:
        m = view.policy_eval[n]["mt_bench"]
        rows.append([n, _fmt(m["turn_1"], 2), _fmt(m["turn_2"], 2), _fmt(m["score"], 2)]
                    + [_fmt(m["categories"].get(c), 2) for c in cats] + [f"{m['n_unparsed']}/{m['n_judgments']}"])
    m = view.policy_eval[names[0]]["mt_bench"]
    lines = ["## MT-Bench", ""] + _table(["policy", "turn 1", "turn 2", "overall"] + cats + ["unparsed"], rows)
    lines += [f"- Data: {m['data']}; reference answers `{m['reference_answers']}` for math, reasoning and coding.",
              "- Single-answer grading 1-10 per turn; judgments without a `[[x]]` / `[x]` rating are excluded "
              "(counted under unparsed)."]
    if any(view.policy_eval[n]["mt_bench"].get("constrained_rating") for n in names):
        lines.append("- The judge's output was constrained to an explanation ending in `[[1-10]]` (structured "
                     "outputs), unlike FastChat's free-form judging: scores are not comparable to published ones.")
    lines.append("")
    if not cats:
        return lines + ["No judgment carried a rating, so there are no scores to plot.", ""]
    series = {n: [view.policy_eval[n]["mt_bench"]["categories"].get(c) for c in cats] for n in names}
    plots.grouped_bars(out / "mt_bench.png", "MT-Bench per category", cats, series, "score (1-10)")
    return lines + ["![MT-Bench](mt_bench.png)", ""]


def _ppo_section(view: RunView, out: Path) -> list[str]:
    if not view.ppo:
        return []
    ppo = {n: view.ppo[n] for n in _names(view) if n in view.ppo}
    rows = [[v, str(m.summary.get("backend", DASH)), _fmt(m.summary.get("iterations"), 0),
             _fmt(m.summary.get("final_reward_mean"), 3)] for v, (m, _) in ppo.items()]
    lines = ["## PPO", ""] + _table(["variant", "backend", "iterations", "final reward mean"], rows)
    panels: dict[str, dict] = {"reward mean": {}, "KL": {}}
    for v, (_, metrics) in ppo.items():
        its = [r for r in metrics if "iteration" in r]
        for panel, key in (("reward mean", "reward_mean"), ("KL", "kl")):
            pts = [(r["iteration"], r[key]) for r in its if r.get(key) is not None]
            if pts:
                panels[panel][v] = ([p[0] for p in pts], [p[1] for p in pts])
    if any(panels.values()):
        plots.curves(out / "ppo_rewards.png", "PPO: reward and KL per iteration", panels, "iteration")
        lines += ["Rewards come from each variant's own RM, so their levels are not comparable across variants.", "",
                  "![PPO reward curves](ppo_rewards.png)", ""]
    return lines


def _distill_section(view: RunView, out: Path) -> list[str]:
    if not view.distill:
        return []
    keys = ["held_out_accuracy", "held_out_margin_spearman", "held_out_lm_loss", "train_pairs", "held_out_pairs",
            "truncated_pairs"]
    distill = {n: view.distill[n] for n in _names(view) if n in view.distill}
    rows = [[v] + [_fmt(m.summary.get(k), 3) for k in keys] for v, (m, _) in distill.items()]
    lines = ["## Reward-model training (distill)", ""] + _table(["variant"] + keys, rows)
    panel = {v: ([r["step"] for r in ms if "step" in r and "loss" in r],
                 [r["loss"] for r in ms if "step" in r and "loss" in r]) for v, (_, ms) in distill.items()}
    panel = {v: xy for v, xy in panel.items() if xy[0]}
    if panel:
        plots.curves(out / "distill_loss.png", "RM training loss", {"loss": panel}, "optimizer step")
        lines += ["![RM training loss](distill_loss.png)", ""]
    return lines


def _synthesis_section(view: RunView, out: Path) -> list[str]:
    s = view.s1
    if s is None:
        return []
    lines = ["## Teacher data (synthesize)", ""]
    counts = s.get("counts", {})
    lines += _table(["step", "requested", "kept", "dropped"],
                    [[k, str(v.get("requested")), str(v.get("kept")), str(v.get("dropped"))] for k, v in counts.items()])
    for key, title in (("parse_failure_rate", "parse failure rate"), ("retry_rate", "retry rate")):
        if s.get(key):
            lines.append(f"- {title}: " + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in s[key].items()))
    if s.get("position_consistency_rate") is not None:
        lines.append(f"- position consistency (same winner in both orders): {_fmt(s['position_consistency_rate'], 3)}")
    if s.get("edit_distance"):
        lines.append("- edit distance of refined vs rejected: " +
                     ", ".join(f"{k} {_fmt(v, 3)}" for k, v in s["edit_distance"].items()))
    if s.get("teacher_tokens"):
        lines.append(f"- teacher tokens: prompt {s['teacher_tokens'].get('prompt')}, completion "
                     f"{s['teacher_tokens'].get('completion')}")
    lines.append("")
    drops = s.get("drops_by_reason") or {}
    if drops:
        lines += _table(["drop reason", "count"], [[k, str(v)] for k, v in sorted(drops.items(), key=lambda x: -x[1])])
        plots.horizontal_bars(out / "s1_drops.png", "Dropped items by reason", drops, "items")
        lines += ["![drops by reason](s1_drops.png)", ""]
    hist = s.get("margin_histogram") or {}
    if hist.get("counts"):
        plots.histogram(out / "s1_margins.png", "Calibrated margins", hist["bin_edges"], hist["counts"],
                        "margin (teacher points)")
        lines += ["![margin histogram](s1_margins.png)", ""]
    return lines


def _cost_section(view: RunView) -> list[str]:
    if not view.manifests:
        return []
    by_stage: dict[str, float] = {}
    for rel, m in view.manifests.items():
        by_stage[rel.split("/")[0]] = by_stage.get(rel.split("/")[0], 0.0) + m.wall_time_s
    rows = [[f"`{rel}`", _fmt(m.wall_time_s, 1)] for rel, m in view.manifests.items()]
    rows += [[f"**{stage}**", f"**{_fmt(seconds, 1)}**"] for stage, seconds in by_stage.items()]
    total = sum(by_stage.values())
    return ["## Wall time", "", "Time each finished folder took when it ran (a skipped rerun costs nothing).", ""] + \
        _table(["folder", "seconds"], rows + [["**total**", f"**{_fmt(total, 1)}**"]])
