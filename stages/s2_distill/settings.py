"""What a training rank gets: frozen settings built from the recipe (never the recipe itself) and the token ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.s2_distill.config import DistillConfig, VariantConfig
from stages.s2_distill.encode import AnswerRow, EncodedPair


@dataclass(frozen=True)
class TrainData:
    train: list[EncodedPair]
    held_out: dict[str, list[EncodedPair]]  # pair type (initial | refined) -> held-out pairs
    held_out_answers: list[AnswerRow]  # re-tokenized y_T of held-out prompts, for the LM loss
    own_pairs: str  # the variant's pair type


@dataclass(frozen=True)
class TrainSettings:
    model_dir: Path  # the base causal LM
    work_dir: Path  # resumable state (checkpoints, partial metrics)
    out_dir: Path | None  # where rank 0 exports the checkpoint; None: no export (benchmarks)
    objective: str
    sft_weight: float
    kl_weight: float
    kl_temperature: float
    pad_token_id: int
    num_steps: int
    pairs_per_step: int
    micro_pairs: int
    world_size: int
    zero_stage: int
    dtype: str  # auto | bf16 | fp16 | fp32; a rank resolves auto where it runs (train_rank)
    device: str  # cpu | cuda
    gradient_checkpointing: bool
    lr: float
    lr_schedule: str
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    group_by_length: bool
    split_rows_min_saving: float
    padding_free: bool
    checkpoint_every_steps: int | None  # None: no checkpoints (benchmarks)
    seed: int

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.pairs_per_step // (self.micro_pairs * self.world_size)

    @property
    def answers(self) -> str:
        """Which y_T rows training batches carry: none, sft (targets) or topk (targets + teacher top-k)."""
        if self.kl_weight > 0:
            return "topk"
        return "sft" if self.sft_weight > 0 else "none"

    @classmethod
    def build(cls, cfg: DistillConfig, variant: VariantConfig, *, model_dir: Path, work_dir: Path,
              out_dir: Path | None, pad_token_id: int, num_steps: int, seed: int) -> "TrainSettings":
        return cls(
            model_dir=model_dir, work_dir=work_dir, out_dir=out_dir, objective=variant.objective,
            sft_weight=variant.sft_weight, kl_weight=variant.kl_weight, kl_temperature=variant.kl_temperature,
            pad_token_id=pad_token_id, num_steps=num_steps, pairs_per_step=cfg.pairs_per_step,
            micro_pairs=cfg.micro_pairs_per_device, world_size=cfg.num_processes, zero_stage=cfg.zero_stage,
            dtype=cfg.dtype, device="cuda" if cfg.gpus_per_process else "cpu",
            gradient_checkpointing=cfg.gradient_checkpointing, lr=cfg.lr, lr_schedule=cfg.lr_schedule,
            warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            group_by_length=cfg.group_by_length, split_rows_min_saving=cfg.split_rows,
            padding_free=cfg.padding_free,
            checkpoint_every_steps=cfg.checkpoint_every_steps, seed=seed,
        )
