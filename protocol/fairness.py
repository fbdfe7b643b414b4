"""Fairness between peers: the requests a server has read wait in one queue per peer and are
served one per peer in turn (round robin: deficit round robin with a quantum of one request).

Sans-IO and generic: the server (`ocs.edge.server.Server`) keys the queues by the peer's
Origin-Host (a peer with many connections has one queue, one turn), pushes each request it
reads, and takes a batch at a time (`take`) to hand to its handlers. A peer that sends a
thousand requests at once and a peer that sends one are served alternately: the busy peer's
backlog waits, it does not delay the others by more than one request per turn, and it is still
served (slower), never dropped. What bounds a queue is the peer's outstanding-request budget
(`protocol.connection.PendingBudget`): a queued request is outstanding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class RoundRobin(Generic[K, T]):
    """FIFO queues by key, served one item per key in turn. The rotation goes on across
    `take` calls: a key served last in one batch is not served first in the next, and a key
    that had nothing queued joins at the back when it has again."""

    __slots__ = ("_count", "_queues")

    def __init__(self) -> None:
        # key -> its queue, in turn order (a dict keeps insertion order: the front is next)
        self._queues: dict[K, deque[T]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def queued(self, key: K) -> int:
        """How many items `key` has waiting."""
        queue = self._queues.get(key)
        return len(queue) if queue is not None else 0

    def push(self, key: K, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(item)
        self._count += 1

    def take(self, limit: int) -> list[T]:
        """Up to `limit` items, one from each key in turn, each key's in the order pushed."""
        taken: list[T] = []
        queues = self._queues
        while queues and len(taken) < limit:
            key = next(iter(queues))
            queue = queues.pop(key)
            taken.append(queue.popleft())
            if queue:
                queues[key] = queue  # to the back of the turn
        self._count -= len(taken)
        return taken

    def discard(self, key: K, drop: Callable[[T], bool]) -> int:
        """Remove `key`'s items for which `drop` is true (keeping the others' order); returns
        how many."""
        queue = self._queues.get(key)
        if queue is None:
            return 0
        kept = deque(item for item in queue if not drop(item))
        dropped = len(queue) - len(kept)
        if kept:
            self._queues[key] = kept  # its place in the turn is kept
        else:
            del self._queues[key]
        self._count -= dropped
        return dropped
