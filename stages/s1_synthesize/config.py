"""Recipe section `synthesize`: the teacher's pair synthesis (METHOD.md steps 1-6). Defaults follow METHOD.md §10,
except where METHOD.md §14 asks for a fix (greedy calibrated scoring, D9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ray_cluster.engine_config import EngineConfig
from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import Problem
from rlhf_stack.core.precision import ComputeUse
from rlhf_stack.core.recipe_view import RecipeView
from stages.sandbox.noise import NoiseConfig
from stages.sandbox import sandbox_problems


OPENAI_MAX_TOP_LOGPROBS = 20  # the most top_logprobs the OpenAI API accepts


class SamplingConfig(StrictModel):
    temperature: float = Field(0.0, ge=0)  # 0 = greedy
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # 0 = off
    min_p: float = Field(0.0, ge=0, le=1)
    max_new_tokens: int = Field(256, ge=1)


_SAMPLED = dict(temperature=0.7, top_p=0.8, top_k=20)  # METHOD.md §10: responses, refinement
JudgeName = Literal["llm", "verifier"]  # llm: the teacher model; verifier: the sandbox's checker (docs/sandbox.md)


class JudgeRoles(StrictModel):
    """Who plays each judging role. Candidates and y_T always come from the LLM engines."""

    initial_scores: JudgeName = "llm"  # pairwise scores of two candidates, both orders
    refine: JudgeName = "llm"  # the minimal edit of the rejected answer
    calibrate: JudgeName = "llm"  # the score of the edited answer

    def uses(self, judge: str) -> list[str]:
        return [role for role, name in self.model_dump().items() if name == judge]


class VerifierConfig(StrictModel):
    """The sandbox verifier as a judge: exact checks of each prompt's constraints, through a noise model."""

    noise: NoiseConfig = NoiseConfig()  # seeded by the recipe seed


