"""The local backend's rollout engines: transformers `generate` in-process, or vLLM engines in Ray actors.

Both take chat-rendered prompt ids and return response ids cut at the first EOS. The vLLM engines hold their own
copy of the policy, so `refresh` hands them the updated weights after every iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ray_cluster.generation.rendering import RenderedPrompt
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.rollout import generate_hf
from stages.s3_ppo.vllm_rollout import VLLMEngine


class HFEngine:
    """transformers `generate` on the policy being trained: no copy, nothing to refresh (the baseline path)."""

    def __init__(self, cfg: PPOConfig, policy, eos_id: int, pad_id: int, precision: str):
        self.cfg, self.policy, self.eos_id, self.pad_id = cfg, policy, eos_id, pad_id
        self.precision = precision  # the trainer's: it runs generate under its autocast

    def generate(self, prompts: list[RenderedPrompt], seed: int) -> tuple[list[list[int]], list[str]]:
        # The caller seeds torch's global generator for the iteration; generate samples from it.
        return generate_hf(self.policy, [p.token_ids for p in prompts], max_new_tokens=self.cfg.max_new_tokens,
                           temperature=self.cfg.temperature, top_p=self.cfg.top_p, eos_id=self.eos_id,
                           pad_id=self.pad_id)

    def refresh(self, policy) -> None:
        pass


@contextmanager
def open_rollout_engine(cfg: PPOConfig, policy, tokenizer, *, work_dir: Path, cluster, seed: int,
                        precision: str) -> Iterator:
    """The engine `cfg.local.rollout_engine.backend` names, open for the duration of the run."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if cfg.local.rollout_engine.backend == "hf":
        yield HFEngine(cfg, policy, eos, pad, precision)
        return
    with VLLMEngine.open(cfg, policy, tokenizer, work_dir=work_dir, cluster=cluster, seed=seed) as engine:
        yield engine
