"""Repairing an answer against all its constraints at once: order, honesty about failures, composability."""

import itertools

import pytest

from stages.sandbox import repair
from stages.sandbox.constraints import (
    BulletCount, EndsWith, ForbiddenWords, HighlightCount, IncludeKeywords, JsonObject, Lowercase, MaxWords, MinWords,
    NoCommas, ParagraphCount, StartsWith, Title, Uppercase, compatible,
)
from stages.sandbox.repair import MAX_PASSES, repair_all


def test_complying_answer_comes_back_unchanged():
    text = "sure thing.\nno capitals and no commas here"
    assert repair_all(text, [Lowercase(), NoCommas(), StartsWith("Sure thing.")]) == (text, [])


def test_repairs_run_in_rank_order_and_touch_only_what_is_violated(monkeypatch):
    monkeypatch.setattr(repair, "MAX_PASSES", 1)  # the order alone must get it right, without a second pass
    text = "Bicycle gears help, a lot. They matter."
    constraints = [Lowercase(), IncludeKeywords(("chain",)), NoCommas(), EndsWith("Hope this helps.")]
    # keyword sentence after the first sentence, then the phrase, then commas out, then lowercase
    expected = "bicycle gears help a lot. this answer covers chain. they matter. hope this helps."
    assert repair_all(text, constraints) == (expected, [])


def test_unrepairable_constraints_are_reported_and_the_rest_repaired():
    assert repair_all("Short, Text.", [MinWords(50), Lowercase(), NoCommas()]) == ("short text.", ["min_words"])


def test_conflicting_repairs_end_in_the_best_pass_and_say_what_is_left():
    # cutting to 3 words and appending the phrase undo each other; the pass meeting the phrase wins over the input
    assert repair_all("one two three four five", [MaxWords(3), EndsWith("Hope this helps.")]) == (
        "one two three Hope this helps.", ["max_words"])
    # when no pass meets more constraints than the input, the input comes back: an edit never makes it worse
    assert repair_all("one two", [MaxWords(3), EndsWith("Hope this helps.")]) == ("one two", ["ends_with"])


# One instance per kind, with parameters like the generated prompts' (min_words is never repairable).
INSTANCES = [
    MaxWords(60), BulletCount(3), ParagraphCount(3), HighlightCount(2), IncludeKeywords(("chain", "pedal")),
    ForbiddenWords(("gears",)), StartsWith("Sure thing."), EndsWith("Hope this helps."), Title(), JsonObject(),
    Lowercase(), Uppercase(), NoCommas(), MinWords(40),
]
ANSWERS = [
    "Bicycle gears change how far you travel per turn of the cranks. A small front ring makes climbing easy, "
    "while a large one gives speed.\n\nOn the rear, the cassette has many cogs. Shifting moves the chain between "
    "them, so the ratio changes.\n\nIn short, use low gears for hills and high gears for flat roads!",
    "Here are some tips:\n- Shift before the hill, not on it.\n- Keep the chain clean, and oil it.\n"
    "- Spin the cranks, don't mash them.\n- Use the front ring for big changes.\nEnjoy the ride.",
    "Gears, gears, gears. They help you climb. They help you go fast. They are simple once you practice them, and "
    "riding becomes a joy for everyone who tries it, young or old, in the city or in the hills, on sunny days and "
    "rainy ones, again and again, for many years of happy cycling and long weekend adventures together.",
    '{"tip": "Shift early, Spin fast"}',
    "",
    "Short.",
    "- a\n- b\n- c\n- d\n- e",
]


@pytest.mark.parametrize("passes", [1, MAX_PASSES])
def test_joint_repair_leaves_only_what_no_repair_could_fix_alone(passes, monkeypatch):
    """Over every compatible set of one to three kinds and varied answers: repairing one constraint never breaks
    another, so what stays violated is exactly among the constraints whose own repair is impossible. With one pass
    this holds by the repair order alone."""
    monkeypatch.setattr(repair, "MAX_PASSES", passes)
    combos = [c for k in (1, 2, 3) for c in itertools.combinations(INSTANCES, k) if compatible([x.kind for x in c])]
    assert len(combos) > 300
    for combo in combos:
        for text in ANSWERS:
            impossible = {c.kind for c in combo if c.repair(text) is None}
            repaired = repair_all(text, combo)
            assert set(repaired.unrepaired) <= impossible, (combo, text, repaired)
            assert repaired.unrepaired == [c.kind for c in combo if not c.check(repaired.text)]
