"""The installed rating engine is the mypyc build (unless ``OCS_PURE=1``), it is not stale, and
it computes exactly what the pure-Python source computes.

The other rating tests run against whatever is installed; these check what that is. A normal
install (``make``, ``pip install -e .``) compiles every module listed in ``setup.py``'s
``COMPILED``; with ``OCS_PURE=1`` in the environment the install builds nothing and these tests
expect plain ``.py`` modules instead.
"""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Final

import pytest

from tests.rating.transcript import transcript

ROOT = Path(__file__).resolve().parents[2]
PURE = os.environ.get("OCS_PURE", "").strip() not in ("", "0")


def compiled_modules() -> list[str]:
    """``rating.engine`` etc.: the modules setup.py compiles (its ``COMPILED`` list)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in targets):
                assert node.value is not None
                paths: list[str] = ast.literal_eval(node.value)
                return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


MODULES = compiled_modules()


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(EXTENSION_SUFFIXES))


# Plain Python on purpose: the catalog sections of the features of issues 14 and 15 (parsed once
# per catalog, nothing on the rating path).
PLAIN_RATING: Final = {
    "rating.__init__",
    "rating.offers",
    "rating.loans",
    "rating.packages",
    "rating.load",
    "rating.policies",
    "rating.devices",
    "rating.counters",
}


def test_every_module_but_the_package_init_is_compiled() -> None:
    sources = {f"rating.{p.stem}" for p in (ROOT / "rating").glob("*.py")}
    assert {m for m in MODULES if m.startswith("rating.")} == sources - PLAIN_RATING


def test_the_charging_core_logic_is_compiled_and_its_structs_are_not() -> None:
    """mypyc drops the class keywords of msgspec Structs it compiles: the core's Structs live in
    plain modules, its logic is compiled."""
    assert {m for m in MODULES if m.startswith("ocs.")} == {
        "ocs.core.charging",
        "ocs.core.ledger",
        "ocs.core.due",
    }
    for plain in ("ocs.core.charging_types", "ocs.core.ledger_types", "ocs.core.accounts"):
        module = importlib.import_module(plain)
        assert module.__file__ is not None and module.__file__.endswith(".py"), plain


@pytest.mark.skipif(PURE, reason="OCS_PURE=1: the pure-Python build is installed on purpose")
@pytest.mark.parametrize("name", MODULES)
def test_installed_module_is_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert _is_extension(module.__file__), (
        f"{name} is imported from {module.__file__}, not from a mypyc-compiled module: "
        "reinstall (`make test` does, or `.venv/bin/pip install -e '.[dev]'`), or set "
        "OCS_PURE=1 if the pure build is meant"
    )


@pytest.mark.skipif(not PURE, reason="the compiled build is installed")
@pytest.mark.parametrize("name", MODULES)
def test_installed_module_is_pure(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(".py"), (
        f"OCS_PURE=1 but {name} is {module.__file__}: reinstall with OCS_PURE=1"
    )


@pytest.mark.parametrize("name", MODULES)
def test_compiled_module_is_not_older_than_its_source(name: str) -> None:
    """An editable install leaves ``engine.cpython-*.so`` beside ``engine.py`` and Python
    imports the ``.so``: an edit of the ``.py`` without a rebuild would silently not run."""
    module = importlib.import_module(name)
    if not _is_extension(module.__file__):
        pytest.skip(f"{name} is not compiled")
    assert module.__file__ is not None
    built = Path(module.__file__)
    source = built.parent / f"{name.rsplit('.', 1)[1]}.py"  # rating/engine.py, ocs/core/ledger.py
    if not source.exists():
        pytest.skip("not an in-tree build")
    assert built.stat().st_mtime >= source.stat().st_mtime, (
        f"{built.name} is older than {source.name}: the edit is not in the build. Reinstall "
        "(`make test` does, or `.venv/bin/pip install -e '.[dev]'`)"
    )


def pure_source_tree(dest: Path) -> Path:
    """A copy of ``rating/``'s ``.py`` files (no compiled module beside them) under ``dest``."""
    package = dest / "rating"
    package.mkdir(parents=True)
    for source in (ROOT / "rating").glob("*.py"):
        shutil.copy2(source, package / source.name)
    return dest


CHILD = """
import sys
import rating.engine
assert rating.engine.__file__.startswith(sys.argv[1]), rating.engine.__file__
from tests.rating.transcript import transcript
sys.stdout.write("\\n".join(transcript()))
"""


def pure_transcript(tmp_path: Path) -> list[str]:
    """``transcript()`` computed by the pure-Python source, in a fresh interpreter."""
    tree = pure_source_tree(tmp_path / "pure")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT)]))
    # -P: the working directory is not put first on sys.path, so ``rating`` is the copy.
    done = subprocess.run(
        [sys.executable, "-P", "-c", CHILD, str(tree)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")


def test_installed_build_agrees_with_the_pure_source(tmp_path: Path) -> None:
    """Over ~28,000 calls (random catalogs, broken catalogs, every engine function, error
    messages included), the installed build and the ``.py`` source give identical results."""
    installed = transcript()
    pure = pure_transcript(tmp_path)
    for i, (mine, theirs) in enumerate(zip(installed, pure, strict=False)):
        assert mine == theirs, f"line {i}:\n installed: {mine}\n pure:      {theirs}"
    assert len(installed) == len(pure)
    assert len(installed) > 10_000
