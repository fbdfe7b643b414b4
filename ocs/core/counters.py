"""Usage counters across sessions: each account's values of the catalog's `[[counters]]`.

Deterministic, like the rest of the core: every call carries the time of its input (int ms).
A value belongs to one period of its counter (`rating.periods`, in the catalog's time zone):
usage reported at an instant of a later period starts that period from zero. The reset is
lazy (on the next use, or computed when the value is read) but dated at the boundary: the
new period starts at the boundary itself, whenever the next use comes, so replay, a GET and
a live run agree without any TICK (docs/charging.md, *Usage counters*).

A threshold `t` is crossed by the report that takes the value from below `t` to `t` or more.
Within a period a value only grows (refunds and administrative debits are not usage), so each
threshold is crossed at most once per period; every open session of the account is then
re-authorised (RAR), the RAR listing the counters crossed (`Usage-Counter`).

State: per account, per counter name, a `CounterValue` (kept in snapshots as plain tuples,
`CoreState.counters`). Accounts that never used a counter hold nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Final

from ocs.core.charging_types import Action, ActionKind, Session
from protocol.codes import CounterUnit as WireCounterUnit
from protocol.messages import UsageCounter
from rating import Catalog, RatingGroup
from rating.counters import LEGACY_COUNTER, MAX_COUNTER_VALUE, CounterDef, CounterUnit
from rating.periods import PeriodKind, boundary, next_boundary, period_bounds

__all__ = [
    "CounterValue",
    "PeriodCache",
    "UsageCounters",
    "counter_entry",
    "counter_views",
    "legacy_counter",
    "notify",
]

_MS: Final = 1000
_WIRE_UNIT: Final = {
    CounterUnit.MONEY: WireCounterUnit.MONEY,
    CounterUnit.OCTETS: WireCounterUnit.OCTETS,
    CounterUnit.SECONDS: WireCounterUnit.SECONDS,
    CounterUnit.UNITS: WireCounterUnit.UNITS,
}

#: A snapshot's entry: (account id, counter name, anchor ms, period start ms, period end ms
#: or None, value).
SnapshotEntry = tuple[str, str, int, int, int | None, int]


@dataclass(slots=True)
class CounterValue:
    """One account's value of one counter: over [start_ms, end_ms) (end None: never reset)."""

    name: str  # the counter's (the catalog's string object: shared by every account)
    anchor_ms: int  # the anchor of its periods: the catalog's, or the account's first use
    start_ms: int
    end_ms: int | None
    value: int


def _find(values: list[CounterValue], name: str) -> CounterValue | None:
    for value in values:
        if value.name == name:
            return value
    return None


class PeriodCache:
    """`rating.periods.period_bounds` for counters, with what many accounts share computed
    once: the local day holding an instant (a daily counter's period is that day, from its
    anchor if later), and the current period of a counter anchored in the catalog (the same
    for every account). Zone arithmetic costs tens of µs; a period's bounds are needed at
    every first use and every reset. Returns exactly what `period_bounds` returns
    (tests/charging/test_counters.py checks it)."""

    __slots__ = ("_days", "_shared")

    def __init__(self) -> None:
        self._days: dict[str, tuple[int, int]] = {}  # zone -> [start, end) of a local day
        self._shared: dict[tuple[CounterDef, str], tuple[int, int]] = {}  # by (counter, zone)

    def bounds(
        self, counter: CounterDef, anchor_ms: int, at_ms: int, tz: str
    ) -> tuple[int, int | None]:
        """The period of `counter` anchored at `anchor_ms` holding `at_ms` (ONCE: from the
        anchor, for ever)."""
        kind = counter.period
        if kind is PeriodKind.ONCE or at_ms < anchor_ms:
            return period_bounds(kind, anchor_ms, at_ms, tz)
        if kind is PeriodKind.DAILY:
            day = self._days.get(tz)
            if day is None or not day[0] <= at_ms < day[1]:
                midnight = boundary(PeriodKind.DAILY, at_ms, 0, tz)
                end = next_boundary(PeriodKind.DAILY, at_ms, at_ms, tz)
                assert midnight is not None and end is not None
                day = self._days[tz] = (midnight, end)
            return max(anchor_ms, day[0]), day[1]
        if anchor_ms == counter.anchor_ms:
            shared = self._shared.get((counter, tz))
            if shared is not None and shared[0] <= at_ms < shared[1]:
                return shared
            start, end = period_bounds(kind, anchor_ms, at_ms, tz)
            if end is not None:
                self._shared[counter, tz] = (start, end)
            return start, end
        return period_bounds(kind, anchor_ms, at_ms, tz)


