"""RM benchmark loaders and scoring on unchanged excerpts of the official files (../shared/data/benchmarks/, a copy
beside the clone), read by the code a hub download goes through, against numbers worked out by hand."""

import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from rlhf_stack.core.errors import RecipeError
from stages.s4_evaluate.data_sources import DataSource, load_source
from stages.s4_evaluate.rm_items import to_items
from stages.s4_evaluate.rm_metrics import REWARDBENCH_SECTIONS, official_breakdown, rm_bench

REPO = Path(__file__).resolve().parents[2]
KEY = "evaluate.rm_benchmarks.rm_bench"


def length_rewards(items):
    """A reward that is the answer's length in characters: the longer answer wins (a tie is wrong)."""
    return [{"id": it.id, "group": it.group, "chosen": [len(c) for c in it.chosen],
             "rejected": [len(r) for r in it.rejected]} for it in items]


def test_per_domain_files_take_their_domain_from_the_file_name(excerpts):
    rows = load_source(DataSource(source=str(excerpts / "rm_bench")), "rm_bench", KEY, REPO).rows
    items = to_items(rows, "rm_bench", KEY)
    counts = {g: sum(it.group == g for it in items) for g in {it.group for it in items}}
    # Their `subset` field holds the source sets (alpacaeval, bigcode/humanevalpack, xstest-should-refuse, ...).
    assert counts == {"chat": 6, "code": 6, "safety-refuse": 6, "safety-response": 6}


def test_rm_bench_breakdown_by_hand(excerpts):
    rows = load_source(DataSource(source=str(excerpts / "rm_bench")), "rm_bench", KEY, REPO).rows
    items = to_items(rows, "rm_bench", KEY)
    got = official_breakdown("rm_bench", rm_bench(length_rewards(items)))
    # Character lengths (chosen | rejected, styles concise, detailed plain, detailed markdown) of chat_filtered.json:
    #   id   8: 157 1917 2100 | 164 1966 2122      id 359:  79  636  709 |  77  715  736
    #   id  76: 265 1638 1745 | 265 1624 1785      id 462: 125  125  125 | 150 1030 1063
    #   id 164: 182 1219 1253 | 180 1886 1953      id 602:  89  363  363 |  77 1269 1294
    # Prompts with len(chosen[i]) > len(rejected[j]), rows i, columns j: [[3, 0, 0], [5, 1, 0], [5, 2, 0]]
    # (id 76's concise pair ties at 265: wrong). hard = upper triangle 0/18, normal = diagonal 4/18,
    # easy = lower triangle 12/18, avg = 16/54. Counted the same way, code_filtered.json gives
    # [[4, 1, 1], [6, 4, 3], [6, 5, 4]] of 6, and the two safety files together
    # [[6, 0, 0], [12, 7, 4], [12, 9, 4]] of 12.
    expected = {
        "chat": {"n": 6, "hard": 0.0, "normal": 4 / 18, "easy": 12 / 18, "avg": 16 / 54},
        "code": {"n": 6, "hard": 5 / 18, "normal": 12 / 18, "easy": 17 / 18, "avg": 34 / 54},
        "safety": {"n": 12, "hard": 4 / 36, "normal": 17 / 36, "easy": 33 / 36, "avg": 54 / 108},
    }
    expected = {d: {k: (v if k == "n" else 100 * v) for k, v in row.items()} for d, row in expected.items()}
    expected["total"] = {"n": 24, **{k: sum(expected[d][k] for d in ("chat", "code", "safety")) / 3
                                     for k in ("hard", "normal", "easy", "avg")}}
    assert got.keys() == expected.keys()
    for domain, row in expected.items():
        assert got[domain] == pytest.approx(row), domain
    assert got["total"]["avg"] == pytest.approx(100 * (16 / 54 + 34 / 54 + 54 / 108) / 3)  # 47.53


