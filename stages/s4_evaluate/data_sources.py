"""Reading benchmark data: a hub dataset, a local file or folder in the same schema, or a built-in stand-in.

A hub dataset is downloaded as files (`snapshot_download`) and read by the same code as a local folder, so a test on
a local copy of the official files covers the hub path too. A folder's split is chosen by file name as the hub
names split files (`<split>-00000-of-00001.parquet`, `<split>.jsonl`, or a `<split>/` folder); a folder with no such
names is read whole. Every row remembers its file's name and its position there (`_file`, `_row`): RM-Bench's
per-domain files carry their domain only in their name, and errors name the file and row.

The benchmarks' data is not shipped by any package and the hub may be unreachable, so a recipe says where the data
is. `smoke` names the small sets in `stages/s4_evaluate/data/`, written by this project in the official schemas to
exercise the code on a laptop; their numbers say nothing about a model and the report labels them so.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import Problem, RecipeError

SMOKE = "smoke"  # a data source naming the project's small stand-in set (not the benchmark)


class DataSource(StrictModel):
    """Where a benchmark's data comes from, in the benchmark's official schema."""

    source: str = Field(min_length=1)  # "smoke", a local file or folder (relative to the recipe), or a hub dataset id
    split: str | None = None  # hub datasets: default is the benchmark's official split
    subset: str | None = None  # hub dataset configuration name
    file: str | None = None  # hub: read only this file of the dataset repository (e.g. total_dataset.json)
    revision: str | None = None  # hub revision
    max_items: int | None = Field(None, ge=1)  # CPU budget: keep this many, round-robin over subsets (reported)


DATA_DIR = Path(__file__).parent / "data"
SUFFIXES = (".json", ".jsonl", ".parquet")
FILE_KEY, ROW_KEY = "_file", "_row"  # added to every row read from a file: where it came from
_SHARD = re.compile(r"^([\w.]+?)-\d{5}-of-\d{5}\.")  # a hub split file: <split>-00000-of-00001.parquet
# benchmark -> (hub dataset id, official split, built-in stand-in file)
BENCHMARKS = {
    "rewardbench": ("allenai/reward-bench", "filtered", "rewardbench_smoke.jsonl"),
    "rewardbench2": ("allenai/reward-bench-2", "test", "rewardbench2_smoke.jsonl"),
    "rm_bench": ("THU-KEG/RM-Bench", "train", "rm_bench_smoke.jsonl"),
    "alpaca_eval": ("tatsu-lab/alpaca_eval", "eval", "alpaca_eval_smoke.jsonl"),
}


@dataclass(frozen=True)
class LoadedData:
    rows: list[dict[str, Any]]
    description: str  # for the report: where the rows came from
    stand_in: bool  # True for the project's smoke sets
    total_rows: int  # before max_items


def local_path(src: DataSource, base_dir: Path) -> Path | None:
    """The file or folder a source names on disk, or None for the stand-ins and hub ids that are not paths."""
    if src.source == SMOKE:
        return None
    path = Path(src.source).expanduser()
    path = path if path.is_absolute() else base_dir / path
    return path if path.exists() or _looks_like_path(src.source) else None


def source_problems(src: DataSource, key: str, base_dir: Path) -> list[Problem]:
    """What is wrong with a source, found without loading it (the hub is only contacted when the stage runs)."""
    path = local_path(src, base_dir)
    if src.source == SMOKE or (path is None and src.source.count("/") == 1):
        return []  # stand-in, or a hub id
    if path is None:
        return [Problem(f"{key}.source", f"{src.source!r} is neither a local file/folder nor a hub dataset id",
                        "give a path (relative to the recipe file), a hub id like org/name, or 'smoke'")]
    if not path.exists():
        return [Problem(f"{key}.source", f"{path} does not exist",
                        "paths are relative to the recipe file; or give a hub id like org/name, or 'smoke'")]
    if path.is_dir() and not data_files(path):
        return [Problem(f"{key}.source", f"folder {path} holds no {', '.join(SUFFIXES)} files",
                        "export the dataset with datasets' to_json/to_parquet into it")]
    if path.is_file() and path.suffix not in SUFFIXES:
        return [Problem(f"{key}.source", f"{path.name}: unsupported file type", f"use one of {', '.join(SUFFIXES)}")]
    return []


def data_files(path: Path) -> list[Path]:
    """The files a local source reads, in a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def split_files(files: list[Path], split: str, root: Path, key: str = "split") -> list[Path]:
    """The files of one split, named as hub datasets name them; every file when none is named for a split.

    Raises:
        RecipeError: files are named for splits, but none for this one (the problem names `key`).
    """
    def split_of(f: Path) -> str | None:
        rel = f.relative_to(root) if f.is_relative_to(root) else Path(f.name)
        if split in rel.parts[:-1] or f.name.startswith((f"{split}-", f"{split}.", f"{split}_")):
            return split
        shard = _SHARD.match(f.name)
        return shard.group(1) if shard else None
    named = {f: split_of(f) for f in files}
    chosen = [f for f, s in named.items() if s == split]
    others = sorted({s for s in named.values() if s is not None and s != split})
    if not chosen and others:
        raise RecipeError(key, [Problem(key, f"{root} has files for split(s) {others}, none for {split!r}",
                                        f"set split to one of {others}")])
    return chosen or files


