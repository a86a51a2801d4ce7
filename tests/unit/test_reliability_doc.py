"""docs/reliability.md stays true: every test its table names exists, and the random-kill row quotes the number of
kill points the test injects."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"


def _table_rows() -> list[list[str]]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_every_test_the_table_names_exists():
    named = [ref for row in _table_rows() for ref in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row[1])]
    assert len(named) >= 12
    for path, test in named:
        assert f"def {test}(" in (REPO / path).read_text(), f"{path}::{test} is named in {DOC.name} but missing"


def test_the_random_kill_row_quotes_the_tests_kill_points():
    source = (REPO / "tests" / "e2e" / "test_random_kills.py").read_text()
    per_stage = ast.literal_eval(re.search(r"^KILLS_PER_STAGE = (\{.*\})$", source, re.M).group(1))
    row = next(r for r in _table_rows() if "test_random_kills.py" in r[1] and r[0].startswith("the driver killed"))
    assert int(row[2]) == sum(per_stage.values()) >= 10
    assert ", ".join(f"{n} in {stage}" for stage, n in per_stage.items()) in row[1]
