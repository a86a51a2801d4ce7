"""The report's stage sections: PPO curves, RM training, the teacher's data, and the wall time of each folder."""

from __future__ import annotations

from pathlib import Path

from rlhf_stack.app.report.run_view import RunView, row_names
from rlhf_stack.core import plots
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table


def ppo_section(view: RunView, out: Path) -> list[str]:
    if not view.ppo:
        return []
    ppo = {n: view.ppo[n] for n in row_names(view) if n in view.ppo}
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
        lines += ["Rewards come from each variant's own RM (`direct_judge`: the sandbox teacher's 1-10 score), so "
                  "their levels are not comparable across variants.", "",
                  "![PPO reward curves](ppo_rewards.png)", ""]
    return lines


def distill_section(view: RunView, out: Path) -> list[str]:
    if not view.distill:
        return []
    keys = ["held_out_accuracy", "held_out_margin_spearman", "held_out_lm_loss", "train_pairs", "held_out_pairs",
            "truncated_pairs"]
    distill = {n: view.distill[n] for n in row_names(view) if n in view.distill}
    rows = [[v] + [_fmt(m.summary.get(k), 3) for k in keys] for v, (m, _) in distill.items()]
    lines = ["## Reward-model training (distill)", ""] + _table(["variant"] + keys, rows)
    panel = {v: ([r["step"] for r in ms if "step" in r and "loss" in r],
                 [r["loss"] for r in ms if "step" in r and "loss" in r]) for v, (_, ms) in distill.items()}
    panel = {v: xy for v, xy in panel.items() if xy[0]}
    if panel:
        plots.curves(out / "distill_loss.png", "RM training loss", {"loss": panel}, "optimizer step")
        lines += ["![RM training loss](distill_loss.png)", ""]
    return lines


def synthesis_section(view: RunView, out: Path) -> list[str]:
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


def cost_section(view: RunView) -> list[str]:
    if not view.manifests:
        return []
    by_stage: dict[str, float] = {}
    stage_precision: dict[str, set[str]] = {}
    rows = []
    for rel, m in view.manifests.items():
        stage = rel.split("/")[0]
        by_stage[stage] = by_stage.get(stage, 0.0) + m.wall_time_s
        precision = m.summary.get("precision") or {}
        stage_precision.setdefault(stage, set()).update(v for v in precision.values() if v)
        rows.append([f"`{rel}`", _fmt(m.wall_time_s, 1), precision_text(precision)])
    rows += [[f"**{stage}**", f"**{_fmt(seconds, 1)}**", "/".join(sorted(stage_precision[stage]))]
             for stage, seconds in by_stage.items()]
    total = sum(by_stage.values())
    return ["## Wall time", "", "Time each finished folder took when it ran (a skipped rerun costs nothing), and the "
            "precision its engines and trainers really ran at.", ""] + \
        _table(["folder", "seconds", "precision"], rows + [["**total**", f"**{_fmt(total, 1)}**", ""]])


def precision_text(precision: dict[str, str | None] | None) -> str:
    """`fp32` when every engine and trainer of a folder ran alike, else `policy bf16, judge engine fp32`."""
    found = {k: v for k, v in (precision or {}).items() if v}
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items()))
