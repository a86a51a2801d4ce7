"""The few Markdown pieces the reports are made of: numbers, dashes for what is missing, tables."""

from __future__ import annotations

from typing import Any

DASH = "—"


def fmt(value: Any, digits: int = 1) -> str:
    """A number with `digits` decimals (integers as they are), a dash for None or NaN, anything else as text."""
    if value is None or (isinstance(value, float) and value != value):
        return DASH
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table, and a blank line after it."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(row) + " |" for row in rows] + [""]
