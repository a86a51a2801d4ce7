"""Reward-model training throughput: the distill stage's trainer vs TRL's `RewardTrainer`, in one run.

    python -m bench.rm_trainer [--model smollm2-135m-instruct|tiny-random-llama|PATH] [--pairs 96]
                               [--pairs-per-step 8] [--micro-pairs 4] [--max-length 512] [--dtype bf16|fp32]
                               [--padding-free]

Both trainers get the same model, the same token ids (chat-template prompt, response, EOS; response lengths
spread like real preference data), the same micro-batch, pairs per step, optimizer (AdamW), learning rate and
dtype, and a Bradley-Terry loss. TRL runs twice: with its defaults (gradient checkpointing on) and with gradient
checkpointing off. Each trainer runs in its own process so its peak memory is its own. The first optimizer step
is a warm-up and is not timed. Prints, for each, pairs per second of wall time and per second of process CPU time
(on a machine shared with other work the second is the steadier measure), peak memory, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from bench.bound import TRAIN_FLOPS_PER_PARAM, bound_line, probe, weights
from rlhf_stack.core import chat
from rlhf_stack.core.hardware import local_device
from rlhf_stack.core.precision import resolve
from rlhf_stack.core.models import ModelSpec, resolve_model
from stages.s2_distill import trainer
from stages.s2_distill.encode import EncodedPair
from stages.s2_distill.launch import free_port
from stages.s2_distill.settings import TrainData, TrainSettings
from stages.s2_distill.tokenizers import load_student_tokenizer

CORPUS_MODULES = ("argparse", "collections", "functools", "json", "pathlib", "random", "statistics", "textwrap",
                  "typing", "itertools", "logging", "unittest")


def make_pairs(model_dir: Path, count: int, max_length: int, seed: int = 0) -> list[dict]:
    """Token ids of (chosen, rejected) pairs: real text, prompt 16-128 tokens, responses log-uniform 8-400."""
    import importlib
    import inspect

    import numpy as np
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = "\n".join(inspect.getdoc(obj) or "" for name in CORPUS_MODULES
                     for _, obj in sorted(vars(importlib.import_module(name)).items()) if callable(obj))
    corpus = tok(text, add_special_tokens=False)["input_ids"]
    rng = np.random.default_rng(seed)

    def span(n: int) -> list[int]:
        start = int(rng.integers(0, len(corpus) - n))
        return corpus[start: start + n]

    def response_length() -> int:
        return int(np.exp(rng.uniform(np.log(8), np.log(400))))

    pairs = []
    for _ in range(count):
        prompt = chat.prompt_ids(tok, chat.user_messages(tok.decode(span(int(rng.integers(16, 128))))))
        rows = [(prompt + span(response_length()) + [tok.eos_token_id])[-max_length:] for _ in range(2)]
        pairs.append({"chosen_ids": rows[0], "rejected_ids": rows[1]})
    return pairs


class StepClock:
    """Wall and process-CPU seconds of each optimizer step."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)

    def result(self, pairs_per_step: int) -> dict:
        """Rates over the steps after the first (a warm-up)."""
        timed = len(self.wall) - 1
        return {"pairs_per_s": timed * pairs_per_step / sum(self.wall[1:]),
                "pairs_per_cpu_s": timed * pairs_per_step / sum(self.cpu[1:])}


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_ours(args, pairs: list[dict], work: Path) -> dict:
    import torch

    tok = load_student_tokenizer(args.model_dir)
    train = [EncodedPair(str(i), p["chosen_ids"], p["rejected_ids"], None, 0.0) for i, p in enumerate(pairs)]
    steps = len(pairs) // args.pairs_per_step
    split_rows = args.split_rows_min_saving
    if split_rows is None:  # the stage's default
        split_rows = 1.0 if torch.cuda.is_available() else 0.1
    settings = TrainSettings(
        model_dir=args.model_dir, work_dir=work, out_dir=None, objective="bt", sft_weight=0.0, kl_weight=0.0,
        kl_temperature=1.0, pad_token_id=tok.pad_token_id, num_steps=steps, pairs_per_step=args.pairs_per_step,
        micro_pairs=args.micro_pairs, world_size=1, zero_stage=0, dtype=args.dtype,
        device="cuda" if torch.cuda.is_available() else "cpu", gradient_checkpointing=False, lr=1e-5,
        lr_schedule="constant", warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0, group_by_length=True,
        split_rows_min_saving=split_rows, padding_free=args.padding_free,
        checkpoint_every_steps=None, seed=0,  # TRL saves nothing either
    )
    data = TrainData(train=train, held_out={"initial": []}, held_out_answers=[], own_pairs="initial")
    clock, one_step = StepClock(), trainer._one_step

    def timed_step(*a, **kw):  # instrumentation only: the step itself is the trainer's
        clock.start()
        one_step(*a, **kw)
        clock.stop()

    trainer._one_step = timed_step
    result = trainer.train_rank(settings, data, rank=0, master_addr="127.0.0.1", master_port=free_port())
    return {**clock.result(args.pairs_per_step), "final_loss": result.metrics[-1]["loss"]}


