"""Strict, frozen config models and readable reports of what is wrong with them."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rlhf_stack.core.errors import Problem


class StrictModel(BaseModel):
    """Base for every config section and record: unknown keys are errors, instances are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)'-style hint, or '' when nothing is close."""
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else ""


def problems_from_validation(err: ValidationError, root: type[BaseModel], prefix: str = "") -> list[Problem]:
    """Turns pydantic's errors into key-path problems, with a did-you-mean for unknown keys and choices."""
    problems = []
    for e in err.errors():
        loc = [str(part) for part in e["loc"]]
        key = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            fields = _fields_at(root, loc[:-1])
            hint = did_you_mean(loc[-1], fields)
            allowed = f"known keys: {', '.join(sorted(fields))}" if fields and not hint else hint
            problems.append(Problem(key, "unknown key", allowed))
        elif e["type"] == "missing":
            problems.append(Problem(key, "required key is missing", "add it to the recipe"))
        elif e["type"] == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            problems.append(Problem(key, f"{value!r} is not one of {expected}", did_you_mean(value, choices)))
        else:
            msg = e["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
            problems.append(Problem(key, f"{msg}{shown}"))
    return problems


def _fields_at(model: Any, loc: list[str]) -> list[str]:
    """Field names of the model reached by following `loc` through nested models, dicts and lists."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if _is_model(current):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (dict, list, tuple):
            args = typing.get_args(current)
            current = args[-1] if args else Any
        else:
            return []
    current = _unwrap(current)
    return list(current.model_fields) if _is_model(current) else []


def _unwrap(tp: Any) -> Any:
    """Optional[X] / X | None -> X (first model-like member of a union)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for member in members:
            if _is_model(member) or typing.get_origin(member) in (dict, list):
                return member
        return members[0] if members else tp
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
