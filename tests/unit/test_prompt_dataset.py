"""Prompts through `datasets`: local files in every format it reads, column mapping (chat lists included), filters,
dedup, seeded sampling, preference answers kept for the initial pair, and bad data named by file, row and column."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from transformers import AutoTokenizer

from rlhf_stack.core.errors import RecipeError
from rlhf_stack.core.prompt_dataset import PromptColumns, PromptDataset, load_records, materialize
from rlhf_stack.core.prompts import load_prompts

REPO = Path(__file__).resolve().parents[2]


def chat(user, answer):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


PREFERENCES = [  # a Skywork-style preference set: chosen and rejected are whole conversations
    {"chosen": chat("Name a prime.", "7 is prime."), "rejected": chat("Name a prime.", "9."), "source": "a"},
    {"chosen": chat("Capital of France?", "Paris."), "rejected": chat("Capital of France?", "Lyon."), "source": "b"},
    {"chosen": chat("Name a prime.", "2."), "rejected": chat("Name a prime.", "4."), "source": "a"},  # same prompt
    {"chosen": [*chat("Hi", "Hello"), *chat("And?", "Bye")], "rejected": chat("Hi", "x"), "source": "c"},  # 2 turns
]
MAPPING = PromptColumns(messages="chosen", chosen="chosen", rejected="rejected", category="source")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "arrow", "saved"])
def test_a_preference_set_in_any_format_maps_to_prompts_with_their_pair(tmp_path, fmt):
    ds = datasets.Dataset.from_list(PREFERENCES)
    path = tmp_path / f"prefs.{fmt}"
    if fmt == "jsonl":
        ds.to_json(path)
    elif fmt == "parquet":
        ds.to_parquet(path)
    elif fmt == "arrow":
        path = tmp_path / "prefs"
        ds.save_to_disk(path)
        path = next(path.glob("*.arrow"))
    else:
        path = tmp_path / "saved"
        ds.save_to_disk(path)
    records, counts = load_records(PromptDataset(source=str(path), columns=MAPPING), tmp_path, seed=0)
    assert [(r.prompt, r.chosen, r.rejected, r.category) for r in records] == [
        ("Name a prime.", "7 is prime.", "9.", "a"), ("Capital of France?", "Paris.", "Lyon.", "b")]
    assert counts == {"rows": 4, "multi_turn": 1, "too_long": 0, "duplicates": 1, "kept": 2}
    assert len({r.id for r in records}) == 2  # ids are hashes of the prompts when no id column is mapped


def test_csv_prompt_column_length_filter_and_seeded_sample(tmp_path, tiny_model):
    rows = [{"id": f"p{i}", "prompt": f"{i} " + "word " * (3 if i % 2 else 300)} for i in range(20)]
    datasets.Dataset.from_list(rows).to_csv(tmp_path / "prompts.csv")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cfg = PromptDataset(source="prompts.csv", max_prompt_tokens=64, tokenizer="policy", sample=5)
    first, counts = load_records(cfg, tmp_path, seed=3, tokenizer=tok)
    again, _ = load_records(cfg, tmp_path, seed=3, tokenizer=tok)
    other, _ = load_records(cfg, tmp_path, seed=4, tokenizer=tok)
    assert counts["too_long"] == 10 and counts["kept"] == 5 and all(int(r.id[1:]) % 2 for r in first)
    assert [r.id for r in first] == [r.id for r in again] != [r.id for r in other]
    out = tmp_path / "run" / "prompts.jsonl"
    materialize(cfg, tmp_path, out, seed=3, tokenizer=tok)
    records, problems = load_prompts(out)
    assert problems == [] and [r.id for r in records] == [r.id for r in first]


@pytest.mark.parametrize("content, columns, message", [
    ([{"text": "a"}], {}, "has no 'prompt' column"),
    ([{"prompt": "a"}], {"chosen": "answer"}, "has no column 'answer'"),
    ([{"prompt": "a"}, {"prompt": ["x"]}], {}, "row 1: column 'prompt': expected text, got list"),
    ([{"q": "a", "chosen": 3}], {"prompt": "q", "chosen": "chosen"}, "row 0: column 'chosen': expected text, got int"),
])
def test_bad_rows_and_columns_name_file_row_and_column(tmp_path, content, columns, message):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in content))
    with pytest.raises(RecipeError) as err:
        load_records(PromptDataset(source="data.jsonl", columns=PromptColumns(**columns)), tmp_path, seed=0)
    assert message in str(err.value) and "data.jsonl" in str(err.value)


def test_an_undecodable_line_and_an_empty_file_are_named(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    with pytest.raises(RecipeError, match=r"broken.jsonl cannot be read .*line 2 is not JSON"):
        load_records(PromptDataset(source="broken.jsonl"), tmp_path, seed=0)
    datasets.Dataset.from_list([{"prompt": "a"}]).select([]).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(RecipeError, match=r"empty.parquet: split 'train' holds no rows"):
        load_records(PromptDataset(source="empty.parquet"), tmp_path, seed=0)


def test_validate_checks_a_local_dataset_and_leaves_a_hub_one_to_the_run(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"question": "a"}\n')
    recipe = {"name": "t", "models": {"policy": "tiny-random-llama"},
              "data": {"prompts": {"source": "data.jsonl", "columns": {"prompt": "prompt"}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    recipe["data"]["prompts"] = {"source": "Skywork/Skywork-Reward-Preference-80K-v0.2", "sample": 10,
                                 "columns": {"messages": "chosen", "chosen": "chosen", "rejected": "rejected"}}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(recipe))
    code = ("import sys\nfrom rlhf_stack.app.cli import main\nsys.exit(main(['validate', sys.argv[1]]))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bad.yaml")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "data.prompts.columns.prompt" in bad.stderr
    assert "has no column 'prompt'" in bad.stderr
    hub = subprocess.run([sys.executable, "-c", code, str(tmp_path / "hub.yaml")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert hub.returncode == 0, hub.stderr


def test_a_prompt_longer_than_the_model_is_named_unless_filtered(tmp_path, tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.model_max_length = 64
    rows = [{"prompt": "short one"}, {"prompt": "long " * 200}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecipeError, match=r"p.jsonl row 1: column 'prompt': the prompt has \d+ tokens, more than"):
        load_records(PromptDataset(source="p.jsonl", tokenizer="policy"), tmp_path, seed=0, tokenizer=tok)
    kept, counts = load_records(PromptDataset(source="p.jsonl", tokenizer="policy", max_prompt_tokens=64), tmp_path,
                                seed=0, tokenizer=tok)
    assert [r.prompt for r in kept] == ["short one"] and counts["too_long"] == 1
