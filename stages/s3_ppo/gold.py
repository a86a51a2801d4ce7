"""Gold rewards of PPO rollouts: the exact verifier's scores of the very answers the policy was trained on.

On sandbox prompts (a constraints file beside the prompt file) the verifier knows every answer's true score, so
each PPO iteration can log, beside the proxy reward the policy optimizes (the RM's mean score), the gold reward of
the same rollouts. Gold against KL is the over-optimization curve (docs/sandbox.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stages.sandbox import Verifier, constraints_path

# (index of each sample's prompt in the stage's prompt list, decoded response texts) -> metrics to log
GoldScorer = Callable[[list[int], list[str]], dict[str, float]]


class VerifierGold:
    """Scores rollouts with the exact verifier: `gold_mean` (true 1-10 score) and `compliance_mean` ([0, 1])."""

    def __init__(self, verifier: Verifier, prompt_ids: list[str]):
        self.verifier, self.prompt_ids = verifier, prompt_ids

    def __call__(self, prompt_indices: list[int], texts: list[str]) -> dict[str, float]:
        ids = [self.prompt_ids[i] for i in prompt_indices]
        gold = [self.verifier.true_score(p, t) for p, t in zip(ids, texts)]
        compliance = [self.verifier.compliance(p, t) for p, t in zip(ids, texts)]
        return {"gold_mean": sum(gold) / len(gold), "compliance_mean": sum(compliance) / len(compliance)}


def sandbox_gold(prompts_path: Path, prompt_ids: list[str]) -> VerifierGold | None:
    """The gold scorer for a run whose prompts are sandbox prompts; None for any other prompt file."""
    if not constraints_path(prompts_path).is_file():
        return None
    return VerifierGold(Verifier.from_prompt_file(prompts_path), prompt_ids)  # exact: no noise
