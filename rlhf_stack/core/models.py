"""Turns a recipe's model reference into a local Hugging Face folder.

A reference is one of: a built-in name (`smollm2-135m-instruct`, `tiny-random-llama`), a local folder (relative to
the recipe file or absolute), or a Hugging Face hub id (downloaded when the hub is reachable). Built-in models are
built once into the cache (`RLHF_STACK_CACHE`, default `~/.cache/rlhf-stack`) under a file lock.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rlhf_stack.core.config import StrictModel
from rlhf_stack.core.errors import ModelError
from rlhf_stack.core import smollm2, tiny_models

BUILTIN_MODELS = ("smollm2-135m-instruct", "tiny-random-llama")
_BUILD_VERSION = 1  # bump when a builder changes what it writes


class ModelSpec(StrictModel):
    source: str = Field(min_length=1)  # built-in name, local folder or hub id
    seed: int = 0  # weights seed, for tiny-random-* models only
    revision: str | None = None  # hub revision, for hub ids only

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        return {"source": value} if isinstance(value, str) else value


def cache_root() -> Path:
    return Path(os.environ.get("RLHF_STACK_CACHE") or Path.home() / ".cache" / "rlhf-stack")


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1


def local_path(spec: ModelSpec, base_dir: Path) -> Path | None:
    """The folder a non-built-in reference names, if it exists on disk."""
    path = Path(spec.source).expanduser()
    path = path if path.is_absolute() else base_dir / path
    return path if path.exists() else None


def check_model(spec: ModelSpec, base_dir: Path) -> str | None:
    """Why the reference cannot work, found without loading anything; None when it looks usable."""
    if spec.source in BUILTIN_MODELS:
        return None
    path = local_path(spec, base_dir)
    if path is not None:
        return None if (path / "config.json").exists() else f"{path} has no config.json: not a Hugging Face model folder"
    if looks_like_path(spec.source):
        return f"model folder {base_dir / Path(spec.source).expanduser()} does not exist"
    return None  # a hub id: checked when it is resolved


def folder_on_disk(spec: ModelSpec, base_dir: Path) -> Path | None:
    """The model's folder if it is on this machine already (built, local, or in the hub cache), else None.

    Nothing is built or downloaded: `validate` uses it to check what it can without the network.
    """
    if spec.source in BUILTIN_MODELS:
        target = _build_target(spec)
        return target if (target / "config.json").exists() else None
    path = local_path(spec, base_dir)
    if path is not None or looks_like_path(spec.source):
        return path if path is not None and (path / "config.json").exists() else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.source, revision=spec.revision, local_files_only=True))
    except Exception:  # not in the hub cache (or no such repo): checked when the stage resolves it
        return None


def tokenizer_on_disk(spec: ModelSpec, base_dir: Path) -> Any | None:
    """The model's tokenizer if its folder is on this machine and holds one, else None (see `folder_on_disk`)."""
    folder = folder_on_disk(spec, base_dir)
    return None if folder is None else _load_tokenizer(str(folder))


@functools.lru_cache(maxsize=32)
def _load_tokenizer(folder: str) -> Any | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception:  # no or unreadable tokenizer files: a best-effort check; the stage that needs one reports it
        return None


def resolve_model(spec: ModelSpec, base_dir: Path) -> Path:
    """A local folder holding the model, building or downloading it first when needed."""
    if spec.source in BUILTIN_MODELS:
        return _cached_build(spec)
    problem = check_model(spec, base_dir)
    if problem:
        raise ModelError(problem)
    path = local_path(spec, base_dir)
    if path is not None:
        return path
    return _download(spec)


def _build_target(spec: ModelSpec) -> Path:
    suffix = f"-seed{spec.seed}" if spec.source.startswith("tiny-random-") else ""
    return cache_root() / "models" / f"{spec.source}{suffix}-v{_BUILD_VERSION}"


def _cached_build(spec: ModelSpec) -> Path:
    target = _build_target(spec)
    if (target / "config.json").exists():
        return target
    with _lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():
            return target
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        if spec.source == "smollm2-135m-instruct":
            smollm2.build(tmp)
        else:
            tiny_models.build(spec.source, tmp, seed=spec.seed)
        tmp.rename(target)
    return target


def _download(spec: ModelSpec) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.source, revision=spec.revision))
    except Exception as e:  # offline, unknown repo, gated model: all end the same way for the user
        raise ModelError(
            f"model {spec.source!r} is neither a built-in name ({', '.join(BUILTIN_MODELS)}), nor a local folder, "
            f"nor downloadable from the Hugging Face hub ({type(e).__name__}: {e}). "
            "Download it on a connected machine and set the model's source to that folder."
        ) from e


@contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
