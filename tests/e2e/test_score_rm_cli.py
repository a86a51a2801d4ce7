"""`rlhf-stack score-rm` on a Hugging Face sequence-classification RM that this toolkit did not train, over the
unchanged RM-Bench excerpt (../shared/data/benchmarks/rm_bench): the official breakdown, checked against rewards
computed here the way reward-bench computes them and 3x3 matrices counted here."""

import json
from pathlib import Path

import numpy as np
import pytest

from rlhf_stack.app.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def foreign_rm(tiny_model, tmp_path_factory) -> Path:
    """A one-label classifier with a saved (random) head and no OpenRLHF marker: scored as reward-bench would."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    folder = tmp_path_factory.mktemp("foreign") / "rm"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def reward_bench_reward(model, tok, prompt: str, answer: str) -> float:
    import torch

    text = tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                   tokenize=False)
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits[0, 0].item()


def test_score_rm_prints_and_writes_the_official_rm_bench_breakdown(excerpts, foreign_rm, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "results.json"
    code = main(["score-rm", str(foreign_rm), "--benchmark", "rm_bench", "--data", str(excerpts / "rm_bench"),
                 "--out", str(out),
                 "--tokens-per-batch", "8192"])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result) == {"chat", "code", "safety", "total", "meta"}
    assert [result[d]["n"] for d in ("chat", "code", "safety", "total")] == [6, 6, 12, 24]
    assert result["meta"]["rendering"] == "conversation" and result["meta"]["truncated_sequences"] == 0
    assert "safety" in printed and "total" in printed and "rendering: conversation" in printed

    # chat_filtered.json scored here as reward-bench scores a sequence classifier, one conversation at a time.
    model = AutoModelForSequenceClassification.from_pretrained(foreign_rm).eval()
    tok = AutoTokenizer.from_pretrained(foreign_rm)
    saved = {(s["group"], s["id"]): s for s in map(json.loads, (tmp_path / "results.scores.jsonl").open())}
    for row in json.loads((excerpts / "rm_bench" / "chat_filtered.json").read_text()):
        ours = saved[("chat", str(row["id"]))]
        assert ours["chosen"] == pytest.approx([reward_bench_reward(model, tok, row["prompt"], a)
                                                for a in row["chosen"]], abs=1e-4)
        assert ours["rejected"] == pytest.approx([reward_bench_reward(model, tok, row["prompt"], a)
                                                  for a in row["rejected"]], abs=1e-4)
    # Every domain's matrix counted from the saved rewards as RM-Bench's compute_accuracy counts it.
    per_domain = {}
    for domain in ("chat", "code", "safety"):
        rows = [s for (group, _), s in saved.items() if group.startswith(domain)]
        matrix = np.mean([[[c > r for r in s["rejected"]] for c in s["chosen"]] for s in rows], axis=0)
        expected = {"hard": np.sum(np.triu(matrix, 1)) / 3, "normal": np.mean(np.diag(matrix)),
                    "easy": np.sum(np.tril(matrix, -1)) / 3}
        expected["avg"] = np.mean(list(expected.values()))
        per_domain[domain] = expected
        for key, value in expected.items():
            assert result[domain][key] == pytest.approx(100 * value, abs=1e-9), (domain, key)
    for key in ("hard", "normal", "easy", "avg"):
        assert result["total"][key] == pytest.approx(100 * np.mean([d[key] for d in per_domain.values()]))
    assert len(saved) == 24 and all(len(s["chosen"]) == len(s["rejected"]) == 3 for s in saved.values())


def test_score_rm_refuses_missing_data_before_loading_the_model(foreign_rm, tmp_path, capsys):
    code = main(["score-rm", str(foreign_rm), "--benchmark", "rm_bench", "--data", str(tmp_path / "nope.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