class SynthesizeConfig(StrictModel):
    teacher: str  # model alias from `models`
    teacher_engine: EngineConfig = EngineConfig()
    # Where the two answers of the initial pair come from: the `generators`' answers, or the chosen and rejected
    # answers each prompt record carries (a preference set, METHOD.md step 1's "orig" variant; no generator runs).
    candidates_from: Literal["generators", "dataset"] = "generators"
    generators: list[str] = []  # model aliases that write candidate answers (candidates_from: generators)
    generator_engine: EngineConfig = EngineConfig()  # a generator that is also the teacher uses teacher_engine
    responses_per_generator: int = Field(1, ge=1)
    judges: JudgeRoles = JudgeRoles()  # who plays each judging role (pair scores, refinement, calibrated score)
    verifier: VerifierConfig | None = None  # required when a role uses the verifier
    # Seed of every LLM request of this stage (candidates, y_T, LLM judgments); default: the recipe seed. Fixing it
    # lets runs that differ in their seed (RM training, verifier noise) share what the LLM wrote.
    generation_seed: int | None = None
    # A JSONL file of finished LLM requests shared by runs (relative to the recipe file): a request whose model,
    # engine, seed and content match an entry is answered from it. Runs must not write to one cache at once.
    # Not part of the stage's config hash: it changes how long the stage takes, not what it writes.
    generation_cache: str | None = None
    score_format: Literal["regex", "free"] = "regex"  # regex: constrained decoding makes scores parseable
    score_from: Literal["text", "expectation"] = "text"  # expectation: probability-weighted over score tokens
    score_top_logprobs: int = Field(20, ge=2)  # alternatives read per score token (score_from: expectation)
    structured_refinement: bool = True  # constrain the refinement to its tag layout (regex)
    refine_max_chars: int | None = Field(None, ge=1)  # with structured_refinement: longest block, in characters
    # With structured_refinement: "one_line" holds the diagnosis to one line. Small teachers otherwise reason until
    # the token limit and never reach the edit (SmolLM2-135M, 256 tokens: 19 of 30 edits parsed vs 3 of 30).
    refine_reasoning: Literal["free", "one_line"] = "free"
    candidate_sampling: SamplingConfig = SamplingConfig(**_SAMPLED, max_new_tokens=1024)
    judge_sampling: SamplingConfig = SamplingConfig(max_new_tokens=20)
    answer_sampling: SamplingConfig = SamplingConfig(**_SAMPLED, max_new_tokens=1024)  # y_T
    refine_sampling: SamplingConfig = SamplingConfig(**_SAMPLED, max_new_tokens=2048)
    calibrate_sampling: SamplingConfig = SamplingConfig(max_new_tokens=20)
    rmboost_sampling: SamplingConfig = SamplingConfig(**_SAMPLED, max_new_tokens=1024)
    parse_retries: int = Field(2, ge=0)  # an answer that does not parse is asked again this often, then dropped
    retry_temperature: float = Field(0.7, gt=0)  # greedy requests are re-asked at this temperature
    teacher_top_logprobs: int = Field(20, ge=0)  # top-k logprobs kept per y_T token for the KL term; 0 = none
    drop_position_flips: bool = True  # drop pairs whose winner changes with the presentation order
    tie_tolerance: float = Field(0.0, ge=0)  # averaged score gaps at or below this are ties (always dropped)
    min_score_gap: float = Field(0.0, ge=0)  # keep pairs whose averaged gap is larger (strictly)
    rmboost: bool = False  # also make RMBoost baseline pairs (the teacher rewrites y_T better or worse)

    def model_aliases(self) -> dict[str, str]:
        refs = {"synthesize.teacher": self.teacher}
        refs.update({f"synthesize.generators.{i}": g for i, g in enumerate(self.generators)})
        return refs

    def compute_uses(self, recipe: RecipeView) -> list[ComputeUse]:
        here = recipe.cluster.address == "local"
        uses = [self.teacher_engine.compute_use("synthesize", "teacher engine", "synthesize.teacher_engine", here)]
        if set(self.generators) - {self.teacher}:
            uses.append(self.generator_engine.compute_use("synthesize", "generator engine",
                                                          "synthesize.generator_engine", here))
        return [u for u in uses if u is not None]

    def check(self, recipe: RecipeView) -> list[Problem]:
        problems = self._judge_problems(recipe)
        if self.refine_max_chars is not None and not self.structured_refinement:
            problems.append(Problem("synthesize.refine_max_chars", "only applies with structured_refinement: true",
                                    "remove it or set structured_refinement: true"))
        if self.refine_reasoning != "free" and not self.structured_refinement:
            problems.append(Problem("synthesize.refine_reasoning", f"{self.refine_reasoning!r} only applies with "
                                    "structured_refinement: true", "set it to free or structured_refinement: true"))
        if self.candidates_from == "dataset" and self.generators:
            problems.append(Problem("synthesize.generators", "no generator runs with candidates_from: dataset "
                                    "(the prompt records' chosen and rejected answers are the candidates)",
                                    "remove generators, or set candidates_from: generators"))
        if self.candidates_from == "generators" and not self.generators:
            problems.append(Problem("synthesize.generators", "no model writes candidate answers",
                                    "name model aliases, or set candidates_from: dataset (a preference set)"))
        if len(set(self.generators)) != len(self.generators):
            problems.append(Problem("synthesize.generators", f"lists a model twice: {self.generators}",
                                    "use responses_per_generator for more answers per model"))
        if self.generators and len(self.generators) * self.responses_per_generator < 2:
            problems.append(Problem("synthesize.responses_per_generator", "one generator with one response gives "
                                    "no pair to compare", "add a generator or set responses_per_generator: 2"))
        llm_roles = self.judges.uses("llm")
        teacher_uses = {"answer_sampling": self.answer_sampling}
        for role, key in (("initial_scores", "judge_sampling"), ("refine", "refine_sampling"),
                          ("calibrate", "calibrate_sampling")):
            if role in llm_roles:
                teacher_uses[key] = getattr(self, key)
        if self.rmboost:
            teacher_uses["rmboost_sampling"] = self.rmboost_sampling
        uses = [(k, s, "teacher_engine", self.teacher_engine) for k, s in teacher_uses.items()]
        uses.append(("candidate_sampling", self.candidate_sampling, "generator_engine", self.generator_engine))
        for key, sampling, engine_key, engine in uses:
            if sampling.max_new_tokens >= engine.max_model_len:
                problems.append(Problem(f"synthesize.{key}.max_new_tokens", f"{sampling.max_new_tokens} leaves no "
                                        f"room for the prompt in {engine_key}.max_model_len ({engine.max_model_len})",
                                        f"lower it or raise synthesize.{engine_key}.max_model_len"))
        if self.teacher_engine.backend == "openai":
            for key, k in (("teacher_top_logprobs", self.teacher_top_logprobs),
                           ("score_top_logprobs", self.score_top_logprobs if self.score_from == "expectation" else 0)):
                if k > OPENAI_MAX_TOP_LOGPROBS:
                    problems.append(Problem(f"synthesize.{key}", f"{k} is more than an OpenAI-compatible endpoint "
                                            f"returns ({OPENAI_MAX_TOP_LOGPROBS})",
                                            f"set it to {OPENAI_MAX_TOP_LOGPROBS} or less"))
        return problems

    def _judge_problems(self, recipe: RecipeView) -> list[Problem]:
        roles = self.judges.uses("verifier")
        if roles and self.verifier is None:
            return [Problem("synthesize.verifier", f"judges {', '.join(roles)} use the verifier, which is not "
                            "configured", "add `verifier: {noise: {flip_prob: 0.0}}` (or set those judges to llm)")]
        if not roles and self.verifier is not None:
            return [Problem("synthesize.verifier", "no judging role uses the verifier",
                            "set e.g. `judges: {initial_scores: verifier, refine: verifier, calibrate: verifier}`, "
                            "or remove verifier")]
        return sandbox_problems(recipe.prompts_path) if roles and recipe.prompts_path.is_file() else []
