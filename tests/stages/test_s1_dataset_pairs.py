"""A preference set as the prompt source (`data.prompts` through `datasets`, chat lists mapped) whose own chosen and
rejected answers are the candidates the tiny teacher judges in both orders: the method's "orig" data, via the CLI."""

import json
from pathlib import Path

import datasets

from rlhf_stack.app.cli import main
from rlhf_stack.core.records import PreferenceRecord, read_jsonl
from stages.s1_synthesize.steps import DATASET_CHOSEN, DATASET_REJECTED

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = ["Explain why the sky looks blue.", "Write a haiku about rain.", "Give three tips for sleep.",
             "What is a prime number?"]


def chat(user: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def test_a_preference_set_gives_the_initial_pairs(tmp_path):
    rows = [{"chosen": chat(q, f"A careful answer about {q.lower()}"), "rejected": chat(q, "No idea.")}
            for q in QUESTIONS]
    rows.append({"chosen": chat("Same?", "Yes."), "rejected": chat("Same?", "Yes.")})  # nothing to compare
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "prefs.parquet")
    prompts = {"source": str(tmp_path / "prefs.parquet"),
               "columns": {"messages": "chosen", "chosen": "chosen", "rejected": "rejected"}}
    code = main(["run", str(REPO / "recipes" / "tiny.yaml"), "--only", "synthesize",
                 "--set", f"run_dir={tmp_path / 'run'}", "--set", f"data.prompts={json.dumps(prompts)}",
                 "--set", "data.splits={synthesize: 1.0, ppo: 0.0, evaluate: 0.0}",
                 "--set", "synthesize.candidates_from=dataset", "--set", "synthesize.generators=[]"])
    assert code == 0
    materialized = [json.loads(line) for line in (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()]
    assert len(materialized) == 5 and materialized[0]["chosen"].startswith("A careful answer")
    records = [r for f in sorted((tmp_path / "run" / "s1_synthesize").glob("records-*.jsonl"))
               for r in read_jsonl(f, PreferenceRecord)]
    assert {r.prompt for r in records} <= set(QUESTIONS) and records
    for r in records:
        assert [c.generator for c in r.candidates] == [DATASET_CHOSEN, DATASET_REJECTED]
        assert {r.initial.chosen, r.initial.rejected} == {c.text for c in r.candidates}
        assert len(r.initial.judgments) == 2  # judged in both orders
    stats = json.loads((tmp_path / "run" / "s1_synthesize" / "stats.json").read_text())
    assert stats["drops_by_reason"] == {"identical_candidates": 1}
