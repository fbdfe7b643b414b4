"""The catalog's typed values: key paths, and getters that refuse what the catalog's rules
refuse (floats, negative money, unknown keys), naming the key in the error.

Shared by `rating.catalog` and the catalog sections parsed in their own modules (offers,
packages, loans, status policies, load bands, device classes, counters), so that every section
reads values the same way and says so the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from rating.errors import CatalogError
from rating.money import parse_money, parse_ratio
from rating.tariff import DAY, MAX_TIME, MIN_TIME, epoch_seconds

if TYPE_CHECKING:  # rating.model imports the sections that use this module
    from rating.model import Unit

__all__ = [
    "MAX_QUANTITY",
    "QUANTITY_RE",
    "SUFFIXES",
    "at",
    "boolean",
    "check_keys",
    "instant",
    "integer",
    "list_of",
    "money",
    "no_float",
    "quantity",
    "ratio",
    "table",
    "text",
    "type_name",
]

MAX_QUANTITY: Final = 2**63 - 1

QUANTITY_RE: Final = re.compile(r"(\d+)\s*([A-Za-z]*)")

#: Unit suffixes of quantities, by the unit's catalog spelling (`Unit.value`).
SUFFIXES: Final[dict[str, dict[str, int]]] = {
    "octets": {
        "": 1,
        "B": 1,
        "kB": 1000,
        "KB": 1000,
        "MB": 1000**2,
        "GB": 1000**3,
        "TB": 1000**4,
        "KiB": 1024,
        "MiB": 1024**2,
        "GiB": 1024**3,
        "TiB": 1024**4,
    },
    "seconds": {"": 1, "s": 1, "min": 60, "h": 3600, "d": DAY},
    "units": {"": 1},
}


def at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def no_float(value: object, path: str) -> None:
    if isinstance(value, float):
        raise CatalogError(
            path,
            f'floats are not allowed (got {value!r}); write exact values as strings, e.g. "0.02"',
        )


def table(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise CatalogError(path, f"expected a table, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise CatalogError(path, f"keys must be strings, got {key!r}")
    return value


def check_keys(table: Mapping[str, object], path: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            raise CatalogError(at(path, key), f"unknown key (allowed: {', '.join(allowed)})")


def list_of(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise CatalogError(path, f"expected an array, got {type_name(value)}")
    return value


def integer(value: object, path: str, *, lo: int = 0, hi: int = MAX_QUANTITY) -> int:
    no_float(value, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogError(path, f"expected an integer, got {type_name(value)}")
    if value < lo:
        raise CatalogError(path, f"must be >= {lo}, got {value}")
    if value > hi:
        raise CatalogError(path, f"must be <= {hi}, got {value}")
    return value


def text(value: object, path: str) -> str:
    no_float(value, path)
    if not isinstance(value, str):
        raise CatalogError(path, f"expected a string, got {type_name(value)}")
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(path, f"expected true or false, got {type_name(value)}")
    return value


def money(value: object, path: str) -> int:
    no_float(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        raise CatalogError(
            path,
            f'money is a decimal string of currency units, e.g. "{value}" or "0.02" '
            f"(got the integer {value})",
        )
    word = text(value, path)
    if word.startswith("-"):
        raise CatalogError(path, f"must not be negative, got {word!r}")
    try:
        return parse_money(word)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None


def ratio(value: object, path: str) -> Fraction:
    no_float(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise CatalogError(path, f"must not be negative, got {value}")
        return Fraction(value)
    word = text(value, path)
    if word.startswith("-"):
        raise CatalogError(path, f"must not be negative, got {word!r}")
    try:
        return parse_ratio(word)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None


def quantity(value: object, path: str, unit: Unit, *, lo: int = 1) -> int:
    """An int, or a string with a unit suffix ("1 MiB", "60 s", "1 h")."""
    no_float(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value, path, lo=lo)
    word = text(value, path)
    if word.startswith("-"):
        raise CatalogError(path, f"must not be negative, got {word!r}")
    match = QUANTITY_RE.fullmatch(word.strip())
    if match is None:
        raise CatalogError(path, f'not a quantity: {word!r} (e.g. 1024, "1 MiB", "60 s")')
    suffixes = SUFFIXES[unit.value]
    suffix = match.group(2)
    if suffix not in suffixes:
        known = ", ".join(s for s in suffixes if s) or "none"
        raise CatalogError(
            path, f"unknown suffix {suffix!r} for {unit.value} (allowed suffixes: {known})"
        )
    return integer(int(match.group(1)) * suffixes[suffix], path, lo=lo)


def instant(value: object, path: str) -> int:
    """An instant: a TOML offset date-time, an ISO 8601 string with offset, or epoch seconds."""
    no_float(value, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(value, path, lo=MIN_TIME, hi=MAX_TIME - 1)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise CatalogError(path, f"not an ISO 8601 date-time: {value!r}") from None
    if not isinstance(value, datetime):
        raise CatalogError(path, f"expected a date-time with offset, got {type_name(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise CatalogError(path, "date-time needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    if value.microsecond:
        raise CatalogError(path, "date-time must be whole seconds")
    instant = epoch_seconds(value)
    if not MIN_TIME <= instant < MAX_TIME:
        raise CatalogError(path, "date-time out of range (1970 .. 2242)")
    return instant
