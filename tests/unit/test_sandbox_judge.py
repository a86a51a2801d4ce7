"""The sandbox verifier as the synthesis judge: its three roles, routing per role, recipe checks, the shared
generation cache."""

from pathlib import Path

import pytest
import yaml

from ray_cluster.engine_config import EngineConfig
from ray_cluster.generation.types import Completion, GenerationResult, Sampling
from rlhf_stack.core.errors import RecipeError
from rlhf_stack.app.recipe import load_recipe
from stages.sandbox import NoiseConfig, SandboxPrompt, Verifier, constraints_path
from stages.sandbox.constraints import Lowercase, MinWords, NoCommas
from rlhf_stack.core.sections import ClusterConfig
from stages.s1_synthesize.journal import RequestJournal
from stages.s1_synthesize.judge import CalibrateItem, PairItem, Refined, RefineItem, Verdict
from stages.s1_synthesize.session import ModelSession, cache_scope, make_request
from stages.s1_synthesize.stage import jobs
from stages.s1_synthesize.stats import StageStats
from stages.s1_synthesize.verifier_judge import RoutedJudge, VerifierJudge

REPO = Path(__file__).resolve().parents[2]
PROMPT = SandboxPrompt("p1", "Greet a friend.", (Lowercase(), NoCommas(), MinWords(5)))
TWO_MET = "hello, there my good friend"  # lowercase and length met: true score 7
NONE_MET = "Hello, friend"  # true score 1


def judge(**noise) -> VerifierJudge:
    return VerifierJudge(Verifier({"p1": PROMPT}, NoiseConfig(**noise), seed=3))


def test_pair_scores_are_the_true_scores_in_the_order_shown():
    verdicts = judge().score_pairs([PairItem("p1/ab", "p1", "x", TWO_MET, NONE_MET),
                                    PairItem("p1/ba", "p1", "x", NONE_MET, TWO_MET)])
    assert [v.value for v in verdicts] == [pytest.approx((7, 1)), pytest.approx((1, 7))]
    assert all(v.attempts == 1 and v.parse_failures == 0 for v in verdicts)
    flipped = judge(flip_prob=1.0).score_pairs([PairItem("p1/ab", "p1", "x", TWO_MET, NONE_MET)])
    assert flipped[0].value == pytest.approx((1, 7))  # a teacher that always prefers the wrong answer


def test_refinement_is_the_repair_with_its_diagnosis_and_an_unchanged_answer_is_dropped():
    items = [RefineItem("p1", "p1", "x", "preferred", "Hi, You"), RefineItem("p1", "p1", "x", "preferred", "hi you")]
    repaired, unchanged = judge().refine(items)
    assert repaired.value.chosen == "hi you"
    assert repaired.value.completion == ("violated: lowercase, no_commas, min_words; repaired: lowercase, "
                                         "no_commas; not repairable: min_words")
    assert unchanged.value is None and unchanged.reason == "unchanged_edit"  # only min_words is left: no edit


def test_calibrated_score_is_the_true_score_of_the_edit_plus_its_noise():
    item = RefineItem("p1", "p1", "x", "preferred", TWO_MET)
    calibrate = CalibrateItem("p1", item, Refined("hello there my good friend", "d"), rejected_score=7.0)
    assert judge().calibrate([calibrate])[0].value == pytest.approx(10)
    noisy = [judge(score_sigma_points=1.0).calibrate([calibrate])[0].value for _ in range(2)]
    assert noisy[0] == noisy[1] != 10 and 1 <= noisy[0] <= 10  # seeded: the same draw on every call


class Recorder:
    """Another judge for the roles the verifier does not play; records what it was asked."""

    name = "other"

    def __init__(self):
        self.asked = []

    def score_pairs(self, items):
        self.asked.append("score_pairs")
        return [Verdict((5.0, 5.0)) for _ in items]

    def calibrate(self, items):
        self.asked.append("calibrate")
        return [Verdict(2.0) for _ in items]


def test_each_role_goes_to_the_judge_the_recipe_names():
    other, verifier = Recorder(), judge()
    routed = RoutedJudge(initial_scores=other, refine=verifier, calibrate=other)
    assert routed.name == "other+verifier"
    assert routed.score_pairs([PairItem("p1/ab", "p1", "x", TWO_MET, NONE_MET)])[0].value == (5.0, 5.0)
    assert routed.refine([RefineItem("p1", "p1", "x", "y", NONE_MET)])[0].value.chosen == "hello friend"
    assert other.asked == ["score_pairs"]


