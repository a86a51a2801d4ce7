"""The verifiable-reward sandbox: prompts with checkable constraints, judged by a simulated teacher with ground truth.

A simulation for method research (docs/sandbox.md): it measures how reward-model distillation methods behave
when the teacher's errors are known and controlled, not how any real LLM teacher behaves.
"""
