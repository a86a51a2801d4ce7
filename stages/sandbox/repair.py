"""Repairing an answer against all of its prompt's constraints at once: the verifier teacher's minimal edit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from stages.sandbox.constraints import Constraint

MAX_PASSES = 4  # a later repair may undo an earlier one (a cut removes a bullet); another pass mends that


class Repaired(NamedTuple):
    text: str  # the edited answer (the input itself when nothing could be improved)
    unrepaired: list[str]  # kinds of the constraints the edited answer still violates, in prompt order


def repair_all(text: str, constraints: Sequence[Constraint]) -> Repaired:
    """Applies each violated constraint's repair in ascending `repair_rank`, repeated until nothing changes.

    Only violated constraints are touched, so a complying answer comes back unchanged. The result is the pass
    that satisfies the most constraints (the earliest, i.e. least edited, among equals), and never one that
    satisfies fewer than the input: a verifier edit does not make an answer worse.

    Args:
        text: the answer to edit.
        constraints: the prompt's constraints.

    Returns:
        The edited text and the kinds it still violates.
    """
    ordered = sorted(constraints, key=lambda c: c.repair_rank)
    best, best_met = text, _met(text, constraints)
    for _ in range(MAX_PASSES):
        before = text
        for constraint in ordered:
            fixed = constraint.repair(text)
            if fixed is not None:
                text = fixed
        met = _met(text, constraints)
        if met > best_met:
            best, best_met = text, met
        if text == before or met == len(constraints):
            break
    return Repaired(best, [c.kind for c in constraints if not c.check(best)])


def _met(text: str, constraints: Sequence[Constraint]) -> int:
    return sum(c.check(text) for c in constraints)
