"""The verifiable-reward sandbox: prompts with checkable constraints, judged by a simulated teacher with ground truth.

A simulation for method research (docs/sandbox.md): it measures how reward-model distillation methods behave
when the teacher's errors are known and controlled, not how any real LLM teacher behaves.
"""

from stages.sandbox.constraints import CONFLICTS, KINDS, Constraint, compatible, constraint_from_json
from stages.sandbox.families import (
    SandboxPrompt, constraints_path, load_sandbox_prompts, make_prompt, sandbox_problems, sandbox_prompts,
    write_sandbox_prompts,
)
from stages.sandbox.ground_truth import ScoredPair, TruePair, compliance_summary, pair_accuracy, true_pairs
from stages.sandbox.noise import NoiseConfig, NoiseModel
from stages.sandbox.repair import Repaired, repair_all
from stages.sandbox.verifier import Verifier, score_from_compliance

__all__ = [
    "CONFLICTS", "KINDS", "Constraint", "compatible", "constraint_from_json", "SandboxPrompt", "constraints_path",
    "load_sandbox_prompts", "make_prompt", "sandbox_problems", "sandbox_prompts", "write_sandbox_prompts",
    "ScoredPair", "TruePair", "compliance_summary", "pair_accuracy", "true_pairs", "NoiseConfig", "NoiseModel",
    "Repaired", "repair_all", "Verifier", "score_from_compliance",
]
