"""Teacher prompts, their regexes and the parsers (including every way an answer can fail to parse)."""

import math
import re

import pytest

from ray_cluster.generation.types import Completion, TokenLogprob
from stages.s1_synthesize.parsing import expected_scores, parse_refinement, parse_rewrite, parse_scores
from stages.s1_synthesize.prompts import (
    ONE_SCORE,
    PAIR_SCORES,
    calibrate_messages,
    pair_messages,
    refine_messages,
    refine_regex,
    rewrite_messages,
    rewrite_regex,
)


def test_pair_prompt_shows_both_answers_in_the_given_order():
    (system_role, _), (role, text) = pair_messages("Q?", "first answer", "second answer")
    assert (system_role, role) == ("system", "user")
    assert text.index("[Question]\nQ?") < text.index("first answer") < text.index("second answer")
    assert "[The Start of Assistant 1's Answer]\nfirst answer\n[The End of Assistant 1's Answer]" in text
    assert "[The Start of Assistant 2's Answer]\nsecond answer\n[The End of Assistant 2's Answer]" in text
    assert text.rstrip().endswith("### Response:")


def test_refine_and_calibrate_prompts_carry_every_block_and_the_anchor():
    (role, text), = refine_messages("Q?", "y_T text", "y_l text")
    for block in ("<Start of Instruction>", "<End of Instruction>", "<Start of Context>\n##Human: Q?\n<End of Context>",
                  "<Start of Preferred Response>\ny_T text\n<End of Preferred Response>",
                  "<Start of Non-Preferred Response>\ny_l text\n<End of Non-Preferred Response>"):
        assert block in text
    turns = calibrate_messages("Q?", "y_T text", "y_l text", "my completion", 3)
    assert [r for r, _ in turns] == ["user", "assistant", "user"]
    assert turns[0][1] == text and turns[1][1] == "my completion"
    assert "rated 3.0 out of 10" in turns[2][1]  # the anchor is printed as a float, like the reference
    assert "rated 4.81 out of" in calibrate_messages("Q?", "a", "b", "c", 4.8076520148469)[2][1]


def test_score_regexes_admit_exactly_the_1_to_10_scale():
    assert re.fullmatch(PAIR_SCORES, "7 10") and re.fullmatch(ONE_SCORE, "1")
    for bad in ("0 5", "11 3", "7  3", "7,3", "7"):
        assert not re.fullmatch(PAIR_SCORES, bad)


def test_structured_refinement_regex_parses_and_bounds_blocks():
    text = "<Start of Reasoning>\nshort why\n<End of Reasoning>\n<Start of Modified Response>\nfixed a<b\n" \
           "<End of Modified Response>"
    assert re.fullmatch(refine_regex(None), text)
    assert re.fullmatch(refine_regex(12), text)
    assert not re.fullmatch(refine_regex(5), text)  # "short why" is longer than 5 characters
    assert re.fullmatch(refine_regex(None, one_line_reasoning=True), text)
    assert re.fullmatch(refine_regex(12, one_line_reasoning=True), text)
    two_lines = text.replace("short why", "short\nwhy")
    assert re.fullmatch(refine_regex(None), two_lines)
    assert not re.fullmatch(refine_regex(None, one_line_reasoning=True), two_lines)
    assert parse_refinement(text, "broken a<b").value == "fixed a<b"
    assert re.fullmatch(rewrite_regex(20), "<response>new</response>")
    assert "BETTER" not in rewrite_messages("Q", "R", "better", "honesty and safety")[0][1]


def test_parse_scores_takes_the_first_numbers_clamped_and_never_invents_them():
    assert parse_scores("8 6", 2) == [8.0, 6.0]
    assert parse_scores("7.5, 12 (reasons follow)", 2) == [7.5, 10.0]  # clamped to [0, 10]
    assert parse_scores("-3 4", 2) == [0.0, 4.0]
    assert parse_scores("only 9", 2) is None
    assert parse_scores("no numbers at all", 1) is None


@pytest.mark.parametrize("text,reason", [
    ("<Start of Reasoning>x<End of Reasoning> the edit without tags", "malformed_refinement"),
    ("<Start of Modified Response>never closed", "malformed_refinement"),
    ("<Start of Modified Response>   <End of Modified Response>", "empty_edit"),
    ("<Start of Modified Response> the old answer <End of Modified Response>", "unchanged_edit"),
])
def test_refinement_parse_is_strict(text, reason):
    assert parse_refinement(text, "the old answer").reason == reason


def test_refinement_tolerates_the_known_malformed_closing_tag():
    text = "<Start of Reasoning>why<End of Reasoning><Start of Modified Response>\nnew\n</End of Modified Response>"
    assert parse_refinement(text, "old").value == "new"


def test_rewrite_parse():
    assert parse_rewrite("<response> better </response>", "old").value == "better"
    assert parse_rewrite("better", "old").reason == "malformed_rewrite"
    assert parse_rewrite("<response>old</response>", "old").reason == "unchanged_rewrite"


def lp(token, token_id, logprob):
    return TokenLogprob(token, token_id, logprob)


def test_expected_scores_weight_the_score_token_alternatives():
    # "7 9": the first score's token has alternatives 7 (p .5), 8 (p .25), "x" (p .25, not a number):
    # E = (7 * .5 + 8 * .25) / .75 = 7.333...; the second score's token " 9" with " 8" and "9" (no space, another
    # path): E = (9 * .6 + 8 * .2) / .8 = 8.75.
    completion = Completion(text="7 9", token_ids=(7, 19, 2), finish_reason="stop", top_logprobs=(
        (lp("7", 7, math.log(0.5)), lp("8", 8, math.log(0.25)), lp("x", 99, math.log(0.25))),
        (lp(" 9", 19, math.log(0.6)), lp(" 8", 18, math.log(0.2)), lp("9", 9, math.log(0.2))),
        (lp("</s>", 2, 0.0),),
    ))
    first, second = expected_scores(completion, 2, lambda e: e.token)
    assert first == pytest.approx(22 / 3) and second == pytest.approx(8.75)


def test_expected_score_counts_a_split_10_as_10_and_needs_its_logprobs():
    completion = Completion(text="10", token_ids=(1, 0), finish_reason="stop", top_logprobs=(
        (lp("1", 1, math.log(0.5)), lp("9", 9, math.log(0.5))), (lp("0", 0, 0.0),)))
    assert expected_scores(completion, 1, lambda e: e.token) == [pytest.approx(9.5)]
    no_logprobs = Completion(text="10", token_ids=(1, 0), finish_reason="stop")
    assert expected_scores(no_logprobs, 1, lambda e: e.token) is None
