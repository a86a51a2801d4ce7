"""Stage s2 on tiny models with real DeepSpeed: training, export, held-out metrics, resume, NaN stop, ZeRO, Ray ranks.

The synthesis artifact is built here: learnable pairs (chosen answers say good things, rejected ones bad things),
teacher answers y_T with top-k logprobs from a real forward pass of the tiny teacher.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlhf_stack.core import chat
from rlhf_stack.core.artifacts import publish, read_manifest
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.pipeline import run_jobs
from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.records import (Candidate, InitialPair, PairJudgment, PreferenceRecord, Refinement, TeacherAnswer,
                                write_jsonl)
from rlhf_stack.core.topk_store import write_topk
from ray_cluster.session import shutdown
from stages.s2_distill import trainer
from stages.s2_distill.trainer import TrainingError

REPO = Path(__file__).resolve().parents[2]
GOOD = "good helpful polite clear correct".split()
BAD = "bad rude wrong vague useless".split()
FILLER = "the answer is about the module and its function with a list of values".split()
TOPK_FILE = "teacher_topk-00000.safetensors"
RM_DISTILLER = "{pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 1.0, kl_weight: 0.5}"
NO_REG = "{pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 0.0, kl_weight: 0.0}"
# Reduction order differs between ZeRO stages and rank counts (and between CPUs' matmul kernels); Adam turns those
# float differences into weight differences below a quarter of one learning-rate step (2e-3; seen: up to 2.1e-4 on
# an AVX-512 Xeon under ZeRO-3), while a wrong data order or gradient average moves weights by whole steps.
SAME_MODEL_ATOL = 5e-4
BINARY_BT = "{pairs: initial, margin: none, objective: bt, sft_weight: 0.0, kl_weight: 0.0}"


def build_records(teacher_dir: Path, n: int, seed: int = 0, top_k: int = 8):
    """Preference records whose pairs a reward model can learn, and the teacher's top-k for each y_T."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    records, topk = [], {}
    for i in range(n):
        rid = f"p{i:03d}"
        prompt = f"Question {i}: " + " ".join(rng.choices(FILLER, k=rng.randint(3, 30)))
        body = " ".join(rng.choices(FILLER, k=rng.randint(2, 40)))
        n_good = rng.randint(1, 4)
        chosen = f"{body} " + " ".join(rng.choices(GOOD, k=n_good))
        rejected = f"{body} " + " ".join(rng.choices(BAD, k=rng.randint(1, 4)))
        answer = "a good and helpful answer: " + body
        ids = chat.response_ids(tok, answer)
        prompt_ids = chat.prompt_ids(tok, chat.user_messages(prompt))
        with torch.no_grad():
            logits = teacher(torch.tensor([prompt_ids + ids])).logits[0, len(prompt_ids) - 1: -1]
        best = logits.log_softmax(-1).topk(top_k)
        topk[rid] = (best.indices.numpy().astype(np.int32), best.values.numpy().astype(np.float32))
        s_w, s_l = 5.0 + n_good, 3.0
        records.append(PreferenceRecord(
            id=rid, prompt=prompt,
            candidates=[Candidate(generator="policy", text=chosen, finish_reason="stop"),
                        Candidate(generator="teacher", text=rejected, finish_reason="stop")],
            initial=InitialPair(chosen_index=0, rejected_index=1, chosen=chosen, rejected=rejected,
                                chosen_score=s_w, rejected_score=s_l,
                                judgments=[PairJudgment(first=0, second=1, scores=(s_w, s_l))]),
            teacher_answer=TeacherAnswer(text=answer, token_ids=ids, finish_reason="stop", topk_file=TOPK_FILE),
            refinement=None if i % 8 == 7 else Refinement(
                chosen=f"{chosen} {GOOD[0]}", completion="(diagnosis and edit)", calibrated_score=s_w + 1,
                margin=s_w + 1 - s_l, edit_distance=0.1),
        ))
    return records, topk


