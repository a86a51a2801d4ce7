"""`rlhf-stack doctor RECIPE --json`: the machine, versions, the probe, and each stage's precision and threads."""

import json
from pathlib import Path

from rlhf_stack.app.cli import main
from rlhf_stack.core.hardware import cpu_model_and_flags, usable_cpus
from rlhf_stack.core.precision import choose

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def test_doctor_reports_machine_probe_and_the_plan_of_every_stage(capsys):
    assert main(["doctor", str(TINY), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["machine"]["usable_cpus"] == usable_cpus()
    assert set(report["versions"]) == {"torch", "vllm", "deepspeed", "ray", "openrlhf", "transformers"}
    probe = report["probe"]
    assert probe["fp32_gflops_all"] > 0 and probe["bf16_gflops_all"] > 0 and probe["copy_gb_s"] > 0
    auto = choose("cpu", cpu_model_and_flags()[1])
    got = {(row["stage"], row["key"]): row["precision"] for row in report["stages"]}
    assert set(stage for stage, _ in got) == {"synthesize", "distill", "ppo", "evaluate"}
    assert got.pop(("distill", "distill.dtype")) == "fp32"  # tiny.yaml sets it
    assert set(got.values()) == {auto}, got


def test_doctor_applies_overrides_and_refuses_a_bad_recipe_before_probing(capsys):
    assert main(["doctor", str(TINY), "--set", "distill.lr=-1"]) == 2
    assert "distill.lr" in capsys.readouterr().err
