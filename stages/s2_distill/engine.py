"""Everything that touches DeepSpeed: process group, engine, checkpoints, the full weights for export.

DeepSpeed is imported only here, inside the functions, so the rest of the stage imports fast.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from rlhf_stack.core.models import cache_root
from stages.s2_distill.settings import TrainSettings

CHECKPOINTS = "checkpoints"


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int, device: str) -> None:
    """Joins (or starts) the process group, which then lives as long as the process (DeepSpeed caches groups).

    Every rank sees one device (Ray gives each GPU rank its own), so LOCAL_RANK is 0.
    """
    # The CPU build JIT-compiles a small op on first use (~26 s); keep it in the project cache.
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
    os.environ["DS_ACCELERATOR"] = device
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != device:  # DeepSpeed picks its accelerator once per process
        raise RuntimeError(f"this process already runs DeepSpeed on {get_accelerator().device_name()!r}; "
                           f"train on {device!r} in another process")

    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise RuntimeError(f"this process already belongs to a process group of {dist.get_world_size()} "
                               f"ranks; it cannot join one of {world_size}")
    else:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0",
                          MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
    deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(0)


def ds_config(s: TrainSettings) -> dict[str, Any]:
    return {
        "train_batch_size": s.pairs_per_step,
        "train_micro_batch_size_per_gpu": s.micro_pairs,
        "gradient_accumulation_steps": s.gradient_accumulation_steps,
        "gradient_clipping": s.max_grad_norm,
        "zero_optimization": {"stage": s.zero_stage},
        "bf16": {"enabled": s.dtype == "bf16"},
        "fp16": {"enabled": s.dtype == "fp16"},  # with DeepSpeed's dynamic loss scaling
        # torch's AdamW as the client optimizer: no JIT build of DeepSpeed's CPU Adam.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def lr_factor(step: int, s: TrainSettings) -> float:
    """Linear warm-up over warmup_ratio of the steps, then constant or cosine decay to 0."""
    warmup = math.ceil(s.warmup_ratio * s.num_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if s.lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, s.num_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def initialize(model: torch.nn.Module, s: TrainSettings) -> Any:
    """A DeepSpeed engine around the model, with AdamW and the learning-rate schedule."""
    import deepspeed

    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, s))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(s))
    return engine


def save_checkpoint(engine: Any, work_dir: Path, step: int, client_state: dict[str, Any]) -> None:
    """Saves the step's full training state, then removes older checkpoints (the newest good one stays)."""
    import torch.distributed as dist

    folder = work_dir / CHECKPOINTS
    tag = f"step-{step:08d}"
    engine.save_checkpoint(str(folder), tag=tag, client_state=client_state)
    dist.barrier()
    if dist.get_rank() == 0:
        for old in folder.glob("step-*"):
            if old.name != tag:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()


def load_checkpoint(engine: Any, work_dir: Path) -> dict[str, Any] | None:
    """Restores the newest checkpoint (weights, optimizer, schedule); its client state, or None if none."""
    folder = work_dir / CHECKPOINTS
    if not (folder / "latest").exists():
        return None
    path, client_state = engine.load_checkpoint(str(folder))
    if path is None:
        raise RuntimeError(f"{folder}: the latest checkpoint could not be loaded")
    return client_state


def full_state_dict(engine: Any, zero_stage: int) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on rank 0 (None elsewhere); a collective call under ZeRO-3."""
    import torch.distributed as dist

    if zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict() if dist.get_rank() == 0 else None
    if state is None or dist.get_rank() != 0:
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    """Mean of each value over ranks."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def all_finite(value: torch.Tensor) -> bool:
    """True on every rank iff the value is finite on every rank."""
    import torch.distributed as dist

    flag = torch.tensor([1.0 if bool(torch.isfinite(value).all()) else 0.0], device=value.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


def gather_objects(obj: Any) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
