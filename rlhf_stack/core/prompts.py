"""Loading the user's prompt file and splitting it between stages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import ValidationError

from rlhf_stack.core.errors import Problem
from rlhf_stack.core.records import PromptRecord
from rlhf_stack.core.sections import SplitFractions

SPLITS = ("synthesize", "ppo", "evaluate")


def load_prompts(path: Path, key: str = "data.prompts") -> tuple[list[PromptRecord], list[Problem]]:
    """All records of a prompt file, and every problem found in it (bad lines, empty prompts, duplicate ids)."""
    records, problems, empty, seen, dupes = [], [], [], set(), []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = PromptRecord.model_validate(json.loads(line))
        except (ValueError, ValidationError) as e:
            first = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            problems.append(Problem(f"{key} ({path}:{line_no})", f"not a prompt record: {first}",
                                    'each line must be {"id": ..., "prompt": ...}'))
            continue
        if not record.prompt.strip():
            empty.append(record.id)
        if record.id in seen:
            dupes.append(record.id)
        seen.add(record.id)
        records.append(record)
    if empty:
        problems.append(Problem(key, f"{len(empty)} empty prompt(s) in {path}: ids {_shorten(empty)}",
                                "remove them or give them text"))
    if dupes:
        problems.append(Problem(key, f"duplicate prompt ids in {path}: {_shorten(dupes)}", "ids must be unique"))
    if not records and not problems:
        problems.append(Problem(key, f"{path} holds no prompts"))
    return records, problems


def split_prompts(records: list[PromptRecord], fractions: SplitFractions, seed: int) -> dict[str, list[PromptRecord]]:
    """Disjoint splits, stable under reordering of the file: prompts are ranked by a seeded hash of their id."""
    ranked = sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r.id}".encode()).hexdigest())
    out, start = {}, 0
    for name in SPLITS:
        count = round(getattr(fractions, name) * len(ranked))
        out[name] = ranked[start : start + count]
        start += count
    return out


def _shorten(ids: list[str], most: int = 10) -> str:
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")
