"""The sandbox end to end through the CLI: recipes/sandbox_tiny.yaml (two seeds of the verifier-judged pipeline on
tiny models), its ground-truth metrics recomputed from the per-item files, and the aggregate report recomputed from
the cells."""

import itertools
import json
from pathlib import Path

import pytest

from rlhf_stack.app.cli import main
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.intervals import seeds_and_prompts_interval, t_interval
from rlhf_stack.core.records import PreferenceRecord, read_jsonl
from stages.sandbox import ScoredPair, Verifier, compliance_summary, pair_accuracy

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "sandbox_tiny.yaml"
VARIANTS = ("rm_distiller", "binary_bt")
CELLS = ("seed=0", "seed=1")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("sandbox") / "run"
    assert main(["run", str(RECIPE), "--set", f"run_dir={run_dir}"]) == 0
    return run_dir


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_verifier_judged_and_the_llm_generated(sweep_run):
    for cell in CELLS:
        s1 = sweep_run / "cells" / cell / "s1_synthesize"
        stats = json.loads((s1 / "stats.json").read_text())
        assert stats["teacher_tokens"]["completion"] > 0  # y_T came from the teacher LLM
        assert all(stats["requests"][step]["sent"] == 0 for step in ("initial_scores", "refine", "calibrate"))
        assert set(stats["parse_failure_rate"].values()) == {0.0}
    first, second = (json.loads((sweep_run / "cells" / c / "s1_synthesize" / "stats.json").read_text())
                     for c in CELLS)
    # The second seed reuses the first one's candidates (fixed generation_seed, shared generation cache).
    assert second["requests"]["candidates"] == {"sent": 0, "resumed": 0,
                                                "shared": first["requests"]["candidates"]["sent"]}
    records = [{r.id: r.candidates for r in read_jsonl(p, PreferenceRecord)}
               for c in CELLS for p in (sweep_run / "cells" / c / "s1_synthesize").glob("records-*.jsonl")]
    common = set(records[0]) & set(records[1])
    assert common and all(records[0][k] == records[1][k] for k in common)


def test_ground_truth_metrics_recompute_from_the_saved_items(sweep_run):
    verifier = Verifier.from_prompt_file(REPO / "recipes" / "data" / "sandbox_tiny.jsonl")
    info = json.loads((sweep_run / "sweep.json").read_text())["cells"]
    assert info["seed=1"]["reused"] == {"s4_evaluate/ground_truth": "seed=0"}  # no seed in its key: copied
    for cell in CELLS:
        s4 = sweep_run / "cells" / cell / "s4_evaluate"
        pairs = jsonl(s4 / "ground_truth" / "pairs.jsonl")
        assert {p["kind"] for p in pairs} == {"candidates", "edit"}
        for p in pairs:
            assert verifier.true_score(p["prompt_id"], p["chosen"]) - \
                verifier.true_score(p["prompt_id"], p["rejected"]) == pytest.approx(p["margin"]) and p["margin"] > 0
        for variant in VARIANTS:
            results = json.loads((s4 / "rm" / variant / "results.json").read_text())["ground_truth"]
            scores = jsonl(s4 / "rm" / variant / "scores-ground_truth.jsonl")
            for kind in ("candidates", "edit"):
                scored = [ScoredPair(p["prompt_id"], p["chosen"], p["rejected"], r["chosen"][0], r["rejected"][0])
                          for p, r in zip(pairs, scores) if p["kind"] == kind]
                assert results[kind] == pytest.approx(pair_accuracy(verifier, scored))
        for policy in ("initial", *VARIANTS):
            compliance = json.loads((s4 / "policy" / policy / "results.json").read_text())["compliance"]
            answers = jsonl(s4 / "policy" / policy / "compliance" / "answers.jsonl")
            assert compliance["answers"] == len(answers) > 0
            expected = compliance_summary(verifier, [(a["prompt_id"], a["text"]) for a in answers])
            assert compliance["mean_compliance"] == pytest.approx(expected["mean_compliance"])


def brute_force_best_of_n(gold: list[float], rewards: list[float], n: int) -> float:
    """Mean over every n-subset of the gold of its top-reward samples (ties: their mean, a uniform tie-break)."""
    picks = []
    for subset in itertools.combinations(range(len(gold)), n):
        top = max(rewards[i] for i in subset)
        tied = [gold[i] for i in subset if rewards[i] == top]
        picks.append(sum(tied) / len(tied))
    return sum(picks) / len(picks)


