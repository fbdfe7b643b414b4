"""Compiled tariffs: the rates of a rating group and when each is in force.

A rating group's price at an instant depends on its *state* (also called its class here):
which time-of-day / day-of-week period is in force (local time in the group's time zone) and
which promotion is running. Each state has its rates (one per volume tier); states with
identical rates share a *price key*, and a tariff change is an instant where the price key
changes. The catalog loader builds one ``Tariff`` per rating group at
load time, with every rate precomputed as an exact fraction of micro-units per unit.

Finding the class at an instant needs the local time, which means zoneinfo. To keep that off the
hot path the timeline is cut into UTC days ("buckets"); the class changes inside a bucket are
computed once, on first use, and memoised. A lookup is then a dict access and a bisection.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Final
from zoneinfo import ZoneInfo

from rating.money import div_ceil, div_floor

DAY: Final = 86_400
WEEK: Final = 7 * DAY
MIN_TIME: Final = 0
"""Earliest instant the engine rates (1970-01-01T00:00:00Z)."""
MAX_TIME: Final = 2**33
"""Instants must be below this (2242-03-16): far inside what datetime/zoneinfo handle."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_CACHE_LIMIT = 8192  # not Final (mypyc would inline it): tests lower it
_QUIET_SPAN: Final = 15 * DAY
"""After this long inside one promotion state, every weekly period state has been seen."""
_DST_SAMPLE: Final = 3 * 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """A price in force: ``num / den`` micro-units per unit (exact, lowest terms).

    ``block`` is the catalog's pricing block (e.g. 1 MiB), kept for display; ``label`` says where
    the rate comes from (``"base"``, a period name, ``"promotion <name>"``, tier ...).
    """

    num: int
    den: int
    block: int
    tier: int
    period: str | None
    promotion: str | None
    label: str

    @property
    def per_unit(self) -> Fraction:
        """Micro-units per unit, exact."""
        return Fraction(self.num, self.den)

    @property
    def per_block(self) -> Fraction:
        """Micro-units per pricing block, exact (may be fractional after a factor)."""
        return Fraction(self.num * self.block, self.den)

    def dearer_than(self, other: Rate) -> bool:
        return self.num * other.den > other.num * self.den

    def cumulative(self, position: int) -> int:
        """Money for billed positions [0, position) at this rate, rounded up (``div_ceil``)."""
        return div_ceil(position * self.num, self.den)


def epoch_seconds(moment: datetime) -> int:
    """Seconds since the Unix epoch of an aware ``moment``, rounded down (towards minus
    infinity) to a whole second."""
    return (moment - _EPOCH) // _SECOND


def utc_of_local(tz: ZoneInfo, day: date, seconds: int, fold: int) -> int:
    """The UTC instant of local wall time ``day`` + ``seconds`` (``fold`` picks the first (0)
    or second (1) occurrence of an ambiguous time; a non-existent time maps by the offset
    before (fold 0) or after (fold 1) the gap)."""
    naive = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
    return epoch_seconds(naive.replace(tzinfo=tz, fold=fold))


