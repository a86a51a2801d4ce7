"""The machine this process runs on: CPU model and the flags that decide precision, the cores it may really use,
memory, GPUs. Read from /proc and torch; nothing here is slow (the matmul probe lives in core/probe.py)."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# The CPU flags that decide precision and kernels (Linux /proc/cpuinfo spelling).
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


@dataclass(frozen=True)
class GpuFacts:
    name: str
    capability: tuple[int, int]  # CUDA compute capability (major, minor)
    memory_gib: float


@dataclass(frozen=True)
class MachineFacts:
    cpu_model: str
    cpu_flags: frozenset[str]  # lower case, /proc/cpuinfo spelling
    logical_cpus: int  # os.cpu_count()
    usable_cpus: int  # what this process may run on: affinity mask and cgroup CPU quota
    memory_gib: float  # total
    available_memory_gib: float
    gpus: tuple[GpuFacts, ...] = field(default=())

    @property
    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.cpu_flags]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, lowered by a cgroup CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, quota)) if quota else max(1, cpus)


def _cgroup_quota() -> int | None:
    """Whole CPUs of a cgroup v2 (cpu.max) or v1 (cfs_quota_us) quota, rounded up; None without a quota."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else -(-int(quota) // int(period))
        q, p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.exists() and p.exists() and int(q.read_text()) > 0:
            return -(-int(q.read_text()) // int(p.read_text()))
    except (OSError, ValueError):
        return None
    return None


def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags: /proc/cpuinfo on Linux, torch's cpuinfo elsewhere."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        model, flags = "", frozenset()
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = frozenset(value.split())
            if model and flags:
                break
        return model or platform.processor() or "unknown", flags
    import torch

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return str(caps.get("cpu_name", platform.processor() or "unknown")), frozenset(k for k, v in caps.items()
                                                                                  if v is True)


def _memory_gib() -> tuple[float, float]:
    """(total, available) GiB from /proc/meminfo; (0, 0) where it does not exist."""
    values = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) / 2**20  # kB -> GiB
    except OSError:
        return 0.0, 0.0
    return values.get("MemTotal", 0.0), values.get("MemAvailable", 0.0)


def gpu_facts() -> tuple[GpuFacts, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(GpuFacts(props.name, (props.major, props.minor), props.total_memory / 2**30))
    return tuple(out)


def cuda_capability() -> tuple[int, int] | None:
    """The compute capability of this node's first GPU: from torch, or from nvidia-smi in a process that sees no
    GPU itself (a vLLM engine actor whose tensor-parallel workers hold the GPUs); None without a GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_capability()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    major, _, minor = out[0].partition(".")
    return int(major), int(minor or 0)


def local_device() -> str:
    """Where work done in this process runs by default: "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def machine_facts(with_gpus: bool = True) -> MachineFacts:
    model, flags = cpu_model_and_flags()
    total, available = _memory_gib()
    return MachineFacts(cpu_model=model, cpu_flags=flags, logical_cpus=os.cpu_count() or 1,
                        usable_cpus=usable_cpus(), memory_gib=total, available_memory_gib=available,
                        gpus=gpu_facts() if with_gpus else ())
