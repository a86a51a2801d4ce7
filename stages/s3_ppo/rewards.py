"""Where the local backend's rewards come from: a reward checkpoint in-process, an RM server over HTTP, or (on
sandbox prompts) the noisy teacher itself.

Each source is called with the rollout and the index of each sample's prompt in the stage's prompt list.
The HTTP route speaks OpenRLHF's remote-RM schema (what `rlhf-stack serve-rm` serves): the server receives the
decoded text of prompt + response, so the RM may use another tokenizer than the policy.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

from rlhf_stack.core.errors import EngineError
from stages.s3_ppo.rollout import Rollout
from stages.s3_ppo.value_models import load_value_model, sequence_rewards
from stages.sandbox import Verifier


class CheckpointReward:
    """Scores rollouts with a reward checkpoint that shares the policy's tokenizer."""

    def __init__(self, path: Path, *, device: torch.device, dtype: torch.dtype, micro_batch_samples: int):
        self.model = load_value_model(path, dtype=dtype, device=device).eval().requires_grad_(False)
        self.device = device
        self.micro_batch_samples = micro_batch_samples

    def __call__(self, rollout: Rollout, prompt_indices: list[int]) -> torch.Tensor:
        """[b] reward of each sample (float32, CPU)."""
        parts = []
        for start in range(0, rollout.sequences.size(0), self.micro_batch_samples):
            rows = slice(start, start + self.micro_batch_samples)
            parts.append(sequence_rewards(self.model, rollout.sequences[rows].to(self.device),
                                          rollout.attention_mask[rows].to(self.device)).cpu())
        return torch.cat(parts)


class JudgeReward:
    """Scores each rollout with the noisy sandbox teacher's direct 1-10 score of the response text
    (`Verifier.pointwise_score`): the teacher used as the reward instead of an RM distilled from it."""

    def __init__(self, judge: Verifier, prompt_ids: list[str], tokenizer):
        self.judge, self.prompt_ids, self.tokenizer = judge, prompt_ids, tokenizer

    def __call__(self, rollout: Rollout, prompt_indices: list[int]) -> torch.Tensor:
        texts = self.tokenizer.batch_decode([list(r) for r in rollout.response_ids], skip_special_tokens=True)
        return torch.tensor([self.judge.pointwise_score(self.prompt_ids[i], t)
                             for i, t in zip(prompt_indices, texts, strict=True)], dtype=torch.float32)


class HttpReward:
    """Scores rollouts by posting their text to an RM server in OpenRLHF's remote-RM schema."""

    def __init__(self, url: str, tokenizer, *, queries_per_request: int = 16, timeout_s: float = 180.0,
                 attempts: int = 5):
        self.url = url
        self.tokenizer = tokenizer
        self.queries_per_request = queries_per_request
        self.timeout_s = timeout_s
        self.attempts = attempts

    def __call__(self, rollout: Rollout, prompt_indices: list[int]) -> torch.Tensor:
        # The text OpenRLHF's rollout workers send: prompt + response ids decoded with special tokens kept.
        queries = [self.tokenizer.decode(list(p) + list(r), skip_special_tokens=False)
                   for p, r in zip(rollout.prompt_ids, rollout.response_ids)]
        prompts = [self.tokenizer.decode(list(p), skip_special_tokens=False) for p in rollout.prompt_ids]
        rewards: list[float] = []
        for start in range(0, len(queries), self.queries_per_request):
            chunk = slice(start, start + self.queries_per_request)
            rewards.extend(self._post({"query": queries[chunk], "prompts": prompts[chunk],
                                       "labels": [""] * len(queries[chunk])}, len(queries[chunk])))
        return torch.tensor(rewards, dtype=torch.float32)

    def _post(self, payload: dict, expected: int) -> list[float]:
        body = json.dumps(payload).encode()
        last_error: Exception | None = None
        for attempt in range(self.attempts):
            request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    rewards = json.loads(response.read())["rewards"]
                break
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                last_error = e
                time.sleep(min(2.0**attempt, 10.0))
        else:
            raise EngineError(f"reward server {self.url} failed {self.attempts} times ({last_error}); check that "
                              "`rlhf-stack serve-rm` runs there and that ppo.reward_urls points at its /get_reward")
        rewards = rewards if isinstance(rewards, list) else [rewards]
        if len(rewards) != expected:
            raise EngineError(f"reward server {self.url} returned {len(rewards)} rewards for {expected} queries")
        return [float(r) for r in rewards]
