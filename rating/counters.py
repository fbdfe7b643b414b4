"""Usage counters of the catalog (`[[counters]]`, docs/catalog.md *Usage counters*).

A counter adds up what one account uses across all its sessions and events, per period, in
one unit: octets, seconds or service-specific units of the rating groups it lists (all the
groups of that unit when it lists none), or the money they were charged. Its thresholds are
the values at which the server re-authorises every open session of the account (RAR). The
periods are those of `rating.periods`, in the catalog's time zone, anchored at the catalog's
`anchor` or, without one, at the account's first use of the counter.

Pure: this module only describes counters and parses their section; the values live in the
charging core (`ocs.core.counters`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from rating.errors import CatalogError
from rating.periods import PeriodKind

__all__ = [
    "LEGACY_COUNTER",
    "MAX_COUNTERS",
    "MAX_COUNTER_VALUE",
    "CounterDef",
    "CounterUnit",
    "parse_counters",
]

#: The most counters a catalog defines (each account holds at most this many values; a GET
#: answers at most this many `Usage-Counter`s, plus the legacy one).
MAX_COUNTERS: Final = 16
#: A counter's value saturates here (`protocol.limits.MAX_BALANCE`, 2^62): thresholds above
#: it are refused, so a saturated counter has crossed them all.
MAX_COUNTER_VALUE: Final = 2**62
#: The name under which `[account] usage_thresholds` (money, every rating group, never reset)
#: is shown and reported: no `[[counters]]` entry may take it.
LEGACY_COUNTER: Final = "account"
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEYS: Final = ("name", "unit", "rating_groups", "period", "anchor", "thresholds")


class CounterUnit(Enum):
    """What a counter adds up; the values are the catalog's words (a rating group's unit, or
    money)."""

    MONEY = "money"
    OCTETS = "octets"
    SECONDS = "seconds"
    UNITS = "units"


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterDef:
    name: str
    unit: CounterUnit
    rating_groups: tuple[int, ...]
    """The rating groups counted; () = every rating group (of the counter's unit)."""
    period: PeriodKind
    anchor_ms: int | None
    """The instant the periods are anchored at; None: each account's first use."""
    thresholds: tuple[int, ...]
    """Strictly increasing values (units, or micro-units for money) at which the account's
    sessions are re-authorised, once per crossing per period."""

    def counts(self, rating_group: int, unit: str) -> bool:
        """Whether usage of `rating_group`, whose unit is `unit` (a `rating.Unit` value),
        counts here (money counts for every unit)."""
        if self.rating_groups and rating_group not in self.rating_groups:
            return False
        return self.unit is CounterUnit.MONEY or self.unit.value == unit

    @property
    def identity(self) -> tuple[object, ...]:
        """What the values counted so far depend on: a catalog that changes any of it starts
        the counter again from zero (thresholds may change without that)."""
        return (self.unit, self.rating_groups, self.period, self.anchor_ms)


def parse_counters(
    value: object,
    path: str,
    group_units: Mapping[int, str],
    *,
    quantity: Callable[[object, str, str], int],
    money: Callable[[object, str], int],
    instant: Callable[[object, str], int],
) -> tuple[CounterDef, ...]:
    """The `[[counters]]` array of a catalog. `group_units` maps each rating group to its
    unit's value; `quantity`, `money` and `instant` are the catalog's own readers of those
    kinds of values (they raise `CatalogError` with the path)."""
    if not isinstance(value, list):
        raise CatalogError(path, "expected an array of tables ([[counters]])")
    if len(value) > MAX_COUNTERS:
        raise CatalogError(path, f"at most {MAX_COUNTERS} counters")
    out: list[CounterDef] = []
    names: set[str] = set()
    for i, raw in enumerate(value):
        counter = _counter(raw, f"{path}[{i}]", group_units, quantity, money, instant)
        if counter.name in names:
            raise CatalogError(f"{path}[{i}].name", f"duplicate counter {counter.name!r}")
        names.add(counter.name)
        out.append(counter)
    return tuple(out)


def _counter(
    raw: object,
    path: str,
    group_units: Mapping[int, str],
    quantity: Callable[[object, str, str], int],
    money: Callable[[object, str], int],
    instant: Callable[[object, str], int],
) -> CounterDef:
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise CatalogError(path, "expected a table")
    for key in raw:
        if key not in _KEYS:
            raise CatalogError(f"{path}.{key}", f"unknown key (allowed: {', '.join(_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CatalogError(
            f"{path}.name", "required: 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
        )
    if name == LEGACY_COUNTER:
        raise CatalogError(
            f"{path}.name", f"{LEGACY_COUNTER!r} is the counter of [account] usage_thresholds"
        )
    unit_word = raw.get("unit")
    try:
        unit = CounterUnit(unit_word)
    except ValueError:
        words = ", ".join(f'"{u.value}"' for u in CounterUnit)
        raise CatalogError(f"{path}.unit", f"required, one of {words}") from None
    groups: list[int] = []
    listed = raw.get("rating_groups", [])
    if not isinstance(listed, list):
        raise CatalogError(f"{path}.rating_groups", "expected an array of rating group ids")
    for j, rg in enumerate(listed):
        where = f"{path}.rating_groups[{j}]"
        if isinstance(rg, bool) or not isinstance(rg, int) or rg not in group_units:
            raise CatalogError(where, f"unknown rating group {rg!r}")
        if rg in groups:
            raise CatalogError(where, f"rating group {rg} listed twice")
        if unit is not CounterUnit.MONEY and group_units[rg] != unit.value:
            raise CatalogError(
                where, f"rating group {rg} counts {group_units[rg]}, the counter {unit.value}"
            )
        groups.append(rg)
    period_word = raw.get("period", PeriodKind.MONTHLY.value)
    try:
        period = PeriodKind(period_word)
    except ValueError:
        words = ", ".join(f'"{p.value}"' for p in PeriodKind)
        raise CatalogError(f"{path}.period", f"one of {words}") from None
    anchor_ms = None
    if "anchor" in raw:
        anchor_ms = instant(raw["anchor"], f"{path}.anchor") * 1000
    thresholds: list[int] = []
    listed_t = raw.get("thresholds", [])
    if not isinstance(listed_t, list):
        raise CatalogError(f"{path}.thresholds", "expected an array")
    for j, item in enumerate(listed_t):
        where = f"{path}.thresholds[{j}]"
        if unit is CounterUnit.MONEY:
            amount = money(item, where)
        else:
            amount = quantity(item, where, unit.value)
        if amount <= 0:
            raise CatalogError(where, "must be positive")
        if amount > MAX_COUNTER_VALUE:
            raise CatalogError(where, f"must be at most {MAX_COUNTER_VALUE}")
        if thresholds and amount <= thresholds[-1]:
            raise CatalogError(where, "thresholds must be strictly increasing")
        thresholds.append(amount)
    return CounterDef(
        name=name,
        unit=unit,
        rating_groups=tuple(groups),
        period=period,
        anchor_ms=anchor_ms,
        thresholds=tuple(thresholds),
    )
