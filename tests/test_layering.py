"""The dependency rules of docs/architecture.md, read from the tree: a module's layer is its
folder, so a file is checked the day it is added.

| folder | layer | may import (besides itself) |
|---|---|---|
| `protocol/` | protocol | an allow-list of standard modules, msgspec |
| `rating/` | rating | the same |
| `ocs/core/` | core | protocol, rating, the same allow-list, msgspec |
| `ocs/edge/` | edge | core, protocol, rating, anything outside the project |
| `ocs/*.py` | node | edge, core, protocol, rating, anything outside the project |
| `ocs/cli/`, `ocs/__main__.py` | cli | everything |
| `ocs/tools/` | tools | edge, protocol, rating, anything outside the project |

So the product (protocol, rating, core, edge, node) never imports the command line or the
tools, the core never reaches the I/O edge, and the tools (simulated network elements, the
load generator) talk to the server as a peer would, never through its core. Across the whole
tree, no module imports a name with a leading underscore from another module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROJECT = ("protocol", "rating", "ocs")

# Standard modules the pure layers and the core may use: no clock, no I/O, no threads.
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "ipaddress",
        "itertools",
        "math",
        "operator",
        "re",
        "struct",
        "tomllib",
        "types",
        "typing",
        "zlib",
        "zoneinfo",
    }
)
PURE_THIRD_PARTY = {
    "protocol": frozenset({"msgspec"}),
    "rating": frozenset({"msgspec"}),
    "core": frozenset({"msgspec"}),
}
# Calls that read the clock even through an allowed module (`datetime.now()`).
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "time", "monotonic", "perf_counter"})

PRODUCT = frozenset({"protocol", "rating", "core", "edge", "node"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    "protocol": frozenset({"protocol"}),
    "rating": frozenset({"rating"}),
    "core": frozenset({"core", "protocol", "rating"}),
    "edge": frozenset({"edge", "core", "protocol", "rating"}),
    "node": frozenset({"node", "edge", "core", "protocol", "rating"}),
    "tools": frozenset({"tools", "edge", "protocol", "rating"}),
    "cli": frozenset({"cli", "tools", "node", "edge", "core", "protocol", "rating"}),
}


class UnlayeredError(LookupError):
    """A project file in no layer's folder: give it one (and a row in the table above)."""


def layer_of_path(relative: Path) -> str:
    """The layer of a source file, from its path under the project root."""
    parts = relative.parts
    if parts[0] in ("protocol", "rating"):
        return parts[0]
    if parts[0] == "ocs":
        if len(parts) == 2:
            return "cli" if parts[1] == "__main__.py" else "node"
        if parts[1] in ("core", "edge", "cli", "tools"):
            return parts[1]
    raise UnlayeredError(f"{relative} is in no layer's folder")


def layer_of_module(name: str) -> str | None:
    """The layer of an imported project module (None: not the project's)."""
    parts = name.split(".")
    if parts[0] in ("protocol", "rating"):
        return parts[0]
    if parts[0] != "ocs":
        return None
    if len(parts) == 1:
        return "node"  # the package itself (its __init__ only holds a docstring)
    if parts[1] in ("core", "edge", "cli", "tools"):
        return parts[1]
    if parts[1] == "__main__":
        return "cli"
    return "node"


@dataclass(frozen=True, slots=True)
class Imported:
    module: str  # absolute dotted name
    names: tuple[str, ...]  # for `from module import a, b`; () for `import module`
    line: int


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, *, module: str = "") -> Iterator[Imported]:
    """Every import of a file, relative ones resolved against `module` (the file's own)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Imported(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Imported(base, tuple(a.name for a in node.names), node.lineno)


def clock_reads(path: Path) -> Iterator[int]:
    """Lines that call `x.now()`, `x.time()`, … (the clock, through any module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
        ):
            yield node.lineno


def violations(root: Path) -> list[str]:
    """Every broken rule in the project tree under `root`."""
    found: list[str] = []
    for top in PROJECT:
        for path in sorted((root / top).glob("**/*.py")):
            relative = path.relative_to(root)
            try:
                layer = layer_of_path(relative)
            except UnlayeredError as exc:
                found.append(str(exc))
                continue
            where = f"{relative} ({layer})"
            for imported in imports_of(path, module=module_name(relative)):
                top_name = imported.module.split(".")[0]
                target = layer_of_module(imported.module)
                if target is None:
                    if layer in PURE_THIRD_PARTY and not (
                        top_name in PURE_STDLIB or top_name in PURE_THIRD_PARTY[layer]
                    ):
                        found.append(f"{where}:{imported.line} imports {imported.module}")
                    continue
                if target not in MAY_IMPORT[layer]:
                    found.append(f"{where}:{imported.line} imports {imported.module} ({target})")
            if layer in PURE_THIRD_PARTY:
                found += [f"{where}:{line} reads the clock" for line in clock_reads(path)]
    return found


