"""Reading catalog files (the I/O that the pure ``rating`` package leaves to ``ocs``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rating import Catalog, CatalogError, parse_catalog

DEMO_CATALOG = "demo_catalog.toml"
"""The built-in demo catalog, package data of ``ocs.edge``."""


def demo_catalog_text() -> str:
    return resources.files("ocs.edge").joinpath(DEMO_CATALOG).read_text(encoding="utf-8")


def _read_text(path: str | Path | None) -> str:
    """The text of a catalog file (not validated); ``None`` gives the built-in demo catalog."""
    if path is None:
        return demo_catalog_text()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError("", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError("", f"{path} is not UTF-8 text: {exc.reason}") from None


def catalog_text(path: str | Path | None) -> str:
    """The text of a catalog file, validated; ``None`` gives the built-in demo catalog.

    Raises ``CatalogError`` for an unreadable file as well as for an invalid catalog.
    """
    text = _read_text(path)
    if path is not None:
        parse_catalog(text)
    return text


def load_catalog_file(path: str | Path | None) -> Catalog:
    """Load and validate a catalog file; ``None`` loads the built-in demo catalog."""
    return parse_catalog(_read_text(path))