def recipe_file(tmp_path, synthesize: dict, prompts: Path = REPO / "recipes/data/sandbox_tiny.jsonl") -> Path:
    raw = yaml.safe_load((REPO / "recipes/sandbox_tiny.yaml").read_text())
    for section in ("distill", "ppo", "evaluate", "sweep"):
        raw.pop(section)
    raw["data"]["prompts"] = str(prompts)
    raw["synthesize"].update(synthesize)
    raw["synthesize"] = {k: v for k, v in raw["synthesize"].items() if v is not None}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def problems(path: Path) -> str:
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    return str(e.value)


def test_recipe_checks_of_the_verifier(tmp_path):
    assert "synthesize.verifier: judges initial_scores, refine, calibrate use the verifier, which is not " \
           "configured" in problems(recipe_file(tmp_path, {"verifier": None}))
    only_llm = {"judges": {"initial_scores": "llm", "refine": "llm", "calibrate": "llm"}}
    assert "no judging role uses the verifier" in problems(recipe_file(tmp_path, only_llm))
    assert "flip_prob" in problems(recipe_file(tmp_path, {"verifier": {"noise": {"flip_prob": 1.5}}}))
    plain = REPO / "recipes/data/tiny_prompts.jsonl"  # prompts without a constraint file
    assert "tiny_prompts.constraints.jsonl does not exist" in problems(recipe_file(tmp_path, {}, plain))
    # Sampling limits apply to the roles the LLM plays: the verifier refines, so refine_sampling is not checked.
    load_recipe(recipe_file(tmp_path, {"refine_sampling": {"max_new_tokens": 4096}}))


def test_the_job_reads_the_constraints_and_its_hash_ignores_the_cache_path(tmp_path):
    recipe = load_recipe(recipe_file(tmp_path, {}))
    [job] = jobs(recipe)
    assert constraints_path(recipe.prompts_path) in job.files
    other_cache = load_recipe(recipe_file(tmp_path, {"generation_cache": str(tmp_path / "c.jsonl")}))
    assert jobs(other_cache)[0].key == job.key
    assert jobs(load_recipe(recipe_file(tmp_path, {"generation_seed": 7})))[0].key != job.key


class Engine:
    """Stands in for the generation engines; counts what reaches them."""

    def __init__(self):
        self.sent = []

    def generate(self, requests, on_result=None):
        out = []
        for r in requests:
            self.sent.append(r.id)
            result = GenerationResult(id=r.id, completions=(Completion(f"answer to {r.id}", (1,), "stop"),),
                                      prompt_tokens=3, completion_tokens=1)
            on_result(result)
            out.append(result)
        return out


def session(tmp_path, run: str, cache: RequestJournal, seed: int, engine: Engine) -> ModelSession:
    cfg = EngineConfig(backend="hf")
    s = ModelSession("gen", lambda: tmp_path, cfg, cluster=ClusterConfig(), seed=seed,
                     journal=RequestJournal(tmp_path / run / "requests.jsonl"), stats=StageStats(), teacher=False,
                     cache=cache, scope=cache_scope({"source": "m"}, cfg, seed))
    s._backend = engine
    return s


def test_runs_share_generations_through_the_cache_only_under_the_same_model_engine_and_seed(tmp_path):
    cache = RequestJournal(tmp_path / "cache.jsonl")
    requests = [make_request("candidates", "gen", f"p{i}/gen/0", (("user", f"q{i}"),), Sampling(max_new_tokens=4))
                for i in range(3)]
    first_engine, second_engine, third_engine = Engine(), Engine(), Engine()
    first = session(tmp_path, "a", cache, 0, first_engine).generate("candidates", requests)
    second_session = session(tmp_path, "b", cache, 0, second_engine)
    second = second_session.generate("candidates", requests)
    assert len(first_engine.sent) == 3 and second_engine.sent == []
    assert second == first  # the same results, under the requests' own ids
    assert second_session.stats.steps["candidates"].shared == 3
    session(tmp_path, "c", cache, 1, third_engine).generate("candidates", requests)  # another seed: sent again
    assert len(third_engine.sent) == 3