def brute_force_curve(samples: list[dict], rewards: list[float], n: int, key: str) -> float:
    by_prompt: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_prompt.setdefault(s["prompt_id"], []).append(i)
    values = [brute_force_best_of_n([samples[i][key] for i in rows], [rewards[i] for i in rows], n)
              for rows in by_prompt.values()]
    return sum(values) / len(values)


def test_best_of_n_recomputes_from_the_saved_samples_and_rewards(sweep_run):
    verifier = Verifier.from_prompt_file(REPO / "recipes" / "data" / "sandbox_tiny.jsonl")
    ns = load_recipe(RECIPE).evaluate.ground_truth.best_of_n
    for cell in CELLS:
        s4 = sweep_run / "cells" / cell / "s4_evaluate"
        samples = jsonl(s4 / "ground_truth" / "best_of_n_samples.jsonl")
        assert len(samples) == max(ns) * len({s["prompt_id"] for s in samples}) > 0
        for s in samples:
            assert s["true_score"] == verifier.true_score(s["prompt_id"], s["text"])
            assert s["compliance"] == verifier.compliance(s["prompt_id"], s["text"])
        ceiling = json.loads((s4 / "ground_truth" / "best_of_n.json").read_text())["verifier"]
        judge_scores = [r["score"] for r in jsonl(s4 / "best_of_n_direct_judge" / "scores.jsonl")]
        judge = json.loads((s4 / "best_of_n_direct_judge" / "results.json").read_text())["best_of_n"]
        variant = VARIANTS[0]
        rewards = [r["chosen"][0] for r in jsonl(s4 / "rm" / variant / "scores-best_of_n.jsonl")]
        results = json.loads((s4 / "rm" / variant / "results.json").read_text())["best_of_n"]
        for curve, scores in ((results, rewards), (ceiling, [s["true_score"] for s in samples]),
                              (judge, judge_scores)):
            assert len(scores) == len(samples)
            for n in ns:
                assert curve[str(n)]["gold_mean"] == pytest.approx(brute_force_curve(samples, scores, n, "true_score"))
                assert curve[str(n)]["compliance_mean"] == pytest.approx(
                    brute_force_curve(samples, scores, n, "compliance"))
        top = str(max(ns))  # the ceiling is the best any picker can do
        assert all(c[top]["gold_mean"] <= ceiling[top]["gold_mean"] + 1e-9 for c in (results, judge))
        assert "## Best-of-N (sandbox)" in (sweep_run / "cells" / cell / "report" / "report.md").read_text()
    summary = json.loads((sweep_run / "report" / "summary.json").read_text())["best_of_n"]
    assert summary["ns"] == ns
    by_name = summary["points"]["all cells"]["compliance"]
    assert {*VARIANTS, "verifier (ceiling)", "direct judge"} <= set(by_name)
    assert by_name[VARIANTS[0]][str(ns[-1])]["n"] == len(CELLS)
    assert "## Best-of-N gold compliance (sandbox)" in (sweep_run / "report" / "report.md").read_text()
    assert (sweep_run / "report" / "best_of_n_1.png").exists()


def test_ppo_logs_gold_reward_and_sequence_kl_every_iteration(sweep_run):
    for cell in CELLS:
        for variant in VARIANTS:
            records = jsonl(sweep_run / "cells" / cell / "s3_ppo" / variant / "metrics.jsonl")
            assert records
            for r in records:  # the exact verifier's score of the same rollouts, beside the proxy (reward_mean)
                assert 1 <= r["gold_mean"] <= 10 and 0 <= r["compliance_mean"] <= 1
                assert r["gold_mean"] == pytest.approx(1 + 9 * r["compliance_mean"])
                assert r["kl_seq_k3"] >= 0 and "kl_seq_k1" in r
    report = (sweep_run / "report" / "report.md").read_text()
    assert "## Over-optimization (sandbox)" in report
    assert all(f"| {v} | seed 0: " in report for v in (*VARIANTS, "direct_judge"))


