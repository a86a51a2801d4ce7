"""Backend `local`: PPO (or a critic-free estimator) on one machine, CPU or one GPU.

One iteration: sample `prompts_per_step x samples_per_prompt` responses, score them once under the policy, the
frozen reference, the critic and the RM, turn scores and KL into advantages, then run `ppo_epochs` passes of
clipped policy (and value) updates over mini-batches of `samples_per_optimizer_step`. Every random choice of an
iteration is seeded from (seed, iteration), so a run resumed from its saved state continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.precision import of_model, resolve, torch_dtype
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.gold import GoldScorer
from stages.s3_ppo.metrics import MetricsLog
from stages.s3_ppo.policy_forward import action_logprobs, critic_values
from stages.s3_ppo.ppo_math import (
    advantages_and_returns, approx_kl, masked_mean, policy_loss, sequence_kl, value_loss, whiten,
)
from stages.s3_ppo.rewards import CheckpointReward, HttpReward, JudgeReward
from stages.s3_ppo.rollout import Rollout, pack, render_prompts
from stages.s3_ppo.rollout_engines import open_rollout_engine
from stages.s3_ppo.value_models import load_value_model
from stages.sandbox import Verifier

log = logging.getLogger("rlhf_stack")
STATE = "state"  # under the work dir: the latest resumable state


@dataclass(frozen=True)
class RewardSource:
    """Exactly one of: a reward checkpoint sharing the policy's tokenizer, an RM server (OpenRLHF remote-RM
    schema), or the noisy sandbox teacher with the ids of the stage's prompts (variant `direct_judge`)."""

    checkpoint: Path | None = None
    url: str | None = None
    judge: Verifier | None = None
    prompt_ids: list[str] | None = None  # with `judge`: the id of each prompt passed to LocalPPO

    def __post_init__(self):
        if sum(x is not None for x in (self.checkpoint, self.url, self.judge)) != 1:
            raise ValueError("RewardSource takes exactly one of checkpoint, url, judge")
        if self.judge is not None and self.prompt_ids is None:
            raise ValueError("RewardSource: a judge needs the prompt ids")


@dataclass(frozen=True)
class Experience:
    rollout: Rollout
    old_logp: torch.Tensor  # [b, T]
    values: torch.Tensor | None  # [b, T]
    advantages: torch.Tensor  # [b, T]
    returns: torch.Tensor  # [b, T]


def iterations_per_episode(cfg: PPOConfig, num_prompts: int) -> int:
    """Full rollout steps in one pass over the prompts (a last partial step is skipped, as in OpenRLHF)."""
    return num_prompts // cfg.prompts_per_step


