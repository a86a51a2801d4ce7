"""One training rank: DeepSpeed steps over a seeded plan, checkpoints, held-out evaluation, export on rank 0.

Every rank runs `train_rank` with the same settings and data; ranks differ only in the micro-batches the plan
gives them. A killed run resumes from its newest checkpoint and replays the remaining steps exactly.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from rlhf_stack.core.errors import RlhfStackError
from rlhf_stack.core.precision import of_model, resolve
from rlhf_stack.core.progress import Progress
from stages.s2_distill import engine as ds
from stages.s2_distill.batching import Batch, collate, step_plan
from stages.s2_distill.evaluate import answers_lm_loss, pair_metrics, pair_rewards
from stages.s2_distill.losses import kl_topk_loss, pair_loss, sft_loss
from stages.s2_distill.settings import TrainData, TrainSettings
from stages.s2_distill.student import load_student
from stages.s2_distill.export import export_reward_model
from stages.s2_distill.tokenizers import load_student_tokenizer

METRICS = "metrics.jsonl"
VERIFY_SEQUENCES = 8


class TrainingError(RlhfStackError):
    """Training cannot go on (e.g. the loss is no longer finite)."""


@dataclass
class RankResult:
    metrics: list[dict[str, Any]] = field(default_factory=list)  # one line per optimizer step
    final: dict[str, Any] = field(default_factory=dict)  # held-out metrics
    export: dict[str, Any] | None = None
    precision: str | None = None  # of the weights DeepSpeed trained, read from the engine's module
    threads: int | None = None  # torch threads of the rank


def train_rank(s: TrainSettings, data: TrainData, rank: int, master_addr: str, master_port: int) -> RankResult:
    """Trains, evaluates and (rank 0, when s.out_dir is set) exports; the result is complete on rank 0 only."""
    ds.init_distributed(rank, s.world_size, master_addr, master_port, s.device)
    return _train(replace(s, dtype=resolve(s.dtype, s.device)), data, rank)


def _train(s: TrainSettings, data: TrainData, rank: int) -> RankResult:
    device = torch.device("cuda", 0) if s.device == "cuda" else torch.device("cpu")
    torch.manual_seed(s.seed)
    student = load_student(s.model_dir, head_seed=s.seed, gradient_checkpointing=s.gradient_checkpointing,
                           split_min_saving=s.split_rows_min_saving, padding_free=s.padding_free)
    head_init = student.score.weight.detach().clone()
    backbone_prefix = student.backbone_prefix
    model = ds.initialize(student, s)
    state = ds.load_checkpoint(model, s.work_dir)

    def forward(batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        return model(batch.input_ids, batch.attention_mask, 2 * batch.num_pairs, batch.lm_rows, batch.lm_cols)

    if state is None:
        model.eval()
        state = {"step": 0, "base_lm_loss": answers_lm_loss(forward, data.held_out_answers, 2 * s.micro_pairs,
                                                             s.pad_token_id, device)}
    log = MetricsLog(s.work_dir / METRICS, keep_steps=state["step"], writer=rank == 0)
    model.train()
    _run_steps(model, forward, s, data, rank, device, state, log)

    model.eval()
    final, verify_rows, verify_rewards = _evaluate(forward, s, data, device)
    final["held_out_lm_loss_before"] = state["base_lm_loss"]
    weights = ds.full_state_dict(model, s.zero_stage)  # collective under ZeRO-3
    result = RankResult(metrics=log.lines, final=final, precision=of_model(model.module),
                        threads=torch.get_num_threads())
    if rank == 0 and s.out_dir is not None:
        result.export = export_reward_model(
            weights, head_init, model_dir=s.model_dir, tokenizer=load_student_tokenizer(s.model_dir),
            out_dir=s.out_dir / "checkpoint", dtype=s.dtype, backbone_prefix=backbone_prefix,
            verify_rows=verify_rows, expected_rewards=verify_rewards)
    ds.barrier()
    return result


def _run_steps(model, forward, s: TrainSettings, data: TrainData, rank: int, device: torch.device,
               state: dict[str, Any], log: "MetricsLog") -> None:
    """The optimizer steps after state["step"], each over this rank's micro-batches of the plan."""
    plan = step_plan([p.length for p in data.train], s.pairs_per_step, s.micro_pairs, s.world_size, s.num_steps,
                     s.seed, s.group_by_length)
    progress = Progress("distill: optimizer steps", total=s.num_steps) if rank == 0 else None
    with progress or contextlib.nullcontext():
        if progress:
            progress.advance(state["step"])
        for step in range(state["step"], s.num_steps):
            _one_step(model, forward, s, data, plan[step][rank], step, device, state, log)
            if progress:
                progress.advance()


