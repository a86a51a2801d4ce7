"""What the stage reports about itself: counts and drops per step, parse-failure and retry rates, position
consistency, the margin histogram, the edit-distance summary, teacher tokens and throughput (docs/artifacts.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

STEPS = ("candidates", "initial_scores", "teacher_answer", "refine", "calibrate", "rmboost")
MARGIN_BIN_EDGES = [float(x) for x in range(-10, 11)]  # one bin per point of the 0-10 scale


def edit_distance(a: str, b: str) -> int:
    """Character-level Levenshtein distance (insertions, deletions, substitutions all cost 1).

    Row by row over `a`, vectorized over `b`: a row's insertion chain is a running minimum of (cost - column),
    so each row costs a few numpy operations instead of a Python loop over `b`.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    cols = np.arange(len(b) + 1)
    prev = cols.copy()
    for i, ch in enumerate(a, 1):
        sub = prev[:-1] + (bb != ord(ch))  # [len(b)]
        row = np.empty_like(prev)
        row[0] = i
        row[1:] = np.minimum(prev[1:] + 1, sub)
        row = np.minimum.accumulate(row - cols) + cols  # insertions: row[j] <= row[j-1] + 1
        prev = row
    return int(prev[-1])


def normalized_edit_distance(edited: str, original: str) -> float:
    """Edit distance between y*_w and y_l over the length of y_l (0 = identical)."""
    return edit_distance(edited, original) / max(1, len(original))


def histogram(values: list[float], edges: list[float]) -> dict:
    counts = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0] if values else [0] * (len(edges) - 1)
    return {"bin_edges": edges, "counts": [int(c) for c in counts]}


def summary(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "median": None, "p90": None}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "p90": float(np.percentile(arr, 90))}


@dataclass
class StepStats:
    requested: int = 0  # prompts that reached the step
    kept: int = 0
    drops: Counter = field(default_factory=Counter)  # reason -> count
    items: int = 0  # judge items asked (a pair counts twice, once per order)
    attempts: int = 0  # judge answers read (retries included)
    parse_failures: int = 0  # answers that did not parse
    retried: int = 0  # judge items asked more than once
    sent: int = 0  # requests sent to an engine in this invocation
    resumed: int = 0  # requests answered from the record of an earlier, interrupted invocation
    shared: int = 0  # requests answered from the generation cache shared by runs (synthesize.generation_cache)
    truncated: int = 0  # requests whose prompt was cut to fit the context
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fresh_completion_tokens: int = 0  # generated in this invocation
    wall_time_s: float = 0.0  # engine start-up excluded


class StageStats:
    """Collects StepStats and the drops list while the stage runs; `to_json` gives stats.json."""

    def __init__(self) -> None:
        self.steps: dict[str, StepStats] = defaultdict(StepStats)
        self.drops: list[dict] = []
        self.teacher_steps: set[str] = set()
        self.engine_restarts: Counter = Counter()  # model alias -> engine actors replaced after dying
        self.engine_start_s: Counter = Counter()  # model alias -> seconds spent starting its engines

    def judged(self, step: str, verdicts) -> None:
        """Counts a judging step's answers, parse failures and retries."""
        st = self.steps[step]
        for v in verdicts:
            st.items += 1
            st.attempts += v.attempts
            st.parse_failures += v.parse_failures
            st.retried += v.attempts > 1

    def drop(self, prompt_id: str, step: str, reason: str) -> None:
        self.steps[step].drops[reason] += 1
        self.drops.append({"id": prompt_id, "step": step, "reason": reason})

    def to_json(self, *, margins: list[float], edit_distances: list[float], consistent: list[bool]) -> dict:
        steps = {name: self.steps[name] for name in STEPS if name in self.steps}
        by_reason = Counter()
        for s in steps.values():
            by_reason.update(s.drops)
        teacher = [s for name, s in steps.items() if name in self.teacher_steps]
        judged = {name: s for name, s in steps.items() if s.attempts}
        return {
            "counts": {n: {"requested": s.requested, "kept": s.kept, "dropped": sum(s.drops.values())}
                       for n, s in steps.items()},
            "drops_by_reason": dict(sorted(by_reason.items())),
            "parse_failure_rate": {n: s.parse_failures / s.attempts for n, s in judged.items()},
            "retry_rate": {n: s.retried / s.items for n, s in judged.items()},
            "position_consistency_rate": (sum(consistent) / len(consistent)) if consistent else None,
            "margin_histogram": histogram(margins, MARGIN_BIN_EDGES),
            "margin": summary(margins),
            "edit_distance": summary(edit_distances),
            "teacher_tokens": {"prompt": sum(s.prompt_tokens for s in teacher),
                               "completion": sum(s.completion_tokens for s in teacher)},
            "requests": {n: {"sent": s.sent, "resumed": s.resumed, "shared": s.shared} for n, s in steps.items()},
            "prompts_truncated": {n: s.truncated for n, s in steps.items()},
            "engine_restarts": dict(self.engine_restarts),
            "engine_start_s": {alias: round(secs, 3) for alias, secs in self.engine_start_s.items()},
            "wall_time_s": {n: round(s.wall_time_s, 3) for n, s in steps.items()},
            "tokens_per_s": {n: (s.fresh_completion_tokens / s.wall_time_s if s.wall_time_s > 0 else None)
                             for n, s in steps.items()},
        }
