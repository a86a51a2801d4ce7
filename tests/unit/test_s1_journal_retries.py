"""The request journal (resume), the retry loop of the teacher's judgments, and the section's cross-key checks."""

import math

import pytest
import yaml

from ray_cluster.generation.types import Completion, GenerationResult, Sampling, TokenLogprob
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from stages.s1_synthesize.config import SynthesizeConfig
from stages.s1_synthesize.journal import RequestJournal
from stages.s1_synthesize.judge import PairItem
from stages.s1_synthesize.llm_judge import LLMJudge
from stages.s1_synthesize.session import make_request
from stages.s1_synthesize.stats import StageStats

REPO_TINY = "recipes/tiny.yaml"


def result(rid: str, text: str, top=()) -> GenerationResult:
    return GenerationResult(id=rid, completions=(Completion(text, (5, 6), "stop", top),), prompt_tokens=9,
                            completion_tokens=2)


def test_journal_round_trips_results_and_cuts_a_half_written_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    # Engines compute logprobs in float32, which the journal stores exactly.
    top = ((TokenLogprob("a", 5, -0.125), TokenLogprob("b", 7, -2.5)), (TokenLogprob("c", 6, -math.inf),))
    text_only = GenerationResult(id="t", completions=(Completion("x", (), "length", ((TokenLogprob(" 7", None,
                                                                                                   -0.5),),)),))
    journal = RequestJournal(path)
    journal.add(result("r1", "hello", top))
    journal.add(text_only)
    journal.close()
    with open(path, "a") as f:
        f.write('{"id": "r2", "compl')  # a SIGKILL in the middle of a write
    again = RequestJournal(path)
    assert len(again) == 2 and again.get("r2") is None
    assert again.get("r1") == result("r1", "hello", top) and again.get("t") == text_only
    again.add(result("r3", "after"))
    again.close()
    assert len(RequestJournal(path)) == 3  # the new line starts cleanly after the cut


def test_request_ids_are_stable_and_change_with_the_content():
    s = Sampling(max_new_tokens=4)
    a = make_request("refine", "teacher", "p1", (("user", "x"),), s)
    assert a.id.startswith("refine/p1#") and a == make_request("refine", "teacher", "p1", (("user", "x"),), s)
    assert a.id != make_request("refine", "teacher", "p1", (("user", "y"),), s).id
    assert a.id != make_request("refine", "teacher", "p1", (("user", "x"),), Sampling(max_new_tokens=5)).id
    assert a.id != make_request("refine", "other", "p1", (("user", "x"),), s).id


class ScriptedTeacher:
    """Stands in for the teacher model only: answers each attempt from a script, as the engines would."""

    alias = "teacher"

    def __init__(self, answers: dict[str, list[str]]):
        self.answers, self.requests = answers, []

    def generate(self, step, requests):
        self.requests += requests
        return [result(r.id, self.answers[r.id.split("/")[1]].pop(0)) for r in requests]


def cfg(**kw) -> SynthesizeConfig:
    return SynthesizeConfig(teacher="t", generators=["a", "b"], score_format="free", **kw)


def test_unparseable_answers_are_asked_again_then_dropped_never_defaulted():
    teacher = ScriptedTeacher({"good": ["8 3"], "late": ["no idea", "7 2"], "never": ["?", "??", "???"]})
    items = [PairItem(key, key, "q", "x", "y") for key in ("good", "late", "never")]
    good, late, never = LLMJudge(teacher, cfg(parse_retries=2, retry_temperature=0.9)).score_pairs(items)
    assert (good.value, good.attempts, good.parse_failures) == ((8.0, 3.0), 1, 0)
    assert (late.value, late.attempts, late.parse_failures) == ((7.0, 2.0), 2, 1)
    assert (never.value, never.reason, never.attempts, never.parse_failures) == (None, "unparseable_score", 3, 3)
    retries = [r for r in teacher.requests if "/try1" in r.id]
    assert len(retries) == 2 and all(r.sampling.temperature == 0.9 for r in retries)  # greedy would repeat itself
    assert len({r.id for r in teacher.requests}) == len(teacher.requests) == 6


def test_prompts_the_teacher_cannot_fit_are_dropped_without_retry():
    class TooLong(ScriptedTeacher):
        def generate(self, step, requests):
            self.requests += requests
            return [GenerationResult(id=r.id, error="prompt_too_long") for r in requests]

    teacher = TooLong({})
    (verdict,) = LLMJudge(teacher, cfg()).score_pairs([PairItem("p", "p", "q", "x", "y")])
    assert verdict.reason == "prompt_too_long" and len(teacher.requests) == 1


def test_recipe_checks_of_the_synthesize_section(tmp_path):
    raw = yaml.safe_load(open(REPO_TINY))
    raw["data"]["prompts"] = str(tmp_path / "p.jsonl")
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
    raw["synthesize"].update(structured_refinement=False, refine_reasoning="one_line", generators=["policy", "policy"],
                             answer_sampling={"max_new_tokens": 4096})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    text = str(e.value)
    assert "synthesize.refine_max_chars: only applies with structured_refinement: true" in text
    assert "synthesize.refine_reasoning: 'one_line' only applies with structured_refinement: true" in text
    assert "synthesize.generators: lists a model twice" in text
    assert "synthesize.answer_sampling.max_new_tokens: 4096 leaves no room for the prompt in " \
           "teacher_engine.max_model_len (1024)" in text


def test_stats_record_engine_restarts_and_start_up_per_model():
    stats = StageStats()
    stats.engine_restarts["teacher"] += 1
    stats.engine_start_s["teacher"] += 12.3456
    out = stats.to_json(margins=[], edit_distances=[], consistent=[])
    assert out["engine_restarts"] == {"teacher": 1} and out["engine_start_s"] == {"teacher": 12.346}
