"""The report's over-optimization section, from hand-written PPO metrics."""

import json

from rlhf_stack.app.report.overoptimization import (
    overopt_series, overoptimization_section, sweep_overoptimization_section,
)
from rlhf_stack.app.report.run_view import RunView


def _records(gold, proxy):
    return [{"iteration": i, "reward_mean": p, "gold_mean": g, "kl_seq_k1": float(i)}
            for i, (g, p) in enumerate(zip(gold, proxy))]


def test_section_tables_final_values_and_the_turning_point(tmp_path):
    view = RunView(run_dir=tmp_path, name="run")
    view.ppo["overfit"] = (None, _records([1, 3, 5, 5, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9]))
    view.ppo["honest"] = (None, _records([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9]))
    view.ppo["no_gold"] = (None, [{"iteration": 0, "reward_mean": 1.0, "kl": 0.1}])  # not a sandbox run
    lines = overoptimization_section(view, tmp_path)
    text = "\n".join(lines)
    # window 3: smoothed gold [1, 2, 3, 13/3, 5, 14/3, 4, 3, 2] peaks at iteration 4 (KL 4.0)
    assert "| overfit | 8.00 | 9.00 | 1.00 | iteration 4, KL 4.00 |" in text
    assert "| honest | 8.00 | 9.00 | 9.00 | — |" in text  # gold never turned down
    assert "no_gold" not in text
    assert (tmp_path / "overoptimization.png").stat().st_size > 0


def test_no_section_without_gold_rewards(tmp_path):
    view = RunView(run_dir=tmp_path, name="run")
    view.ppo["a"] = (None, [{"iteration": 0, "reward_mean": 1.0, "kl": 0.1}])
    assert overoptimization_section(view, tmp_path) == []
    assert overopt_series([]) is None


def _write(folder, policy, gold, proxy):
    path = folder / "s3_ppo" / policy / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(gold, proxy)))


def test_sweep_section_averages_gold_over_seeds_and_lists_each_seeds_turning_point(tmp_path):
    rising = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    _write(tmp_path / "s0", "rm", [1, 3, 5, 5, 5, 4, 3, 2, 1], rising)  # turns at iteration 4
    _write(tmp_path / "s1", "rm", rising, rising)  # never turns
    lines = sweep_overoptimization_section({"all cells": {0: tmp_path / "s0", 1: tmp_path / "s1"}}, tmp_path)
    text = "\n".join(lines)
    assert "| rm | seed 0: iteration 4, KL 4.00; seed 1: — |" in text
    assert (tmp_path / "overoptimization_gold_0.png").stat().st_size > 0
    assert sweep_overoptimization_section({"all cells": {0: tmp_path / "none"}}, tmp_path) == []
