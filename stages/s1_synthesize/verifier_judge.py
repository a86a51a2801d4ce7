"""The sandbox verifier as a judge (docs/sandbox.md): the judging roles played from each prompt's constraints.

It reads no model output, so nothing fails to parse and no teacher token is spent. Its imperfection is the noise
model's (label flips, score noise, position bias), seeded by the recipe seed; the refinement is the verifier's
exact mechanical repair. A rejected answer with nothing it can repair is dropped as `unchanged_edit`, as an LLM
edit that changes nothing is.
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.sandbox import Verifier
from stages.s1_synthesize.judge import CalibrateItem, PairItem, Refined, RefineItem, Verdict


class VerifierJudge:
    name = "verifier"

    def __init__(self, verifier: Verifier):
        self.verifier = verifier

    def score_pairs(self, items: Sequence[PairItem]) -> list[Verdict[tuple[float, float]]]:
        return [Verdict(self.verifier.score_pair(item.prompt_id, item.first, item.second)) for item in items]

    def refine(self, items: Sequence[RefineItem]) -> list[Verdict[Refined]]:
        out = []
        for item in items:
            edited = self.verifier.refine(item.prompt_id, item.rejected).text
            if edited == item.rejected:
                out.append(Verdict(reason="unchanged_edit"))
            else:  # the diagnosis stands where an LLM's reasoning would, in the record and before a calibration
                out.append(Verdict(Refined(chosen=edited,
                                           completion=self.verifier.diagnosis(item.prompt_id, item.rejected))))
        return out

    def calibrate(self, items: Sequence[CalibrateItem]) -> list[Verdict[float]]:
        return [Verdict(self.verifier.calibrated_score(item.refine.prompt_id, item.refined.chosen)) for item in items]


class RoutedJudge:
    """One judge per role, as `synthesize.judges` assigns them."""

    def __init__(self, initial_scores, refine, calibrate):
        self._pairs, self._refine, self._calibrate = initial_scores, refine, calibrate
        self.name = "+".join(dict.fromkeys(j.name for j in (initial_scores, refine, calibrate)))

    def score_pairs(self, items: Sequence[PairItem]) -> list[Verdict[tuple[float, float]]]:
        return self._pairs.score_pairs(items)

    def refine(self, items: Sequence[RefineItem]) -> list[Verdict[Refined]]:
        return self._refine.refine(items)

    def calibrate(self, items: Sequence[CalibrateItem]) -> list[Verdict[float]]:
        return self._calibrate.calibrate(items)
