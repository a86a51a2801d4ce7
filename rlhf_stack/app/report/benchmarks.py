"""The report's benchmark sections: RewardBench, RewardBench 2 and RM-Bench per RM; AlpacaEval 2 and MT-Bench per
policy."""

from __future__ import annotations

from pathlib import Path

from rlhf_stack.app.report.run_view import RunView, row_names
from rlhf_stack.core import plots
from rlhf_stack.core.markdown import DASH
from rlhf_stack.core.markdown import fmt as _fmt
from rlhf_stack.core.markdown import table as _table


def rm_section(view: RunView, out: Path) -> list[str]:
    if not view.rm_eval:
        return []
    lines = ["## Reward-model benchmarks", ""]
    names = [n for n in row_names(view) if view.rm_eval.get(n, {}).get("benchmarks")]
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


def alpaca_section(view: RunView, out: Path) -> list[str]:
    names = [n for n in row_names(view) if "alpaca_eval" in view.policy_eval.get(n, {})]
    if not names:
        return []
    rows = []
    for n in names:
        a = view.policy_eval[n]["alpaca_eval"]
        se = f" ± {_fmt(a['standard_error'])}" if a.get("standard_error") is not None else ""
        rows.append([n, _fmt(a["win_rate"]) + se, _fmt(a["length_controlled_winrate"]),
                     _fmt(a.get("minimal_glm_winrate")), str(a["n_total"]), str(a["n_unjudged"] + a["n_unanswered"]),
                     a["reference"], _fmt(a.get("position_flip_rate"), 2)])
    lines = ["## AlpacaEval 2", ""]
    lines += _table(["policy", "WR", "LC WR", "minimal-GLM WR (not LC)", "judged", "excluded", "reference",
                     "flip rate"], rows)
    a = view.policy_eval[names[0]]["alpaca_eval"]
    judge = view.policy_eval[names[0]]["judge"]
    lines += [f"- Reference (output_1): `{a['reference']}` from {a['reference_source']}.",
              f"- Instructions: {a['data']}; {a['n_instructions']} with a reference output.",
              f"- Judge: `{judge['model']}` ({judge['backend']}, temperature 0, seed {judge['seed']}), prompt "
              f"{a['judge_template']}; preference from the first token's logprobs of `m` / `M`, output order "
              f"randomized per instruction" + (", judged in both orders" if a["both_orders"] else "") + ".",
              "- LC WR: alpaca_eval's length-controlled win rate (length_controlled_v1, as on the leaderboard).",
              f"- minimal-GLM WR: {a.get('minimal_glm_note')}."]
    for n in names:
        r = view.policy_eval[n]["alpaca_eval"]
        if r.get("lc_not_computed"):
            lines.append(f"- `{n}`: LC WR not computed: {r['lc_not_computed']}.")
        if r.get("lc_extreme_change"):
            lines.append(f"- `{n}`: LC WR moved far from WR (alpaca_eval would warn the GLM may have failed).")
    series = {"WR": [view.policy_eval[n]["alpaca_eval"]["win_rate"] for n in names],
              "LC WR": [view.policy_eval[n]["alpaca_eval"]["length_controlled_winrate"] for n in names],
              "minimal-GLM WR (not LC)": [view.policy_eval[n]["alpaca_eval"].get("minimal_glm_winrate")
                                          for n in names]}
    if all(v is None for values in series.values() for v in values):
        return lines + ["", "No instruction was judged, so there is no win rate to plot.", ""]
    title = f"AlpacaEval 2 vs {a['reference']}" + (" (stand-in instructions)" if a["stand_in"] else "")
    plots.grouped_bars(out / "alpaca_eval.png", title, names, series, "win rate (%)")
    return lines + ["", "![AlpacaEval](alpaca_eval.png)", ""]


def mt_section(view: RunView, out: Path) -> list[str]:
    names = [n for n in row_names(view) if "mt_bench" in view.policy_eval.get(n, {})]
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
