"""MT-Bench grading pieces: rating parse, judge prompt choice and filling, averaging, data loading."""

from pathlib import Path

import pytest

from rlhf_stack.core.errors import RecipeError
from stages.s4_evaluate.config import MTBenchConfig
from stages.s4_evaluate.mt_bench import RATING_REGEX, UNPARSED, aggregate, judge_messages, limit_questions, load_mt_bench, parse_rating

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks" / "fastchat_data"


def test_rating_uses_double_brackets_then_single_brackets():
    assert parse_rating("Explanation... Rating: [[7]]") == 7.0
    assert parse_rating("[[8.5]]") == 8.5
    assert parse_rating("I give it [6] overall") == 6.0
    assert parse_rating("[[10]] but earlier [3]") == 10.0
    assert parse_rating("no rating here") == UNPARSED
    assert parse_rating("Rating: [[seven]]") == UNPARSED


def test_aggregate_excludes_and_counts_unparsed():
    judgments = [
        {"question_id": 1, "category": "writing", "turn": 1, "score": 8.0},
        {"question_id": 1, "category": "writing", "turn": 2, "score": 6.0},
        {"question_id": 2, "category": "math", "turn": 1, "score": 3.0},
        {"question_id": 2, "category": "math", "turn": 2, "score": UNPARSED},
    ]
    out = aggregate(judgments)
    assert out["turn_1"] == 5.5 and out["turn_2"] == 6.0
    assert out["score"] == pytest.approx(17 / 3)  # the mean of all rated judgments
    assert out["categories"] == {"math": 3.0, "writing": 7.0}
    assert (out["n_judgments"], out["n_unparsed"]) == (4, 1)


def test_judge_prompts_use_references_for_math_and_reasoning():
    data = load_mt_bench(MTBenchConfig(data=str(FIXTURE)), Path("."))
    writing, math_q = data.questions[0], data.questions[1]
    name, msgs = judge_messages(data, writing, ["Ride on!", "Ride with pride!"], turn=1)
    assert name == "single-v1"
    assert msgs == (("system", "Grade answers."), ("user", "Q: Write a one-line slogan for a bicycle shop.\n"
                                                           "A: Ride on!\nReply with [[score]]."))
    name, msgs = judge_messages(data, math_q, ["42", "21"], turn=2)
    assert name == "single-math-v1-multi-turn"
    assert "Ref1: 42" in msgs[1][1] and "Ref2: 21" in msgs[1][1] and "A2: 21" in msgs[1][1]


def test_limit_takes_categories_in_turn_and_is_reported():
    data = load_mt_bench(MTBenchConfig(data=str(FIXTURE), max_questions=2), Path("."))
    assert [q["question_id"] for q in data.questions] == [1, 2]
    assert "limited to 2 of 4" in data.description
    qs = [{"question_id": i, "category": c} for i, c in [(1, "a"), (2, "a"), (3, "b"), (4, "c")]]
    assert [q["question_id"] for q in limit_questions(qs, 3)] == [1, 3, 4]


def test_missing_reference_set_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="gpt-4.jsonl is missing"):
        load_mt_bench(MTBenchConfig(data=str(FIXTURE), reference_answers="gpt-4"), Path("."))


def test_the_rating_constraint_only_admits_outputs_that_parse():
    import re

    for text, rating in [("Clear and correct. [[9]]", 9.0), ("[[10]]", 10.0), ("Weak.\nRating: [[2]]", 2.0)]:
        assert re.fullmatch(RATING_REGEX, text) and parse_rating(text) == rating
    for text in ["[[11]]", "Good [[0]]", "no rating", "[[7]] and more"]:
        assert not re.fullmatch(RATING_REGEX, text)
