"""AlpacaEval 2 as the official package scores it (EVAL.md §6): judge prompt, logprob preference, win rates.

Annotations use alpaca_eval's column names (`instruction`, `output_1` = reference, `output_2` = evaluated model,
`generator_1`, `generator_2`, `preference` in [1, 2]), so `alpaca_eval.metrics.get_winrate` and
`get_length_controlled_winrate` can recompute every number from the saved file.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from statistics import fmean, stdev
from typing import Any

NUMERATOR_TOKEN = "m"  # the judge's name for the output shown first
DENOMINATOR_TOKENS = ("m", "M")
TEMPLATE_PACKAGE = "alpaca-eval==0.6.6"
TEMPLATE_MEMBER = "alpaca_eval/evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"
TEMPLATE_NAME = "weighted_alpaca_eval_gpt4_turbo (alpaca_eval_clf.txt)"
_PLACEHOLDER = re.compile(r"{([^ \s]+?)}")


def fill_template(template: str, fields: dict[str, str]) -> str:
    """Replaces the first occurrence of each {placeholder}, in order of appearance (as alpaca_eval does)."""
    out = template
    for name in dict.fromkeys(_PLACEHOLDER.findall(template)):
        if name in fields:
            out = out.replace("{" + name + "}", fields[name], 1)
    return out


def chatml_messages(prompt: str) -> tuple[tuple[str, str], ...]:
    """A `<|im_start|>role\\ncontent<|im_end|>` prompt as ((role, content), ...).

    Raises:
        ValueError: the text is not in that format.
    """
    prompt = prompt.strip()
    if not prompt.startswith("<|im_start|>") or not prompt.endswith("<|im_end|>"):
        raise ValueError("a judge template must be ChatML: <|im_start|>role ... <|im_end|> blocks")
    messages = []
    for block in prompt.split("<|im_start|>")[1:]:
        role, _, rest = block.partition("\n")
        messages.append((role.strip(), rest.split("<|im_end|>", 1)[0].strip()))
    return tuple(messages)


def judge_messages(template: str, instruction: str, first: str, second: str) -> tuple[tuple[str, str], ...]:
    return chatml_messages(fill_template(template, {"instruction": instruction, "output_1": first,
                                                    "output_2": second}))


def is_switched(instruction: str, seed: int) -> bool:
    """Whether the model's output is shown first: a fair coin seeded by the instruction and the run seed."""
    return hashlib.sha256(f"{seed}:{instruction}".encode()).digest()[0] % 2 == 1


def preference_from_logprobs(top_logprobs: dict[str, float]) -> float | None:
    """2 - P(first shown | judge) from the first token's alternatives; None when neither 'm' nor 'M' is among them.

    A missing one of the two has probability 0, as in alpaca_eval's logprob_parser.
    """
    found = {t: lp for t, lp in top_logprobs.items() if t in DENOMINATOR_TOKENS}
    if not found:
        return None
    m = found.get(NUMERATOR_TOKEN, -math.inf)
    top = max(found.values())
    denominator = top + math.log(sum(math.exp(lp - top) for lp in found.values()))
    return 2 - math.exp(m - denominator)


def shown_to_reference_order(preference: float, switched: bool) -> float:
    """Maps a preference over the shown order back to (output_1 = reference, output_2 = model)."""
    return 3 - preference if switched else preference


def win_rate(preferences: Sequence[float | None]) -> dict[str, Any]:
    """alpaca_eval's get_winrate: 100 * mean(pref - 1) over valid preferences (0 counts as a draw, 1.5)."""
    values = [1.5 if p == 0 else p for p in preferences if p is not None and not math.isnan(p)]
    values = [p for p in values if 1 <= p <= 2]
    shifted = [p - 1 for p in values]
    n = len(shifted)
    return {
        "win_rate": 100 * fmean(shifted) if n else None,
        "standard_error": 100 * stdev(shifted) / math.sqrt(n) if n > 1 else None,
        "discrete_win_rate": 100 * fmean(1.0 if p > 1.5 else 0.5 if p == 1.5 else 0.0 for p in values) if n else None,
        "n_wins": sum(s > 0.5 for s in shifted),
        "n_wins_base": sum(s < 0.5 for s in shifted),
        "n_draws": sum(p == 1.5 for p in values),
        "n_total": n,
    }


def position_flip_rate(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Share of items judged in both orders whose winner changes with the order (both mapped to reference order)."""
    judged = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not judged:
        return None
    return fmean(float((a - 1.5) * (b - 1.5) < 0) for a, b in judged)
