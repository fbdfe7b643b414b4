"""Group commit for the asyncio server: answers leave only once their records are durable.

The server handles every request that one event-loop iteration read; each appends its journal
records (`ocs.edge.store.Store.execute` / `Store.append`) and hands the sending of its answer to
`GroupCommit.defer`. The first `defer` of an iteration schedules, with ``loop.call_soon``, the end
of the batch: it runs after the requests of this iteration, writes the batch with one write(2)
and hands the fsync to a dedicated, long-lived thread, while the loop goes on reading the next
batch. One fsync is in flight at a time; records appended meanwhile form the next batch, synced
as soon as the current fsync returns. When a batch is durable its callbacks run, in the order
they were deferred, between ``before_release`` and ``after_release`` (the server uses these to
write the answers of the batch at once, one write per connection).

The fsync thread costs one wake-up each way per fsync (a `queue.SimpleQueue` to it, one
``call_soon_threadsafe`` back): no executor, no futures. At moderate rates most batches hold one
request, so this edge cost is paid per request.

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
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from ocs.edge.metrics import Metrics

__all__ = ["DurabilityError", "Durable", "GroupCommit"]


class DurabilityError(RuntimeError):
    """The journal failed; nothing more can be made durable."""


class Durable(Protocol):
    """What `GroupCommit` needs of a journal (`ocs.edge.journal.Journal` provides it)."""

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

_STOP: Final = object()


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
        before_release: Callable[[], object] | None = None,
        after_release: Callable[[], object] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if sync_interval_ms is not None and sync_interval_ms < 0:
            raise ValueError("sync_interval_ms must be >= 0")
        self._journal = journal
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._interval = None if sync_interval_ms is None else sync_interval_ms / 1000.0
        self._on_failure = on_failure
        self._before_release = before_release
        self._after_release = after_release
        # fsync durations and records per fsync; the thread hands its duration to the loop
        self._metrics = metrics
        self._pending: list[Callback] = []
        self._waiting: deque[tuple[int, list[Callback]]] = deque()
        self._scheduled = False
        self._inflight = False  # an fsync is running in the thread
        self._idle_waiters: list[asyncio.Future[None]] = []  # aclose: until the fsync returns
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
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
            if self._before_release is not None:
                self._before_release()
            try:
                self._run(callbacks)
            finally:
                if self._after_release is not None:
                    self._after_release()
            self._arm_relaxed_sync()
            return
        if callbacks:
            self._waiting.append((written, callbacks))
        self._release_durable()
        self._start_sync()

    def _start_sync(self) -> None:
        if self._inflight or self._failed is not None:
            return
        if self._journal.written_lsn <= self._journal.durable_lsn:
            return
        self.syncs += 1
        if self._metrics is not None:
            self._metrics.batch_records.observe(
                self._journal.written_lsn - self._journal.durable_lsn
            )
        self._last_sync_start = self._loop.time()
        if self._thread is None:
            self._thread = threading.Thread(target=self._sync_thread, name="ocs-fsync", daemon=True)
            self._thread.start()
        self._inflight = True
        self._requests.put(None)

    def _sync_thread(self) -> None:
        """The fsync thread: one `Durable.sync` per request, the outcome posted to the loop."""
        requests, sync, post = self._requests, self._journal.sync, self._loop.call_soon_threadsafe
        clock = time.perf_counter
        while requests.get() is not _STOP:
            error: BaseException | None = None
            started = clock()
            try:
                sync()
            except BaseException as exc:
                error = exc
            try:
                post(self._synced, error, clock() - started)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _synced(self, error: BaseException | None, seconds: float = 0.0) -> None:
        self._inflight = False
        if self._metrics is not None and error is None:
            self._metrics.fsync_s.observe(seconds)
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if error is not None:
            self._fail(error)
            return
        if self._interval is not None:
            self._arm_relaxed_sync()
        else:
            self._release_durable()
            self._start_sync()

    def _arm_relaxed_sync(self) -> None:
        if self._inflight or self._timer is not None or self._failed is not None:
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
        if not waiting or waiting[0][0] > durable:
            return
        if self._before_release is not None:
            self._before_release()
        try:
            while waiting and waiting[0][0] <= durable:
                self._run(waiting.popleft()[1])
        finally:
            if self._after_release is not None:
                self._after_release()

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
        """Make everything durable, run the remaining callbacks, stop the fsync thread.

        Raises `DurabilityError` if the journal failed."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            while self._failed is None:
                if self._inflight:
                    waiter: asyncio.Future[None] = self._loop.create_future()
                    self._idle_waiters.append(waiter)
                    await waiter
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
            self._stop_thread()

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._requests.put(_STOP)
        if not self._inflight:  # it is waiting for a request: it ends at once
            thread.join()
