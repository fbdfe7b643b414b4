"""`rating/` is pure and float-free: checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RATING = Path(__file__).resolve().parents[2] / "rating"
FILES = sorted(RATING.glob("*.py"))
FORBIDDEN_MODULES = {"ocs", "asyncio", "time", "socket", "os", "io", "pathlib", "random"}
FORBIDDEN_CALLS = {"open", "float", "print", "input", "round"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_io_no_clock_no_float(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in FORBIDDEN_MODULES, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in FORBIDDEN_MODULES, node.module
        elif isinstance(node, ast.Constant):
            assert not isinstance(node.value, float), f"float literal at line {node.lineno}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{node.func.id}() at line {node.lineno}"
        elif isinstance(node, ast.BinOp):
            assert not isinstance(node.op, ast.Div), f"true division at line {node.lineno}"
        elif isinstance(node, ast.Attribute):
            assert node.attr not in {"now", "today", "utcnow", "timestamp"}, node.attr


def test_checked_files_exist() -> None:
    assert {p.name for p in FILES} >= {"money.py", "catalog.py", "engine.py", "tariff.py"}
