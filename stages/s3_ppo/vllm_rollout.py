"""The local backend's vLLM rollout engine: the shared generation API's vLLM engines, refreshed every iteration.

The engines start from a copy of the policy saved in the work dir. After each PPO update the trainer hands them the
updated weights in memory (`update_weights`: Ray's object store, no disk), so the next rollout samples from the
updated policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ray_cluster.generation import GenerationRequest, Sampling, open_backend
from ray_cluster.generation.rendering import RenderedPrompt
from rlhf_stack.core.errors import EngineError
from stages.s3_ppo.config import PPOConfig
from stages.s3_ppo.rollout import cut_at_eos

SERVED_POLICY = "rollout_policy"  # under the work dir


class VLLMEngine:
    def __init__(self, backend, cfg: PPOConfig, eos_id: int, folder: Path):
        self.backend, self.cfg, self.eos_id, self.folder = backend, cfg, eos_id, folder

    @classmethod
    @contextmanager
    def open(cls, cfg: PPOConfig, policy, tokenizer, *, work_dir: Path, cluster, seed: int) -> Iterator["VLLMEngine"]:
        folder = work_dir / SERVED_POLICY
        policy.save_pretrained(folder)  # the policy as it is now, also when a run resumes
        tokenizer.save_pretrained(folder)
        with open_backend(folder, cfg.local.rollout_engine, cluster=cluster, seed=seed, model_name="policy") as backend:
            yield cls(backend, cfg, tokenizer.eos_token_id, folder)

    def generate(self, prompts: list[RenderedPrompt], seed: int) -> tuple[list[list[int]], list[str]]:
        """One response per prompt, sampled with a seed per request (reproducible on any engine)."""
        requests = [
            GenerationRequest(id=f"{seed}-{i}", messages=tuple((m["role"], m["content"]) for m in p.messages),
                              sampling=Sampling(max_new_tokens=self.cfg.max_new_tokens,
                                                temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                                seed=(seed + i) & 0x7FFFFFFF))
            for i, p in enumerate(prompts)
        ]
        responses, reasons = [], []
        for prompt, result in zip(prompts, self.backend.generate(requests)):
            if result.error or not result.completions:
                raise EngineError(f"the vLLM rollout engine returned no completion for a prompt of "
                                  f"{len(prompt.token_ids)} tokens ({result.error}); raise "
                                  f"ppo.local.rollout_engine.max_model_len to at least ppo.max_length_tokens")
            completion = result.completions[0]
            ids, why = cut_at_eos(list(completion.token_ids), self.eos_id)
            responses.append(ids)
            reasons.append(why if why == "stop" else completion.finish_reason)
        return responses, reasons

    @property
    def precision(self) -> str | None:
        return self.backend.precision

    def refresh(self, policy) -> None:
        self.backend.update_weights(policy.state_dict())
