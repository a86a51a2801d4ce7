"""Stage s4 on reward models: a tiny RM scored on the stand-in sets, numbers recomputable, skip and resume."""

import json
from pathlib import Path

import pytest
import yaml

from rlhf_stack.core.hardware import cpu_model_and_flags
from rlhf_stack.core.precision import choose
from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.errors import ModelError
from rlhf_stack.core.pipeline import config_hash, run_jobs
from rlhf_stack.app.recipe import load_recipe
from stages.s4_evaluate.rm_metrics import METRICS
from stages.s4_evaluate.stage import jobs
from rlhf_stack.core.chat import sequence_ids, user_messages
from stages.s4_evaluate.rm_scorer import encode, encode_many, load_reward_model

REPO = Path(__file__).resolve().parents[2]
BENCHES = ("rewardbench", "rewardbench2", "rm_bench")


@pytest.fixture(scope="module")
def tiny_rm(tiny_model, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.value_head_prefix = "score"  # the OpenRLHF layout the distill stage exports
    folder = tmp_path_factory.mktemp("rm") / "checkpoint"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def make_recipe(tmp_path, rm_dir, tokens_per_batch=2048):
    raw = {"name": "s4rm", "run_dir": str(tmp_path / "run"), "models": {"rm": str(rm_dir)},
           "data": {"prompts": str(REPO / "recipes" / "data" / "tiny_prompts.jsonl")},
           "evaluate": {"reward_models": {"ext": "rm"},
                        "rm_benchmarks": {**{b: {"source": "smoke"} for b in BENCHES},
                                          "tokens_per_batch": tokens_per_batch}}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def test_rm_job_scores_every_benchmark_and_the_numbers_recompute(tmp_path, tiny_rm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recipe = make_recipe(tmp_path, tiny_rm, tokens_per_batch=300)  # several batches of different widths
    assert run_jobs(recipe, jobs(recipe), {"evaluate"}) == {"s4_evaluate/rm/ext": "ran"}
    folder = recipe.run_path / "s4_evaluate" / "rm" / "ext"
    manifest = read_manifest(folder)
    assert manifest.kind == "evaluation" and set(manifest.summary) == set(BENCHES) | {"precision", "threads"}
    assert manifest.summary["precision"] == {"reward model scoring": choose("cpu", cpu_model_and_flags()[1])}
    results = json.loads((folder / "results.json").read_text())
    for bench in BENCHES:
        records = [json.loads(line) for line in (folder / f"scores-{bench}.jsonl").read_text().splitlines()]
        recomputed = METRICS[bench](records)
        assert results["benchmarks"][bench]["score"] == pytest.approx(recomputed["score"])
        assert results["benchmarks"][bench]["stand_in"] is True
        assert manifest.summary[bench] == pytest.approx(recomputed["score"])
    assert set(results["benchmarks"]["rewardbench"]["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"}

    # A batched reward is the reward of the sequence alone, read by transformers' own classifier.
    rows = [json.loads(line) for line in
            (REPO / "stages/s4_evaluate/data/rewardbench_smoke.jsonl").read_text().splitlines()]
    saved = {r["id"]: r for r in map(json.loads, (folder / "scores-rewardbench.jsonl").read_text().splitlines())}
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_rm).eval()
    tok = AutoTokenizer.from_pretrained(tiny_rm)
    for row in rows[:4]:
        ids, _ = sequence_ids(tok, user_messages(row["prompt"]), row["rejected"])
        with torch.no_grad():
            alone = hf(torch.tensor([ids])).logits.item()
        assert saved[str(row["id"])]["rejected"][0] == pytest.approx(alone, abs=1e-4)

    assert run_jobs(recipe, jobs(recipe), {"evaluate"}) == {"s4_evaluate/rm/ext": "skipped"}


def test_a_killed_rm_job_keeps_finished_benchmarks(tmp_path, tiny_rm):
    recipe = make_recipe(tmp_path, tiny_rm)
    (job,) = jobs(recipe)
    folder = recipe.run_path / job.folder
    # What a run killed after RewardBench leaves behind: its scores, and the scratch key of the same config.
    (folder / "_work").mkdir(parents=True)
    (folder / "_work" / "job_key.json").write_text(json.dumps({"config_hash": config_hash(job, recipe.run_path)}))
    (folder / "_work" / "rewardbench.json").write_text(json.dumps({"truncated_sequences": 0}))
    rows = [json.loads(line) for line in
            (REPO / "stages/s4_evaluate/data/rewardbench_smoke.jsonl").read_text().splitlines()]
    (folder / "scores-rewardbench.jsonl").write_text("".join(
        json.dumps({"id": str(r["id"]), "group": r["subset"], "chosen": [1.0], "rejected": [0.0]}) + "\n"
        for r in rows))
    run_jobs(recipe, jobs(recipe), {"evaluate"})
    results = json.loads((folder / "results.json").read_text())["benchmarks"]
    assert results["rewardbench"]["score"] == 100.0  # the kept scores, not a rescoring by the random RM
    assert "rm_bench" in results and not (folder / "_work").exists()


def test_a_model_without_a_score_head_is_refused(tiny_model):
    with pytest.raises(ModelError, match="saved head"):
        load_reward_model(tiny_model)


def test_batch_encoding_equals_one_at_a_time_and_cuts_only_the_prompt(tiny_rm):
    rm = load_reward_model(tiny_rm, max_length_tokens=40)
    long_prompt = "Explain why the sky is blue, in detail please. " * 6
    pairs = [("Hi?", "Hello there."), (long_prompt, "Because of scattering."), ("Hi?", ""), (long_prompt, "x " * 60)]
    assert encode_many(rm, pairs) == [encode(rm, p, r) for p, r in pairs]
    ids, cut = encode(rm, long_prompt, "Because of scattering.")
    assert cut and len(ids) == 40 and ids[-1] == rm.tokenizer.eos_token_id
    assert rm.tokenizer.decode(ids).endswith("Because of scattering." + rm.tokenizer.eos_token)
    assert encode(rm, "Hi?", "Hello there.")[1] is False
