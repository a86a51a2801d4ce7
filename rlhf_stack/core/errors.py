"""The exceptions a user sees. Each message says where, what, the rule and the fix."""

from __future__ import annotations

from dataclasses import dataclass


class RlhfStackError(Exception):
    """Base class; the CLI prints the message and exits with `exit_code`."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe."""

    key: str  # dotted key path, e.g. "distill.variants.rm_distiller.sft_weight"
    message: str  # the rule that was broken, with the offending value
    fix: str = ""  # what to do about it

    def __str__(self) -> str:
        fix = f" ({self.fix})" if self.fix else ""
        return f"{self.key}: {self.message}{fix}"


class RecipeError(RlhfStackError):
    """A recipe that cannot run: found before any Ray or model work."""

    exit_code = 2

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"] + [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))


class ArtifactError(RlhfStackError):
    """A stage folder that is missing, unfinished or of the wrong kind."""


class CorruptArtifactError(ArtifactError):
    """A finished folder whose files no longer match its manifest."""


class DiskFullError(ArtifactError):
    """A job could not write its folder: no space left (or over quota)."""


class RunLockedError(RlhfStackError):
    """Another `rlhf-stack run` is writing the same run folder."""

    exit_code = 2


class ModelError(RlhfStackError):
    """A model reference that cannot be turned into a local folder."""


class ClusterError(RlhfStackError):
    """Ray cannot be reached or lacks the resources a stage asks for."""


class EngineError(RlhfStackError):
    """A generation engine failed beyond its retries."""
