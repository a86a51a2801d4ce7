"""The whole pipeline through the CLI on tiny models: every folder published, the report written, reruns skip."""

import shutil
from pathlib import Path

import pytest

from rlhf_stack.core.artifacts import read_manifest
from rlhf_stack.core.hardware import cpu_model_and_flags
from rlhf_stack.core.precision import choose
from rlhf_stack.app.cli import main
from rlhf_stack.app.run_folder import load_run

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_reference) -> Path:
    """A copy of the shared uninterrupted run: the tests below rerun it with changed values."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    shutil.copytree(tiny_reference, run_dir)
    return run_dir


def test_every_job_publishes_a_manifest_of_its_kind(tiny_run):
    jobs = load_run(tiny_run).jobs()
    assert {j.stage for j in jobs} == {"synthesize", "distill", "ppo", "evaluate"}
    for job in jobs:
        manifest = read_manifest(tiny_run / job.folder)
        assert manifest is not None, job.folder
        assert manifest.kind == job.kind and manifest.folder == job.folder
    policy = tiny_run / "s3_ppo" / "rm_distiller" / "checkpoint"
    assert (policy / "config.json").exists() and (policy / "model.safetensors").exists()


def test_report_leads_with_the_comparison_table(tiny_run):
    report = (tiny_run / "report" / "report.md").read_text()
    first_table = report[report.index("|"):].split("\n\n")[0]
    assert "rm_distiller" in first_table and "binary_bt" in first_table
    assert "RewardBench" in first_table and "MT-Bench" in first_table
    assert sorted(p.name for p in (tiny_run / "report").glob("*.png"))


# What each job's engines and trainers report, read from their live weights (not from the recipe).
ROLES = {"s1_synthesize": {"teacher engine", "policy engine"}, "s2_distill": {"reward model training"},
         "s3_ppo": {"policy", "reference", "critic", "reward model", "rollout engine"},
         "s4_evaluate/rm": {"reward model scoring"}, "s4_evaluate/policy": {"policy engine", "judge engine"}}


def test_every_engine_and_trainer_ran_at_the_precision_the_rule_gives_this_cpu(tiny_run):
    auto = choose("cpu", cpu_model_and_flags()[1])  # the tiny recipe leaves every dtype at auto but distill's
    for job in load_run(tiny_run).jobs():
        got = read_manifest(tiny_run / job.folder).summary["precision"]
        (roles,) = [r for prefix, r in ROLES.items() if job.folder.startswith(prefix)]
        assert set(got) == roles, job.folder
        want = "fp32" if job.stage == "distill" else auto  # tiny.yaml: distill.dtype fp32
        assert set(got.values()) == {want}, (job.folder, got)


def test_a_policy_job_swaps_the_judge_into_the_policy_engine(tiny_run):
    """tiny.yaml serves policy and judge alike (hf, same settings; same architecture and tokenizer)."""
    for job in load_run(tiny_run).jobs():
        if job.folder.startswith("s4_evaluate/policy/"):
            summary = read_manifest(tiny_run / job.folder).summary
            assert (summary["engine_starts"], summary["engine_weight_swaps"]) == (1, 1), job.folder


def _manifest_texts(run_dir: Path) -> dict[str, str]:
    return {j.folder: (run_dir / j.folder / "manifest.json").read_text() for j in load_run(run_dir).jobs()}


def test_second_run_skips_everything_and_status_says_done(tiny_run, capsys):
    before = _manifest_texts(tiny_run)
    assert main(["run", str(TINY), "--set", f"run_dir={tiny_run}"]) == 0
    assert _manifest_texts(tiny_run) == before  # nothing reran: every manifest is the same file
    capsys.readouterr()
    assert main(["status", str(tiny_run)]) == 0
    states = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert set(states) == set(before) and set(states.values()) == {"done"}, states


def test_changing_one_variant_reruns_only_its_chain(tiny_run):
    before = _manifest_texts(tiny_run)
    assert main(["run", str(TINY), "--set", f"run_dir={tiny_run}", "--set",
                 "distill.variants.binary_bt.objective=margin_bt", "--set",
                 "distill.variants.binary_bt.margin=raw"]) == 0
    after = _manifest_texts(tiny_run)
    changed = {folder for folder in before if before[folder] != after[folder]}
    assert {"s2_distill/binary_bt", "s3_ppo/binary_bt", "s4_evaluate/rm/binary_bt"} <= changed
    assert not changed & {"s1_synthesize", "s2_distill/rm_distiller", "s3_ppo/rm_distiller",
                          "s4_evaluate/rm/rm_distiller", "s4_evaluate/policy/rm_distiller"}
