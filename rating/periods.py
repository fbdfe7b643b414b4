"""Recurring periods: the boundaries of "monthly on the subscription day", weekly, daily, once.

Pure: instants are int milliseconds since the Unix epoch, computed in a catalog's time zone
(`zoneinfo` name); no clock is read. Offers renew, group packages are apportioned and usage
counters reset at these boundaries (docs/catalog.md, *Periods*).

The rule, one for every user:

- A period is anchored at an instant (`anchor_ms`: a subscription, a membership, the first use
  of a counter). Its boundaries fall at **00:00 local time** of the anchor's calendar day in the
  time zone, then every day (`DAILY`), every 7 days (`WEEKLY`, so on the anchor's weekday) or
  every month on the anchor's day of the month (`MONTHLY`); in a month without that day (the
  31st in April, the 29th to 31st in February) the boundary falls on the month's last day, and
  the next month returns to the anchor's day. `ONCE` has no boundary: it lasts for ever.
- Boundary k (k >= 1) is k days, weeks or months after the anchor's day. So the first period
  runs from the anchor instant itself to the next boundary (a subscription at 15:30 on the 10th
  renews at 00:00 on the 10th of the next month): what it lacks of a whole period is the hours
  of the first day, never more.
- Local 00:00 that does not exist or exists twice (a change of offset at midnight) is resolved
  as `zoneinfo` does with ``fold=0``: the same instant every time, so replay agrees.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["PeriodKind", "boundary", "next_boundary", "period_bounds", "period_index"]


class PeriodKind(enum.Enum):
    """How often a period recurs; the values are the catalog's words."""

    MONTHLY = "monthly"
    WEEKLY = "weekly"
    DAILY = "daily"
    ONCE = "once"


_MS: Final = 1000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Boundaries beyond this many periods are not computed (100 years of days): an anchor and an
# instant further apart are outside the domain of time the core accepts anyway.
_MAX_INDEX: Final = 36_600


def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)  # ZoneInfo keeps one instance per key


def _local_day(anchor_ms: int, tz: str) -> tuple[int, int, int]:
    local = (_EPOCH + timedelta(milliseconds=anchor_ms)).astimezone(_zone(tz))
    return local.year, local.month, local.day


def _midnight_ms(year: int, month: int, day: int, tz: str) -> int:
    local = datetime(year, month, day, tzinfo=_zone(tz))
    return (local - _EPOCH) // timedelta(milliseconds=1)


def boundary(kind: PeriodKind, anchor_ms: int, index: int, tz: str) -> int | None:
    """The instant of boundary `index` (1 = the end of the first period); None for ONCE.

    Boundary 0 is the anchor's local midnight (the nominal start of the first period, which
    begins at the anchor itself).
    """
    if index < 0:
        raise ValueError(f"boundary index must be >= 0, not {index}")
    if kind is PeriodKind.ONCE:
        return None
    year, month, day = _local_day(anchor_ms, tz)
    if kind is PeriodKind.MONTHLY:
        months = year * 12 + (month - 1) + index
        y, m = divmod(months, 12)
        following = datetime(y + (m + 1) // 12, (m + 1) % 12 + 1, 1)
        last = (following - timedelta(days=1)).day
        return _midnight_ms(y, m + 1, min(day, last), tz)
    step = 1 if kind is PeriodKind.DAILY else 7
    d = datetime(year, month, day) + timedelta(days=step * index)
    return _midnight_ms(d.year, d.month, d.day, tz)


def period_index(kind: PeriodKind, anchor_ms: int, at_ms: int, tz: str) -> int:
    """The number of the period holding `at_ms` (0 = the first, from the anchor on).

    Period i runs from boundary i (the anchor itself for i = 0) to boundary i + 1, the end
    excluded. An instant before the anchor is in period 0; ONCE is always period 0.
    """
    if kind is PeriodKind.ONCE or at_ms < anchor_ms:
        return 0
    year, month, day = _local_day(anchor_ms, tz)
    ay, am, ad = _local_day(at_ms, tz)
    if kind is PeriodKind.MONTHLY:
        guess = (ay * 12 + am) - (year * 12 + month)
    else:
        days = (datetime(ay, am, ad) - datetime(year, month, day)).days
        guess = days if kind is PeriodKind.DAILY else days // 7
    guess = max(0, min(guess, _MAX_INDEX))
    # The guess is right or one too high (before local midnight / the clamped day): settle it.
    while guess > 0 and _at(kind, anchor_ms, guess, tz) > at_ms:
        guess -= 1
    while guess < _MAX_INDEX and _at(kind, anchor_ms, guess + 1, tz) <= at_ms:
        guess += 1
    return guess


def _at(kind: PeriodKind, anchor_ms: int, index: int, tz: str) -> int:
    at = boundary(kind, anchor_ms, index, tz)
    assert at is not None
    return at


def period_bounds(kind: PeriodKind, anchor_ms: int, at_ms: int, tz: str) -> tuple[int, int | None]:
    """(start, end) of the period holding `at_ms`: start included, end excluded (None: never).

    The first period starts at the anchor itself, later ones at their boundary.
    """
    if kind is PeriodKind.ONCE:
        return anchor_ms, None
    index = period_index(kind, anchor_ms, at_ms, tz)
    start = anchor_ms if index == 0 else _at(kind, anchor_ms, index, tz)
    return start, _at(kind, anchor_ms, index + 1, tz)


def next_boundary(kind: PeriodKind, anchor_ms: int, after_ms: int, tz: str) -> int | None:
    """The first boundary strictly after `after_ms` (None for ONCE)."""
    return period_bounds(kind, anchor_ms, after_ms, tz)[1]