def private_imports(root: Path, folders: tuple[str, ...]) -> list[str]:
    """`from module import _name` of a project module, anywhere in `folders`."""
    found: list[str] = []
    for top in folders:
        for path in sorted((root / top).glob("**/*.py")):
            relative = path.relative_to(root)
            for imported in imports_of(path, module=module_name(relative)):
                if imported.module.split(".")[0] not in (*PROJECT, "tests", "bench"):
                    continue
                private = [n for n in imported.names if n.startswith("_") and n != "__version__"]
                if private:
                    found.append(f"{relative}:{imported.line} imports {private}")
    return found


def test_the_tree_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def test_every_layer_has_modules() -> None:
    """The rules check real folders: a layer whose folder vanished would pass vacuously."""
    seen = {
        layer_of_path(path.relative_to(ROOT))
        for top in PROJECT
        for path in (ROOT / top).glob("**/*.py")
    }
    assert seen == set(MAY_IMPORT)


def test_no_private_names_cross_modules() -> None:
    assert private_imports(ROOT, (*PROJECT, "tests", "bench")) == []


def test_the_product_never_imports_the_command_line_or_the_tools() -> None:
    for layer in PRODUCT:
        assert not MAY_IMPORT[layer] & {"cli", "tools"}, layer


# --- the checker itself, on planted trees ------------------------------------------------------


def plant(root: Path, files: dict[str, str]) -> Path:
    for name in ("protocol", "rating", "ocs/core", "ocs/edge", "ocs/cli", "ocs/tools"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "ocs" / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("planted", "text", "expected"),
    [
        # upwards: a lower layer reaching a higher one
        ("ocs/core/m.py", "from ocs.edge.server import Server\n", "imports ocs.edge.server (edge)"),
        ("ocs/core/m.py", "import ocs.node\n", "imports ocs.node (node)"),
        ("ocs/edge/m.py", "from ocs.tools.sim import upf\n", "(tools)"),
        ("ocs/node.py", "from ocs.cli.main import main\n", "(cli)"),
        ("protocol/m.py", "from rating import Catalog\n", "imports rating (rating)"),
        ("rating/m.py", "from ocs.core import charging\n", "(core)"),
        # sideways: a tool using the server's core instead of the wire
        ("ocs/tools/m.py", "from ocs.core.charging import units_of\n", "(core)"),
        ("ocs/tools/m.py", "from ocs import node\n", "(node)"),
        # I/O and the clock in the pure layers and the core
        ("ocs/core/m.py", "import asyncio\n", "imports asyncio"),
        ("protocol/m.py", "import socket\n", "imports socket"),
        ("rating/m.py", "import time\n", "imports time"),
        ("ocs/core/m.py", "import os.path\n", "imports os.path"),
        ("ocs/core/m.py", "import threading\n", "imports threading"),
        ("ocs/core/m.py", "import logging\n", "imports logging"),
        ("rating/m.py", "import datetime\nx = datetime.datetime.now()\n", "reads the clock"),
        ("ocs/core/m.py", "from . import x\nfrom ..edge import journal\n", "(edge)"),
        # a file outside every layer's folder
        ("ocs/newlayer/m.py", "", "in no layer's folder"),
    ],
)
def test_a_planted_import_is_caught(tmp_path: Path, planted: str, text: str, expected: str) -> None:
    (tmp_path / planted).parent.mkdir(parents=True, exist_ok=True)
    root = plant(tmp_path, {planted: text})
    found = violations(root)
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    ("planted", "text"),
    [
        ("ocs/edge/m.py", "import asyncio, os\nfrom ocs.core.charging import ChargingCore\n"),
        ("ocs/node.py", "from ocs.edge.server import Server\nfrom ocs.core import ledger\n"),
        ("ocs/cli/m.py", "from ocs.tools.sim import upf\nfrom ocs.node import build\n"),
        ("ocs/tools/m.py", "from ocs.edge.client import Client\nfrom rating import Unit\n"),
        ("ocs/core/m.py", "import msgspec\nfrom protocol.codes import ResultCode\n"),
        ("ocs/__main__.py", "from ocs.cli.main import main\n"),
    ],
)
def test_allowed_imports_pass(tmp_path: Path, planted: str, text: str) -> None:
    assert violations(plant(tmp_path, {planted: text})) == []


def test_a_planted_private_import_is_caught(tmp_path: Path) -> None:
    root = plant(
        tmp_path,
        {
            "ocs/edge/m.py": "from ocs.core.charging_types import _PACK_DICT\n",
            "ocs/edge/n.py": "from ocs.core.ledger import encode as _encode\n",
        },
    )
    assert private_imports(root, PROJECT) == ["ocs/edge/m.py:1 imports ['_PACK_DICT']"]
