"""Errors raised by the rating package."""

from __future__ import annotations


class CatalogError(ValueError):
    """An invalid catalog. ``path`` names the offending key, e.g.
    ``rating_groups[2].periods[1].start`` (list indexes count from 0); it is ``""`` for an error
    in the document as a whole (for instance a TOML syntax error)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
