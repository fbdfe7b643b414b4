"""Group commit for the asyncio server: answers leave only once their records are durable.

The server handles every request that one event-loop iteration read; each appends its journal
records (`ocs.store.Store.execute` / `Store.append`) and hands the sending of its answer to
`GroupCommit.defer`. The first `defer` of an iteration schedules, with ``loop.call_soon``, the end
of the batch: it runs after the requests of this iteration, writes the batch with one write(2)
and fsyncs it in a worker thread, while the loop goes on reading the next batch. One fsync is in
flight at a time; records appended meanwhile form the next batch, synced as soon as the current
fsync returns. When a batch is durable its callbacks run, in the order they were deferred.

A callback deferred when nothing new was appended still waits for every earlier record (the
state it answers from may include them), so an answer never reveals state that could be lost.

Relaxed mode (``sync_interval_ms=N``): the batch is written with write(2) and its callbacks run
at once; an fsync runs at most every N ms. A process crash (SIGKILL, an exception) loses nothing
that was answered, since the data is in the OS page cache; a power loss or kernel crash can lose
the operations answered in the last N ms (plus the duration of one fsync).

If a write or fsync fails, the journal is broken: the callbacks of the batches not yet durable
are never run, `defer` raises `DurabilityError`, and ``on_failure`` (default: the loop's
exception handler) is told. The server should then stop: the in-memory state is ahead of the
log, and a restart recovers from the log.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

__all__ = ["DurabilityError", "Durable", "GroupCommit"]


class DurabilityError(RuntimeError):
    """The journal failed; nothing more can be made durable."""


class Durable(Protocol):
    """What `GroupCommit` needs of a journal (`ocs.journal.Journal` provides it)."""

    @property
    def written_lsn(self) -> int: ...

    @property
    def durable_lsn(self) -> int: ...

    def flush(self) -> int:
        """Hand buffered records to the OS; return the written LSN."""
        ...

    def sync(self) -> int:
        """fsync what was written (called in a worker thread); return the durable LSN."""
        ...


Callback = Callable[[], object]


class GroupCommit:
    """Releases deferred callbacks once the journal is durable past their batch.

    Create it inside the running loop. ``sync_interval_ms=None`` (default) is strict group
    commit; a number selects the relaxed mode described in the module documentation.
    """

    def __init__(
        self,
        journal: Durable,
        *,
        sync_interval_ms: float | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if sync_interval_ms is not None and sync_interval_ms < 0:
            raise ValueError("sync_interval_ms must be >= 0")
        self._journal = journal
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._interval = None if sync_interval_ms is None else sync_interval_ms / 1000.0
        self._on_failure = on_failure
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocs-fsync")
        self._pending: list[Callback] = []
        self._waiting: deque[tuple[int, list[Callback]]] = deque()
        self._scheduled = False
        self._inflight: asyncio.Future[int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_sync_start = float("-inf")
        self._failed: BaseException | None = None
        self._closed = False
        #: Batches closed (loop iterations that deferred or wrote something) and fsyncs started.
        self.batches = 0
        self.syncs = 0

    @property
    def relaxed(self) -> bool:
        return self._interval is not None

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def defer(self, callback: Callback) -> None:
        """Run ``callback`` (e.g. writing an answer) once everything journaled so far is durable
        (relaxed mode: written to the OS)."""
        if self._failed is not None:
            raise DurabilityError("the journal failed; answers are withheld") from self._failed
        if self._closed:
            raise DurabilityError("group commit is closed")
        self._pending.append(callback)
        self._schedule()

    def durable(self) -> asyncio.Future[None]:
        """A future that resolves once everything journaled so far is durable."""
        future: asyncio.Future[None] = self._loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        self.defer(resolve)
        return future

    def schedule(self) -> None:
        """Make records appended without a callback (e.g. a timer's `Expire`) go out with the
        batch of this iteration."""
        if self._failed is None and not self._closed:
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._end_batch)

    def _end_batch(self) -> None:
        self._scheduled = False
        if self._failed is not None or (self._closed and not self._pending):
            return
        try:
            written = self._journal.flush()
        except BaseException as exc:
            self._fail(exc)
            return
        callbacks, self._pending = self._pending, []
        self.batches += 1
        if self._interval is not None:
            self._run(callbacks)
            self._arm_relaxed_sync()
            return
        if callbacks:
            self._waiting.append((written, callbacks))
        self._release_durable()
        self._start_sync()

    def _start_sync(self) -> None:
        if self._inflight is not None or self._failed is not None:
            return
        if self._journal.written_lsn <= self._journal.durable_lsn:
            return
        self.syncs += 1
        self._last_sync_start = self._loop.time()
        inflight = self._loop.run_in_executor(self._executor, self._journal.sync)
        self._inflight = inflight
        inflight.add_done_callback(self._synced)

    def _synced(self, future: asyncio.Future[int]) -> None:
        self._inflight = None
        if future.cancelled():
            self._fail(DurabilityError("fsync was cancelled"))
            return
        exc = future.exception()
        if exc is not None:
            self._fail(exc)
            return
        if self._interval is not None:
            self._arm_relaxed_sync()
        else:
            self._release_durable()
            self._start_sync()

    def _arm_relaxed_sync(self) -> None:
        if self._inflight is not None or self._timer is not None or self._failed is not None:
            return
        if self._closed:  # aclose() syncs
            return
        if self._journal.written_lsn <= self._journal.durable_lsn:
            return
        assert self._interval is not None
        delay = self._last_sync_start + self._interval - self._loop.time()
        if delay <= 0:
            self._start_sync()
        else:
            self._timer = self._loop.call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        if not self._closed:
            self._start_sync()

    def _release_durable(self) -> None:
        durable = self._journal.durable_lsn
        waiting = self._waiting
        while waiting and waiting[0][0] <= durable:
            self._run(waiting.popleft()[1])

    def _run(self, callbacks: list[Callback]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # one bad callback must not withhold the others
                self._loop.call_exception_handler(
                    {"message": "group commit callback failed", "exception": exc}
                )

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        self._waiting.clear()
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_failure is not None:
            self._on_failure(exc)
        else:
            self._loop.call_exception_handler(
                {"message": "journal write or fsync failed; answers withheld", "exception": exc}
            )

    async def aclose(self) -> None:
        """Make everything durable, run the remaining callbacks, stop the worker thread.

        Raises `DurabilityError` if the journal failed."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            while self._failed is None:
                if self._inflight is not None:
                    await asyncio.wait([self._inflight])
                    continue
                if self._pending or self._scheduled:
                    self._end_batch()
                    continue
                if self._journal.written_lsn > self._journal.durable_lsn:
                    self._start_sync()
                    continue
                break
            if self._failed is not None:
                raise DurabilityError("the journal failed") from self._failed
            self._release_durable()
        finally:
            self._executor.shutdown(wait=True)
