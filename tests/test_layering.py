"""Dependency rules of docs/architecture.md, checked on the source: `protocol` and `rating`
import nothing from `ocs` and no I/O machinery; the domain core imports nothing from the
server or asyncio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The domain core of ocs/: synchronous, time passed in. Listed as they come into being.
CORE_MODULES = ["ledger", "ledger_types", "accounts", "charging", "core_types", "outcomes", "due"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("**/*.py"))


@pytest.mark.parametrize("package", ["protocol", "rating"])
def test_pure_packages_import_no_ocs_and_no_io(package: str) -> None:
    files = package_files(package)
    assert files, f"{package}/ has no modules"
    for path in files:
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top != "ocs", f"{path} imports {name}"
            assert top not in {"asyncio", "socket", "selectors", "uvloop", "ssl"}, (
                f"{path} imports {name}"
            )
            assert top != "time", f"{path} reads the clock ({name})"


def test_domain_core_imports_no_server_and_no_asyncio() -> None:
    for name in CORE_MODULES:
        path = ROOT / "ocs" / f"{name}.py"
        assert path.exists(), f"core module {path} is gone: update CORE_MODULES"
        for imported in imports_of(path):
            top = imported.split(".")[0]
            assert top not in {"asyncio", "uvloop", "socket", "time"}, f"{path}: {imported}"
            assert not imported.startswith(_EDGE), f"{path}: {imported}"


_EDGE = (
    "ocs.edge.server",
    "ocs.edge.client",
    "ocs.node",
    "ocs.edge.journal",
    "ocs.edge.store",
    "ocs.edge.group_commit",
    "ocs.edge.cdr_files",
    "ocs.edge.fileio",
)


def test_imports_of_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import asyncio\nfrom ocs.edge.server import Server\nfrom . import x\n")
    assert imports_of(sample) == {"asyncio", "ocs.edge.server"}
