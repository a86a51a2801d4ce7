"""Prompts from any dataset `datasets` reads: a hub dataset or a local jsonl / json / parquet / arrow / csv file or
folder (also one written by `save_to_disk`), mapped to prompt records, filtered, deduplicated and sampled.

`data.prompts` as a mapping (`PromptDataset`) is turned into the prompt JSONL every stage reads
(`<run folder>/prompts.jsonl`, see `materialize`) before the first stage runs. Validate checks a local dataset in
full and a hub dataset's settings only (the hub is not contacted). Records that carry a chosen and a rejected answer
keep them, so synthesis can use them as the initial pair (the method's "orig" variant).

A column may hold a chat `messages` list ([{role, content}, ...]): the prompt is its user turn (single-turn
conversations only; a longer context is skipped and counted), an answer column's text is its last assistant turn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rlhf_stack.core.artifacts import write_atomic
from rlhf_stack.core.chat import prompt_ids, user_messages
from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import Problem, RecipeError
from rlhf_stack.core.records import PromptRecord

log = logging.getLogger("rlhf_stack")
KEY = "data.prompts"
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
MATERIALIZED = "prompts.jsonl"  # in the run folder


class PromptColumns(StrictModel):
    """Which column holds what; unset names fall back to the column of that name when the dataset has one."""

    id: str | None = None  # default "id"; without one, a hash of the prompt
    prompt: str | None = None  # default "prompt"
    messages: str | None = None  # a chat list whose user turn is the prompt (e.g. a preference set's `chosen`)
    chosen: str | None = None  # text or chat list: the preferred answer (initial pair)
    rejected: str | None = None  # text, chat list, or a list of those (the first is used)
    category: str | None = None


class PromptDataset(StrictModel):
    source: str = Field(min_length=1)  # hub dataset id, or a local file or folder (relative to the recipe)
    config: str | None = None  # hub dataset configuration
    split: str = "train"
    revision: str | None = None  # hub revision
    columns: PromptColumns = PromptColumns()
    max_prompt_tokens: int | None = Field(None, ge=1)  # drop longer prompts (rendered with `tokenizer`'s template)
    # model alias whose tokenizer measures prompts: longer than max_prompt_tokens are dropped; without that limit, a
    # prompt over the tokenizer's context is an error naming its row
    tokenizer: str | None = None
    dedup: bool = True  # keep the first of prompts with the same text
    sample: int | None = Field(None, ge=1)  # then a seeded sample of this many (seed: data.split_seed)

    @model_validator(mode="after")
    def _tokenizer_for_length(self) -> "PromptDataset":
        if self.max_prompt_tokens is not None and self.tokenizer is None:
            raise ValueError("max_prompt_tokens needs `tokenizer`: the model alias whose tokenizer counts the tokens")
        return self

    def local_path(self, base_dir: Path) -> Path | None:
        """The file or folder `source` names on disk, or None for a hub id."""
        path = Path(self.source).expanduser()
        path = path if path.is_absolute() else base_dir / path
        looks_local = self.source.startswith(("/", "./", "../", "~")) or path.suffix in BUILDERS
        return path if path.exists() or looks_local or self.source.count("/") != 1 else None


def dataset_problems(cfg: PromptDataset, base_dir: Path) -> list[Problem]:
    """Everything wrong with a local dataset (read in full), or with the settings of a hub one; [] when fine."""
    path = cfg.local_path(base_dir)
    if path is None:
        return []
    try:
        load_records(cfg, base_dir, seed=0)
    except RecipeError as e:
        return e.problems
    return []


def load_records(cfg: PromptDataset, base_dir: Path, seed: int, tokenizer: Any = None) -> tuple[list[PromptRecord],
                                                                                                    dict[str, int]]:
    """The dataset's prompt records after filters, dedup and sampling, and how many each step removed.

    Raises:
        RecipeError: naming the file, row and column of the first bad values (all of them counted).
    """
    rows, where = _read(cfg, base_dir)
    records, problems, counts = [], [], {"rows": len(rows), "multi_turn": 0, "too_long": 0, "duplicates": 0}
    rows_of: dict[int, int] = {}  # record -> its row, for errors
    columns = set(rows[0]) if rows else set()
    names = _column_names(cfg.columns, columns, where)
    for i, row in enumerate(rows):
        try:
            record = _record(row, names)
        except _Skip:
            counts["multi_turn"] += 1
            continue
        except (TypeError, ValueError) as e:
            problems.append(Problem(KEY, f"{where} row {i}: {e}", "fix the row or map another column"))
            continue
        records.append(record)
        rows_of[id(record)] = i
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise RecipeError(KEY, problems[:5] + ([Problem(KEY, f"{len(problems)} bad rows{more}")] if more else []))
    if cfg.dedup:
        seen: set[str] = set()
        kept = [r for r in records if not (r.prompt.strip() in seen or seen.add(r.prompt.strip()))]
        counts["duplicates"], records = len(records) - len(kept), kept
    if tokenizer is not None:
        records, counts["too_long"] = _fit_length(records, cfg, tokenizer, where, names, rows_of)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise RecipeError(KEY, [Problem(f"{KEY}.columns.id", f"{where}: duplicate ids {dupes}",
                                        "map a unique id column, or none (ids are then hashes of the prompts)")])
    if cfg.sample is not None and cfg.sample < len(records):
        records = random.Random(seed).sample(records, cfg.sample)
    counts["kept"] = len(records)
    return records, counts


def _fit_length(records: list[PromptRecord], cfg: PromptDataset, tokenizer: Any, where: str,
                names: dict[str, str | None], rows_of: dict[int, int]) -> tuple[list[PromptRecord], int]:
    """Prompts over `max_prompt_tokens` dropped (counted); without that limit, one over the tokenizer's context is
    an error naming its row, since no engine could take it."""
    lengths = [len(prompt_ids(tokenizer, user_messages(r.prompt))) for r in records]
    if cfg.max_prompt_tokens is not None:
        kept = [r for r, n in zip(records, lengths) if n <= cfg.max_prompt_tokens]
        return kept, len(records) - len(kept)
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 10**7:  # transformers' "no limit known" sentinel is about 1e30
        return records, 0
    over = [(rows_of[id(r)], n) for r, n in zip(records, lengths) if n > limit]
    if over:
        column = names["messages"] or names["prompt"]
        raise RecipeError(KEY, [Problem(f"{KEY}.max_prompt_tokens", f"{where} row {row}: column {column!r}: the prompt "
                                        f"has {n} tokens, more than the model's context ({limit})",
                                        "set max_prompt_tokens to drop longer prompts") for row, n in over[:3]])
    return records, 0


def materialize(cfg: PromptDataset, base_dir: Path, out: Path, seed: int, tokenizer: Any = None) -> dict[str, int]:
    """Writes the prompt records as the JSONL every stage reads (atomically; unchanged content keeps its digest)."""
    records, counts = load_records(cfg, base_dir, seed, tokenizer)
    if not records:
        raise RecipeError(KEY, [Problem(KEY, f"no prompt is left of {counts['rows']} rows ({counts})",
                                        "loosen max_prompt_tokens or check the column mapping")])
    write_atomic(out, "".join(r.model_dump_json(exclude_none=True) + "\n" for r in records))
    log.info("prompts: %d of %d rows of %s kept (%s) -> %s", counts["kept"], counts["rows"], cfg.source, counts, out)
    return counts


class _Skip(Exception):
    """A row that is fine but not usable (a multi-turn context)."""


def _read(cfg: PromptDataset, base_dir: Path) -> tuple[list[dict[str, Any]], str]:
    import datasets

    path = cfg.local_path(base_dir)
    where = str(path) if path is not None else f"hub dataset {cfg.source}"
    try:
        if path is None:
            ds = datasets.load_dataset(cfg.source, cfg.config, split=cfg.split, revision=cfg.revision)
        elif path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))  # a folder written by save_to_disk
            ds = ds[cfg.split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            files = _files(path)
            builder = BUILDERS[files[0].suffix]
            ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except RecipeError:
        raise
    except ValueError as e:
        if "corresponds to no data" not in str(e):  # datasets' words for an empty split
            raise _unreadable(where, path, e) from e
        ds = []
    except Exception as e:  # bad bytes, bad JSON, mixed schemas, offline hub: one message naming the data
        raise _unreadable(where, path, e) from e
    if len(ds) == 0:

        raise RecipeError(KEY, [Problem(KEY, f"{where}: split {cfg.split!r} holds no rows", "check split and files")])
    return [dict(row) for row in ds], where


def _unreadable(where: str, path: Path | None, error: Exception) -> RecipeError:
    why = _first_bad_line(path) or f"{type(error).__name__}: {str(error)[:300]}"
    return RecipeError(KEY, [Problem(KEY, f"{where} cannot be read ({why})",
                                     "fix the file, or export the data with datasets' to_json / to_parquet")])


def _files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in BUILDERS:
            raise RecipeError(KEY, [Problem(f"{KEY}.source", f"{path.name}: unsupported file type",
                                            f"use one of {', '.join(BUILDERS)}")])
        return [path]
    if not path.exists():
        raise RecipeError(KEY, [Problem(f"{KEY}.source", f"{path} does not exist", "paths are relative to the recipe")])
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS)
    if not files:
        raise RecipeError(KEY, [Problem(f"{KEY}.source", f"folder {path} holds no {', '.join(BUILDERS)} files")])
    kinds = {BUILDERS[f.suffix] for f in files}
    if len(kinds) > 1:
        raise RecipeError(KEY, [Problem(f"{KEY}.source", f"folder {path} mixes formats {sorted(kinds)}",
                                        "keep one format per folder")])
    return files


def _first_bad_line(path: Path | None) -> str | None:
    """For a JSON Lines file `datasets` could not parse: which line is not JSON."""
    if path is None or not path.is_file() or path.suffix != ".jsonl":
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as e:
                    return f"line {number} is not JSON: {e}"
    return None


def _column_names(mapped: PromptColumns, present: set[str], where: str) -> dict[str, str | None]:
    names = {}
    for field in PromptColumns.model_fields:
        given = getattr(mapped, field)
        if given is not None and given not in present:
            raise RecipeError(KEY, [Problem(f"{KEY}.columns.{field}", f"{where} has no column {given!r} "
                                            f"(columns: {', '.join(sorted(present))})", "map an existing column")])
        names[field] = given or (field if field in present and field != "messages" else None)
    if names["prompt"] is None and names["messages"] is None:
        raise RecipeError(KEY, [Problem(f"{KEY}.columns", f"{where} has no 'prompt' column and none is mapped "
                                        f"(columns: {', '.join(sorted(present))})",
                                        "map columns.prompt (text) or columns.messages (a chat list)")])
    return names


def _record(row: dict[str, Any], names: dict[str, str | None]) -> PromptRecord:
    if names["messages"] is not None:
        prompt = _user_turn(row[names["messages"]], names["messages"])
    else:
        prompt = _text(row[names["prompt"]], names["prompt"])
    if not prompt.strip():
        raise ValueError(f"column {names['messages'] or names['prompt']!r}: the prompt is empty")
    fields: dict[str, Any] = {"prompt": prompt}
    fields["id"] = (str(row[names["id"]]) if names["id"] is not None
                    else hashlib.sha256(prompt.encode()).hexdigest()[:16])
    if names["category"] is not None and row[names["category"]] is not None:
        fields["category"] = str(row[names["category"]])
    for side in ("chosen", "rejected"):
        if names[side] is not None:
            fields[side] = _answer(row[names[side]], names[side])
    return PromptRecord(**fields)


def _text(value: Any, column: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"column {column!r}: expected text, got {type(value).__name__}")
    return value


def _user_turn(value: Any, column: str) -> str:
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise TypeError(f"column {column!r}: expected a chat list of {{role, content}}, got {type(value).__name__}")
    context = value[:-1] if value and value[-1]["role"] == "assistant" else value
    users = [m for m in context if m["role"] == "user"]
    if len(users) != 1 or any(m["role"] == "assistant" for m in context):
        raise _Skip()
    return _text(users[0]["content"], column)


def _answer(value: Any, column: str) -> str:
    if isinstance(value, list) and value and isinstance(value[0], (list, str)):
        value = value[0]  # a list of answers (the method's data keeps rejected[0])
    if isinstance(value, list):
        turns = [m for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        if not turns:
            raise ValueError(f"column {column!r}: the chat list has no assistant turn")
        return _text(turns[-1]["content"], column)
    return _text(value, column)
