"""The report from hand-written run folders in the docs/artifacts.md layout: tables, missing parts, real plots."""

import json
from pathlib import Path

import pytest
import yaml

from rlhf_stack.core import plots
from rlhf_stack.core.artifacts import publish
from rlhf_stack.core.pipeline import config_hash
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.app.report import write_report
from stages.s4_evaluate.rm_metrics import METRICS
from stages.s4_evaluate.stage import jobs

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("rm_distiller", "binary_bt")


def finish(run, rel, kind, files, summary=None, config_hash="h"):
    folder = run / rel
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    publish(folder, kind=kind, stage=rel.split("/")[0], rel_folder=rel, config_hash=config_hash, inputs={},
            summary=summary or {}, wall_time_s=12.5)


def rm_results(good: bool):
    win, lose = (2.0, 1.0) if good else (1.0, 2.0)
    rb = [{"id": str(i), "group": g, "chosen": [win], "rejected": [lose if i % 2 else 1.5]}
          for i, g in enumerate(["alpacaeval-easy", "mt-bench-hard", "refusals-dangerous", "math-prm"])]
    rmb = [{"id": "1", "group": "chat", "chosen": [win, 1.0, 0.5], "rejected": [0.0, 1.2, lose]}]
    benchmarks = {}
    for bench, records in (("rewardbench", rb), ("rm_bench", rmb)):
        benchmarks[bench] = {**METRICS[bench](records), "data": "smoke-test stand-in (x)", "stand_in": True,
                             "total_items": len(records), "truncated_sequences": 0, "scores_file": "s.jsonl"}
    return {"kind": "reward_model", "name": "x", "origin": "s2", "benchmarks": benchmarks}


def policy_results(name, wr, lc, mt, backend="local"):
    return {"kind": "policy", "name": name, "origin": f"s3_ppo/{name}", "ppo_backend": backend,
            "judge": {"model": "judge", "source": "tiny", "backend": "hf", "temperature": 0.0, "seed": 0},
            "alpaca_eval": {"win_rate": wr, "standard_error": 3.0, "length_controlled_winrate": lc,
                            "lc_standard_error": 0.0, "lc_weights": None, "lc_not_computed": None,
                            "lc_glm": "length_controlled_v1", "lc_official": True, "lc_extreme_change": False,
                            "minimal_glm_winrate": lc + 10, "minimal_glm_note": "alpaca_eval's minimal GLM",
                            "reference": "smoke_reference", "reference_source": "the set",
                            "data": "smoke-test stand-in", "stand_in": True, "total_instructions": 12,
                            "n_instructions": 12, "n_total": 12, "n_unanswered": 0, "n_unjudged": 1,
                            "n_identical_outputs": 0, "n_truncated_answers": 2, "judge_template": "weighted",
                            "both_orders": False, "position_flip_rate": None},
            "mt_bench": {"score": mt, "turn_1": mt + 0.5, "turn_2": mt - 0.5,
                         "categories": {"writing": mt + 1, "math": mt - 1}, "n_judgments": 4, "n_unparsed": 1,
                         "data": "wheel", "reference_answers": "gpt-4-0125-preview", "n_questions": 2,
                         "total_questions": 80, "n_unanswered_questions": 0, "n_judge_errors": 0}}


def full_run(tmp_path) -> Path:
    run = tmp_path / "runs" / "demo"
    stats = {"counts": {"candidates": {"requested": 10, "kept": 9, "dropped": 1},
                        "refine": {"requested": 9, "kept": 7, "dropped": 2}},
             "drops_by_reason": {"refine_unparsed": 2, "empty_candidate": 1},
             "parse_failure_rate": {"initial_scores": 0.1}, "retry_rate": {"initial_scores": 0.2},
             "position_consistency_rate": 0.8, "margin_histogram": {"bin_edges": [0, 1, 2, 3], "counts": [1, 4, 2]},
             "edit_distance": {"mean": 0.2, "median": 0.15, "p90": 0.4},
             "teacher_tokens": {"prompt": 1000, "completion": 500}, "wall_time_s": {"refine": 3.0},
             "tokens_per_s": {"refine": 50.0}}
    finish(run, "s1_synthesize", "preference_data", {"stats.json": stats})
    for k, v in enumerate(VARIANTS):
        steps = "".join(json.dumps({"step": s, "loss": 1.0 / (s + k + 1), "accuracy": 0.5}) + "\n" for s in range(5))
        finish(run, f"s2_distill/{v}", "reward_model", {"metrics.jsonl": steps + json.dumps({"final": True}) + "\n"},
               {"held_out_accuracy": 0.8 - k / 10, "train_pairs": 100})
        its = "".join(json.dumps({"iteration": i, "reward_mean": i * (1 + k), "kl": 0.01 * i}) + "\n" for i in range(4))
        finish(run, f"s3_ppo/{v}", "policy", {"metrics.jsonl": its},
               {"backend": "local", "iterations": 4, "final_reward_mean": 3.0})
        finish(run, f"s4_evaluate/rm/{v}", "evaluation", {"results.json": rm_results(good=(k == 0))})
        finish(run, f"s4_evaluate/policy/{v}", "evaluation",
               {"results.json": policy_results(v, 60.0 - 10 * k, 55.0 - 10 * k, 6.0 - k)})
    finish(run, "s4_evaluate/policy/initial", "evaluation",
           {"results.json": policy_results("initial", 40.0, 41.0, 4.5)})
    return run