@pytest.fixture(scope="module")
def s1_artifact(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("s1") / "s1_synthesize"
    records, topk = build_records(tiny_model, n=48)
    write_jsonl(folder / "records-00000.jsonl", records)
    write_topk(folder / TOPK_FILE, topk)
    publish(folder, kind="preference_data", stage="synthesize", rel_folder="s1_synthesize", config_hash="fixture",
            inputs={}, summary={}, wall_time_s=0.0)
    return folder


def make_recipe(run_dir: Path, s1: Path, variants: dict[str, str], overrides: list[str] = (), teacher: str =
                "tiny-random-llama"):
    if not (run_dir / "s1_synthesize").exists():
        shutil.copytree(s1, run_dir / "s1_synthesize")
    lines = "\n".join(f"    {name}: {spec}" for name, spec in variants.items())
    (run_dir / "recipe.yaml").write_text(f"""
name: s2_test
run_dir: {run_dir}
cluster: {{address: local, num_cpus: 2}}
models:
  teacher: {teacher}
  policy: {{source: tiny-random-llama, seed: 1}}
data:
  prompts: {REPO / "recipes/data/tiny_prompts.jsonl"}
synthesize:
  teacher: teacher
  generators: [policy, teacher]
distill:
  base_model: policy
  variants:
{lines}
  max_length_tokens: 96
  pairs_per_step: 4
  micro_pairs_per_device: 2
  cpus_per_process: 1  # tiny matrices: a second thread only adds synchronization
  dtype: fp32
  lr: 2.0e-3
  lr_schedule: constant
  epochs: 2
  held_out_fraction: 0.25
""")
    return load_recipe(run_dir / "recipe.yaml", list(overrides))


def distill(recipe, dry_run: bool = False) -> dict[str, str]:
    import stages.s2_distill as s2

    return run_jobs(recipe, s2.jobs(recipe), {"distill"}, dry_run=dry_run)


def summary(run_dir: Path, variant: str) -> dict:
    return read_manifest(run_dir / "s2_distill" / variant).summary


def metrics(run_dir: Path, variant: str) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "s2_distill" / variant / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir: Path, variant: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "s2_distill" / variant / "checkpoint" / "model.safetensors")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, s1_artifact) -> Path:
    """One single-process run (ZeRO 0, fp32) of three variants; other tests compare against it."""
    run_dir = tmp_path_factory.mktemp("run")
    recipe = make_recipe(run_dir, s1_artifact, {"rm_distiller": RM_DISTILLER, "no_reg": NO_REG,
                                                "binary_bt": BINARY_BT})
    assert distill(recipe) == {f"s2_distill/{v}": "ran" for v in ("rm_distiller", "no_reg", "binary_bt")}
    return run_dir


def test_variants_train_export_and_report(trained):
    for variant in ("rm_distiller", "no_reg", "binary_bt"):
        s = summary(trained, variant)
        assert s["train_pairs"] > 20 and s["held_out_pairs"] >= 8 and s["steps"] == 2 * (s["train_pairs"] // 4)
        assert s["held_out_accuracy"] >= 0.8, (variant, s)  # good-vs-bad answers are learnable
        lines = metrics(trained, variant)
        assert [x["step"] for x in lines[:-1]] == list(range(1, s["steps"] + 1))
        assert lines[-1]["final"] and lines[-1]["held_out_accuracy"] == s["held_out_accuracy"]
        assert ("sft_loss" in lines[0]) == (variant == "rm_distiller") == ("kl_loss" in lines[0])
    reg, no_reg = summary(trained, "rm_distiller"), summary(trained, "no_reg")
    assert (reg["sft_weight"], reg["kl_weight"], reg["objective"]) == (1.0, 0.5, "margin_mse")  # D2: recorded
    # The regularizer keeps (here: improves) language modelling on held-out teacher answers; without it the
    # reward training drifts the backbone away.
    assert reg["held_out_lm_loss"] < reg["held_out_lm_loss_before"] - 0.5
    assert reg["held_out_lm_loss"] < no_reg["held_out_lm_loss"] - 0.5
    # Calibrated margins are learned: reward gaps rank like the teacher's margins on held-out refined pairs
    # (more slowly while the regularizer also pulls on the backbone).
    assert no_reg["held_out_margin_spearman_refined"] > 0.5 and reg["held_out_margin_spearman_refined"] > 0.3


def test_exported_checkpoint_is_a_sequence_classifier(trained, tiny_policy):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = trained / "s2_distill" / "binary_bt" / "checkpoint"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["value_head_prefix"] == "score"
    assert config["pad_token_id"] != config["eos_token_id"]
    tensors = weights(trained, "binary_bt")
    assert tensors["score.weight"].shape == (1, 128) and "score.bias" not in tensors
    assert not any(k.startswith("lm_head") for k in tensors)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.get_vocab() == AutoTokenizer.from_pretrained(tiny_policy).get_vocab()
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    prompt = chat.user_messages("Question 1: the answer")
    good, _ = chat.sequence_ids(tok, prompt, "the answer is good helpful polite")
    bad, _ = chat.sequence_ids(tok, prompt, "the answer is bad rude wrong")
    with torch.no_grad():
        rewards = [model(torch.tensor([ids])).logits.item() for ids in (good, bad)]
    assert rewards[0] > rewards[1]


def test_killed_run_resumes_to_the_same_result(tmp_path, s1_artifact, trained, monkeypatch):
    """Killed in step 5 (checkpoints every 2 steps): the rerun resumes from step 4 and ends as if never killed."""
    recipe = make_recipe(tmp_path, s1_artifact, {"rm_distiller": RM_DISTILLER}, ["distill.checkpoint_every_steps=2"])
    calls = {"n": 0}
    real_step_loss = trainer.step_loss

    def killed_in_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 * 2 + 1:  # 2 micro-batches per step
            raise KeyboardInterrupt("killed")
        return real_step_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "step_loss", killed_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        distill(recipe)
    work = tmp_path / "s2_distill" / "rm_distiller" / "_work"
    assert [p.name for p in (work / "checkpoints").glob("step-*")] == ["step-00000004"]
    monkeypatch.setattr(trainer, "step_loss", real_step_loss)
    assert distill(recipe) == {"s2_distill/rm_distiller": "ran"}

    resumed, reference = weights(tmp_path, "rm_distiller"), weights(trained, "rm_distiller")
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=1e-6)
    drop = {"pairs_per_s"}
    got = [{k: v for k, v in x.items() if k not in drop} for x in metrics(tmp_path, "rm_distiller")]
    want = [{k: v for k, v in x.items() if k not in drop} for x in metrics(trained, "rm_distiller")]
    assert_close_lines(got, want)


