"""The layering (docs/architecture.md) holds: import-linter's contracts pass and catch a planted upward import;
no project import hides inside a function; no file grows past 400 lines."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rlhf_stack", "stages", "ray_cluster", "bench")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}, timeout=120)


def _source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_import_linter_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("importer, line, contract", [
    ("rlhf_stack/core/errors.py", "from rlhf_stack.app import recipe", "application -> stages -> ray_cluster -> core"),
    ("stages/s2_distill/pairs.py", "from stages.s1_synthesize import judge", "no stage imports another"),
    ("ray_cluster/session.py", "import stages.s3_ppo.metrics", "application -> stages -> ray_cluster -> core"),
])
def test_a_planted_upward_import_breaks_a_contract(tmp_path, importer, line, contract):
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / importer
    target.write_text(target.read_text() + f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and contract in " ".join(result.stdout.split())
    assert importer.removesuffix(".py").replace("/", ".") in result.stdout


def test_project_imports_sit_at_the_top_of_modules():
    inside = []
    for path in _source_files():
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                module = node.module if isinstance(node, ast.ImportFrom) else \
                    node.names[0].name if isinstance(node, ast.Import) else None
                if module and module.split(".")[0] in PACKAGES:
                    inside.append(f"{path.relative_to(REPO)}:{node.lineno} {module}")
    assert inside == []


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _source_files() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