def test_a_hub_download_is_read_like_the_local_copy(excerpts, tmp_path, monkeypatch):
    """The hub path downloads the dataset's files and hands the folder to the local reader."""
    snapshot = tmp_path / "snapshot"
    shutil.copytree(excerpts / "rm_bench", snapshot / "data")
    asked = {}

    def fake_snapshot(repo_id, **kwargs):  # stands in for the network only: the same files, a hub-like layout
        asked.update(repo_id=repo_id, **kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    hub = load_source(DataSource(source="THU-KEG/RM-Bench"), "rm_bench", KEY, tmp_path)
    local = load_source(DataSource(source=str(excerpts / "rm_bench")), "rm_bench", KEY, tmp_path)
    assert asked["repo_id"] == "THU-KEG/RM-Bench" and asked["repo_type"] == "dataset"
    assert to_items(hub.rows, "rm_bench", KEY) == to_items(local.rows, "rm_bench", KEY)
    assert hub.description == "hub THU-KEG/RM-Bench split train"


def test_a_file_without_domain_named_after_none_is_an_error_naming_file_and_row(excerpts, tmp_path):
    rows = json.loads((excerpts / "rm_bench" / "chat_filtered.json").read_text())
    (tmp_path / "my_chat.json").write_text(json.dumps(rows))
    with pytest.raises(RecipeError) as err:
        to_items(load_source(DataSource(source="my_chat.json"), "rm_bench", KEY, tmp_path).rows, "rm_bench", KEY)
    assert "my_chat.json row 0" in str(err.value) and "chat_filtered.json" in str(err.value)


def test_hub_split_files_are_chosen_by_name(tmp_path, monkeypatch):
    """A RewardBench-like hub layout: only the `filtered` split's file is read."""
    row = {"prompt": "p", "chosen": "c", "rejected": "r", "subset": "alpacaeval-easy"}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "filtered-00000-of-00001.jsonl").write_text(json.dumps({**row, "id": 1}) + "\n")
    (tmp_path / "data" / "train-00000-of-00001.jsonl").write_text(json.dumps({**row, "id": 2}) + "\n")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    loaded = load_source(DataSource(source="allenai/reward-bench"), "rewardbench", "k", tmp_path)
    assert [r["id"] for r in loaded.rows] == [1]


def test_rewardbench_weights_are_the_published_example_counts(excerpts):
    published = json.loads((excerpts / "rewardbench" / "section_scoring.json").read_text())
    ours = {section: dict(weights) for section, weights in REWARDBENCH_SECTIONS.items()}
    theirs = {section: {s: published["EXAMPLE_COUNTS"][s] for s in subsets}
              for section, subsets in published["SUBSET_MAPPING"].items()}
    assert ours == theirs


def test_bad_benchmark_files_name_file_row_and_column(excerpts, tmp_path):
    rows = json.loads((excerpts / "rm_bench" / "code_filtered.json").read_text())
    del rows[2]["chosen"]
    (tmp_path / "code_filtered.json").write_text(json.dumps(rows))
    with pytest.raises(RecipeError, match=r"code_filtered.json row 2: no column 'chosen'"):
        to_items(load_source(DataSource(source="code_filtered.json"), "rm_bench", KEY, tmp_path).rows, "rm_bench", KEY)
    (tmp_path / "broken.jsonl").write_text('{"id": 1}\n{"id": 2\n')
    with pytest.raises(RecipeError, match=r"broken.jsonl: line 2 is not JSON"):
        load_source(DataSource(source="broken.jsonl"), "rm_bench", KEY, tmp_path)


def test_a_split_the_hub_files_do_not_have_is_an_error_naming_the_ones_they_do(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw-00000-of-00001.jsonl").write_text('{"id": 1}\n')
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    with pytest.raises(RecipeError, match=r"split\(s\) \['raw'\], none for 'filtered'"):
        load_source(DataSource(source="allenai/reward-bench"), "rewardbench", "k", tmp_path)
