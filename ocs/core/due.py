"""Items by the time they fall due, compactly: one list per distinct time, a heap of the times.

A heap of ``(time, item)`` tuples costs ~64 bytes per entry (the tuple, its slot, often an int
of its own). Reservations and supervision deadlines are many (two per open session) and share
few distinct times (whole seconds), so here an entry costs one list slot (8 bytes) and each
distinct time one int, one list and one heap slot.

Like a lazy heap, entries are never removed: an entry whose item was closed or rescheduled is
stale, and the owner skips it when it falls due (and calls `rebuild` when stale entries
outnumber live ones). Pure and synchronous, like the rest of the core.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class DueBuckets(Generic[T]):
    __slots__ = ("_buckets", "_count", "_times")

    def __init__(self) -> None:
        self._buckets: dict[int, list[T]] = {}
        self._times: list[int] = []  # heap of the keys of _buckets
        self._count = 0

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return self._count

    def add(self, time: int, item: T) -> None:
        bucket = self._buckets.get(time)
        if bucket is None:
            self._buckets[time] = [item]
            heapq.heappush(self._times, time)
        else:
            bucket.append(item)
        self._count += 1

    def earliest(self) -> int | None:
        """The earliest time with an entry (live or stale), or None."""
        return self._times[0] if self._times else None

    def peek_earliest(self) -> tuple[int, list[T]]:
        """The earliest time and its entries, left in place (do not change the list)."""
        time = self._times[0]
        return time, self._buckets[time]

    def pop_earliest(self) -> tuple[int, list[T]]:
        """Remove and return the earliest time and its entries, in the order they were added."""
        time = heapq.heappop(self._times)
        items = self._buckets.pop(time)
        self._count -= len(items)
        return time, items

    def rebuild(self, entries: Iterable[tuple[int, T]]) -> None:
        """Replace every entry with `entries` (the live ones)."""
        self._buckets = {}
        self._times = []
        self._count = 0
        for time, item in entries:
            self.add(time, item)


class DueSet(Generic[T]):
    """Each item at most once, under the time it falls due; removable in O(1). For items that
    are rescheduled or closed often (supervised sessions), so nothing stale piles up: ~40 bytes
    per item (a slot in the dict of its time) instead of a heap tuple's ~64-100."""

    __slots__ = ("_buckets", "_count", "_times")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[T, None]] = {}
        self._times: list[int] = []  # heap of times; a time whose bucket emptied is skipped
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, time: int, item: T) -> None:
        """Schedule `item` at `time` (it must not be scheduled already)."""
        bucket = self._buckets.get(time)
        if bucket is None:
            bucket = self._buckets[time] = {}
            heapq.heappush(self._times, time)
        bucket[item] = None
        self._count += 1

    def discard(self, time: int, item: T) -> None:
        """Unschedule `item` if it is scheduled at `time`."""
        bucket = self._buckets.get(time)
        if bucket is None or item not in bucket:
            return
        del bucket[item]
        self._count -= 1
        if not bucket:
            del self._buckets[time]

    def move(self, old: int, new: int, item: T) -> None:
        """Reschedule `item` from `old` (where it is scheduled) to `new`."""
        if old != new:
            self.discard(old, item)
            self.add(new, item)

    def earliest(self) -> int | None:
        """The earliest time with an item, or None."""
        times, buckets = self._times, self._buckets
        while times and times[0] not in buckets:
            heapq.heappop(times)
        return times[0] if times else None

    def pop_due(self, now: int) -> list[T]:
        """Remove and return every item due at `now` (time <= now), earliest time first, in the
        order they were scheduled within a time."""
        due: list[T] = []
        while True:
            time = self.earliest()
            if time is None or time > now:
                return due
            heapq.heappop(self._times)
            bucket = self._buckets.pop(time)
            self._count -= len(bucket)
            due.extend(bucket)
