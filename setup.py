"""Build hook: compile the rating engine (``rating/``) and the charging core's logic with mypyc.
Metadata is in pyproject.toml.

By default, installing the package (``pip install -e .``, ``pip install .``, a wheel build)
translates the modules in ``COMPILED`` to C with mypyc (mypy is pinned in
``[build-system].requires``) and compiles them with the platform's C compiler. If there is no C
compiler, the install fails with a message saying so: it never falls back to pure Python on
its own, so a build that is meant to be fast cannot silently be slow.

``OCS_PURE=1`` at install time builds no extension: ``rating`` is then plain Python. It also
deletes compiled modules left in the source tree by an earlier editable install, which would
otherwise shadow the ``.py`` files. See the "Build" note in README.md.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent

COMPILED = [
    "rating/catalog.py",
    "rating/engine.py",
    "rating/errors.py",
    "rating/model.py",
    "rating/money.py",
    "rating/periods.py",
    "rating/values.py",
    "rating/tariff.py",
    "ocs/core/charging.py",
    "ocs/core/due.py",
    "ocs/core/ledger.py",
]
"""Every module of rating/ but ``__init__.py`` (which only re-exports, and stays Python so the
package keeps its docstring and ``__all__``), and the charging core's logic: the core, the
ledger and their due-time indexes. Their msgspec Structs live in plain-Python modules
(``ocs/core/charging_types.py``, ``ocs/core/ledger_types.py``): mypyc drops the class keywords
of the classes it compiles. tests/rating/test_build.py reads this list."""

GROUP = "rating"
"""mypyc's shared library for the group: ``rating__mypyc.*.so``, at the top of the tree."""


def pure() -> bool:
    return os.environ.get("OCS_PURE", "").strip() not in ("", "0")


def in_tree_artefacts() -> list[Path]:
    """Compiled modules an editable install leaves beside the sources."""
    found: list[Path] = []
    for suffix in EXTENSION_SUFFIXES:
        found += HERE.glob(f"rating/*{suffix}")
        found += HERE.glob(f"ocs/**/*{suffix}")
        found += HERE.glob(f"{GROUP}__mypyc{suffix}")
    return sorted(set(found))


def remove_stale(keep: set[str]) -> None:
    """Delete in-tree compiled modules whose module is not in ``keep`` (``rating.engine``,
    ``rating__mypyc``): they would be imported instead of the ``.py`` next to them."""
    for path in in_tree_artefacts():
        stem = path.name.split(".", 1)[0]
        module = ".".join((*path.parent.relative_to(HERE).parts, stem))
        if module not in keep:
            path.unlink()


def require_compiler() -> None:
    command = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        raise SystemExit(
            f"ocs: no C compiler ({command[0] if command else 'CC'!r} not found) to compile "
            "rating/ with mypyc. Install one (e.g. gcc), or set OCS_PURE=1 to install the "
            "pure-Python rating engine."
        )


def ext_modules() -> list[Extension]:
    if pure():
        remove_stale(keep=set())
        return []
    remove_stale(keep={f"{GROUP}__mypyc"} | {p[:-3].replace("/", ".") for p in COMPILED})
    require_compiler()
    from mypyc.build import mypycify

    return mypycify(COMPILED, opt_level="3", group_name=GROUP)


setup(ext_modules=ext_modules())
