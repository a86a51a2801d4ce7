"""Recipe section `distill`: one reward model per variant, trained with DeepSpeed (METHOD.md §7-9)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import Problem
from rlhf_stack.core.models import tokenizer_on_disk
from rlhf_stack.core.hardware import usable_cpus
from rlhf_stack.core.precision import ComputeUse, DType
from rlhf_stack.core.recipe_view import RecipeView
from stages.s2_distill.tokenizers import kl_tokenizer_problem


# Which margins each pair type has: the initial pair carries the teacher's raw pairwise scores, the refined pair
# (y*_w, y_l) the self-calibrated score of the edit.
MARGINS_OF_PAIRS = {"initial": ("none", "raw"), "refined": ("none", "calibrated")}


class VariantConfig(StrictModel):
    pairs: Literal["initial", "refined"]  # initial: (y_w, y_l); refined: (y*_w, y_l)
    margin: Literal["none", "raw", "calibrated"]  # raw: s_w - s_l (initial pairs); calibrated: s*_w - s_l (refined)
    objective: Literal["bt", "margin_bt", "margin_mse", "soft_label"]  # no default: say which (METHOD.md D8)
    sft_weight: float = Field(ge=0)  # SFT on the teacher's answers y_T; no default (METHOD.md D2)
    kl_weight: float = Field(ge=0)  # KL from the teacher's stored top-k distribution on y_T; no default
    kl_temperature: float = Field(1.0, gt=0)  # T of the KL term, which is scaled by T^2
    margin_scale: float = Field(1.0, gt=0)  # the margin is multiplied by this before the loss (1 = raw points)

    @model_validator(mode="after")
    def _consistent(self) -> "VariantConfig":
        allowed = MARGINS_OF_PAIRS[self.pairs]
        if self.margin not in allowed:
            raise ValueError(
                f"margin {self.margin!r} does not exist for {self.pairs} pairs; use one of {', '.join(allowed)}"
            )
        if self.objective == "bt" and self.margin != "none":
            raise ValueError(f"objective 'bt' uses no margin, but margin is {self.margin!r}; set margin: none")
        if self.objective != "bt" and self.margin == "none":
            raise ValueError(
                f"objective {self.objective!r} needs a margin; set margin: {allowed[1]} (or objective: bt)"
            )
        return self


class DistillConfig(StrictModel):
    base_model: str  # model alias of the student backbone (a causal LM); must share the policy's tokenizer
    variants: dict[str, VariantConfig] = Field(min_length=1)  # variant name -> what it trains on and how
    max_length_tokens: int = Field(1024, ge=16)  # one limit for every variant; prompts are cut from the left
    pairs_per_step: int = Field(16, ge=1)  # preference pairs per optimizer step, over all processes
    micro_pairs_per_device: int = Field(4, ge=1)  # pairs per forward pass on one process
    num_processes: int = Field(1, ge=1)  # data-parallel ranks; more than 1 (or a remote cluster) runs on Ray
    # torch threads per rank; None: all cores for a single local rank, 1 for each Ray rank
    cpus_per_process: int | None = Field(None, ge=1)
    gpus_per_process: Literal[0, 1] = 0  # 1: each rank trains on one CUDA device
    zero_stage: Literal[0, 1, 2, 3] = 0  # DeepSpeed ZeRO stage
    dtype: DType = "auto"  # auto: rlhf_stack/core/precision.py decides where each rank runs
    gradient_checkpointing: bool = False
    lr: float = Field(1e-5, gt=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)  # share of the steps with a linear warm-up
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: float = Field(1.0, gt=0)
    held_out_fraction: float = Field(0.1, ge=0, lt=1)  # share of prompts kept out of training, same for all variants
    # learning curves: train on this share of the prompts not held out (the same prompts for every variant; a
    # smaller share is a subset of a larger one); 1: all of them
    train_prompt_fraction: float = Field(1.0, gt=0, le=1)
    group_by_length: bool = True  # batch pairs of similar length together (less padding, faster)
    # A micro-batch's rows go through the backbone in length-sorted halves (and halves of those) while a split
    # pads at least this share of the tokens fewer; 1: always one pass. None: 0.1 on CPU (measured fastest); one
    # pass on GPU, where a small model's extra passes cost more in kernel launches than their tokens.
    split_rows_min_saving: float | None = Field(None, ge=0, le=1)
    # Right-padded rows of a micro-batch go through the backbone as one packed sequence of their real tokens (no
    # padding; attention kept within each row); split_rows_min_saving is then unused.
    padding_free: bool = False
    checkpoint_every_steps: int = Field(50, ge=1)  # resumable training state in the job's _work folder

    @model_validator(mode="after")
    def _divisible(self) -> "DistillConfig":
        per_step = self.micro_pairs_per_device * self.num_processes
        if self.pairs_per_step % per_step:
            raise ValueError(
                f"pairs_per_step ({self.pairs_per_step}) must be a multiple of "
                f"micro_pairs_per_device x num_processes ({self.micro_pairs_per_device} x {self.num_processes})"
            )
        return self

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.pairs_per_step // (self.micro_pairs_per_device * self.num_processes)

    @property
    def split_rows(self) -> float:
        """split_rows_min_saving, with its device-dependent default resolved."""
        if self.split_rows_min_saving is not None:
            return self.split_rows_min_saving
        return 1.0 if self.gpus_per_process else 0.1

    def model_aliases(self) -> dict[str, str]:
        return {"distill.base_model": self.base_model}

    def compute_uses(self, recipe: RecipeView) -> list[ComputeUse]:
        here = recipe.cluster.address == "local"
        device = "cuda" if self.gpus_per_process else "cpu"
        in_process = here and self.num_processes == 1  # stages/s2_distill/launch.py
        threads = (self.cpus_per_process or usable_cpus()) if in_process else (self.cpus_per_process or 1)
        return [ComputeUse("distill", "reward model training (DeepSpeed)", "distill.dtype", self.dtype, device,
                           threads if device == "cpu" else None, self.num_processes, here)]

    def check(self, recipe: RecipeView) -> list[Problem]:
        """Rules across sections: the KL term needs top-k logprobs from synthesis; a local Ray must fit the ranks."""
        problems = self._local_resource_problems(recipe)
        synthesize = recipe.section("synthesize")
        for name, variant in self.variants.items():
            if variant.kl_weight > 0 and synthesize is not None and synthesize.teacher_top_logprobs == 0:
                problems.append(Problem(
                    f"distill.variants.{name}.kl_weight",
                    f"{variant.kl_weight} needs the teacher's top-k logprobs, but synthesize.teacher_top_logprobs is 0",
                    "set synthesize.teacher_top_logprobs (e.g. 20) or kl_weight: 0",
                ))
        kl_variants = [name for name, variant in self.variants.items() if variant.kl_weight > 0]
        if kl_variants and synthesize is not None:
            problems.extend(self._kl_tokenizer_problems(recipe, synthesize.teacher, kl_variants[0]))
        return problems

    def _kl_tokenizer_problems(self, recipe: RecipeView, teacher: str, variant: str) -> list[Problem]:
        """The KL term's vocabulary rule, when both tokenizers are on this machine already (the stage checks it
        again, with sample teacher answers, before training)."""
        specs = recipe.models.get(self.base_model), recipe.models.get(teacher)
        if None in specs:
            return []  # an unknown alias is reported by the alias check
        student, teacher_tok = (tokenizer_on_disk(spec, recipe.base_dir) for spec in specs)
        if student is None or teacher_tok is None:
            return []
        why = kl_tokenizer_problem(student, teacher_tok, [])
        if why is None:
            return []
        return [Problem(f"distill.variants.{variant}.kl_weight",
                        f"the KL term needs the teacher's tokenizer ({teacher!r}) to extend the student's "
                        f"({self.base_model!r}), but {why}",
                        "set kl_weight: 0 (the SFT term on the teacher's answers still works) or use a student that "
                        "shares the teacher's tokenizer")]

    def _local_resource_problems(self, recipe: RecipeView) -> list[Problem]:
        cluster = recipe.cluster
        if cluster.address != "local" or self.num_processes == 1:
            return []
        problems = []
        cpus = self.num_processes * (self.cpus_per_process or 1)
        if cluster.num_cpus is not None and cpus > cluster.num_cpus:
            problems.append(Problem("distill.num_processes", f"{self.num_processes} ranks need {cpus} CPUs, but "
                                    f"cluster.num_cpus is {cluster.num_cpus}",
                                    "lower num_processes or cpus_per_process, or raise cluster.num_cpus"))
        gpus = self.num_processes * self.gpus_per_process
        if cluster.num_gpus is not None and gpus > cluster.num_gpus:
            problems.append(Problem("distill.num_processes", f"{self.num_processes} ranks need {gpus} GPUs, but "
                                    f"cluster.num_gpus is {cluster.num_gpus}",
                                    "lower num_processes or raise cluster.num_gpus"))
        return problems