class Timeline:
    """Which tariff class is in force at each instant, with memoised per-day change lists."""

    __slots__ = (
        "_buckets",
        "_changes",
        "_class_of",
        "_constant",
        "_key",
        "_promo_bounds",
        "_promos",
        "_tz",
        "_weekly",
    )

    def __init__(
        self,
        *,
        tz: ZoneInfo,
        weekly: tuple[tuple[tuple[int, int, int], ...], ...],
        promos: tuple[tuple[int, int, int], ...],
        class_of: dict[tuple[int, int], int],
        price_key: tuple[int, ...],
    ) -> None:
        """``weekly[d]``: (start s, end s, period number >= 1) of local weekday ``d`` (Monday
        0), sorted, non-overlapping. ``promos``: (start, end, promotion number >= 1), sorted,
        non-overlapping. ``class_of[(period number or 0, promotion number or 0)]``: its state id
        (an index into the tariff's rates). ``price_key[state]``: equal for states with equal
        rates; a tariff change is a change of price key."""
        self._tz = tz
        self._weekly = weekly
        self._promos = promos
        self._class_of = class_of
        self._key = price_key
        self._promo_bounds: tuple[int, ...] = tuple(sorted({b for p in promos for b in p[:2]}))
        self._buckets: dict[int, tuple[list[int], list[int]]] = {}
        has_periods = any(weekly)
        self._constant: int | None = None
        self._changes: tuple[list[int], list[int]] | None = None
        if len({price_key[state] for state in class_of.values()}) == 1:
            self._constant = class_of[(0, 0)]
        elif not has_periods:
            self._changes = self._promo_changes()

    # -- state ---------------------------------------------------------------------------

    def _promo_at(self, t: int) -> int:
        for start, end, number in self._promos:
            if start <= t < end:
                return number
            if start > t:
                break
        return 0

    def _period_at(self, t: int) -> int:
        local = datetime.fromtimestamp(t, self._tz)
        seconds = local.hour * 3600 + local.minute * 60 + local.second
        for start, end, number in self._weekly[local.weekday()]:
            if start <= seconds < end:
                return number
        return 0

    def _state_class(self, t: int) -> int:
        period = self._period_at(t) if self._changes is None else 0
        return self._class_of[(period, self._promo_at(t))]

    def _promo_changes(self) -> tuple[list[int], list[int]]:
        starts = [MIN_TIME]
        classes = [self._class_of[(0, self._promo_at(MIN_TIME))]]
        for bound in self._promo_bounds:
            cls = self._class_of[(0, self._promo_at(bound))]
            if self._key[cls] != self._key[classes[-1]]:
                starts.append(bound)
                classes.append(cls)
        return starts, classes

    # -- buckets -------------------------------------------------------------------------

    def _bucket(self, k: int) -> tuple[list[int], list[int]]:
        bucket = self._buckets.get(k)
        if bucket is None:
            if len(self._buckets) >= _CACHE_LIMIT:
                self._buckets.clear()
            bucket = self._build_bucket(k)
            self._buckets[k] = bucket
        return bucket

    def _build_bucket(self, k: int) -> tuple[list[int], list[int]]:
        b0 = k * DAY
        b1 = b0 + DAY
        candidates = {b0}
        first_day = date(1970, 1, 1) + timedelta(days=k)
        for delta in range(-2, 3):
            day = first_day + timedelta(days=delta)
            for start, end, _number in self._weekly[day.weekday()]:
                for seconds in (start, end):
                    for fold in (0, 1):
                        instant = utc_of_local(self._tz, day, seconds, fold)
                        if b0 < instant < b1:
                            candidates.add(instant)
        candidates.update(self._offset_changes(b0, b1))
        candidates.update(b for b in self._promo_bounds if b0 < b < b1)
        starts: list[int] = []
        classes: list[int] = []
        for instant in sorted(candidates):
            cls = self._state_class(instant)
            if not classes or self._key[cls] != self._key[classes[-1]]:
                starts.append(instant)
                classes.append(cls)
        return starts, classes

    def _offset_changes(self, b0: int, b1: int) -> list[int]:
        """Instants in (b0, b1) where the zone's UTC offset changes (DST transitions)."""
        found: list[int] = []
        prev_t = b0
        prev_off = datetime.fromtimestamp(b0, self._tz).utcoffset()
        t = b0
        while t < b1:
            t = min(t + _DST_SAMPLE, b1)
            off = datetime.fromtimestamp(t, self._tz).utcoffset()
            if off != prev_off:
                lo, hi = prev_t, t  # offset(lo) == prev_off, offset(hi) != prev_off
                while hi - lo > 1:
                    mid = div_floor(lo + hi, 2)
                    if datetime.fromtimestamp(mid, self._tz).utcoffset() == prev_off:
                        lo = mid
                    else:
                        hi = mid
                found.append(hi)
            prev_t, prev_off = t, off
        return found

    # -- queries -------------------------------------------------------------------------

    def price_key(self, state: int) -> int:
        """Equal for states with equal rates."""
        return self._key[state]

    def class_at(self, t: int) -> int:
        """The tariff class in force at instant ``t``."""
        if self._constant is not None:
            return self._constant
        if self._changes is not None:
            starts, classes = self._changes
        else:
            starts, classes = self._bucket(div_floor(t, DAY))
        return classes[bisect_right(starts, t) - 1]

    def _next_promo_bound(self, t: int) -> int | None:
        i = bisect_right(self._promo_bounds, t)
        return self._promo_bounds[i] if i < len(self._promo_bounds) else None

    def _last_promo_bound(self, t: int) -> int | None:
        i = bisect_right(self._promo_bounds, t)
        return self._promo_bounds[i - 1] if i > 0 else None

    def next_change(self, t0: int, t1: int) -> int | None:
        """First instant in the open interval (t0, t1) where the price key differs from the one
        in force at t0, or None."""
        if self._constant is not None or t1 - t0 <= 1:
            return None
        if self._changes is not None:
            starts, classes = self._changes
            i = bisect_right(starts, t0)
            if i < len(starts) and starts[i] < t1:
                return starts[i]
            return None
        k = div_floor(t0, DAY)
        starts, classes = self._bucket(k)
        i = bisect_right(starts, t0)
        key = self._key
        current = key[classes[i - 1]]
        segment_start = t0
        while True:
            for j in range(i, len(starts)):
                s = starts[j]
                if s >= t1:
                    return None
                if key[classes[j]] != current:
                    return s
            k += 1
            if k * DAY >= t1:
                return None
            last = self._last_promo_bound(k * DAY)
            if last is not None and last > segment_start:
                segment_start = last
            if k * DAY - segment_start >= _QUIET_SPAN:
                # The weekly pattern has shown no change for two weeks: only a promotion
                # boundary can change the class from here on.
                bound = self._next_promo_bound(k * DAY)
                if bound is None or bound >= t1:
                    return None
                k = div_floor(bound, DAY)
                segment_start = bound
            starts, classes = self._bucket(k)
            i = 0

    def classes_in(self, t0: int, t1: int) -> set[int]:
        """States in force at some instant of [t0, t1) (just the one at t0 if t1 <= t0); of
        consecutive states with equal rates only the first may be listed."""
        if self._constant is not None:
            return {self._constant}
        if self._changes is not None:
            starts, classes = self._changes
            i = bisect_right(starts, t0)
            found = {classes[i - 1]}
            while i < len(starts) and starts[i] < t1:
                found.add(classes[i])
                i += 1
            return found
        k = div_floor(t0, DAY)
        starts, classes = self._bucket(k)
        i = bisect_right(starts, t0)
        found = {classes[i - 1]}
        segment_start = t0
        while True:
            for j in range(i, len(starts)):
                if starts[j] >= t1:
                    return found
                found.add(classes[j])
            k += 1
            if k * DAY >= t1:
                return found
            last = self._last_promo_bound(k * DAY)
            if last is not None and last > segment_start:
                segment_start = last
            if k * DAY - segment_start >= _QUIET_SPAN:
                # Two weeks in one promotion state: every weekly state has been seen.
                bound = self._next_promo_bound(k * DAY)
                if bound is None or bound >= t1:
                    return found
                found.add(self.class_at(bound))
                k = div_floor(bound, DAY)
                segment_start = bound
            starts, classes = self._bucket(k)
            i = 0


