"""What bounds a benchmark on this machine: the compute probe's matmul GFLOP/s (rlhf_stack/core/probe.py), printed
beside a benchmark's own figures with the share of that bound the benchmark reaches.

A transformer's forward pass costs about 2 FLOPs per weight per token and training about 6 (attention left out,
so the shares below are slight underestimates)."""

from __future__ import annotations

from pathlib import Path

from rlhf_stack.core.precision import resolve
from rlhf_stack.core.probe import ProbeResult, run_probe

FORWARD_FLOPS_PER_PARAM = 2
TRAIN_FLOPS_PER_PARAM = 6


def weights(model_dir: Path) -> int:
    """Number of weights in a Hugging Face folder's safetensors files (read from their headers, nothing loaded)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                count = 1
                for n in shape:
                    count *= n
                total += count
    return total


def probe() -> ProbeResult:
    result = run_probe()
    print(f"probe: matmul fp32 {result.fp32_gflops_all} GFLOP/s, bf16 {result.bf16_gflops_all} GFLOP/s "
          f"({result.threads} threads; 1 thread: {result.fp32_gflops_1_thread} / {result.bf16_gflops_1_thread}), "
          f"copy {result.copy_gb_s} GB/s, load average {result.load_average}", flush=True)
    return result


def bound_line(label: str, flops_per_s: float, precision: str, result: ProbeResult) -> str:
    """`label: X GFLOP/s = Y% of the <precision> matmul bound (Z GFLOP/s)`; auto is resolved for this CPU."""
    precision = resolve(precision, "cpu")
    peak = result.bf16_gflops_all if precision == "bf16" else result.fp32_gflops_all
    gflops = flops_per_s / 1e9
    return f"{label}: {gflops:.1f} GFLOP/s = {gflops / peak:.0%} of the {precision} matmul bound ({peak} GFLOP/s)"
