"""Recipe section `ppo`: one policy per reward-model variant (OpenRLHF on a GPU cluster, or local).

Settings shared by both backends sit at the top level; `local` and `openrlhf` hold what only one backend reads.
Every default of the stage lives here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_cluster.engine_config import EngineConfig
from rlhf_stack.core.config import StrictModel, did_you_mean
from rlhf_stack.core.errors import Problem
from rlhf_stack.core.hardware import local_device, usable_cpus
from rlhf_stack.core.precision import ComputeUse, DType
from rlhf_stack.core.recipe_view import RecipeView
from stages.sandbox import constraints_path


CRITIC_FREE = ("reinforce", "group_norm", "rloo")
# A reserved PPO variant, not an RM: the noisy sandbox teacher (synthesize.verifier) scores every rollout directly,
# the baseline of using the teacher instead of distilling it (docs/sandbox.md)
DIRECT_JUDGE = "direct_judge"
GROUP_BASELINES = ("group_norm", "rloo")  # need several samples per prompt


class LocalConfig(StrictModel):
    """Backend `local`: one process, CPU or one GPU."""

    rollout_engine: EngineConfig = EngineConfig(backend="hf")  # hf: transformers generate in-process; vllm: engines
    micro_batch_samples: int = Field(8, ge=1)  # sequences per forward/backward pass (memory, not the math)
    dtype: DType = "auto"  # policy, reference, critic and RM; auto: rlhf_stack/core/precision.py decides
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    save_every_iterations: int = Field(10, ge=1)  # resumable state is written this often


class RoleResources(StrictModel):
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(1, ge=1)

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class OpenRLHFConfig(StrictModel):
    """Backend `openrlhf`: OpenRLHF's Ray PPO, submitted as a Ray job."""

    dashboard_url: str | None = None  # Ray Jobs API; default: http://<host of cluster.address>:8265
    actor: RoleResources = RoleResources()
    ref: RoleResources = RoleResources()
    critic: RoleResources = RoleResources()
    reward: RoleResources = RoleResources()
    vllm_engines: int = Field(1, ge=1)
    vllm_tensor_parallel_size: int = Field(1, ge=1)
    vllm_gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    vllm_enforce_eager: bool = False
    colocate_actor_ref: bool = False
    colocate_critic_reward: bool = False
    colocate_all: bool = False  # vLLM and every model share the actor's GPUs (hybrid engine)
    zero_stage: Literal[0, 1, 2, 3] = 2
    param_dtype: Literal["bf16", "fp16"] = "bf16"
    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] = "flash_attention_2"
    gradient_checkpointing: bool = False
    adam_offload: bool = False
    micro_rollout_samples_per_gpu: int = Field(1, ge=1)
    micro_train_samples_per_gpu: int = Field(1, ge=1)
    checkpoint_every_steps: int | None = Field(None, ge=1)  # DeepSpeed checkpoints (resume); None: never
    runtime_env: dict = {}  # merged over cluster.runtime_env for the PPO job (pip, env_vars, working_dir, ...)
    job_timeout_s: float | None = Field(None, gt=0)  # None: wait as long as the job runs

    @model_validator(mode="after")
    def _colocation(self) -> "OpenRLHFConfig":
        if self.colocate_all:
            engines = self.vllm_engines * self.vllm_tensor_parallel_size
            if engines != self.actor.gpus:
                raise ValueError(
                    f"colocate_all shares the actor's GPUs with vLLM, so vllm_engines x vllm_tensor_parallel_size "
                    f"({self.vllm_engines} x {self.vllm_tensor_parallel_size} = {engines}) must equal "
                    f"actor.nodes x actor.gpus_per_node ({self.actor.gpus})"
                )
        for flag, (a, b) in {"colocate_actor_ref": ("actor", "ref"),
                             "colocate_critic_reward": ("critic", "reward")}.items():
            first, second = getattr(self, a), getattr(self, b)
            if (getattr(self, flag) or self.colocate_all) and first != second:
                raise ValueError(f"{flag if getattr(self, flag) else 'colocate_all'} puts {a} and {b} on the same "
                                 f"GPUs, so their nodes/gpus_per_node must match ({first} vs {second})")
        if self.colocate_all and self.critic != self.actor:
            raise ValueError(f"colocate_all puts every model on the actor's GPUs, so critic and reward must use the "
                             f"actor's nodes/gpus_per_node ({self.actor}), not {self.critic}")
        return self


