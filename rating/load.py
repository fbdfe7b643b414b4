"""Load-modulated prices: the catalog's ``[load]`` section (docs/catalog.md, *Load bands*).

Pure and exact. The catalog names a *measure* of the load the server sees, computed by the
charging core from its own state only (``ocs.core.load``), never from a clock or the machine:

* ``"sessions"``: the open sessions (estimates left out), the requesting one included;
* ``"grants"``: the grants of the load-priced rating groups made in the last ``window`` seconds
  of input time (the journaled times of the requests), the grant being decided left out.

and *bands* above a base band (factor 1). A band is entered when the load reaches its
``enter`` and left when the load falls below its ``leave`` (``leave <= enter``: hysteresis). A
band multiplies every rate of the load-priced rating groups by its exact ``factor`` (a decimal
or a fraction string, like the catalog's other factors: never a float). ``next_band`` is the
whole rule; the core applies it each time it decides a grant.

This module stays plain Python (setup.py does not compile it); ``rating.model`` imports it for
``Catalog.load``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from rating.errors import CatalogError
from rating.money import parse_ratio
from rating.values import at as _at
from rating.values import check_keys as _keys
from rating.values import integer
from rating.values import table as _table

#: The longest window of the "grants" measure (it bounds the memory of recent grants: one
#: count per second of the window at most).
MAX_LOAD_WINDOW_S: Final = 3600
#: The most bands a catalog may define.
MAX_LOAD_BANDS: Final = 16
#: The largest band factor (it bounds every charge: `_charge_bound` of the core scales by it).
MAX_LOAD_FACTOR: Final = 100
_MAX_LOAD: Final = 2**32 - 1
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_WINDOW_RE: Final = re.compile(r"(\d+)\s*(s|min|h)?")
_WINDOW_UNITS: Final = {None: 1, "s": 1, "min": 60, "h": 3600}


class LoadMeasure(enum.Enum):
    """What the bands are measured on. The value is the catalog spelling."""

    SESSIONS = "sessions"
    GRANTS = "grants"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBand:
    name: str
    enter: int
    """The band is entered when the load is >= this."""
    leave: int
    """The band is left when the load is < this (<= ``enter``)."""
    factor: Fraction
    """Every rate of a load-priced group is multiplied by this (exact, > 0)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPolicy:
    measure: LoadMeasure
    window_s: int
    """The window of the "grants" measure, seconds (0 for "sessions")."""
    rating_groups: tuple[int, ...] | None
    """The load-priced rating groups; None: every rating group of the catalog."""
    base: str
    """The name of the band below the first (factor 1)."""
    bands: tuple[LoadBand, ...]

    def applies(self, rating_group: int) -> bool:
        return self.rating_groups is None or rating_group in self.rating_groups

    def band(self, index: int) -> tuple[str, Fraction]:
        """The name and factor of band ``index`` (0: the base band, factor 1)."""
        if index <= 0:
            return self.base, Fraction(1)
        band = self.bands[index - 1]
        return band.name, band.factor

    @property
    def max_factor(self) -> Fraction:
        """The largest factor a load-priced group is charged at (at least 1: the base)."""
        return max((b.factor for b in self.bands if b.factor > 1), default=Fraction(1))


def next_band(bands: tuple[LoadBand, ...], current: int, load: int) -> int:
    """The band (0: base, i: ``bands[i - 1]``) after band ``current`` sees ``load``.

    Up while the load reaches the next band's ``enter``; then down while it is below the
    current band's ``leave``. A load between a band's ``leave`` and ``enter`` keeps whichever
    side it is on (the hysteresis)."""
    index = max(0, min(current, len(bands)))
    while index < len(bands) and load >= bands[index].enter:
        index += 1
    while index > 0 and load < bands[index - 1].leave:
        index -= 1
    return index


def load_facts(policy: LoadPolicy | None) -> dict[str, str]:
    """The ``[load]`` section as ``ocs catalog diff`` lists a catalog (one line per fact)."""
    if policy is None:
        return {}
    groups = policy.rating_groups
    measure = policy.measure.value
    if policy.measure is LoadMeasure.GRANTS:
        measure += f" in the last {policy.window_s} s"
    facts = {
        "load measure": measure,
        "load rating groups": "all" if groups is None else ", ".join(str(g) for g in groups),
        "load base band": policy.base,
    }
    for band in policy.bands:
        facts[f"load band {band.name}"] = (
            f"enter at {band.enter}, leave below {band.leave}: x {band.factor}"
        )
    return facts


# -- parsing (called by rating.catalog.parse_catalog for the [load] table) ---------------------


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise CatalogError(
            path, "expected a name of 1 to 32 letters, digits, '_', '.' or '-' (e.g. \"busy\")"
        )
    return value


