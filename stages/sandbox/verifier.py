"""The verifier teacher: the teacher's three judging roles played with ground truth, through a noise model.

Score mapping. An answer to a prompt with n constraints, k of them satisfied, has the true score

    score = 1 + 9 * k / n        (k/n = `compliance`; 1 when none is met, 10 when all are)

on the teacher's 1-10 scale. Pairwise scores and calibrated scores are true scores passed through the
`NoiseModel`; refinement is exact (`repair.repair_all`): the verifier always edits as well as it mechanically
can and reports what it could not repair.

Only judgments come from the verifier. Candidate answers and the reference answer y_T stay with a real LLM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from rlhf_stack.core.errors import ArtifactError
from stages.sandbox.constraints import Constraint
from stages.sandbox.families import SandboxPrompt, load_sandbox_prompts
from stages.sandbox.noise import SCORE_MAX, SCORE_MIN, NoiseConfig, NoiseModel
from stages.sandbox.repair import Repaired, repair_all


def score_from_compliance(compliance: float) -> float:
    """The 1-10 score of an answer that satisfies the share `compliance` (in [0, 1]) of its constraints."""
    return SCORE_MIN + (SCORE_MAX - SCORE_MIN) * compliance


class Verifier:
    """Judges answers to sandbox prompts from their constraints.

    Args:
        prompts: the sandbox prompts by id (`families.load_sandbox_prompts`).
        noise: how the simulated teacher errs; the default is an exact teacher.
        seed: seeds the noise; the same seed gives the same judgments.
    """

    def __init__(self, prompts: Mapping[str, SandboxPrompt], noise: NoiseConfig = NoiseConfig(), seed: int = 0):
        self.prompts = dict(prompts)
        self.noise = NoiseModel(noise, seed)

    @classmethod
    def from_prompt_file(cls, prompts_path: Path, noise: NoiseConfig = NoiseConfig(), seed: int = 0) -> "Verifier":
        """A verifier for the prompts in `prompts_path`, whose constraints are in the sidecar file beside it."""
        return cls(load_sandbox_prompts(prompts_path), noise, seed)

    def constraints(self, prompt_id: str) -> tuple[Constraint, ...]:
        item = self.prompts.get(prompt_id)
        if item is None:
            raise ArtifactError(f"prompt id {prompt_id!r} is not a sandbox prompt this verifier knows "
                                f"({len(self.prompts)} known); judge only prompts from its constraint file")
        return item.constraints

    def checks(self, prompt_id: str, text: str) -> dict[str, bool]:
        """Whether `text` satisfies each constraint of the prompt, by kind."""
        return {c.kind: c.check(text) for c in self.constraints(prompt_id)}

    def compliance(self, prompt_id: str, text: str) -> float:
        """The share of the prompt's constraints that `text` satisfies, in [0, 1]; exact, no noise."""
        met = self.checks(prompt_id, text).values()
        return sum(met) / len(met)

    def true_score(self, prompt_id: str, text: str) -> float:
        return score_from_compliance(self.compliance(prompt_id, text))

    def score_pair(self, prompt_id: str, answer_a: str, answer_b: str) -> tuple[float, float]:
        """The teacher's 1-10 scores of two answers, `answer_a` shown first (so it gets any position bias).

        Judging the swapped order is a separate call, `score_pair(prompt_id, answer_b, answer_a)`, with its own
        noise draw.
        """
        key = _key(prompt_id, answer_a, answer_b)
        noisy = self.noise.pair(key, self.true_score(prompt_id, answer_a), self.true_score(prompt_id, answer_b))
        return noisy.first, noisy.second

    def refine(self, prompt_id: str, rejected: str) -> Repaired:
        """The minimal edit of `rejected` that repairs what can be repaired, and the kinds it could not repair.

        The rest of the text is unchanged; an answer with nothing repairable comes back as it was.
        """
        return repair_all(rejected, self.constraints(prompt_id))

    def calibrated_score(self, prompt_id: str, edited: str) -> float:
        """The teacher's 1-10 score of a refined answer: its true score with the Gaussian noise term."""
        return self.noise.single(_key(prompt_id, edited), self.true_score(prompt_id, edited))

    def pointwise_score(self, prompt_id: str, text: str) -> float:
        """The noisy teacher's direct 1-10 score of one answer, shown alone: the reward of a direct judge."""
        return self.noise.pointwise(_key(prompt_id, text), self.true_score(prompt_id, text))

    def diagnosis(self, prompt_id: str, rejected: str) -> str:
        """A one-line account of what the refinement of `rejected` changed, for the record of the refinement."""
        before = self.checks(prompt_id, rejected)
        after = self.checks(prompt_id, self.refine(prompt_id, rejected).text)
        violated = [k for k, ok in before.items() if not ok]
        repaired = [k for k in violated if after[k]]
        left = [k for k, ok in after.items() if not ok]
        return (f"violated: {', '.join(violated) or 'none'}; repaired: {', '.join(repaired) or 'none'}; "
                f"not repairable: {', '.join(left) or 'none'}")


def _key(prompt_id: str, *texts: str) -> str:
    """Names a judgment by its prompt and the exact texts in the order shown."""
    return "\x00".join([prompt_id, *(hashlib.sha256(t.encode()).hexdigest() for t in texts)])
