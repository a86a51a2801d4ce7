"""The quickstart prompt set: loads cleanly, unique ids, every category present in sensible shares."""

from collections import Counter
from pathlib import Path

from rlhf_stack.core.prompts import load_prompts

PROMPTS = Path(__file__).resolve().parents[2] / "recipes" / "data" / "quickstart_prompts.jsonl"
CATEGORIES = {"writing", "advice", "reasoning", "coding", "knowledge", "math", "safety"}


def test_the_quickstart_prompts_load_without_problems():
    records, problems = load_prompts(PROMPTS)
    assert problems == []
    assert 200 <= len(records) <= 260
    assert len({r.id for r in records}) == len(records)
    assert all(r.id == f"qs-{n:04d}" for n, r in enumerate(records, 1))
    assert len({r.prompt.strip().lower() for r in records}) == len(records)  # no prompt twice


def test_every_category_is_present_in_sensible_shares():
    records, _ = load_prompts(PROMPTS)
    counts = Counter(r.category for r in records)
    assert set(counts) == CATEGORIES
    assert 0.08 <= counts["safety"] / len(records) <= 0.12  # about 10% to refuse or redirect
    assert all(counts[c] >= 0.1 * len(records) for c in CATEGORIES - {"safety"})


def test_prompts_stay_short_enough_for_a_small_model():
    records, _ = load_prompts(PROMPTS)
    words = [len(r.prompt.split()) for r in records]
    assert max(words) <= 40 and min(words) >= 3
    assert len(set(words)) >= 15  # varied lengths