def _one_step(model, forward, s: TrainSettings, data: TrainData, micro_batches: list[list[int]], step: int,
              device: torch.device, state: dict[str, Any], log: "MetricsLog") -> None:
    began = time.perf_counter()
    sums: dict[str, float] = {}
    for micro in micro_batches:
        batch = collate([data.train[i] for i in micro], s.pad_token_id, s.answers).to(device)
        loss, parts = step_loss(forward, batch, s)
        if not ds.all_finite(loss):  # every rank stops together, before a bad update
            raise TrainingError(_non_finite_message(step + 1, parts, s))
        model.backward(loss)
        model.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v / len(micro_batches)
    keys = sorted(sums)
    means = dict(zip(keys, ds.all_reduce_mean([sums[k] for k in keys], device), strict=True))
    log.append({"step": step + 1, **means, "lr": model.get_lr()[0],
                "pairs_per_s": s.pairs_per_step / (time.perf_counter() - began)})
    every = s.checkpoint_every_steps
    if every is not None and ((step + 1) % every == 0 or step + 1 == s.num_steps):
        ds.save_checkpoint(model, s.work_dir, step + 1, {"step": step + 1, "base_lm_loss": state["base_lm_loss"]})


def _evaluate(forward, s: TrainSettings, data: TrainData,
              device: torch.device) -> tuple[dict[str, Any], list[list[int]], list[float]]:
    """Held-out metrics, plus sequences and their rewards for checking the exported checkpoint against."""
    final: dict[str, Any] = {"held_out_lm_loss": answers_lm_loss(forward, data.held_out_answers,
                                                                 2 * s.micro_pairs, s.pad_token_id, device)}
    for kind, pairs in data.held_out.items():
        chosen, rejected = pair_rewards(forward, pairs, s.micro_pairs, s.pad_token_id, device)
        final[kind] = pair_metrics(chosen, rejected, [p.teacher_margin for p in pairs])
    verify = (data.held_out[data.own_pairs] or data.train)[:VERIFY_SEQUENCES]
    rewards = pair_rewards(forward, verify, s.micro_pairs, s.pad_token_id, device)[0]
    return final, [p.chosen for p in verify], rewards


def step_loss(forward, batch: Batch, s: TrainSettings) -> tuple[torch.Tensor, dict[str, float]]:
    """The variant's total loss on one micro-batch, and its parts for the metrics."""
    rewards, logits = forward(batch)
    b = batch.num_pairs
    chosen, rejected = rewards[:b], rewards[b:]
    loss = pair_loss(s.objective, chosen, rejected, batch.margin)
    parts = {"reward_loss": loss.item(), "accuracy": (chosen > rejected).float().mean().item()}
    if logits is not None:
        if s.sft_weight > 0:
            sft = sft_loss(logits, batch.lm_targets, batch.lm_seq, batch.num_answers)
            loss = loss + s.sft_weight * sft
            parts["sft_loss"] = sft.item()
        if s.kl_weight > 0:
            kl = kl_topk_loss(logits, batch.topk_ids, batch.topk_logprobs, batch.lm_seq, batch.num_answers,
                              s.kl_temperature)
            loss = loss + s.kl_weight * kl
            parts["kl_loss"] = kl.item()
    parts["loss"] = loss.item()
    return loss, parts


def _non_finite_message(step: int, parts: dict[str, float], s: TrainSettings) -> str:
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(parts.items()))
    saved = sorted((s.work_dir / ds.CHECKPOINTS).glob("step-*"))
    kept = (f"the last good checkpoint ({saved[-1].name}) stays in {saved[-1].parent}; rerunning the same recipe "
            "resumes from it" if saved else "no checkpoint had been written yet")
    fp32 = ", use dtype fp32" if s.dtype != "fp32" else ""
    return (f"distill: the loss is not finite at step {step} ({shown}); training stopped and {kept}. "
            f"Lower distill.lr (now {s.lr:g}){fp32}, or check the margins of the preference data")


class MetricsLog:
    """metrics.jsonl lines in the work folder; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, keep_steps: int, writer: bool):
        self.path = path
        self.writer = writer
        self.lines: list[dict[str, Any]] = []
        if path.exists():
            self.lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            self.lines = [x for x in self.lines if x["step"] <= keep_steps]
        if writer:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(x) + "\n" for x in self.lines))

    def append(self, line: dict[str, Any]) -> None:
        self.lines.append(line)
        if self.writer:
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")