def counter_entry(
    counter: CounterDef, value: CounterValue | None, threshold: int | None = None
) -> UsageCounter:
    """The `Usage-Counter` of a value (None: not used yet). Times in whole seconds (a
    boundary is a local midnight; a first period starts at the first use, rounded down)."""
    if threshold is None and value is not None:
        crossed = [t for t in counter.thresholds if t <= value.value]
        threshold = crossed[-1] if crossed else None
    return UsageCounter(
        counter_name=counter.name,
        counter_unit=_WIRE_UNIT[counter.unit],
        counter_value=value.value if value is not None else 0,
        start_time=value.start_ms // _MS if value is not None else None,
        stop_time=value.end_ms // _MS if value is not None and value.end_ms is not None else None,
        counter_threshold=threshold,
    )


def legacy_counter(
    charged: int, thresholds: tuple[int, ...], crossed: int | None = None
) -> UsageCounter:
    """`[account] usage_thresholds` as a `Usage-Counter` named `account`: money charged to
    the account since it was made (never reset), the highest threshold it reached."""
    if crossed is None:
        reached = [t for t in thresholds if t <= charged]
        crossed = reached[-1] if reached else None
    return UsageCounter(
        counter_name=LEGACY_COUNTER,
        counter_unit=WireCounterUnit.MONEY,
        counter_value=charged,
        counter_threshold=crossed,
    )


class UsageCounters:
    """The values of every account's usage counters."""

    __slots__ = ("_by_group", "_for", "_periods", "_values")

    def __init__(self) -> None:
        # account id -> counter name -> its value in its current (or last used) period
        # (a list, not a dict: an account holds a few values, and a list costs ~150 B less)
        self._values: dict[str, list[CounterValue]] = {}
        # per rating group, the counters that count it and whether each counts money: for the
        # catalog's counters `_for` (the same tuple object while that catalog is in force)
        self._by_group: dict[int, tuple[tuple[CounterDef, bool], ...]] = {}
        self._for: tuple[CounterDef, ...] | None = None
        self._periods = PeriodCache()

    def __len__(self) -> int:
        """How many (account, counter) values are held."""
        return sum(len(v) for v in self._values.values())

    def _counting(
        self, counters: tuple[CounterDef, ...], rg: RatingGroup
    ) -> tuple[tuple[CounterDef, bool], ...]:
        if self._for is not counters:
            self._for = counters
            self._by_group = {}
        found = self._by_group.get(rg.id)
        if found is None:
            unit = rg.unit.value
            found = self._by_group[rg.id] = tuple(
                (c, c.unit is CounterUnit.MONEY) for c in counters if c.counts(rg.id, unit)
            )
        return found

    def add(
        self,
        counters: tuple[CounterDef, ...],
        tz: str,
        account_id: str,
        rg: RatingGroup,
        units: int,
        charge: int,
        now_ms: int,
    ) -> list[UsageCounter]:
        """Count `units` of `rg` charged `charge` micro-units, used by the account at
        `now_ms`, in the catalog's `counters`; the counters whose thresholds this crossed,
        each with the highest threshold it crossed."""
        crossed: list[UsageCounter] = []
        mine: list[CounterValue] | None = None
        for counter, money in self._counting(counters, rg):
            amount = charge if money else units
            if amount <= 0:
                continue
            if mine is None:
                mine = self._values.get(account_id)
                if mine is None:
                    mine = self._values[account_id] = []
            value = _find(mine, counter.name)
            if value is None:
                anchor = counter.anchor_ms if counter.anchor_ms is not None else now_ms
                start, end = self._periods.bounds(counter, anchor, now_ms, tz)
                value = CounterValue(counter.name, anchor, start, end, 0)
                mine.append(value)
            elif value.end_ms is not None and now_ms >= value.end_ms:
                # a later period: it starts from zero, at its boundary
                value.start_ms, value.end_ms = self._periods.bounds(
                    counter, value.anchor_ms, now_ms, tz
                )
                value.value = 0
            before = value.value
            after = before + amount
            if after > MAX_COUNTER_VALUE:
                after = MAX_COUNTER_VALUE
            value.value = after
            thresholds = counter.thresholds
            # the thresholds t with before < t <= after: those from bisect(before) on, up to
            # bisect(after) excluded
            reached = bisect_right(thresholds, after)
            if reached > bisect_right(thresholds, before):
                crossed.append(counter_entry(counter, value, thresholds[reached - 1]))
        return crossed

    def current(
        self, counter: CounterDef, tz: str, account_id: str, now_ms: int
    ) -> CounterValue | None:
        """The account's value of `counter` in the period holding `now_ms` (a copy: zero in a
        period after the one it last counted, or never used); None if the account never used
        a counter anchored at first use (it has no period yet)."""
        mine = self._values.get(account_id)
        value = _find(mine, counter.name) if mine is not None else None
        if value is None:
            if counter.anchor_ms is None:  # its periods start at the first use
                return None
            start, end = self._periods.bounds(counter, counter.anchor_ms, now_ms, tz)
            return CounterValue(counter.name, counter.anchor_ms, start, end, 0)
        if value.end_ms is not None and now_ms >= value.end_ms:
            start, end = self._periods.bounds(counter, value.anchor_ms, now_ms, tz)
            return CounterValue(counter.name, value.anchor_ms, start, end, 0)
        return CounterValue(
            counter.name, value.anchor_ms, value.start_ms, value.end_ms, value.value
        )

    def views(
        self, counters: tuple[CounterDef, ...], tz: str, account_id: str, now_ms: int
    ) -> list[UsageCounter]:
        """Every counter of the catalog for the account at `now_ms`, in catalog order."""
        return [
            counter_entry(counter, self.current(counter, tz, account_id, now_ms))
            for counter in counters
        ]

    def catalog_changed(
        self, old: tuple[CounterDef, ...], new: tuple[CounterDef, ...], *, zone_changed: bool
    ) -> None:
        """A new catalog: the values of counters it removes, or redefines (unit, rating
        groups, period, anchor; every counter if the catalog's time zone changes), are
        dropped; a counter whose thresholds alone change keeps its value (a threshold already
        passed is not crossed again)."""
        kept = {c.name: c.identity for c in new}
        gone = {c.name for c in old if zone_changed or kept.get(c.name) != c.identity}
        if not gone:
            return
        for account_id in list(self._values):
            mine = [v for v in self._values[account_id] if v.name not in gone]
            if mine:
                self._values[account_id] = mine
            else:
                del self._values[account_id]

    def forget(self, account_id: str) -> None:
        """The account is closed: its values go with it."""
        self._values.pop(account_id, None)

    def snapshot(self) -> list[SnapshotEntry]:
        return [
            (account_id, v.name, v.anchor_ms, v.start_ms, v.end_ms, v.value)
            for account_id, mine in self._values.items()
            for v in mine
        ]

    def restore(self, entries: list[SnapshotEntry]) -> None:
        values: dict[str, list[CounterValue]] = {}
        names: dict[str, str] = {}  # one string object per counter name, as live
        for account_id, name, anchor_ms, start_ms, end_ms, value in entries:
            name = names.setdefault(name, name)
            values.setdefault(account_id, []).append(
                CounterValue(name, anchor_ms, start_ms, end_ms, value)
            )
        self._values = values


