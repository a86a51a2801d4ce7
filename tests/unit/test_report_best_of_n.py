"""The best-of-N report sections read the run's files and aggregate seeds with paired differences by hand."""

import json
from pathlib import Path

import pytest

from rlhf_stack.app.report.best_of_n import CEILING, sweep_best_of_n


def _curve(*compliance: float) -> dict:
    return {str(n): {"gold_mean": 1 + 9 * c, "compliance_mean": c, "prompts": 3, "kl_nats": 0.0}
            for n, c in zip((1, 2), compliance)}


def _cell(folder: Path, rms: dict[str, dict], ceiling: dict) -> Path:
    gt = folder / "s4_evaluate" / "ground_truth"
    gt.mkdir(parents=True)
    (gt / "manifest.json").write_text("{}")
    (gt / "best_of_n.json").write_text(json.dumps({"ns": [1, 2], "verifier": ceiling}))
    for name, curve in rms.items():
        rm = folder / "s4_evaluate" / "rm" / name
        rm.mkdir(parents=True)
        (rm / "manifest.json").write_text("{}")
        (rm / "results.json").write_text(json.dumps({"best_of_n": curve}))
    return folder


def test_sweep_section_aggregates_seeds_and_pairs_differences(tmp_path):
    cells = [(0, _cell(tmp_path / "s0", {"a": _curve(0.5, 0.6), "base": _curve(0.5, 0.5)}, _curve(0.5, 0.9))),
             (1, _cell(tmp_path / "s1", {"a": _curve(0.4, 0.7), "base": _curve(0.4, 0.4)}, _curve(0.4, 0.8)))]
    summary, lines = sweep_best_of_n({"all cells": cells}, "base", tmp_path)
    point = summary["points"]["all cells"]
    assert summary["ns"] == [1, 2]
    assert point["compliance"]["a"]["2"]["mean"] == pytest.approx(0.65)
    assert point["compliance"][CEILING]["2"]["values"] == {"0": 0.9, "1": 0.8}
    assert point["differences"]["a"]["2"]["values"] == pytest.approx({"0": 0.1, "1": 0.3})
    assert point["differences"]["a"]["1"]["mean"] == pytest.approx(0.0)
    assert set(point["differences"]) == {"a"}  # neither the baseline nor the ceiling is differenced
    assert lines[0] == "## Best-of-N gold compliance (sandbox)" and (tmp_path / "best_of_n_1.png").exists()


def test_no_best_of_n_no_section(tmp_path):
    (tmp_path / "c").mkdir()
    assert sweep_best_of_n({"all cells": [(0, tmp_path / "c")]}, "base", tmp_path) == ({}, [])