def test_report_leads_with_the_comparison_and_draws_real_plots(tmp_path):
    from PIL import Image, ImageStat

    run = full_run(tmp_path)
    path = write_report(run)
    text = path.read_text()
    first_table = text[text.index("|"):].split("\n\n")[0].splitlines()
    assert first_table[0] == ("| variant | RewardBench | RM-Bench hard | AlpacaEval 2 WR | AlpacaEval 2 LC WR "
                              "| MT-Bench |")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in first_table[2:]}
    assert rows["rm_distiller"] == ["**100.0†**", "**66.7†**", "**60.0†**", "**55.0†**", "**6.00**"]
    assert rows["binary_bt"][0] == "0.0†" and rows["binary_bt"][2:] == ["50.0†", "45.0†", "5.00"]
    assert rows["initial policy (before PPO)"] == ["—", "—", "40.0†", "41.0†", "4.50"]
    assert "not on the benchmark" in text and "minimal-GLM WR (not LC)" in text and "reference" in text
    for heading in ("## Reward-model benchmarks", "## AlpacaEval 2", "## MT-Bench", "## PPO",
                    "## Reward-model training (distill)", "## Teacher data (synthesize)", "## Wall time"):
        assert heading in text
    assert "refine_unparsed" in text and "smoke_reference" in text
    pngs = sorted(path.parent.glob("*.png"))
    assert {p.name for p in pngs} == {"rm_benchmarks.png", "alpaca_eval.png", "mt_bench.png", "ppo_rewards.png",
                                      "distill_loss.png", "s1_drops.png", "s1_margins.png"}
    for png in pngs:
        assert f"({png.name})" in text
        with Image.open(png) as img:
            assert img.format == "PNG" and img.size == plots.SIZE_PX
            rgb = img.convert("RGB")
            assert len(rgb.getcolors(maxcolors=1 << 20)) > 20, png.name  # lines, bars and text, not a blank
            assert max(ImageStat.Stat(rgb).stddev) > 10, png.name


def test_a_partial_run_says_what_is_missing(tmp_path):
    run = tmp_path / "runs" / "partial"
    recipe = {"name": "partial", "run_dir": str(run), "models": {"rm": "tiny-random-llama"},
              "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")},
              "evaluate": {"reward_models": {"ext1": "rm", "ext2": "rm"},
                           "rm_benchmarks": {"rewardbench": {"source": "smoke"}}}}
    run.mkdir(parents=True)
    (run / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    (run / "run.json").write_text(json.dumps({"recipe": "x", "base_dir": str(tmp_path), "overrides": []}))
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    planned = {job.folder: job for job in jobs(load_recipe(run / "recipe.yaml"))}
    finish(run, "s4_evaluate/rm/ext1", "evaluation", {"results.json": rm_results(good=True)},
           config_hash=config_hash(planned["s4_evaluate/rm/ext1"], run))
    (run / "s4_evaluate/rm/ext2/_work").mkdir(parents=True)
    text = write_report(run).read_text()
    assert "ext1 (extra model)" in text and "## What is missing" in text
    assert "`s4_evaluate/rm/ext2`: started but unfinished" in text
    assert "## PPO" not in text and "## AlpacaEval 2" not in text
    assert "`s4_evaluate/rm/ext1`" not in text.split("## What is missing")[1].split("##")[0]


def test_an_empty_run_and_a_dry_run_policy_are_stated(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = write_report(empty).read_text()
    assert "No reward model or policy has been evaluated yet" in text and "could not be read" in text
    run = tmp_path / "dry"
    finish(run, "s4_evaluate/policy/v", "evaluation", {"results.json": policy_results("v", 50.0, 50.0, 5.0, "dry_run")})
    assert "comes from a dry run" in write_report(run).read_text()


@pytest.mark.parametrize("draw", ["bars", "curves", "hist", "hbars"])
def test_every_plot_kind_has_the_fixed_size(tmp_path, draw):
    from PIL import Image

    path = tmp_path / "p.png"
    if draw == "bars":
        plots.grouped_bars(path, "t", ["a", "b"], {"x": [1.0, None], "y": [2.0, 3.0]}, "y")
    elif draw == "curves":
        plots.curves(path, "t", {"p": {"x": ([0, 1], [1.0, 2.0])}}, "x")
    elif draw == "hist":
        plots.histogram(path, "t", [0.0, 1.0, 2.0], [3, 1], "x")
    else:
        plots.horizontal_bars(path, "t", {"a": 3, "b": 1}, "n")
    with Image.open(path) as img:
        assert img.size == plots.SIZE_PX


def test_without_the_official_lc_the_lc_column_stays_empty(tmp_path):
    run = full_run(tmp_path)
    for name in ("rm_distiller", "binary_bt", "initial"):
        path = run / "s4_evaluate" / "policy" / name / "results.json"
        if path.exists():
            results = json.loads(path.read_text())
            results["alpaca_eval"].update(length_controlled_winrate=None, lc_official=False,
                                          lc_not_computed="no df_gamed.csv")
            path.write_text(json.dumps(results))
    text = write_report(run).read_text()
    first_table = text[text.index("|"):].split("\n\n")[0].splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in first_table[2:]}
    assert rows["rm_distiller"][2:4] == ["**60.0†**", "—"]  # the minimal-GLM figure never stands in for LC
    assert "AlpacaEval LC WR not computed: no df_gamed.csv." in text and "minimal-GLM WR (not LC)" in text
