"""A short measurement of what this machine's CPU can do: fp32 / bf16 matmul GFLOP/s (one thread and all usable
threads) and memory copy bandwidth. At most about 10 s; `rlhf-stack doctor` prints it, the benchmarks divide by it."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from rlhf_stack.core.hardware import usable_cpus

_MAX_SIDE = 1024  # square matmul side: large enough to reach the kernels' peak on a CPU
_COPY_MIB = 256  # bytes copied per pass: well beyond any cache


@dataclass(frozen=True)
class ProbeResult:
    threads: int  # "all" in the field names below means this many
    fp32_gflops_1_thread: float
    bf16_gflops_1_thread: float
    fp32_gflops_all: float
    bf16_gflops_all: float
    copy_gb_s: float  # read + write bytes per second, all threads
    load_average: float  # 1-minute load average when the probe ran: other work on the machine lowers every figure
    seconds: float

    def rates(self) -> dict[str, float]:
        """GFLOP/s per precision on all threads (what slow-precision messages quote)."""
        return {"fp32": self.fp32_gflops_all, "bf16": self.bf16_gflops_all}

    def as_dict(self) -> dict:
        return asdict(self)


def matmul_gflops(dtype_name: str, seconds: float) -> float:
    """GFLOP/s of square matmuls in `dtype_name`, sized so that a slow (emulated) dtype still fits `seconds`."""
    import torch

    dtype = getattr(torch, dtype_name)
    small = torch.ones(256, 256, dtype=dtype)
    torch.mm(small, small)
    start = time.perf_counter()
    torch.mm(small, small)
    rate = 2 * 256**3 / max(time.perf_counter() - start, 1e-6)  # FLOP/s, roughly
    # One product should take about a twentieth of the budget: an emulated dtype gets a smaller matrix.
    side = int(min(_MAX_SIDE, max(128, (rate * seconds / 40) ** (1 / 3))) // 64 * 64)
    a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
    torch.mm(a, b)
    reps, start = 0, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds or reps == 0:
        torch.mm(a, b)
        reps += 1
    return 2 * side**3 * reps / (now - start) / 1e9


def copy_gb_s(seconds: float) -> float:
    import torch

    src = torch.ones(_COPY_MIB * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    reps, start = 0, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds or reps == 0:
        dst.copy_(src)
        reps += 1
    return 2 * src.numel() * 4 * reps / (now - start) / 1e9


def run_probe(seconds_per_measure: float = 0.8) -> ProbeResult:
    """Five measurements of `seconds_per_measure` each (plus sizing): under 10 s with the default."""
    import torch

    began = time.perf_counter()
    before = torch.get_num_threads()
    threads = usable_cpus()
    try:
        torch.set_num_threads(1)
        fp32_1, bf16_1 = (matmul_gflops(d, seconds_per_measure) for d in ("float32", "bfloat16"))
        torch.set_num_threads(threads)
        fp32_n, bf16_n = (matmul_gflops(d, seconds_per_measure) for d in ("float32", "bfloat16"))
        copy = copy_gb_s(seconds_per_measure)
    finally:
        torch.set_num_threads(before)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return ProbeResult(threads, round(fp32_1, 1), round(bf16_1, 1), round(fp32_n, 1), round(bf16_n, 1),
                       round(copy, 1), round(load, 2), round(time.perf_counter() - began, 1))