def run_trl(args, pairs: list[dict], work: Path, gradient_checkpointing: bool) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    tok = load_student_tokenizer(args.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    clock = StepClock()

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            clock.start()

        def on_step_end(self, *a, **kw):
            clock.stop()

    config = RewardConfig(
        output_dir=str(work), per_device_train_batch_size=args.micro_pairs,
        gradient_accumulation_steps=args.pairs_per_step // args.micro_pairs,
        max_steps=len(pairs) // args.pairs_per_step, learning_rate=1e-5, lr_scheduler_type="constant",
        bf16=args.dtype == "bf16", gradient_checkpointing=gradient_checkpointing, max_length=args.max_length,
        save_strategy="no", report_to=[], logging_steps=10**9, dataloader_num_workers=0, seed=0,
        use_cpu=not torch.cuda.is_available(), max_grad_norm=1.0,
    )
    trainer = RewardTrainer(model=model, args=config, processing_class=tok,
                            train_dataset=Dataset.from_list(pairs), callbacks=[StepTimer()])
    out = trainer.train()
    return {**clock.result(args.pairs_per_step), "final_loss": out.training_loss}


def worker(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = json.loads(Path(args.data).read_text())
    with tempfile.TemporaryDirectory() as work:
        if args.worker == "ours":
            result = run_ours(args, pairs, Path(work))
        else:
            result = run_trl(args, pairs, Path(work), gradient_checkpointing=args.worker == "trl")
    result["peak_memory_mb"] = peak_memory_mb()
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--pairs-per-step", type=int, default=8)
    parser.add_argument("--micro-pairs", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--threads", type=int, help="torch threads per trainer (default: torch's choice)")
    parser.add_argument("--split-rows-min-saving", type=float, help="distill.split_rows_min_saving (default: "
                        "the stage's: 0.1 on CPU, one pass on GPU)")
    parser.add_argument("--padding-free", action="store_true",
                        help="distill.padding_free: each micro-batch's rows as one packed sequence")
    parser.add_argument("--worker", choices=("ours", "trl", "trl_no_checkpointing"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = resolve(args.dtype, local_device())  # what the distill stage would choose here
    if args.worker:
        return worker(args)
    bound = probe()

    model_dir = resolve_model(ModelSpec(source=args.model), Path.cwd())
    pairs = make_pairs(model_dir, args.pairs, args.max_length)
    lengths = sorted(len(p["chosen_ids"]) for p in pairs) + sorted(len(p["rejected_ids"]) for p in pairs)
    print(f"{args.model}: {args.pairs} pairs, sequence lengths {min(lengths)}-{max(lengths)} tokens, "
          f"{args.pairs_per_step} pairs/step, micro-batch {args.micro_pairs} pairs, {args.dtype}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.json"
        data.write_text(json.dumps(pairs))
        for name in ("ours", "trl", "trl_no_checkpointing"):
            cmd = [sys.executable, "-m", "bench.rm_trainer", "--worker", name, "--data", str(data),
                   "--model-dir", str(model_dir), *sys.argv[1:]]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results[name] = json.loads(line[0][len("RESULT "):])
    labels = {"ours": "distill trainer (DeepSpeed)", "trl": "TRL RewardTrainer (defaults)",
              "trl_no_checkpointing": "TRL RewardTrainer, no grad. ckpt"}
    print(f"{'trainer':<34} {'pairs/s':>8} {'pairs/CPU-s':>12} {'peak MB':>9} {'final loss':>11}")
    for name, r in results.items():
        print(f"{labels[name]:<34} {r['pairs_per_s']:8.3f} {r['pairs_per_cpu_s']:12.3f} {r['peak_memory_mb']:9.0f} "
              f"{r['final_loss']:11.4f}")
    flops_per_pair = TRAIN_FLOPS_PER_PARAM * weights(model_dir) * sum(lengths) / len(pairs)  # chosen + rejected
    for name, r in results.items():
        print(bound_line(labels[name], r["pairs_per_s"] * flops_per_pair, args.dtype, bound))
    for name in ("trl", "trl_no_checkpointing"):
        wall = results["ours"]["pairs_per_s"] / results[name]["pairs_per_s"]
        cpu = results["ours"]["pairs_per_cpu_s"] / results[name]["pairs_per_cpu_s"]
        print(f"speed-up vs {labels[name]}: {wall:.2f}x wall time, {cpu:.2f}x CPU time")


if __name__ == "__main__":
    main()
