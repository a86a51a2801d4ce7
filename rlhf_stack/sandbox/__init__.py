"""The verifiable-reward sandbox: prompts with checkable constraints, judged by a simulated teacher with ground truth.

A simulation for method research (docs/sandbox.md): it measures how reward-model distillation methods behave
when the teacher's errors are known and controlled, not how any real LLM teacher behaves.
"""

from rlhf_stack.sandbox.constraints import CONFLICTS, KINDS, Constraint, compatible, constraint_from_json
from rlhf_stack.sandbox.families import (
    SandboxPrompt, constraints_path, load_sandbox_prompts, make_prompt, sandbox_problems, sandbox_prompts,
    write_sandbox_prompts,
)
from rlhf_stack.sandbox.ground_truth import ScoredPair, TruePair, compliance_summary, pair_accuracy, true_pairs
from rlhf_stack.sandbox.noise import NoiseConfig, NoiseModel
from rlhf_stack.sandbox.repair import Repaired, repair_all
from rlhf_stack.sandbox.verifier import Verifier, score_from_compliance

__all__ = [
    "CONFLICTS", "KINDS", "Constraint", "compatible", "constraint_from_json", "SandboxPrompt", "constraints_path",
    "load_sandbox_prompts", "make_prompt", "sandbox_problems", "sandbox_prompts", "write_sandbox_prompts",
    "ScoredPair", "TruePair", "compliance_summary", "pair_accuracy", "true_pairs", "NoiseConfig", "NoiseModel",
    "Repaired", "repair_all", "Verifier", "score_from_compliance",
]
