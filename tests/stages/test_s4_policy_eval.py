"""Stage s4 on a policy: AlpacaEval and MT-Bench with a tiny policy and a tiny judge on the transformers backend."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.pipeline import config_hash, run_jobs
from rlhf_stack.app.recipe import load_recipe
from stages.s4_evaluate.alpacaeval import is_switched, win_rate
from stages.s4_evaluate.stage import jobs
from ray_cluster.session import shutdown
from stages.s4_evaluate.policy_eval import alpaca_answer_requests

REPO = Path(__file__).resolve().parents[2]
FASTCHAT = REPO / "tests" / "fixtures" / "benchmarks" / "fastchat_data"


def make_recipe(tmp_path: Path, run_name: str, **evaluate) -> "object":
    raw = {
        "name": "s4policy", "run_dir": str(tmp_path / run_name), "cluster": {"address": "local", "num_cpus": 2},
        "models": {"policy": {"source": "tiny-random-llama", "seed": 1}, "judge": "tiny-random-llama"},
        "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")},
        "evaluate": {
            "judge": "judge", "judge_engine": {"backend": "hf", "max_model_len": 2048},
            "policy_engine": {"backend": "hf", "max_model_len": 2048}, "policies": {"pol": "policy"},
            # every token among the alternatives, so the random judge's m/M logprobs are always there
            "alpaca_eval": {"instructions": {"source": "smoke", "max_items": 6}, "max_new_tokens": 10,
                            "top_logprobs": 2048, "reference_model": "judge"},
            "mt_bench": {"data": str(FASTCHAT), "max_new_tokens": 6, "judge_max_new_tokens": 6},
            **evaluate,
        },
    }
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s4policy")
    recipe = make_recipe(tmp, "run")
    try:
        outcome = run_jobs(recipe, jobs(recipe), {"evaluate"})
        yield recipe, outcome, tmp
    finally:
        shutdown()


def test_alpaca_eval_annotations_are_complete_and_recompute(evaluated):
    recipe, outcome, _ = evaluated
    assert outcome == {"s4_evaluate/alpaca_reference": "ran", "s4_evaluate/policy/pol": "ran"}
    folder = recipe.run_path / "s4_evaluate" / "policy" / "pol"
    results = json.loads((folder / "results.json").read_text())["alpaca_eval"]
    annotations = json.loads((folder / "alpaca_eval" / "annotations.json").read_text())
    outputs = json.loads((folder / "alpaca_eval" / "model_outputs.json").read_text())
    assert len(annotations) == len(outputs) == results["n_instructions"] == 6
    for row, out in zip(annotations, outputs):
        assert {"instruction", "output_1", "output_2", "generator_1", "generator_2", "preference"} <= set(row)
        assert row["generator_1"] == "judge" and row["generator_2"] == "pol" == out["generator"]
        assert row["output_2"] == out["output"] and 1 <= row["preference"] <= 2
        assert row["is_switched_outputs"] == is_switched(row["instruction"], recipe.seed)
    recomputed = win_rate([a["preference"] for a in annotations])
    assert results["win_rate"] == pytest.approx(recomputed["win_rate"])
    assert results["n_total"] == 6 and results["n_unjudged"] == 0 and results["lc_official"] is False
    assert results["judge_template"].startswith("weighted_alpaca_eval_gpt4_turbo")
    assert read_manifest(folder).summary["alpaca_eval_win_rate"] == pytest.approx(recomputed["win_rate"])


def test_mt_bench_files_follow_fastchat_and_unrated_judgments_are_counted(evaluated):
    recipe, _, _ = evaluated
    folder = recipe.run_path / "s4_evaluate" / "policy" / "pol"
    results = json.loads((folder / "results.json").read_text())["mt_bench"]
    answers = [json.loads(line) for line in (folder / "mt_bench" / "answers.jsonl").read_text().splitlines()]
    judgments = [json.loads(line) for line in (folder / "mt_bench" / "judgments.jsonl").read_text().splitlines()]
    assert sorted(a["question_id"] for a in answers) == [1, 2, 3, 4]
    assert all(len(a["choices"][0]["turns"]) == 2 and a["model_id"] == "pol" for a in answers)
    assert len(judgments) == 8
    prompt_of = {(j["question_id"], j["turn"]): j["judge"][1] for j in judgments}
    assert prompt_of[(1, 1)] == "single-v1" and prompt_of[(2, 2)] == "single-math-v1-multi-turn"
    math_turn_1 = next(j for j in judgments if (j["question_id"], j["turn"]) == (2, 1))
    assert "Ref: 42" in math_turn_1["user_prompt"]
    rated = [j for j in judgments if j["score"] != -1]
    assert results["n_judgments"] == 8 and results["n_unparsed"] == 8 - len(rated)
    assert results["score"] is None if not rated else results["score"] == pytest.approx(
        sum(j["score"] for j in rated) / len(rated))


def test_the_reference_model_wrote_the_reference_outputs_first(evaluated):
    recipe, _, _ = evaluated
    refs = json.loads((recipe.run_path / "s4_evaluate" / "alpaca_reference" / "reference_outputs.json").read_text())
    assert len(refs) == 6 and {r["generator"] for r in refs} == {"judge"}
    folder = recipe.run_path / "s4_evaluate" / "policy" / "pol"
    annotations = json.loads((folder / "alpaca_eval" / "annotations.json").read_text())
    assert [a["output_1"] for a in annotations] == [r["output"] for r in refs]
    results = json.loads((folder / "results.json").read_text())["alpaca_eval"]
    assert results["reference"] == "judge" and "model judge" in results["reference_source"]


def test_a_second_run_skips_and_a_killed_run_reuses_finished_answers(evaluated):
    recipe, _, tmp = evaluated
    assert run_jobs(recipe, jobs(recipe), {"evaluate"}) == {"s4_evaluate/alpaca_reference": "skipped",
                                                            "s4_evaluate/policy/pol": "skipped"}
    resumed = make_recipe(tmp, "resumed", mt_bench=None)
    shutil.copytree(recipe.run_path / "s4_evaluate" / "alpaca_reference",
                    resumed.run_path / "s4_evaluate" / "alpaca_reference")  # the same config: finished already
    job = next(j for j in jobs(resumed) if j.folder.endswith("/pol"))
    work = resumed.run_path / job.folder / "_work"
    work.mkdir(parents=True)
    (work / "job_key.json").write_text(json.dumps({"config_hash": config_hash(job, resumed.run_path)}))
    annotations = json.loads((recipe.run_path / job.folder / "alpaca_eval" / "annotations.json").read_text())
    instructions = [{"instruction": a["instruction"]} for a in annotations]
    kept = {r.id: f"kept answer {i}" for i, r in enumerate(alpaca_answer_requests(instructions, 10, resumed.seed))}
    (work / "generations.jsonl").write_text("".join(
        json.dumps({"id": k, "text": v, "finish_reason": "stop", "first_token_logprobs": None, "error": None}) + "\n"
        for k, v in kept.items()))
    assert run_jobs(resumed, jobs(resumed), {"evaluate"}) == {"s4_evaluate/alpaca_reference": "skipped",
                                                              "s4_evaluate/policy/pol": "ran"}
    outputs = json.loads((resumed.run_path / job.folder / "alpaca_eval" / "model_outputs.json").read_text())
    assert sorted(o["output"] for o in outputs) == sorted(kept.values())  # not asked again: only the judge ran
