"""Which preference pairs a variant trains on, and which prompts are held out (pure, no tokenizer)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rlhf_stack.core.errors import ArtifactError
from rlhf_stack.core.records import PreferenceRecord, TeacherAnswer, read_jsonl
from stages.s2_distill.config import VariantConfig


@dataclass(frozen=True)
class PairText:
    """One preference pair as text, with the numbers the losses and metrics need."""

    id: str  # the record (prompt) id
    prompt: str
    chosen: str
    rejected: str
    teacher_margin: float  # the teacher's score gap for this pair type (raw or calibrated), for metrics
    answer: TeacherAnswer | None  # y_T, the text of the generation regularizer


def read_records(folder: Path) -> list[PreferenceRecord]:
    """All records of a synthesis artifact, in shard order; ids must be unique."""
    shards = sorted(folder.glob("records-*.jsonl"))
    if not shards:
        raise ArtifactError(f"{folder} holds no records-*.jsonl: the synthesis stage wrote no preference data")
    records = [r for shard in shards for r in read_jsonl(shard, PreferenceRecord)]
    dupes = [i for i, n in Counter(r.id for r in records).items() if n > 1]
    if dupes:
        raise ArtifactError(f"{folder}: record ids must be unique; repeated: {dupes[:5]}")
    return records


def pair_of(record: PreferenceRecord, pairs: str) -> PairText | None:
    """The record's pair of the given type, or None when the record lacks it (e.g. the refinement failed)."""
    initial = record.initial
    if pairs == "initial":
        chosen, margin = initial.chosen, initial.chosen_score - initial.rejected_score
    else:
        if record.refinement is None:
            return None
        chosen, margin = record.refinement.chosen, record.refinement.margin
    if not math.isfinite(margin):
        raise ArtifactError(f"record {record.id}: the {pairs} margin is {margin}; synthesis must write finite scores")
    return PairText(record.id, record.prompt, chosen, initial.rejected, margin, record.teacher_answer)


def select_pairs(records: list[PreferenceRecord], variant: VariantConfig) -> tuple[list[PairText], int]:
    """The variant's pairs, and how many records lack that pair type."""
    out = [p for p in (pair_of(r, variant.pairs) for r in records) if p is not None]
    return out, len(records) - len(out)


def loss_margin(pair: PairText, variant: VariantConfig) -> float | None:
    """The margin the loss sees: the teacher's gap times margin_scale, or None for margin-free objectives."""
    return None if variant.margin == "none" else pair.teacher_margin * variant.margin_scale


def is_held_out(record_id: str, fraction: float, seed: int) -> bool:
    """A seeded hash of the prompt id decides, so every variant holds out the same prompts. The hash is salted: the
    prompt splits rank prompts by the unsalted one, so the synthesis split would otherwise be held out whole."""
    return _uniform(record_id, "held_out", seed) < fraction


def in_training_share(record_id: str, fraction: float, seed: int) -> bool:
    """Whether a prompt is in the share of training prompts used (`distill.train_prompt_fraction`): a hash with its
    own salt, so the share is drawn independently of the held-out prompts, is the same for every variant, and a
    smaller share is a subset of a larger one (a learning curve adds prompts, it does not swap them)."""
    return _uniform(record_id, "train_share", seed) < fraction


def _uniform(record_id: str, salt: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