def _factor(value: object, path: str) -> Fraction:
    if isinstance(value, float):
        raise CatalogError(
            path, f'floats are not allowed (got {value!r}); write "1.5" or "3/2" instead'
        )
    if isinstance(value, int) and not isinstance(value, bool):
        factor = Fraction(value)
    elif isinstance(value, str):
        try:
            factor = parse_ratio(value)
        except ValueError as exc:
            raise CatalogError(path, str(exc)) from None
    else:
        raise CatalogError(path, 'expected an exact factor, e.g. "1.5" or "3/2"')
    if not 0 < factor <= MAX_LOAD_FACTOR:
        raise CatalogError(path, f"must be > 0 and <= {MAX_LOAD_FACTOR}, got {value!r}")
    return factor


def _window(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        match = _WINDOW_RE.fullmatch(value.strip())
        if match is None:
            raise CatalogError(path, f'not a duration: {value!r} (e.g. "5 min", "300 s")')
        seconds = int(match.group(1)) * _WINDOW_UNITS[match.group(2)]
    else:
        raise CatalogError(path, 'expected a duration, e.g. "5 min"')
    return _int(seconds, path, 1, MAX_LOAD_WINDOW_S)


def parse_load(value: object, path: str, rating_groups: Mapping[int, object]) -> LoadPolicy:
    """The ``[load]`` table of a catalog; ``rating_groups`` are the catalog's groups by id."""
    table = _table(value, path)
    _keys(table, path, ("measure", "window", "rating_groups", "base", "bands"))
    measure_name = table.get("measure", "sessions")
    try:
        measure = LoadMeasure(measure_name)
    except ValueError:
        allowed = ", ".join(m.value for m in LoadMeasure)
        raise CatalogError(
            _at(path, "measure"), f"unknown measure {measure_name!r} (allowed: {allowed})"
        ) from None
    window_s = 0
    if measure is LoadMeasure.GRANTS:
        if "window" not in table:
            raise CatalogError(_at(path, "window"), 'required with measure "grants"')
        window_s = _window(table["window"], _at(path, "window"))
    elif "window" in table:
        raise CatalogError(_at(path, "window"), 'only allowed with measure "grants"')
    groups: tuple[int, ...] | None = None
    if "rating_groups" in table:
        gp = _at(path, "rating_groups")
        raw = table["rating_groups"]
        if not isinstance(raw, list) or not raw:
            raise CatalogError(gp, "expected a non-empty array of rating group ids")
        ids: list[int] = []
        for j, item in enumerate(raw):
            rg = _int(item, f"{gp}[{j}]", 0, 2**32 - 1)
            if rg not in rating_groups:
                raise CatalogError(f"{gp}[{j}]", f"unknown rating group {rg}")
            if rg in ids:
                raise CatalogError(f"{gp}[{j}]", f"rating group {rg} listed twice")
            ids.append(rg)
        groups = tuple(ids)
    base = _name(table.get("base", "base"), _at(path, "base"))
    bp = _at(path, "bands")
    raw_bands = table.get("bands")
    if not isinstance(raw_bands, list) or not raw_bands:
        raise CatalogError(bp, "expected at least one [[load.bands]]")
    if len(raw_bands) > MAX_LOAD_BANDS:
        raise CatalogError(bp, f"at most {MAX_LOAD_BANDS} bands")
    bands: list[LoadBand] = []
    names = {base}
    for i, raw_band in enumerate(raw_bands):
        p = f"{bp}[{i}]"
        band = _table(raw_band, p)
        _keys(band, p, ("name", "enter", "leave", "factor"))
        for key in ("name", "enter", "factor"):
            if key not in band:
                raise CatalogError(_at(p, key), "missing")
        name = _name(band["name"], _at(p, "name"))
        if name in names:
            raise CatalogError(_at(p, "name"), f"band name {name!r} used twice")
        names.add(name)
        enter = _int(band["enter"], _at(p, "enter"), 1, _MAX_LOAD)
        leave = _int(band.get("leave", enter), _at(p, "leave"), 1, enter)
        if bands and enter <= bands[-1].enter:
            raise CatalogError(_at(p, "enter"), "bands must be in strictly increasing order")
        if bands and leave < bands[-1].leave:
            raise CatalogError(_at(p, "leave"), "must not be below the previous band's leave")
        bands.append(
            LoadBand(
                name=name,
                enter=enter,
                leave=leave,
                factor=_factor(band["factor"], _at(p, "factor")),
            )
        )
    return LoadPolicy(
        measure=measure, window_s=window_s, rating_groups=groups, base=base, bands=tuple(bands)
    )


def _int(value: object, path: str, lo: int, hi: int) -> int:
    return integer(value, path, lo=lo, hi=hi)
