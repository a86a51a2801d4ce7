"""The one place that decides compute precision. Every engine and trainer asks `resolve` where its model lives.

`auto` (the default everywhere) means:
- CUDA: bf16 where the GPU has it (compute capability 8.0 and up), fp16 otherwise;
- CPU: bf16 only with AMX (`amx_bf16`), else fp32.

AVX512_BF16 without AMX does not count as native: on an Intel Xeon (model 207, AVX512_BF16, no AMX) torch 2.13's bf16
matmul runs in oneDNN's native avx512_core_bf16 kernel at 84 GFLOP/s per core against 163 GFLOP/s in fp32 (its
dot-product instruction issues on one port, fp32 FMA on two), so bf16 only saves bytes there. Without AVX512_BF16
bf16 is emulated: 1.4 against 78 GFLOP/s (AVX2 only). fp16 is fast on a CPU only with AVX512_FP16 or AMX-FP16.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from rlhf_stack.core.errors import Problem
from rlhf_stack.core.hardware import cpu_model_and_flags
from rlhf_stack.core.hardware import cuda_capability as cuda_capability_here
from rlhf_stack.core.probe import matmul_gflops

Precision = Literal["bf16", "fp16", "fp32"]
_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
_TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
AMPERE = (8, 0)  # first CUDA capability with bf16 tensor cores
_EMULATED = {  # what is known of the slowdown where the measurement cannot show it
    "bf16": "without AMX bf16 matmul runs at about half of fp32, without AVX512_BF16 it is emulated at 1/25-1/170",
    "fp16": "without AVX512_FP16 or AMX-FP16 fp16 matmul is emulated at about 1/50-1/170 of fp32",
}


def _normalize(value: Any) -> Any:
    return _ALIASES.get(value, value) if isinstance(value, str) else value


# A recipe's precision setting: auto, bf16, fp16 or fp32 (torch spellings like bfloat16 are accepted).
DType = Annotated[Literal["auto", "bf16", "fp16", "fp32"], BeforeValidator(_normalize)]


def native_on_cpu(precision: str, cpu_flags: Iterable[str]) -> bool:
    """Whether a CPU with these flags runs `precision` matmuls at least as fast as fp32."""
    flags = set(cpu_flags)
    if precision == "bf16":
        return "amx_bf16" in flags
    if precision == "fp16":
        return bool({"amx_fp16", "avx512_fp16"} & flags)
    return True


def choose(device: str, cpu_flags: Iterable[str] = (), cuda_capability: tuple[int, int] | None = None) -> Precision:
    """What `auto` means on `device` ("cpu" or "cuda") with these CPU flags / this GPU."""
    if device == "cuda":
        if cuda_capability is None:
            raise ValueError("choosing a CUDA precision needs the GPU's compute capability")
        return "bf16" if tuple(cuda_capability) >= AMPERE else "fp16"
    return "bf16" if native_on_cpu("bf16", cpu_flags) else "fp32"


def reason(device: str, cpu_flags: Iterable[str] = (), cuda_capability: tuple[int, int] | None = None) -> str:
    """Why `choose` picks what it picks, in a few words (logs, doctor)."""
    if device == "cuda":
        return f"GPU compute capability {cuda_capability[0]}.{cuda_capability[1]}" if cuda_capability else "GPU"
    flags = set(cpu_flags)
    if "amx_bf16" in flags:
        return "CPU with AMX-BF16"
    if "avx512_bf16" in flags:
        return "CPU with AVX512_BF16 but no AMX (bf16 matmul ~0.5x fp32)"
    return "CPU without native bf16"


def resolve(requested: str, device: str, cpu_flags: Iterable[str] | None = None,
            cuda_capability: tuple[int, int] | None = None) -> Precision:
    """The precision to run at: `requested` unless it is auto. Facts left out are read from this machine."""
    requested = _normalize(requested)
    if requested != "auto":
        return requested
    if device == "cuda" and cuda_capability is None:
        cuda_capability = cuda_capability_here()
        if cuda_capability is None:
            raise RuntimeError("a CUDA engine or trainer was asked for, but this node has no GPU it can see")
    if device == "cpu" and cpu_flags is None:
        cpu_flags = cpu_model_and_flags()[1]
    return choose(device, cpu_flags or (), cuda_capability)


def torch_name(precision: str) -> str:
    """bf16 -> bfloat16 (what transformers' `dtype=` and vLLM's `dtype=` take)."""
    return _TORCH_NAMES[_normalize(precision)]


def torch_dtype(precision: str) -> Any:
    import torch

    return getattr(torch, torch_name(precision))


def of_model(model: Any) -> Precision:
    """The precision of a live model: the dtype of its floating-point weights (the most common one)."""
    counts: dict[str, int] = {}
    for p in model.parameters():
        if p.is_floating_point():
            name = str(p.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + p.numel()
    if not counts:
        raise ValueError("the model has no floating-point weights")
    return _normalize(max(counts, key=counts.get))


@dataclass(frozen=True)
class ComputeUse:
    """One engine or trainer of a stage, as a recipe configures it: what precision and threads it will get."""

    stage: str
    role: str  # e.g. "teacher engine (vllm)", "reward model training (DeepSpeed)"
    key: str  # recipe key path of its precision setting
    requested: str  # auto | bf16 | fp16 | fp32
    device: str  # cpu | cuda
    threads: int | None  # torch/OpenMP threads per process on CPU; None on GPU or where the cluster decides
    processes: int = 1  # engines or ranks
    on_this_machine: bool = True  # False on a remote Ray cluster: the node that runs it decides

    def precision(self, cpu_flags: Iterable[str], cuda_capability: tuple[int, int] | None) -> str:
        if self.device == "cuda" and cuda_capability is None and _normalize(self.requested) == "auto":
            return "bf16|fp16 (decided on the GPU node)"
        return resolve(self.requested, self.device, cpu_flags, cuda_capability)


def slow_precision_problems(uses: Iterable[ComputeUse]) -> list[Problem]:
    """Explicit bf16/fp16 settings that would run on this machine's CPU without native support, each naming the
    slowdown measured here (a sub-second matmul probe, run only when such a setting exists)."""
    model, flags = cpu_model_and_flags()
    slow = [use for use in uses if _is_slow(use, flags)]
    if not slow:
        return []
    rates = {"fp32": matmul_gflops("float32", 0.3)}
    for precision in sorted({_normalize(use.requested) for use in slow}):
        rates[precision] = matmul_gflops(torch_name(precision), 0.3)
    return [slow_precision_problem(use, model, rates) for use in slow]


def _is_slow(use: ComputeUse, cpu_flags: Iterable[str]) -> bool:
    requested = _normalize(use.requested)
    return (use.device == "cpu" and use.on_this_machine and requested not in ("auto", "fp32")
            and not native_on_cpu(requested, cpu_flags))


def slow_precision_problem(use: ComputeUse, cpu_model: str, rates: dict[str, float] | None) -> Problem:
    """The recipe problem of a setting `_is_slow` found; `rates` are measured GFLOP/s per precision."""
    requested = _normalize(use.requested)
    measured = ""
    if rates and rates.get(requested) and rates.get("fp32"):
        ratio = rates["fp32"] / rates[requested]
        measured = (f" (matmul measured here: {requested} {rates[requested]:.1f} GFLOP/s, fp32 {rates['fp32']:.1f}"
                    + (f", {ratio:.1f}x slower" if ratio > 1 else "; other work on the machine may blur this")
                    + f"; {_EMULATED[requested]})")
    return Problem(use.key, f"{use.requested!r} for the {use.role}, but this CPU ({cpu_model}) has no native "
                            f"{requested} matmul{measured}",
                   "use auto (fp32 on this CPU) or fp32, or set compute.allow_slow_precision: true to keep it")