def notify(actions: list[Action], sessions: list[Session], crossed: list[UsageCounter]) -> None:
    """Queue a RAR (reason "usage threshold") to each of `sessions` (an account's open
    sessions) naming the counters `crossed`: one RAR per session per input, a crossing later
    in the same input joining the RAR queued for that session (`actions`: the core's, drained
    after each input)."""
    queued = {
        a.session_id: i
        for i, a in enumerate(actions)
        if a.kind is ActionKind.RAR and a.usage_counters
    }
    names = {c.counter_name for c in crossed}
    for session in sessions:
        at = queued.get(session.session_id)
        if at is not None:
            earlier = actions[at]
            kept = tuple(c for c in earlier.usage_counters if c.counter_name not in names)
            actions[at] = replace(earlier, usage_counters=(*kept, *crossed))
            continue
        actions.append(
            Action(
                kind=ActionKind.RAR,
                session_id=session.session_id,
                origin_host=session.origin_host,
                rating_groups=tuple(session.grants),
                reason="usage threshold",
                usage_counters=tuple(crossed),
            )
        )


def counter_views(
    counters: UsageCounters, catalog: Catalog, usage: dict[str, int], account_id: str, now_ms: int
) -> tuple[UsageCounter, ...] | None:
    """The account's `Usage-Counter`s at `now_ms` for GET: the legacy "account" counter
    (`usage`, the money charged per account) when the catalog has `[account]
    usage_thresholds`, then every `[[counters]]` entry in catalog order; None when the
    catalog has neither."""
    views: list[UsageCounter] = []
    thresholds = catalog.account.usage_thresholds
    if thresholds:
        views.append(legacy_counter(usage.get(account_id, 0), thresholds))
    views += counters.views(catalog.counters, catalog.timezone, account_id, now_ms)
    return tuple(views) or None