def assert_close_lines(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (k, a, b)


def test_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path, s1_artifact):
    recipe = make_recipe(tmp_path, s1_artifact, {"binary_bt": BINARY_BT},
                         ["distill.lr=1e30", "distill.checkpoint_every_steps=1"])
    with pytest.raises(TrainingError, match=r"loss is not finite at step (\d+).*last good checkpoint") as err:
        distill(recipe)
    failed_step = int(err.value.args[0].split("at step ")[1].split()[0])
    folder = tmp_path / "s2_distill" / "binary_bt"
    kept = sorted(p.name for p in (folder / "_work" / "checkpoints").glob("step-*"))
    assert failed_step >= 2 and kept == [f"step-{failed_step - 1:08d}"]
    assert not (folder / "manifest.json").exists() and not (folder / "checkpoint").exists()


@pytest.mark.parametrize("overrides", [["distill.zero_stage=3"], ["distill.gradient_checkpointing=true"]],
                         ids=["zero3", "gradient_checkpointing"])
def test_memory_savers_give_the_same_model(tmp_path, s1_artifact, trained, overrides):
    recipe = make_recipe(tmp_path, s1_artifact, {"binary_bt": BINARY_BT}, overrides)
    distill(recipe)
    got, want = weights(tmp_path, "binary_bt"), weights(trained, "binary_bt")
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=SAME_MODEL_ATOL)


def test_two_ranks_on_ray_match_one_process(tmp_path, s1_artifact, trained):
    """Two data-parallel ranks (Ray actors, gloo, ZeRO-2) see the same micro-batches as one rank accumulating."""
    recipe = make_recipe(tmp_path, s1_artifact, {"binary_bt": BINARY_BT},
                         ["distill.num_processes=2", "distill.zero_stage=2"])
    try:
        distill(recipe)
    finally:
        shutdown()
    assert summary(tmp_path, "binary_bt")["gradient_accumulation_steps"] == 1
    got, want = weights(tmp_path, "binary_bt"), weights(trained, "binary_bt")
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=SAME_MODEL_ATOL)


def test_bf16_training_exports_bf16_weights(tmp_path, s1_artifact):
    # On a CPU without AMX validate refuses an explicit bf16 unless the recipe insists (rlhf_stack/core/precision.py).
    recipe = make_recipe(tmp_path, s1_artifact, {"binary_bt": BINARY_BT},
                         ["distill.dtype=bf16", "distill.zero_stage=1", "compute.allow_slow_precision=true"])
    distill(recipe)
    assert weights(tmp_path, "binary_bt")["score.weight"].dtype == torch.bfloat16
    assert summary(tmp_path, "binary_bt")["precision"] == {"reward model training": "bf16"}  # DeepSpeed's module
    assert summary(tmp_path, "binary_bt")["held_out_accuracy"] >= 0.8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rank_trains_in_bf16_with_zero2(tmp_path, s1_artifact):
    """Run alone on a GPU machine (`-k cuda`): DeepSpeed picks one accelerator per process."""
    recipe = make_recipe(tmp_path, s1_artifact, {"rm_distiller": RM_DISTILLER},
                         ["distill.gpus_per_process=1", "distill.dtype=bf16", "distill.zero_stage=2"])
    distill(recipe)
    s = summary(tmp_path, "rm_distiller")
    assert s["held_out_accuracy"] >= 0.8 and s["held_out_lm_loss"] < s["held_out_lm_loss_before"] - 0.5
    assert weights(tmp_path, "rm_distiller")["score.weight"].dtype == torch.bfloat16