class Tariff:
    """The compiled prices of one rating group: rates per class and tier, and the timeline."""

    __slots__ = ("_worst_cache", "class_rates", "tier_starts", "timeline")

    def __init__(
        self,
        *,
        tier_starts: tuple[int, ...],
        class_rates: tuple[tuple[Rate, ...], ...],
        timeline: Timeline,
    ) -> None:
        self.tier_starts = tier_starts
        self.class_rates = class_rates
        self.timeline = timeline
        self._worst_cache: dict[frozenset[int], tuple[Rate, ...]] = {}

    def rates_at(self, t: int) -> tuple[Rate, ...]:
        return self.class_rates[self.timeline.class_at(t)]

    def worst_rates(self, t0: int, t1: int) -> tuple[Rate, ...]:
        """Per tier, the dearest rate in force at any instant of [t0, t1)."""
        classes = frozenset(self.timeline.classes_in(t0, t1))
        cached = self._worst_cache.get(classes)
        if cached is None:
            if len(classes) == 1:
                cached = self.class_rates[next(iter(classes))]
            else:
                worst: list[Rate] = []
                for tier in range(len(self.tier_starts)):
                    best: Rate | None = None
                    for cls in sorted(classes):
                        rate = self.class_rates[cls][tier]
                        if best is None or rate.dearer_than(best):
                            best = rate
                    assert best is not None
                    worst.append(best)
                cached = tuple(worst)
            if len(self._worst_cache) >= _CACHE_LIMIT:
                self._worst_cache.clear()
            self._worst_cache[classes] = cached
        return cached