class LocalPPO:
    def __init__(self, cfg: PPOConfig, *, policy_dir: Path, reward: RewardSource, prompts: list[str],
                 work_dir: Path, seed: int, cluster, gold: GoldScorer | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.seed, self.work_dir, self.cluster, self.gold = cfg, seed, work_dir, cluster, gold
        local = cfg.local
        self.device = torch.device(local.device if local.device != "auto" else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        # Trained models (policy, critic) keep fp32 weights and compute in `precision` under autocast: an update of
        # lr 1e-6 is far below a bf16 weight's resolution. Frozen ones (reference, RM) are stored in `precision`.
        self.precision = resolve(local.dtype, self.device.type)
        self.dtype = torch_dtype(self.precision)
        self.tokenizer = AutoTokenizer.from_pretrained(policy_dir)
        self.prompts, self.truncated_prompts, self.source_index = render_prompts(self.tokenizer, prompts,
                                                              max_length_tokens=cfg.max_length_tokens,
                                                              max_new_tokens=cfg.max_new_tokens)
        self.dropped_prompts = len(prompts) - len(self.prompts)
        self.per_episode = iterations_per_episode(cfg, len(self.prompts))
        if self.per_episode == 0:
            raise ArtifactError(f"ppo: {self.dropped_prompts} of {len(prompts)} prompts do not fit "
                                f"max_length_tokens ({cfg.max_length_tokens}) beside max_new_tokens "
                                f"({cfg.max_new_tokens}); too few remain for one step of {cfg.prompts_per_step}")
        self.total_iterations = self.per_episode * cfg.episodes

        state = _latest_state(work_dir)
        self.start_iteration = json.loads((state / "trainer.json").read_text())["next_iteration"] if state else 0
        self.policy = AutoModelForCausalLM.from_pretrained(state / "policy" if state else policy_dir,
                                                           dtype=torch.float32).to(self.device)
        self.ref = (AutoModelForCausalLM.from_pretrained(policy_dir, dtype=self.dtype).to(self.device).eval()
                    .requires_grad_(False) if cfg.kl_coef > 0 else None)
        self.critic = None
        if cfg.uses_critic:
            # The critic starts from the RM (its head already scores this task) or, with a remote RM whose
            # tokenizer differs, from the policy with a zero head.
            source = state / "critic" if state else (reward.checkpoint or policy_dir)
            self.critic = load_value_model(source, dtype=torch.float32, device=self.device,
                                           zero_head=not state and reward.checkpoint is None)
        self.reward = _reward(reward, self.tokenizer, device=self.device, dtype=self.dtype,
                              micro_batch_samples=local.micro_batch_samples)
        betas = (0.9, 0.95)
        self.actor_opt = torch.optim.AdamW(self.policy.parameters(), lr=cfg.actor_lr, betas=betas, weight_decay=0.0)
        self.critic_opt = (torch.optim.AdamW(self.critic.parameters(), lr=cfg.critic_lr, betas=betas,
                                             weight_decay=0.0) if self.critic is not None else None)
        if state:
            optim = torch.load(state / "optim.pt", map_location=self.device, weights_only=True)
            self.actor_opt.load_state_dict(optim["actor"])
            if self.critic_opt is not None:
                self.critic_opt.load_state_dict(optim["critic"])
            log.info("ppo: resuming at iteration %d of %d from %s", self.start_iteration, self.total_iterations, state)

    # -- one iteration -------------------------------------------------------------------------------------------

    def _iteration_seed(self, iteration: int) -> int:
        """Seeds every random choice of one iteration, so a resumed run repeats what it would have done."""
        return self.seed * 1_000_003 + iteration

    def _prompt_batch(self, iteration: int) -> list[int]:
        """The indices (into the rendered prompts) of the iteration's samples, each prompt repeated per sample."""
        episode, step = divmod(iteration, self.per_episode)
        order = torch.randperm(len(self.prompts), generator=torch.Generator().manual_seed(self.seed + episode))
        chosen = order[step * self.cfg.prompts_per_step: (step + 1) * self.cfg.prompts_per_step].tolist()
        return [i for i in chosen for _ in range(self.cfg.samples_per_prompt)]

    @torch.no_grad()
    def _experience(self, rollout: Rollout, prompt_indices: list[int]) -> tuple[Experience, dict]:
        """Scores, KL and advantages of a rollout; `prompt_indices`: each sample's prompt in the stage's list."""
        cfg, micro = self.cfg, self.cfg.local.micro_batch_samples
        T = rollout.action_mask.size(1)
        logp, ref_logp, entropy, values = [], [], [], []
        for start in range(0, rollout.sequences.size(0), micro):
            seq = rollout.sequences[start: start + micro].to(self.device)
            att = rollout.attention_mask[start: start + micro].to(self.device)
            lp, ent = action_logprobs(self.policy, seq, att, T, cfg.temperature, with_entropy=True)
            logp.append(lp.cpu())
            entropy.append(ent.cpu())
            if self.ref is not None:
                ref_logp.append(action_logprobs(self.ref, seq, att, T, cfg.temperature)[0].cpu())
            if self.critic is not None:
                values.append(critic_values(self.critic, seq, att, T).cpu())
        mask = rollout.action_mask.float()
        old_logp = torch.cat(logp)
        kl = approx_kl(old_logp, torch.cat(ref_logp), cfg.kl_estimator) if self.ref is not None \
            else torch.zeros_like(old_logp)
        raw_scores = self.reward(rollout, prompt_indices)
        scores = whiten(raw_scores) if cfg.whiten_rewards else raw_scores
        value_tensor = torch.cat(values) if values else None
        advantages, returns = advantages_and_returns(
            cfg.estimator, scores * cfg.reward_scale, kl, mask, value_tensor, kl_coef=cfg.kl_coef,
            samples_per_prompt=cfg.samples_per_prompt, gamma=cfg.gamma, lam=cfg.gae_lambda,
            score_clip=cfg.reward_clip)
        stats = {
            "reward_mean": raw_scores.mean().item(),
            "reward_std": raw_scores.std().item() if raw_scores.numel() > 1 else 0.0,
            "kl": masked_mean(kl, mask).item(),
            "entropy": masked_mean(torch.cat(entropy), mask).item(),
            "response_length": mask.sum(1).mean().item(),
            "truncated_rate": sum(r == "length" for r in rollout.finish_reasons) / len(rollout.finish_reasons),
        }
        if self.ref is not None:  # the sequence-level KL to the reference, x axis of over-optimization curves
            ref_all = torch.cat(ref_logp)
            stats["kl_seq_k1"] = sequence_kl(old_logp, ref_all, mask, "k1").mean().item()
            stats["kl_seq_k3"] = sequence_kl(old_logp, ref_all, mask, "k3").mean().item()
        return Experience(rollout, old_logp, value_tensor, advantages, returns), stats

    def _update(self, exp: Experience, iteration: int) -> dict:
        cfg, micro = self.cfg, self.cfg.local.micro_batch_samples
        r = exp.rollout
        T = r.action_mask.size(1)
        generator = torch.Generator().manual_seed(self._iteration_seed(iteration))
        policy_losses, value_losses, clip_fractions = [], [], []
        self.policy.train()
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(r.sequences.size(0), generator=generator)
            for step_rows in order.split(cfg.optimizer_step_samples):
                tokens = r.action_mask[step_rows].sum().clamp(min=1).item()
                self.actor_opt.zero_grad(set_to_none=True)
                if self.critic_opt is not None:
                    self.critic_opt.zero_grad(set_to_none=True)
                step_policy, step_value = 0.0, 0.0
                for rows in step_rows.split(micro):
                    seq, att = r.sequences[rows].to(self.device), r.attention_mask[rows].to(self.device)
                    mask = r.action_mask[rows].to(self.device).float()
                    logp, _ = action_logprobs(self.policy, seq, att, T, cfg.temperature)
                    loss, clip_fraction = policy_loss(logp, exp.old_logp[rows].to(self.device),
                                                      exp.advantages[rows].to(self.device), mask, cfg.clip_eps,
                                                      num_tokens=tokens)
                    loss.backward()
                    step_policy += loss.item()
                    clip_fractions.append(clip_fraction.item())
                    if self.critic is not None:
                        values = critic_values(self.critic, seq, att, T)
                        vloss = value_loss(values, exp.values[rows].to(self.device),
                                           exp.returns[rows].to(self.device), mask, cfg.value_clip, num_tokens=tokens)
                        vloss.backward()
                        step_value += vloss.item()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.actor_opt.step()
                policy_losses.append(step_policy)
                if self.critic_opt is not None:
                    torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                    self.critic_opt.step()
                    value_losses.append(step_value)
        self.policy.eval()
        stats = {"policy_loss": sum(policy_losses) / len(policy_losses),
                 "clip_fraction": sum(clip_fractions) / len(clip_fractions)}
        if value_losses:
            stats["value_loss"] = sum(value_losses) / len(value_losses)
        return stats

    # -- the run -------------------------------------------------------------------------------------------------

    def run(self, metrics: MetricsLog, on_iteration: Callable[[int, dict], None] | None = None) -> dict:
        """Trains from `start_iteration` to the end; returns the manifest summary."""
        record: dict = {}
        with open_rollout_engine(self.cfg, self.policy, self.tokenizer, work_dir=self.work_dir,
                                 cluster=self.cluster, seed=self.seed, precision=self.precision) as engine:
            engine_precision = engine.precision
            for iteration in range(self.start_iteration, self.total_iterations):
                record = self.step(engine, iteration)
                metrics.write(record)
                if (iteration + 1) % self.cfg.local.save_every_iterations == 0 \
                        and iteration + 1 < self.total_iterations:
                    self.save_state(iteration + 1)
                if on_iteration is not None:
                    on_iteration(iteration, record)
        models = {"reference": self.ref, "reward model": getattr(self.reward, "model", None)}  # no RM: a server
        precision = {role: of_model(m) for role, m in models.items() if m is not None}
        for role, model in (("policy", self.policy), ("critic", self.critic)):
            if model is not None:  # the compute precision: autocast's, over fp32 weights
                precision[role] = self.precision if self.precision != "fp32" else of_model(model)
        if engine_precision is not None:
            precision["rollout engine"] = engine_precision
        return {"precision": precision, "threads": torch.get_num_threads(),
                "backend": "local", "iterations": self.total_iterations,
                "final_reward_mean": record["reward_mean"] if record else None,
                "truncated_prompts": self.truncated_prompts, "dropped_prompts": self.dropped_prompts,
                "device": str(self.device)}

    def step(self, engine, iteration: int) -> dict:
        """One iteration: rollout on `engine`, scoring, updates, and the new weights handed to the engine.

        Returns:
            the iteration's metrics record, with the seconds of each phase apart.
        """
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        start = time.perf_counter()
        torch.manual_seed(self._iteration_seed(iteration))  # transformers' sampling
        batch = self._prompt_batch(iteration)
        prompts = [self.prompts[i] for i in batch]
        with self._autocast():  # transformers rollouts run here; vLLM ones in their engines
            responses, reasons = engine.generate(prompts, seed=self._iteration_seed(iteration))
        rollout = pack([p.token_ids for p in prompts], responses, reasons, pad if pad is not None else eos)
        rollout_s = time.perf_counter() - start
        sources = [self.source_index[i] for i in batch]
        with self._autocast():
            exp, stats = self._experience(rollout, sources)
        if self.gold is not None:  # the same rollouts scored by the exact verifier (sandbox prompts only)
            texts = self.tokenizer.batch_decode([list(r) for r in rollout.response_ids], skip_special_tokens=True)
            stats.update(self.gold(sources, texts))
        train_start = time.perf_counter()
        with self._autocast():
            stats.update(self._update(exp, iteration))
        sync_start = time.perf_counter()
        engine.refresh(self.policy)
        now = time.perf_counter()
        return {"iteration": iteration, "episode": iteration // self.per_episode, **stats,
                "tokens_per_s": rollout.response_tokens / max(rollout_s, 1e-9), "rollout_s": rollout_s,
                "scoring_s": train_start - start - rollout_s, "train_s": sync_start - train_start,
                "weight_sync_s": now - sync_start, "iteration_s": now - start}

    def _autocast(self):
        """Computes in the chosen precision over fp32 weights (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.precision != "fp32")

    def save_state(self, next_iteration: int) -> None:
        """Writes the resumable state next to (then over) the previous one, so a kill never leaves none."""
        tmp, final, old = (self.work_dir / f"{STATE}.tmp", self.work_dir / STATE, self.work_dir / f"{STATE}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp / "policy")
        if self.critic is not None:
            self.critic.save_pretrained(tmp / "critic")
        torch.save({"actor": self.actor_opt.state_dict(),
                    "critic": self.critic_opt.state_dict() if self.critic_opt is not None else None},
                   tmp / "optim.pt")
        (tmp / "trainer.json").write_text(json.dumps({"next_iteration": next_iteration}))
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)

    def save_policy(self, folder: Path) -> None:
        self.policy.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


def _reward(source: RewardSource, tokenizer, *, device: torch.device, dtype: torch.dtype,
            micro_batch_samples: int):
    if source.checkpoint is not None:
        return CheckpointReward(source.checkpoint, device=device, dtype=dtype, micro_batch_samples=micro_batch_samples)
    if source.url is not None:
        return HttpReward(source.url, tokenizer)
    return JudgeReward(source.judge, source.prompt_ids, tokenizer)


def _latest_state(work_dir: Path) -> Path | None:
    for name in (STATE, f"{STATE}.old"):  # .old survives a kill between the two renames of save_state
        if (work_dir / name / "trainer.json").exists():
            return work_dir / name
    return None