def test_kl_takes_a_teacher_that_extends_the_vocabulary_and_refuses_one_that_moves_ids(tmp_path, s1_artifact,
                                                                                       tiny_model):
    import json

    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_model, teacher)
    tok = AutoTokenizer.from_pretrained(teacher)
    tok.add_tokens(["<think>", "</think>"])  # after the student's ids, as Qwen3's tokens follow Qwen2.5's
    tok.save_pretrained(teacher)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recipe = make_recipe(run_dir, s1_artifact, {"rm_distiller": RM_DISTILLER, "sft_only":
                         "{pairs: refined, margin: calibrated, objective: margin_mse, sft_weight: 1.0, kl_weight: 0}"},
                         teacher=str(teacher))
    assert distill(recipe, dry_run=True) == {"s2_distill/rm_distiller": "dry-run", "s2_distill/sft_only": "dry-run"}

    # The teacher's tokenizer changes after validation (two tokens swap ids): the stage checks again before training.
    data = json.loads(tok.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    vocab["the"], vocab["and"] = vocab["and"], vocab["the"]
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), eos_token=tok.eos_token,
                            pad_token=tok.pad_token).save_pretrained(teacher)
    with pytest.raises(RecipeError, match=r"distill.variants.rm_distiller.kl_weight: .*does not extend the student's"):
        distill(recipe, dry_run=True)
    import stages.s2_distill as s2

    sft_only = [j for j in s2.jobs(recipe) if j.folder.endswith("sft_only")]
    assert run_jobs(recipe, sft_only, {"distill"}, dry_run=True) == {"s2_distill/sft_only": "dry-run"}


def test_too_few_pairs_for_one_step_is_a_recipe_error(tmp_path, s1_artifact):
    recipe = make_recipe(tmp_path, s1_artifact, {"binary_bt": BINARY_BT}, ["distill.pairs_per_step=64"])
    with pytest.raises(RecipeError, match=r"distill.pairs_per_step: .* fewer than pairs_per_step \(64\)"):
        distill(recipe, dry_run=True)


def test_a_training_share_is_a_nested_subset_of_the_pairs_and_enters_the_key(tmp_path, s1_artifact, tiny_model):
    """distill.train_prompt_fraction (learning curves): each share trains on a subset of the next larger share's
    pairs, every variant on the same prompts; the default (1) leaves the job key as it was before the setting."""
    from transformers import AutoTokenizer

    import stages.s2_distill as s2
    from stages.s2_distill.pairs import read_records
    from stages.s2_distill.prepare import prepare_data

    records = read_records(s1_artifact)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trained_ids = {}
    for fraction in (0.5, 1.0):
        recipe = make_recipe(tmp_path / str(fraction), s1_artifact, {"rm_distiller": RM_DISTILLER,
                                                                     "binary_bt": BINARY_BT},
                             [f"distill.train_prompt_fraction={fraction}", "distill.pairs_per_step=2",
                              "distill.micro_pairs_per_device=1"])
        cfg = recipe.distill
        for variant in cfg.variants:
            data, info = prepare_data(records, tok, cfg, variant, s1_artifact, seed=0)
            assert info["train_pairs"] == len(data.train) and info["train_prompt_fraction"] == fraction
            trained_ids[(fraction, variant)] = {p.id for p in data.train}
        key = s2.jobs(recipe)[0].key["distill"]
        assert ("train_prompt_fraction" in key) == (fraction < 1)
    # refined pairs exist for 7 of 8 records, initial pairs for all: each variant keeps its own pairs of the share
    half, full = trained_ids[(0.5, "binary_bt")], trained_ids[(1.0, "binary_bt")]
    assert half < full and 0.25 * len(full) < len(half) < 0.75 * len(full)
    assert trained_ids[(0.5, "rm_distiller")] == half & trained_ids[(1.0, "rm_distiller")]