class PPOConfig(StrictModel):
    backend: Literal["local", "openrlhf"] = "local"
    policy: str  # model alias of the initial policy (also the reference model)
    # RM variants to train a policy for, and optionally `direct_judge`; default: all of distill.variants
    variants: list[str] | None = None
    # variant -> URL of a running `rlhf-stack serve-rm` for that RM: the route for an RM whose tokenizer differs
    # from the policy's (rewards then come from text, and a gae critic starts from the policy)
    reward_urls: dict[str, str] = {}
    estimator: Literal["gae", "reinforce", "group_norm", "rloo"] = "gae"
    prompts_per_step: int = Field(8, ge=1)  # prompts per rollout (one PPO iteration)
    samples_per_prompt: int = Field(1, ge=1)
    samples_per_optimizer_step: int | None = Field(None, ge=1)  # default: every sample of the rollout at once
    ppo_epochs: int = Field(1, ge=1)  # passes over each rollout
    episodes: int = Field(1, ge=1)  # passes over the ppo prompts
    max_new_tokens: int = Field(128, ge=1)
    max_length_tokens: int = Field(1024, ge=2)  # prompt + response; a longer prompt loses its beginning
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    kl_coef: float = Field(0.05, ge=0)  # 0: no reference model
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    clip_eps: float = Field(0.2, gt=0)
    value_clip: float = Field(0.5, gt=0)
    gamma: float = Field(1.0, gt=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    reward_clip: float = Field(10.0, gt=0)  # RM scores are clipped to [-reward_clip, reward_clip]
    reward_scale: float = Field(1.0, gt=0)  # multiplies RM scores; for openrlhf it is folded into the RM head
    whiten_rewards: bool = False  # standardize RM scores over each rollout (local backend only)
    actor_lr: float = Field(1e-6, gt=0)
    critic_lr: float = Field(9e-6, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    local: LocalConfig = LocalConfig()
    openrlhf: OpenRLHFConfig = OpenRLHFConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "PPOConfig":
        if self.estimator in GROUP_BASELINES and self.samples_per_prompt < 2:
            raise ValueError(f"estimator {self.estimator!r} compares samples of one prompt, so samples_per_prompt "
                             f"must be at least 2 (got {self.samples_per_prompt})")
        if self.max_new_tokens >= self.max_length_tokens:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be below max_length_tokens "
                             f"({self.max_length_tokens}), which also holds the prompt")
        engine = self.local.rollout_engine
        if self.backend == "local" and engine.backend == "vllm" and engine.max_model_len < self.max_length_tokens:
            raise ValueError(f"local.rollout_engine.max_model_len ({engine.max_model_len}) must hold "
                             f"max_length_tokens ({self.max_length_tokens})")
        if self.rollout_samples % self.optimizer_step_samples:
            raise ValueError(f"samples_per_optimizer_step ({self.optimizer_step_samples}) must divide the samples "
                             f"of a rollout, prompts_per_step x samples_per_prompt ({self.rollout_samples})")
        return self

    @property
    def rollout_samples(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt

    @property
    def optimizer_step_samples(self) -> int:
        return self.samples_per_optimizer_step or self.rollout_samples

    @property
    def uses_critic(self) -> bool:
        return self.estimator not in CRITIC_FREE

    def reward_url(self, variant: str) -> str | None:
        """The RM server of `variant`, or None when its checkpoint is loaded directly."""
        return self.reward_urls[variant] if variant in self.reward_urls else None

    def model_aliases(self) -> dict[str, str]:
        return {"ppo.policy": self.policy}

    def compute_uses(self, recipe: RecipeView) -> list[ComputeUse]:
        """The trainer (policy, reference, critic, RM in this process) and its rollout engines."""
        if self.backend == "openrlhf":
            return [ComputeUse("ppo", "OpenRLHF PPO (DeepSpeed)", "ppo.openrlhf.param_dtype", self.openrlhf.param_dtype,
                               "cuda", None, self.openrlhf.actor.gpus, on_this_machine=False)]
        here = recipe.cluster.address == "local"
        device = self.local.device if self.local.device != "auto" else local_device()
        uses = [ComputeUse("ppo", "policy, reference, critic and RM (local trainer)", "ppo.local.dtype",
                           self.local.dtype, device, usable_cpus() if device == "cpu" else None)]
        if self.local.rollout_engine.backend == "vllm":
            uses.append(self.local.rollout_engine.compute_use("ppo", "rollout engine", "ppo.local.rollout_engine",
                                                              here))
        return uses

    def check(self, recipe: RecipeView) -> list[Problem]:
        """Rules that need other sections: variants exist in distill; backend-only settings fit the backend."""
        problems = []
        distill = recipe.section("distill")
        known = list(distill.variants) if distill is not None else []
        if DIRECT_JUDGE in known:
            problems.append(Problem(f"distill.variants.{DIRECT_JUDGE}", "the name is reserved for PPO with the "
                                    "teacher as its reward", "rename the distill variant"))
        for i, variant in enumerate(self.variants or []):
            if variant == DIRECT_JUDGE:
                problems += self._direct_judge_problems(recipe, i)
            elif variant not in known:
                problems.append(Problem(f"ppo.variants.{i}", f"{variant!r} is not a distill variant",
                                        did_you_mean(variant, known) or f"known: {', '.join(known)}"))
        chosen = self.variants if self.variants is not None else known
        for variant in self.reward_urls:
            if variant not in chosen:
                problems.append(Problem(f"ppo.reward_urls.{variant}", "not a variant this stage trains",
                                        did_you_mean(variant, chosen) or f"variants: {', '.join(chosen)}"))
        if self.backend == "openrlhf" and self.whiten_rewards:
            problems.append(Problem("ppo.whiten_rewards", "the openrlhf backend cannot whiten rewards (its reward "
                                    "normalization is corrupted on load in OpenRLHF 0.11.2)",
                                    "use reward_scale, or estimator group_norm"))
        if self.backend == "openrlhf" and self.reward_scale != 1.0 and self.reward_urls:
            problems.append(Problem("ppo.reward_scale", f"{self.reward_scale:g} cannot be applied to the RM servers "
                                    f"of {', '.join(self.reward_urls)} by OpenRLHF", "leave it at 1 with reward_urls"))
        if self.local.rollout_engine.backend == "openai":
            problems.append(Problem("ppo.local.rollout_engine.backend", "'openai' cannot serve the policy being "
                                    "trained", "use 'hf' or 'vllm'"))
        return problems

    def _direct_judge_problems(self, recipe: RecipeView, index: int) -> list[Problem]:
        """`direct_judge` needs the sandbox: its prompts (with their constraints), its noisy teacher, the local
        backend (the verifier runs in the trainer's process)."""
        key = f"ppo.variants.{index}"
        problems = []
        synthesize = recipe.section("synthesize")
        if synthesize is None or synthesize.verifier is None:
            problems.append(Problem(key, f"{DIRECT_JUDGE!r} rewards rollouts with the sandbox teacher, and "
                                    "synthesize.verifier is not configured",
                                    "use sandbox prompts with `synthesize.verifier` (docs/sandbox.md), or drop "
                                    f"{DIRECT_JUDGE!r}"))
        elif not constraints_path(recipe.prompts_path).is_file():
            problems.append(Problem(key, f"{DIRECT_JUDGE!r} needs sandbox prompts, and {recipe.prompts_path} has no "
                                    f"constraints file beside it ({constraints_path(recipe.prompts_path).name})",
                                    "point data.prompts at a sandbox prompt file (data/sandbox_prompts.jsonl)"))
        if self.backend != "local":
            problems.append(Problem(key, f"{DIRECT_JUDGE!r} runs only on the local backend",
                                    "set ppo.backend: local, or drop it from ppo.variants"))
        if DIRECT_JUDGE in self.reward_urls:
            problems.append(Problem(f"ppo.reward_urls.{DIRECT_JUDGE}", "the direct judge needs no RM server",
                                    "remove the entry"))
        return problems