def test_the_direct_judge_trains_a_policy_that_is_evaluated_and_compared(sweep_run):
    """ppo variant direct_judge: no RM, the noisy teacher scores the rollouts; it is evaluated like any policy and
    the sweep report gives its paired difference to the baseline."""
    for cell in CELLS:
        records = jsonl(sweep_run / "cells" / cell / "s3_ppo" / "direct_judge" / "metrics.jsonl")
        assert records and all(1 <= r["reward_mean"] <= 10 for r in records)  # the teacher's 1-10 scale
        assert not (sweep_run / "cells" / cell / "s2_distill" / "direct_judge").exists()
    summary = json.loads((sweep_run / "report" / "summary.json").read_text())
    compliance = {c: json.loads((sweep_run / "cells" / c / "s4_evaluate" / "policy" / name / "results.json")
                                .read_text())["compliance"]["mean_compliance"]
                  for c in CELLS for name in ("direct_judge",)}
    assert list(summary["metrics"]["compliance"]["all cells"]["direct_judge"]["values"].values()) == \
        pytest.approx([compliance[c] for c in CELLS])
    assert "direct_judge" in summary["differences"]["compliance"]["all cells"]


def test_the_aggregate_report_is_computed_from_the_cells(sweep_run):
    summary = json.loads((sweep_run / "report" / "summary.json").read_text())
    accuracy = {(c, v): json.loads((sweep_run / "cells" / c / "s4_evaluate" / "rm" / v / "results.json")
                                   .read_text())["ground_truth"]["candidates"]["accuracy"]
                for c in CELLS for v in VARIANTS}
    for v in VARIANTS:
        s = summary["metrics"]["gt_candidates"]["all cells"][v]
        values = [accuracy[(c, v)] for c in CELLS]
        assert list(s["values"].values()) == pytest.approx(values)
        assert (s["mean"], s["low"], s["high"]) == pytest.approx(t_interval(values))
    diff = summary["differences"]["gt_candidates"]["all cells"]["rm_distiller"]
    assert list(diff["values"].values()) == pytest.approx([accuracy[(c, VARIANTS[0])] - accuracy[(c, VARIANTS[1])]
                                                           for c in CELLS])
    report = (sweep_run / "report" / "report.md").read_text()
    assert "## Measured difference to `binary_bt`" in report and "(gt_candidates.png)" in report
    assert (sweep_run / "report" / "gt_candidates.png").exists()
    for cell in CELLS:  # every cell is a normal run with its own report
        assert "## Ground truth (sandbox)" in (sweep_run / "cells" / cell / "report" / "report.md").read_text()



def test_the_natural_pair_difference_covers_seeds_and_prompts(sweep_run):
    """The report's natural-pair interval, recomputed from the pairs and each RM's rewards of them."""
    pairs = jsonl(sweep_run / "cells" / CELLS[0] / "s4_evaluate" / "ground_truth" / "pairs.jsonl")
    natural = [i for i, p in enumerate(pairs) if p["kind"] == "candidates"]
    right = {(c, v): [r["chosen"][0] > r["rejected"][0] for r in
                      jsonl(sweep_run / "cells" / c / "s4_evaluate" / "rm" / v / "scores-ground_truth.jsonl")]
             for c in CELLS for v in VARIANTS}
    diffs = {seed: [float(right[(c, VARIANTS[0])][i]) - float(right[(c, VARIANTS[1])][i]) for i in natural]
             for seed, c in enumerate(CELLS)}
    d = seeds_and_prompts_interval(diffs, [pairs[i]["prompt_id"] for i in natural])
    report = (sweep_run / "report" / "report.md").read_text()
    assert "## Natural pairs: resolved, or bounded" in report and "### What the pairs are made of" in report
    row = next(line for line in report.splitlines() if line.startswith(f"| all cells | {VARIANTS[0]} - "))
    assert f"| {100 * d['mean']:+.1f} |" in row and f"{d['items']} / {d['prompts']} / 2" in row


def test_a_second_run_skips_every_cell_and_status_lists_them(sweep_run, capsys):
    manifests = sorted(sweep_run.glob("cells/*/**/manifest.json"))
    before = {p: p.read_text() for p in manifests}
    assert main(["run", str(RECIPE), "--set", f"run_dir={sweep_run}"]) == 0
    assert {p: p.read_text() for p in manifests} == before
    capsys.readouterr()
    assert main(["status", str(sweep_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # per cell: 4 jobs per RM variant, 2 for the direct_judge policy (PPO, evaluation), and synthesize,
    # ground_truth, the initial policy's evaluation and the best-of-N direct judge
    assert len(lines) == len(manifests) == 2 * (len(load_recipe(RECIPE).distill.variants) * 4 + 2 + 4)
    assert all(line.split()[-1] == "done" for line in lines)
    assert main(["status", str(sweep_run), "--verify"]) == 0  # cells copied from earlier cells check out too
    assert capsys.readouterr().out.splitlines() == lines