def tagged_rows(path: Path) -> list[dict[str, Any]]:
    """`read_rows` with each row's file name and position (0-based) under FILE_KEY and ROW_KEY."""
    return [{**row, FILE_KEY: path.name, ROW_KEY: i} for i, row in enumerate(read_rows(path))]


def source_files(src: DataSource, benchmark: str, base_dir: Path) -> tuple[Path, ...]:
    """Files whose content decides the data (their digests go into the job's hash)."""
    if src.source == SMOKE:
        return (DATA_DIR / BENCHMARKS[benchmark][2],)
    path = local_path(src, base_dir)
    return tuple(data_files(path)) if path is not None and path.exists() else ()


def load_source(src: DataSource, benchmark: str, key: str, base_dir: Path) -> LoadedData:
    """Every row of the source, limited to `max_items` round-robin over subsets.

    Raises:
        RecipeError: the data cannot be found or read; the message says how to provide it.
    """
    hub_id, official_split, smoke_file = BENCHMARKS[benchmark]
    path = local_path(src, base_dir)
    if src.source == SMOKE:
        rows = tagged_rows(DATA_DIR / smoke_file)
        description, stand_in = f"smoke-test stand-in ({smoke_file}, written by this project; not {hub_id})", True
    elif path is not None:
        if not path.exists():
            raise RecipeError(key, [Problem(f"{key}.source", f"{path} does not exist", "check the path")])
        rows = folder_rows(path, src.split or official_split, f"{key}.split")
        description, stand_in = f"local copy {path}", False
    else:
        rows = _load_hub(src, official_split, key)
        description = f"hub {src.source}" + (f" file {src.file}" if src.file else f" split {src.split or official_split}")
        stand_in = False
    if not rows:
        raise RecipeError(key, [Problem(f"{key}.source", f"{description} holds no rows", "check the data")])
    total = len(rows)
    if src.max_items is not None and src.max_items < total:
        rows = round_robin(rows, src.max_items)
        description += f", limited to {len(rows)} of {total} items (round-robin over subsets)"
    return LoadedData(rows=rows, description=description, stand_in=stand_in, total_rows=total)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON list, JSON Lines or Parquet file.

    Raises:
        RecipeError: the file cannot be decoded; the message names the file and, for JSON Lines, the line.
    """
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict(orient="records")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise _unreadable(path, f"not UTF-8 text ({e})") from e
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise _unreadable(path, f"line {number} is not JSON ({e})") from e
        return rows
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _unreadable(path, f"not JSON ({e})") from e
    if isinstance(data, dict):  # one split saved as {"rows": [...]} or a single record
        data = data.get("rows", [data])
    return list(data)


def _unreadable(path: Path, why: str) -> RecipeError:
    return RecipeError(str(path), [Problem(str(path), why, "fix the file or export it again with datasets")])


def round_robin(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The first `count` rows taking one from each subset in turn, so a small budget still covers every subset."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row.get("subset", row.get("domain", row.get("dataset", ""))))].append(row)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < count:
        for members in groups.values():
            if depth < len(members) and len(out) < count:
                out.append(members[depth])
        depth += 1
    return out


def folder_rows(path: Path, split: str, key: str = "split") -> list[dict[str, Any]]:
    """Tagged rows of a file, or of a folder's files for `split` (see `split_files`), in a stable order."""
    files = data_files(path)
    if path.is_dir():
        files = split_files(files, split, path, key)
    return [row for f in files for row in tagged_rows(f)]


def _load_hub(src: DataSource, official_split: str, key: str) -> list[dict[str, Any]]:
    """The dataset's files downloaded, then read as a local folder; a named configuration goes through datasets."""
    split = src.split or official_split
    how = (f"download it on a connected machine, e.g. `huggingface-cli download {src.source} --repo-type dataset "
           f"--local-dir DIR` (or `datasets.load_dataset({src.source!r}, split={split!r}).to_json('data.jsonl')`), "
           f"copy it here and set {key}.source to that folder or file (or use 'smoke' for a smoke test)")
    try:
        if src.file:
            from huggingface_hub import hf_hub_download

            local = hf_hub_download(src.source, src.file, repo_type="dataset", revision=src.revision)
            return tagged_rows(Path(local))
        if src.subset:
            import datasets

            ds = datasets.load_dataset(src.source, src.subset, split=split, revision=src.revision)
            return [{**dict(row), ROW_KEY: i} for i, row in enumerate(ds)]
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(src.source, repo_type="dataset", revision=src.revision,
                                        allow_patterns=[f"*{suffix}" for suffix in SUFFIXES]))
    except Exception as e:  # offline, unknown dataset, gated, script dataset: the same advice applies
        raise RecipeError(key, [Problem(f"{key}.source", f"cannot load {src.source!r} from the Hugging Face hub "
                                        f"({type(e).__name__}: {str(e)[:200]})", how)]) from e
    return folder_rows(folder, split, f"{key}.split")


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or Path(source).suffix in SUFFIXES
