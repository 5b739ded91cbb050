"""The production package stands alone: nothing it (or a DAG, or a plugin) imports is tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = sorted([*(ROOT / "include" / "investment_jobs").rglob("*.py"), *(ROOT / "dags").glob("*.py"),
                     *(ROOT / "plugins").glob("*.py")])
TOOLING = ("investment_jobs_dev", "tests", "bench", "pgserver", "psutil")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PRODUCTION, ids=lambda p: str(p.relative_to(ROOT)))
def test_production_code_never_imports_the_tooling(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in TOOLING}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: tooling never ships in the image"


def test_the_guard_sees_an_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from investment_jobs_dev.cli import main\n")
    assert "investment_jobs_dev.cli" in imported_modules(sneaky)
