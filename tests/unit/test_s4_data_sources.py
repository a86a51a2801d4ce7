"""Benchmark data: stand-ins, local files and folders, limits, and errors that say how to provide the data."""

import json
from pathlib import Path

import pytest

from rlhf_stack.core.errors import RecipeError
from stages.s4_evaluate.config import DataSource
from stages.s4_evaluate.data_sources import load_source, round_robin, source_problems
from stages.s4_evaluate.rm_items import to_items


@pytest.mark.parametrize("bench", ["rewardbench", "rewardbench2", "rm_bench", "alpaca_eval"])
def test_stand_ins_load_and_are_labelled(bench):
    data = load_source(DataSource(source="smoke"), bench, f"evaluate.{bench}", Path("."))
    assert data.stand_in and "stand-in" in data.description and len(data.rows) >= 6
    if bench != "alpaca_eval":
        items = to_items(data.rows, bench, bench)
        assert all(it.chosen and it.rejected for it in items)


def test_local_file_folder_and_limit(tmp_path):
    rows = [{"id": i, "prompt": "p", "chosen": "c", "rejected": "r", "subset": s}
            for i, s in enumerate(["a", "a", "a", "b", "c"])]
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (tmp_path / "part" / "2.json").write_text(json.dumps(rows[3:]))
    data = load_source(DataSource(source="part", max_items=3), "rewardbench", "k", tmp_path)
    assert [r["id"] for r in data.rows] == [0, 3, 4]  # one per subset first
    assert not data.stand_in and data.total_rows == 5 and "limited to 3 of 5" in data.description
    single = load_source(DataSource(source="part/2.json"), "rewardbench", "k", tmp_path)
    assert [r["id"] for r in single.rows] == [3, 4]


def test_round_robin_keeps_subset_order():
    rows = [{"subset": s, "i": i} for i, s in enumerate("aabbbc")]
    assert [r["i"] for r in round_robin(rows, 5)] == [0, 2, 5, 1, 3]


def test_problems_are_found_before_running(tmp_path):
    assert source_problems(DataSource(source="smoke"), "k", tmp_path) == []
    assert source_problems(DataSource(source="allenai/reward-bench"), "k", tmp_path) == []  # a hub id
    (missing,) = source_problems(DataSource(source="data/rb.jsonl"), "evaluate.rm_benchmarks.rewardbench", tmp_path)
    assert missing.key == "evaluate.rm_benchmarks.rewardbench.source" and "does not exist" in missing.message
    (tmp_path / "empty").mkdir()
    (empty,) = source_problems(DataSource(source="empty"), "k", tmp_path)
    assert "holds no" in empty.message and "to_json" in empty.fix


def test_rows_in_the_wrong_schema_are_an_error_naming_the_schema():
    with pytest.raises(RecipeError) as err:
        to_items([{"prompt": "p", "chosen": ["a", "b"], "rejected": ["c"], "id": 1, "domain": "chat"}], "rm_bench",
                 "evaluate.rm_benchmarks.rm_bench")
    assert "3 chosen and 3 rejected" in str(err.value) and "3 styles" in str(err.value)

