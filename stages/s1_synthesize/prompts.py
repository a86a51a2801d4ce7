"""The teacher's prompts (METHOD.md §5: same fields, tags and output formats, our own wording) and the regular
expressions that make their answers parseable by construction when the backend supports constrained decoding."""

from __future__ import annotations

SCORE_MIN, SCORE_MAX = 0.0, 10.0  # every parsed score is clamped to this range (METHOD.md D9)
ONE_SCORE = r"([1-9]|10)"
PAIR_SCORES = rf"{ONE_SCORE} {ONE_SCORE}"

JUDGE_SYSTEM = "You check the quality of answers carefully and precisely."

_PAIR = """[Question]
{question}

[The Start of Assistant 1's Answer]
{first}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{second}
[The End of Assistant 2's Answer]

[System]
Compare the two answers above to the user's question. Judge each on helpfulness, relevance, accuracy and level of \
detail, and give each an overall score from 1 to 10, where a higher score means a better answer. The order in which \
the answers are shown must not influence your judgment; stay impartial. Reply with a single line that holds only \
the two scores, Assistant 1's first, separated by a space, and nothing else.

### Response:"""

_REFINE = """<Start of Instruction>
Below is a dialogue context with two candidate replies. Your task is to turn the non-preferred reply into a \
preferred one. First explain why the non-preferred reply is worse than the preferred one and what would fix it. \
Then rewrite the non-preferred reply: keep its structure and wording wherever you can and change only what makes \
it worse, so that the edit stays as small as possible. Follow this output format exactly:
<Start of Reasoning>
(why the non-preferred reply is worse, and how to improve it)
<End of Reasoning>
<Start of Modified Response>
(the minimally edited reply)
<End of Modified Response>
<End of Instruction>
<Start of Context>
##Human: {question}
<End of Context>
<Start of Preferred Response>
{preferred}
<End of Preferred Response>
<Start of Non-Preferred Response>
{rejected}
<End of Non-Preferred Response>"""

_CALIBRATE = """The original non-preferred reply was rated {rejected_score} out of 10 for quality, helpfulness and \
alignment. On the same 1 to 10 scale, how would you rate the Modified Response you just wrote? Reply with the \
number only, without any explanation."""

_REWRITE = """Here is a question and a reply to it.

[Question]
{question}

[Reply]
{response}

Rewrite the reply so that it becomes clearly {direction} in one or two of these aspects: {aspects}. Keep \
everything else as it is. Put the rewritten reply between <response> and </response>, and write nothing else."""

REWRITE_ASPECTS = ("honesty", "truthfulness", "helpfulness", "relevance and coherence", "correctness",
                   "completeness", "safety")

REASONING = ("<Start of Reasoning>", "<End of Reasoning>")
MODIFIED = ("<Start of Modified Response>", "<End of Modified Response>")
MODIFIED_END_MALFORMED = "</End of Modified Response>"  # a closing tag teachers are known to write
REWRITE_TAGS = ("<response>", "</response>")


def pair_messages(question: str, first: str, second: str) -> tuple[tuple[str, str], ...]:
    """P1: one presentation order of a pair; the answer is "<score 1> <score 2>"."""
    return (("system", JUDGE_SYSTEM), ("user", _PAIR.format(question=question, first=first, second=second)))


def refine_messages(question: str, preferred: str, rejected: str) -> tuple[tuple[str, str], ...]:
    """P2: diagnosis of the rejected answer against the preferred one, then its minimal edit."""
    return (("user", _REFINE.format(question=question, preferred=preferred, rejected=rejected)),)


def calibrate_messages(question: str, preferred: str, rejected: str, completion: str,
                       rejected_score: float) -> tuple[tuple[str, str], ...]:
    """P3: the refinement conversation, the teacher's own completion, then the score anchored on s_l."""
    return (*refine_messages(question, preferred, rejected), ("assistant", completion),
            # Two decimals: enough for an anchor, and float noise in averaged scores cannot change the prompt.
            ("user", _CALIBRATE.format(rejected_score=round(float(rejected_score), 2))))


def rewrite_messages(question: str, response: str, direction: str, aspects: str) -> tuple[tuple[str, str], ...]:
    """RMBoost: the teacher rewrites its own answer better or worse."""
    return (("user", _REWRITE.format(question=question, response=response, direction=direction,
                                     aspects=aspects)),)


def _body(max_chars: int | None, stop_after_lt: str) -> str:
    """Free text in which '<' is never followed by `stop_after_lt` (so a closing tag cannot appear early)."""
    unit = rf"([^<]|<[^{stop_after_lt}])"
    return f"{unit}{{1,{max_chars}}}" if max_chars else f"{unit}+"


def refine_regex(max_chars: int | None, one_line_reasoning: bool = False) -> str:
    """The refinement's tag layout, each block at most `max_chars` characters when given; with
    `one_line_reasoning` the diagnosis is a single line without '<'."""
    body = _body(max_chars, "E")
    reasoning = (rf"[^\n<]{{1,{max_chars}}}" if max_chars else r"[^\n<]+") if one_line_reasoning else body
    return f"{REASONING[0]}\n{reasoning}\n{REASONING[1]}\n{MODIFIED[0]}\n{body}\n{MODIFIED[1]}"


def rewrite_regex(max_chars: int | None) -> str:
    return f"{REWRITE_TAGS[0]}{_body(max_chars, '/')}{REWRITE_TAGS[1]}"
