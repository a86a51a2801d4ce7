"""Every sandbox constraint: its checker on hand-written complying and violating texts, and its repair."""

import pytest

from stages.sandbox.constraints import (
    KINDS, BulletCount, EndsWith, ForbiddenWords, HighlightCount, IncludeKeywords, JsonObject, Lowercase, MaxWords,
    MinWords, NoCommas, ParagraphCount, StartsWith, Title, Uppercase, compatible, constraint_from_json,
)

# (constraint, texts that comply, texts that violate)
CHECKS = [
    (Lowercase(), ["all quiet here, 42 cats.", ""], ["All quiet.", "quiet Here"]),
    (Uppercase(), ["ALL QUIET, 42 CATS!", ""], ["ALL quiet", "Yes"]),
    (NoCommas(), ["no commas here. none at all.", ""], ["one, two", "1,000"]),
    (MinWords(5), ["one two three four five", "don't use well-known a b"], ["one two three four", "a-b c d e"]),
    (MaxWords(3), ["one two three.", "**one** - two"], ["one two three four", "don't stop me now"]),
    (IncludeKeywords(("chain", "pedal")), ["The Chain turns when you press the PEDAL.", "pedal/chain"],
     ["The chains turn as you pedal.", "pedal only"]),
    (ForbiddenWords(("chain",)), ["Chains and chainrings are fine.", ""], ["The Chain slips.", "a chain."]),
    (BulletCount(2), ["Intro\n- one\n* two\nEnd", "+ a\n  - b"],
     ["- one\n- two\n- three", "**bold** line\n- one", "-one\n- two", "no bullets"]),
    (ParagraphCount(2), ["First part.\n\nSecond part.", "A\n  \nB", "\n\nA\n\n\nB\n\n"],
     ["One line.\nAnother line.", "A\n\nB\n\nC", ""]),
    (HighlightCount(2), ["A **big** and **bold** claim.", "**a** **b** **c**"],
     ["A **big** claim.", "**not\nclosed** **x**", "****"]),
    (StartsWith("Sure thing."), ["Sure thing. Here it is.", "  **Sure** thing. Bold start.", "SURE THING. loud"],
     ["Well, sure thing.", "Sure thing"]),
    (EndsWith("Hope this helps."), ["Done. Hope this helps.\n", "done. **hope this helps.**"],
     ["Hope this helps. Bye.", "Hope this helps"]),
    (Title(), ["<<Gear Basics>>\nText", "\n  <<a title>>  \nbody", "<<Only a title>>"],
     ["Gear Basics\n<<x>>", "<<>>\nbody", "<<a>> <<b>>", "<<unclosed\nx>>"]),
    (JsonObject(), ['{"answer": "yes"}', '```json\n{"a": 1}\n```', ' {"a": [1, 2]} '],
     ['["a"]', 'Sure: {"a": 1}', '{"a": 1', ""]),
]

# (constraint, violating text, its exact repair)
REPAIRS = [
    (Lowercase(), "Hello World, OK?", "hello world, ok?"),
    (Uppercase(), "Hi there, friend.", "HI THERE, FRIEND."),
    (NoCommas(), "red, green, and blue,", "red green and blue"),
    (MaxWords(3), "One two, three four five.", "One two, three"),
    (MaxWords(3), "- a\n- b\n- c d\n- e", "- a\n- b\n- c"),
    (IncludeKeywords(("chain", "pedal")), "Gears help. They change effort.",
     "Gears help. This answer covers chain and pedal. They change effort."),
    (IncludeKeywords(("chain", "pedal")), "<<Gears>>\nThe chain helps. A lot.",
     "<<Gears>>\nThis answer covers pedal.\nThe chain helps. A lot."),
    (IncludeKeywords(("chain",)), "Gears help.", "Gears help. This answer covers chain."),
    (ForbiddenWords(("chain", "oil")), "The chain slips, and the CHAIN squeaks.", "The slips, and the squeaks."),
    (ForbiddenWords(("chain", "oil")), "Chain oil helps.\n- oil it", "helps.\n- it"),
    (BulletCount(2), "Tips:\n- one\n- two\n- three\n  * four", "Tips:\n- one\n- two\nthree\nfour"),
    (BulletCount(2), "Tips:\n- one\nKeep going.\n\nRest.", "Tips:\n- one\nKeep going.\n\n- Rest."),
    (BulletCount(2), "Ride often.\nRest well.", "- Ride often.\n- Rest well."),
    (ParagraphCount(2), "A.\n\nB.\n\nC.", "A.\n\nB.\nC."),
    (ParagraphCount(2), "Intro line\nsecond line", "Intro line\n\nsecond line"),
    (ParagraphCount(2), "One. Two. Three.", "One. Two.\n\nThree."),
    (ParagraphCount(3), "One. Two. Three.", "One.\n\nTwo.\n\nThree."),
    (ParagraphCount(3), "- a\n- b\n- c\n\nEnd.", "- a\n- b\n\n- c\n\nEnd."),
    (HighlightCount(2), "A **big** claim here.", "**A** **big** claim here."),
    (HighlightCount(1), "*Soft* start, then words.", "*Soft* **start**, then words."),
    (StartsWith("Sure thing."), "Here it is.", "Sure thing.\nHere it is."),
    (StartsWith("Sure thing."), "\n\n- first\n- second", "Sure thing.\n- first\n- second"),
    (EndsWith("Hope this helps."), "All done.  \n", "All done. Hope this helps."),
    (EndsWith("Hope this helps."), "", "Hope this helps."),
    (EndsWith("Hope this helps."), "<<Gears>>", "<<Gears>>\nHope this helps."),  # a title line stays whole
    (Title(), "Bicycle gears help riders climb.\nMore.",
     "<<Bicycle gears help riders>>\nBicycle gears help riders climb.\nMore."),
    (Title(), "", "<<Answer>>"),
    (JsonObject(), 'Here you go: {"a": 1, "b": "x"} Enjoy!', '{"a": 1, "b": "x"}'),
    (JsonObject(), 'Line one\n"quoted" {', '{"answer": "Line one\\n\\"quoted\\" {"}'),
]

