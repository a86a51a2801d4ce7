"""Stage 3: train one policy per reward-model variant, all from the same initial policy, prompts and seed.

prompts (ppo split) + reward_model -> policy (HF causal LM checkpoint, metrics.jsonl, tensorboard/)

The reserved variant `direct_judge` (sandbox only) takes its rewards from the noisy teacher instead of an RM.
"""

from __future__ import annotations

import logging
from functools import partial

from rlhf_stack.core.pipeline import Job, JobContext
from rlhf_stack.core.progress import Progress
from rlhf_stack.core.recipe_view import RecipeView
from stages.s3_ppo.checks import check_enough_prompts, check_same_tokenizer
from stages.s3_ppo.config import DIRECT_JUDGE
from stages.s3_ppo.gold import sandbox_gold
from stages.s3_ppo.local_backend import LocalPPO, RewardSource, iterations_per_episode
from stages.s3_ppo.metrics import MetricsLog
from stages.s3_ppo.openrlhf_backend import run_openrlhf
from stages.s3_ppo.value_models import check_reward_checkpoint
from stages.sandbox import Verifier, constraints_path


FOLDER = "s3_ppo"
KIND = "policy"
CHECKPOINT = "checkpoint"
log = logging.getLogger("rlhf_stack")


def jobs(recipe: RecipeView) -> list[Job]:
    cfg = recipe.section("ppo")
    variants = cfg.variants if cfg.variants is not None else list(recipe.section("distill").variants)
    unused_backend = "openrlhf" if cfg.backend == "local" else "local"
    key = {
        "ppo": cfg.model_dump(mode="json", exclude={"variants", "reward_urls", unused_backend}),
        "policy": recipe.models[cfg.policy].model_dump(mode="json"),
        "data": recipe.data.model_dump(mode="json", exclude={"prompts"}),
        "seed": recipe.seed,
    }
    sandbox = constraints_path(recipe.prompts_path)  # gold rewards are logged from it
    files = (recipe.prompts_path, sandbox) if sandbox.is_file() else (recipe.prompts_path,)
    out = []
    for v in variants:
        if v == DIRECT_JUDGE:  # no RM: the teacher's noise (and the seed, in the key) decide the rewards
            reward, inputs = {"judge_noise": recipe.section("synthesize").verifier.noise.model_dump(mode="json")}, ()
        else:
            reward, inputs = {"reward_url": cfg.reward_url(v)}, (f"s2_distill/{v}",)
        out.append(Job(stage="ppo", folder=f"{FOLDER}/{v}", kind=KIND, key={**key, **reward},
                       run=partial(run, variant=v), inputs=inputs, files=files))
    return out


def run(ctx: JobContext, variant: str) -> dict:
    cfg = ctx.recipe.section("ppo")
    policy_dir = ctx.model(cfg.policy)
    prompts = ctx.prompts("ppo")
    check_enough_prompts(len(prompts), cfg.prompts_per_step)
    prompt_ids = [p.id for p in prompts]
    if variant == DIRECT_JUDGE:  # validate allowed it only on sandbox prompts, with the local backend
        noise = ctx.recipe.section("synthesize").verifier.noise
        reward = RewardSource(judge=Verifier.from_prompt_file(ctx.recipe.prompts_path, noise, seed=ctx.seed),
                              prompt_ids=prompt_ids)
        rm_dir = reward_url = None
    else:
        rm_dir = ctx.input(f"s2_distill/{variant}") / CHECKPOINT
        reward_url = cfg.reward_url(variant)
        if reward_url is None:
            check_reward_checkpoint(rm_dir)
            check_same_tokenizer(policy_dir, rm_dir, variant)
        reward = RewardSource(url=reward_url) if reward_url else RewardSource(checkpoint=rm_dir)
    if cfg.backend == "openrlhf":
        return run_openrlhf(ctx, policy_dir=policy_dir, rm_dir=None if reward_url else rm_dir,
                            reward_url=reward_url, prompts=prompts)
    return _run_local(ctx, variant, policy_dir=policy_dir, reward=reward, prompts=[p.prompt for p in prompts],
                      gold=sandbox_gold(ctx.recipe.prompts_path, prompt_ids))


def _run_local(ctx: JobContext, variant: str, *, policy_dir, reward: RewardSource, prompts: list[str],
               gold=None) -> dict:
    cfg = ctx.recipe.section("ppo")
    total = iterations_per_episode(cfg, len(prompts)) * cfg.episodes
    if ctx.dry_run:
        log.info("ppo %s (dry run): %d iterations of %d samples on the local backend", variant, total,
                 cfg.rollout_samples)
        return {}
    trainer = LocalPPO(cfg, policy_dir=policy_dir, reward=reward, prompts=prompts,
                       work_dir=ctx.work_dir, seed=ctx.seed, cluster=ctx.cluster, gold=gold)
    with MetricsLog(ctx.out_dir, trainer.start_iteration) as metrics, \
            Progress(f"ppo {variant}", total=total - trainer.start_iteration) as progress:

        def on_iteration(iteration: int, record: dict) -> None:
            log.debug("ppo %s iteration %d: reward %.3f, kl %.4f, %.0f tokens/s", variant, iteration,
                      record["reward_mean"], record["kl"], record["tokens_per_s"])
            progress.advance()

        summary = trainer.run(metrics, on_iteration=on_iteration)
    trainer.save_policy(ctx.out_dir / CHECKPOINT)
    return summary