# (constraint, violating text that no mechanical edit can fix)
IMPOSSIBLE = [
    (MinWords(5), "one two three"),
    (MinWords(1), ""),
    (BulletCount(3), "- one\nplain"),
    (ParagraphCount(2), "Just one sentence with no break"),
    (ParagraphCount(2), ""),
    (HighlightCount(2), "**one**"),
]


@pytest.mark.parametrize("constraint, good, bad", CHECKS, ids=[c.kind for c, _, _ in CHECKS])
def test_checker_accepts_complying_and_rejects_violating_texts(constraint, good, bad):
    assert [constraint.check(t) for t in good] == [True] * len(good)
    assert [constraint.check(t) for t in bad] == [False] * len(bad)


@pytest.mark.parametrize("constraint, good, bad", CHECKS, ids=[c.kind for c, _, _ in CHECKS])
def test_repair_leaves_complying_text_unchanged(constraint, good, bad):
    for text in good:
        assert constraint.repair(text) == text


@pytest.mark.parametrize("constraint, text, expected", REPAIRS, ids=[c.kind for c, _, _ in REPAIRS])
def test_repair_is_the_expected_minimal_edit(constraint, text, expected):
    assert not constraint.check(text)
    assert constraint.repair(text) == expected
    assert constraint.check(expected)


@pytest.mark.parametrize("constraint, text", IMPOSSIBLE, ids=[c.kind for c, _ in IMPOSSIBLE])
def test_repair_says_none_when_no_mechanical_edit_exists(constraint, text):
    assert not constraint.check(text)
    assert constraint.repair(text) is None


def test_every_kind_has_checks_and_a_repair_or_a_reason_it_has_none():
    assert len(KINDS) >= 12
    assert {c.kind for c, _, _ in CHECKS} == set(KINDS)
    repaired = {c.kind for c, _, _ in REPAIRS}
    assert repaired | {c.kind for c, _ in IMPOSSIBLE} == set(KINDS)
    assert set(KINDS) - repaired == {"min_words"}  # the one kind that is never repairable


@pytest.mark.parametrize("constraint", [c for c, _, _ in CHECKS], ids=[c.kind for c, _, _ in CHECKS])
def test_json_round_trip_and_a_describing_sentence(constraint):
    assert constraint_from_json(constraint.to_json()) == constraint
    sentence = constraint.describe()
    assert sentence[-1] in ".\"" and len(sentence.split()) >= 4


def test_bad_parameters_and_bad_json_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="max_words must be at least 1"):
        MaxWords(0)
    with pytest.raises(ValueError, match="not a single word"):
        IncludeKeywords(("two words",))
    with pytest.raises(ValueError, match="must not be empty"):
        ForbiddenWords(())
    with pytest.raises(ValueError, match="unknown constraint kind 'lowercaps'"):
        constraint_from_json({"kind": "lowercaps"})
    with pytest.raises(ValueError, match=r"takes fields \['max_words'\], got \['words'\]"):
        constraint_from_json({"kind": "max_words", "words": 3})


def test_compatibility():
    assert compatible(["lowercase", "no_commas", "title"])
    assert not compatible(["lowercase", "uppercase"])
    assert not compatible(["title", "no_commas", "starts_with"])
    assert not compatible(["no_commas", "no_commas"])
