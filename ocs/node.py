"""The running node, built from the edge and the core: server, charging core, journal, group
commit, CDR files, timers (`Node.open`).

Per request (on the event loop): the core handles it synchronously; unless it was a duplicate
answered from the cache, the request itself is appended to the journal (an `Input`; refusals
and reads too, so that replay rebuilds the duplicate cache exactly); the answer is handed to
group commit and leaves only once that record is durable. CDRs the request produced wait,
with the LSN of their record, until the journal is durable past it; only then are they
written to the CDR files, so a CDR file never runs ahead of the journal. Recovery (`recover`,
called by `Node.open`) replays the journal through the same core, which regenerates every CDR
with the same sequence number; those the CDR files lack are written then.

Inputs are atomic: an input the core raises on (a request, a tick, a catalog) was not journaled
yet, so `CoreComponent.rebuild` puts the core back as the journal says it is (the latest
snapshot plus the inputs journaled since), its CDRs and RAR/ASR are dropped, the failure is
logged once (`input.failed`) and a request is answered 5012 DIAMETER_UNABLE_TO_COMPLY.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec
import structlog

from ocs.core.charging import (
    DEFAULT_REFUND_WINDOW_S,
    REQUEST_KINDS,
    Action,
    ActionKind,
    ChargingCore,
    Input,
    InputKind,
    Result,
    Settings,
    decode_input,
    encode_input,
    iso_ms,
    settings_input,
)
from ocs.core.history import DEFAULT_HISTORY_LIMIT
from ocs.core.ledger import Ledger
from ocs.edge.audit import log_admin
from ocs.edge.catalog_files import catalog_text
from ocs.edge.cdr_files import CdrError, CdrWriter, read_lines
from ocs.edge.group_commit import DurabilityError, GroupCommit
from ocs.edge.http import HttpListener
from ocs.edge.journal import MARK_NAME, JournalCorruptError, JournalError
from ocs.edge.metrics import Checkpoints, Metrics
from ocs.edge.server import PeerHandle, RequestContext, Server, ServerConfig
from ocs.edge.store import KIND_LEDGER, Checkpoint, ForkedCheckpoint, JournalReplayError, Store
from ocs.figures import metrics_listener
from ocs.startup import ExitStatus, log_startup_failed
from protocol.codes import AccountOperation, CommandCode, ReAuthRequestType, ResultCode
from protocol.errors import ProtocolError
from protocol.messages import AMA, AMR, ASR, CCR, RAR, Answer
from protocol.peer import PeerState
from rating import CatalogError

log = structlog.get_logger("ocs.node")

_T = TypeVar("_T")

KIND_CORE: Final = 2
TICK_SECONDS: Final = 1.0
CDR_SYNC_SECONDS: Final = 1.0
# after a tick the core failed on (rolled back), the next one is tried this much later,
# twice as late after each further failure, at most TICK_RETRY_MAX_MS
TICK_RETRY_MS: Final = 60_000
TICK_RETRY_MAX_MS: Final = 3_600_000
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(dict[int, bytes])
_ERROR_CHARS: Final = 200  # an exception's text in the log (it may quote a peer's values)


class RecoveryError(RuntimeError):
    """The data directory is inconsistent (CDR files ahead of the journal, or behind a
    snapshot): refuse to start rather than number records twice."""


class ReplayError(RecoveryError):
    """A journaled input that the core cannot apply in replay (damage the checksums missed, a
    bug, a journal of another build). Live, every input the core failed on was rolled back and
    never journaled, so this cannot come from a request: recovery stops here rather than skip
    the record (skipping it would replay a history that never happened)."""

    def __init__(self, *, lsn: int | None, kind: str, reason: str) -> None:
        where = f"journal record {lsn}" if lsn is not None else "a journal record"
        super().__init__(f"{where} ({kind}) cannot be applied: {reason}")
        self.lsn = lsn
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    data_dir: Path = Path("ocs-data")
    catalog: Path | None = None
    relaxed_sync_ms: float | None = None  # None: strict group commit (fsync before answers)
    # journal records between snapshots: bounds the replay after a crash (~10-15k records/s)
    checkpoint_records: int = 100_000
    cdr_rotate_bytes: int = 64 << 20
    cdr_rotate_seconds: float = 3600.0
    min_tcc_s: int = 120
    # how far back a refund may draw on DIRECT_DEBITING (WIRE.md 5.4); journaled when changed
    refund_window_s: int = DEFAULT_REFUND_WINDOW_S
    # movements kept per account (ocs/core/history.py); journaled when changed
    history_limit: int = DEFAULT_HISTORY_LIMIT
    # capture checkpoints in a forked child (the loop keeps serving) rather than on the loop
    fork_checkpoints: bool = True
    # HOST:PORT of the HTTP listener for metrics, readiness and status (None: no metrics)
    metrics_listen: tuple[str, int] | None = None


class CoreComponent:
    """The core as a journal component (its inputs are records of kind `KIND_CORE`), and what
    makes an input atomic: `rebuild` puts the core and its ledger back exactly as they were
    after the last journaled input.

    The state is a function of the journal: the latest snapshot plus the inputs journaled
    since. So the component keeps those inputs (their encoded bytes, the journal's records
    without the kind byte; `journaled` adds one, `forget_through` drops those a newer snapshot
    covers), and an input the core raised on (never journaled: the edge journals an input only
    once the core has handled it) is undone by restoring the snapshot and replaying them. That
    costs nothing per input but a reference to bytes that exist anyway, and memory: about
    the size of the journal since the last checkpoint (docs/durability.md, *Atomic inputs*).
    """

    def __init__(self, core: ChargingCore) -> None:
        """`core` as built, on a fresh ledger, before any input: that state is the base of a
        rebuild while no snapshot exists."""
        self.core = core
        self._initial = (core.ledger.snapshot(), core.snapshot())
        # the journaled inputs after the base (the latest snapshot), oldest first: the last
        # one is the journal's last record, so the i-th of n has LSN last_lsn - n + 1 + i
        self._inputs: deque[bytes] = deque()

    def snapshot(self) -> bytes:
        return self.core.snapshot()

    def restore(self, data: bytes) -> None:
        self.core.restore(data)
        self._inputs.clear()

    def replay(self, body: bytes, lsn: int | None = None) -> None:
        """Re-apply a journaled input. What it asked the network to do (RAR, ASR) was sent, or
        not, before the crash, and no connection is routed yet: those outputs are discarded;
        its CDRs are kept for `recover` to compare with the CDR files. An input the core
        raises on is `ReplayError` (with its LSN): recovery must stop, never skip it."""
        core = self.core
        try:
            core.apply(decode_input(body))
        except Exception as exc:
            raise ReplayError(lsn=lsn, kind=_input_kind(body), reason=_describe(exc)) from exc
        core.take_actions()
        core.take_closed()
        self._inputs.append(body)

    def journaled(self, body: bytes) -> None:
        """`body` (an encoded `Input`) was applied and journaled as the last record."""
        self._inputs.append(body)

    def forget_through(self, lsn: int, last_lsn: int) -> None:
        """A snapshot covering the records up to `lsn` is in place (the journal's last record
        is `last_lsn`): the inputs it covers are no longer needed for a rebuild."""
        inputs = self._inputs
        for _ in range(len(inputs) - (last_lsn - lsn)):
            inputs.popleft()

    @property
    def retained(self) -> int:
        """How many journaled inputs are kept for a rebuild."""
        return len(self._inputs)

    def rebuild(self, snapshot: tuple[int, bytes] | None, last_lsn: int) -> int:
        """Undo whatever the core did since the last journaled input (record `last_lsn`): its
        outputs are discarded, the ledger and the core are restored from `snapshot` (the
        latest one, as (lsn, data); None: no snapshot yet) and the inputs journaled since are
        replayed. Returns how many were replayed. Raises `RecoveryError` if the inputs
        after the snapshot are not all kept (cannot happen while `forget_through` is only
        called for installed snapshots)."""
        core = self.core
        ledger = core.ledger
        core.take_cdrs()  # what the failed input produced: its CDRs, actions, closed sessions
        core.take_actions()
        core.take_closed()
        inputs = self._inputs
        base_lsn = 0 if snapshot is None else snapshot[0]
        surplus = len(inputs) - (last_lsn - base_lsn)
        if surplus < 0:
            raise RecoveryError(
                f"cannot rebuild: {last_lsn - base_lsn} inputs since the snapshot at "
                f"{base_lsn}, {len(inputs)} kept"
            )
        if snapshot is None:
            ledger_state, core_state = self._initial
        else:
            states = _SNAPSHOT_DECODER.decode(snapshot[1])
            ledger_state, core_state = states[KIND_LEDGER], states[KIND_CORE]
        ledger.restore(ledger_state)
        core.restore(core_state)
        core.catalog_journaled = snapshot is not None  # as `recover` finds it
        for _ in range(surplus):
            inputs.popleft()
        for body in inputs:
            core.apply(decode_input(body))
            core.take_cdrs()  # produced (and kept) when the input was first applied
            core.take_actions()
            core.take_closed()
        return len(inputs)


class Recovered(NamedTuple):
    """The durable state of a data directory, recovered and locked (`recover`)."""

    store: Store
    core: ChargingCore
    component: CoreComponent
    cdrs: CdrWriter
    # the text of ``NodeConfig.catalog``, validated (without one, the demo catalog's): put in
    # force if the data directory holds none yet, or if a file is given and differs from it
    catalog_text: str
    cdrs_on_disk: int  # the last CDR sequence number the files held before recovery
    seconds: float


def recover(config: NodeConfig, *, origin_host: str, origin_realm: str) -> Recovered:
    """Lock the data directory, load the snapshot, replay the journal through a new core, and
    bring the CDR files up to the journal (the records they lack are written again).

    A torn tail the journal cut (records never acknowledged) is logged as
    `recovery.torn_tail`. Any failure is logged once as `startup.failed` (critical, no
    traceback) and raised again: for a journal record that is damaged or cannot be replayed,
    the event names its ``segment``, byte ``offset``, ``lsn``, ``kind`` and ``reason``."""
    try:
        text = catalog_text(config.catalog)
        ledger = Ledger()
        core = ChargingCore(
            ledger,
            text,
            origin_host=origin_host,
            origin_realm=origin_realm,
            min_tcc_s=config.min_tcc_s,
        )
        component = CoreComponent(core)
        started = time.perf_counter()
        store = Store.open(config.data_dir, ledger=ledger, components={KIND_CORE: component})
    except Exception as exc:  # e.g. DataDirLockedError: another server has the directory
        _startup_failed(config, exc)
        raise
    try:
        _log_recovered_journal(store)
        regenerated = core.take_cdrs()
        cdrs = CdrWriter(
            config.data_dir / "cdr",
            rotate_bytes=config.cdr_rotate_bytes,
            rotate_seconds=config.cdr_rotate_seconds,
        )
        on_disk = cdrs.open()
        _compare_cdrs(config.data_dir / "cdr", regenerated, on_disk)
        _reconcile_cdrs(cdrs, on_disk, core.cdr_seq, regenerated)
        cdrs.commit()
    except BaseException as exc:
        _startup_failed(config, exc)
        store.close()
        raise
    return Recovered(
        store=store,
        core=core,
        component=component,
        cdrs=cdrs,
        catalog_text=text,
        cdrs_on_disk=on_disk,
        seconds=time.perf_counter() - started,
    )


def record_kind(payload: bytes) -> str:
    """What a journal record (kind byte + body) is, in words: ``core REQUEST
    ACCOUNT_MANAGEMENT``, ``core TICK``, ``kind 3``, ``core (undecodable input)``."""
    if not payload:
        return "empty record"
    if payload[0] != KIND_CORE:
        return f"kind {payload[0]}"
    try:
        record = decode_input(payload[1:])
    except Exception:  # damaged, or written by another build
        return "core (undecodable input)"
    if record.kind not in REQUEST_KINDS:
        return f"core {record.kind.name}"
    try:
        command = CommandCode(record.command).name
    except ValueError:
        command = f"command {record.command}"
    return f"core {record.kind.name} {command}"


def _startup_failed(config: NodeConfig, exc: BaseException) -> None:
    """The one `startup.failed` event of a failed start (`ocs.startup.log_startup_failed`:
    ``cause``, ``error``, ``exit_status``, ``data_dir``)."""
    fields: dict[str, object] = {}
    if isinstance(exc, JournalReplayError):
        fields.update(
            segment=exc.segment,
            offset=exc.offset,
            lsn=exc.lsn,
            kind=record_kind(exc.payload),
            reason=exc.reason,
        )
    elif isinstance(exc, JournalCorruptError):
        if exc.segment is not None and exc.segment.endswith(".snap"):
            kind = "snapshot"
        elif exc.segment == MARK_NAME:
            kind = "durability mark"
        else:
            kind = "unknown (the record is damaged or missing)"
        fields.update(
            segment=exc.segment, offset=exc.offset, lsn=exc.lsn, kind=kind, reason=exc.reason
        )
    log_startup_failed(log, exc, data_dir=config.data_dir, catalog=config.catalog, **fields)


def _log_recovered_journal(store: Store) -> None:
    recovery = store.recovery
    torn = recovery.torn_tail
    if torn is not None:
        log.warning(
            "recovery.torn_tail",
            segment=torn.segment,
            offset=torn.offset,
            dropped_bytes=torn.dropped_bytes,
            lsn=torn.lsn,
            reason=torn.reason,
            detail="a write that was never made durable (so never acknowledged) was cut off",
        )
    if recovery.durable_mark is None and recovery.last_lsn > recovery.snapshot_lsn:
        log.warning(
            "recovery.no_durability_mark",
            detail="journal without a durability mark (an older build, or the file was "
            "removed): a damaged last record could not be told from a torn write; the mark "
            "is written from now on",
        )


class Node:
    """The running node: server, charging core, journal, group commit, CDR files, timers.

    Built whole by `Node.open` (recovery first, then the server with its handlers and its
    commit gate); then `start` listens, `stop` answers what was read and says DPR, `close`
    writes every CDR, checkpoints and releases the data directory."""

    def __init__(
        self, server_config: ServerConfig, config: NodeConfig, recovered: Recovered
    ) -> None:
        """Use `Node.open`; this needs a running event loop (group commit)."""
        self.config = config
        self.store = recovered.store
        self.core = recovered.core
        self.component = recovered.component
        self.cdrs = recovered.cdrs
        self._pending_cdrs: deque[tuple[int, int, bytes]] = deque()  # (lsn, seq, line)
        # the connection each open session last used: where its RAR/ASR go (section 7)
        self.routes: dict[str, PeerHandle] = {}
        self._timer: asyncio.Task[None] | None = None
        self._io: asyncio.Future[Any] | None = None  # file I/O of the timers, in a worker
        self._checkpointing = False
        # held while a checkpoint is put in place (a worker thread) and while a rebuild reads
        # the latest snapshot (the loop): the rebuild sees one snapshot, whole
        self._snapshot_lock = threading.Lock()
        self._tick_after_ms = 0  # no tick before this (a failed tick is retried later)
        self._tick_retry_ms = TICK_RETRY_MS
        # a rebuild happened: checkpoint at the next tick, so that the next one replays little
        self._checkpoint_soon = False
        # bulk (ocs/core/bulk.py): journal records since the last checkpoint count as many
        # records as the accounts of their CREATE_BULKs, which replay as that many CREATEs
        self._bulk_extra_records = 0
        self._failed = False  # `_fatal` ran: the process is stopping so that a restart recovers
        self.stats = {
            "requests": 0,
            "journaled": 0,
            "failed": 0,
            "cdrs": 0,
            "rar": 0,
            "asr": 0,
        }
        # load-modulated prices: the band in force last logged (`load.band`)
        self._load_band = self.core.load_pricing.band_name()
        # observability (docs/operations.md, "Metrics and status"): the request path's
        # counters, kept only with a metrics listener; the rest is read when asked
        self.metrics = Metrics() if config.metrics_listen is not None else None
        self.ready = False  # listening, and not stopping
        self.started_at_s = time.time()
        self.address = ""  # HOST:PORT of the peer port, once listening
        self.checkpoints = Checkpoints(last_lsn=self.store.recovery.snapshot_lsn or None)
        self.cdrs_at_start = self.cdrs.written_sequence
        self.http: HttpListener | None = None
        self.commit = GroupCommit(
            self.store.journal,
            sync_interval_ms=config.relaxed_sync_ms,
            on_failure=self._journal_failed,
            # the answers of a durable batch leave at once, one write per connection
            before_release=self._hold_flushes,
            after_release=self._release_flushes,
            metrics=self.metrics,
        )
        self.server = Server(
            server_config,
            handlers={
                CommandCode.CREDIT_CONTROL: self._ccr,
                CommandCode.ACCOUNT_MANAGEMENT: self._amr,
            },
            gate=self.commit,
            metrics=self.metrics,
        )

    @classmethod
    async def open(cls, server_config: ServerConfig, config: NodeConfig) -> Node:
        """Recover the data directory (`recover`), build the node, put the configured catalog
        in force if it is not already, start the timers. Not listening yet: `start`."""
        recovered = recover(
            config,
            origin_host=server_config.origin_host,
            origin_realm=server_config.origin_realm,
        )
        node = cls(server_config, config, recovered)
        core, rec = node.core, node.store.recovery
        log.info(
            "recovery.done",
            snapshot_lsn=rec.snapshot_lsn,
            replayed=rec.replayed,
            sessions=len(core.sessions),
            accounts=core.ledger.account_count,
            cdr_sequence=core.cdr_seq,
            cdrs_rewritten=max(0, core.cdr_seq - recovered.cdrs_on_disk),
            seconds=round(recovered.seconds, 3),
        )
        if not node._catalog_at_start(recovered.catalog_text):
            failed = RecoveryError(
                "the catalog file could not be put in force (input.failed says why)"
            )
            _startup_failed(config, failed)
            await node.close()
            raise failed
        settings = Settings(
            refund_window_s=config.refund_window_s, history_limit=config.history_limit
        )
        in_force = (core.refund_window_s, core.history.limit)
        if in_force != (settings.refund_window_s, settings.history_limit) and not (
            node._put_settings(settings)
        ):
            failed = RecoveryError("the settings could not be put in force (input.failed says why)")
            _startup_failed(config, failed)
            await node.close()
            raise failed
        node._timer = asyncio.get_running_loop().create_task(node._timers())
        return node

    async def start(self) -> None:
        """Listen for peers (and for scrapes, with a metrics listener: first, so that a port
        already taken fails before any peer is accepted)."""
        if self.config.metrics_listen is not None:
            self.http = metrics_listener(self, *self.config.metrics_listen)
            await self.http.start()
        await self.server.start()
        self.address = f"{self.server.config.host}:{self.server.port}"
        self.ready = True

    async def stop(self) -> None:
        """Stop serving: the answers that group commit still holds (their records are being
        fsynced) go out first, then the server stops accepting, answers what was read, says
        DPR and closes (`Server.stop`). Readiness says 503 from here on."""
        self.ready = False
        await self.drain()
        await self.server.stop()

    def _hold_flushes(self) -> None:
        self.server.hold_flushes()

    def _release_flushes(self) -> None:
        self.server.release_flushes()

    def _catalog_at_start(self, text: str) -> bool:
        """Decide the catalog in force after recovery; False if the core failed on the one
        to put in force (then nothing changed).

        The catalog in force is durable state (in the journal and the snapshots): without
        ``--catalog`` it stays. ``--catalog`` replaces it only when its text differs (one
        CATALOG input, open grants treated as a SIGHUP reload treats them: RAR for those it
        prices differently). A data directory that holds no catalog yet (a new one) gets the
        file, or without ``--catalog`` the built-in demo catalog, with a warning."""
        core = self.core
        path = self.config.catalog
        if core.catalog_journaled and (path is None or core.catalog_text == text):
            _log_catalog("catalog.in_force", core, source="data directory", file=path)
            return True
        previous = _catalog_fields(core) if core.catalog_journaled else None
        if not self._put_catalog(text):
            return False
        if path is None:
            _log_catalog(
                "catalog.demo",
                core,
                "warning",
                source="built-in demo",
                detail="a new data directory started without --catalog: the demo prices are "
                "in force (and stay, restart after restart) until one is given with --catalog",
            )
        elif previous is None:
            _log_catalog("catalog.in_force", core, source="--catalog", file=path)
        else:
            _log_catalog(
                "catalog.replaced",
                core,
                source="--catalog",
                file=path,
                sessions=len(core.sessions),
                **{f"previous_{key}": value for key, value in previous.items()},
            )
        return True

    def reload_catalog(self) -> bool:
        """Read the catalog file again (SIGHUP). A changed catalog is journaled as an input
        and put in force; sessions whose open grants it prices differently get RAR (WIRE.md
        section 7). An invalid file is refused and the catalog in force stays, and so it does
        for a server started without ``--catalog`` (there is no file to read)."""
        core = self.core
        if self.config.catalog is None:
            log.error(
                "catalog.reload_refused",
                error="started without --catalog: no file to reload, the catalog in force stays",
            )
            return False
        try:
            text = catalog_text(self.config.catalog)
        except CatalogError as exc:
            log.error("catalog.reload_refused", error=str(exc))
            return False
        if text == core.catalog_text:
            log.info("catalog.unchanged", name=core.catalog.name, digest=core.catalog_digest)
            return False
        previous = _catalog_fields(core)
        if not self._put_catalog(text):  # the core failed on it: the catalog in force stays
            return False
        _log_catalog(
            "catalog.reloaded",
            core,
            file=self.config.catalog,
            sessions=len(core.sessions),
            **{f"previous_{key}": value for key, value in previous.items()},
        )
        return True

    def _put_catalog(self, text: str) -> bool:
        """Put a catalog in force and journal it as an input (at start-up and on SIGHUP);
        False if the core failed on it (then nothing changed)."""
        return self._apply(Input(kind=InputKind.CATALOG, now_ms=_now_ms(), body=text.encode()))

    def tick(self, now_ms: int) -> bool:
        """Session supervision and reservation expiry at `now_ms` (the timer's, each second):
        applied and journaled as a `TICK` input when something is due, wholly or not at all.
        True if one was applied. A tick the core failed on is rolled back, and the next is
        tried `TICK_RETRY_MS` later, then twice as late after each further failure (up to
        `TICK_RETRY_MAX_MS`): a failure that repeats costs a rebuild now and then, not one a
        second."""
        if now_ms < self._tick_after_ms or not self.core.due(now_ms):
            return False
        if self._apply(Input(kind=InputKind.TICK, now_ms=now_ms)):
            self._tick_after_ms, self._tick_retry_ms = 0, TICK_RETRY_MS
            return True
        self._tick_after_ms = now_ms + self._tick_retry_ms
        self._tick_retry_ms = min(2 * self._tick_retry_ms, TICK_RETRY_MAX_MS)
        return False

    def _apply(self, record: Input) -> bool:
        """Apply a tick or a catalog, then journal it; False if the core failed on it (then
        it was rolled back and is not journaled)."""
        try:
            self.core.apply(record)
        except Exception as exc:
            self._input_failed(exc, kind=record.kind.name.lower())
            return False
        self._after_core(self._journal_input(record))
        self.commit.schedule()
        return True

    def _put_settings(self, settings: Settings) -> bool:
        """Put core settings in force and journal them as an input (at start-up, when the
        configuration differs from the recovered state: replay never reads the configuration);
        False if the core failed on them (then nothing changed)."""
        return self._apply(settings_input(_now_ms(), settings))

    async def drain(self) -> None:
        """Wait until everything journaled so far is durable and its answers were released."""
        if self.commit.failed is None:
            with contextlib.suppress(DurabilityError):
                await self.commit.durable()

    async def close(self) -> None:
        """Answer what is pending, write every CDR, checkpoint, release the directory.

        The checkpoint is skipped unless every CDR is durable in the CDR files (it would compact
        away the journal records that are the only other source of the missing ones), and
        after a journal failure; the next start then recovers from the journal."""
        self.ready = False
        if self.http is not None:
            await self.http.stop()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        io = self._io
        if io is not None:  # a checkpoint or CDR fsync in a worker: let it finish
            await asyncio.wait([io])
            if not io.cancelled() and io.exception() is not None:
                log.warning("timers.io_failed", error=repr(io.exception()))
        store, core, cdrs, commit = self.store, self.core, self.cdrs, self.commit
        try:
            await commit.durable()
            await commit.aclose()
            self._move_cdrs()
            if self._stopping_cleanly():
                self._rotate_cdrs("shutdown")  # a clean stop hands every CDR off
            cdrs.close()
            if store.records_since_checkpoint > 0:
                if cdrs.durable_sequence >= core.cdr_seq:
                    store.checkpoint()
                else:
                    log.warning("checkpoint.skipped", reason="CDRs not durable")
        finally:
            cdrs.close()
            store.close()
        log.info("app.closed", **self.stats, batches=commit.batches, fsyncs=commit.syncs)

    def _stopping_cleanly(self) -> bool:
        """Neither the journal nor the CDR files failed: the CDR file may be rotated."""
        return self.commit.failed is None and self.cdrs.broken is None and not self._failed

    def _journal_failed(self, exc: BaseException) -> None:
        self._fatal("journal.failed", exc)

    def _locked(self, install: Callable[[_T], None], checkpoint: _T) -> None:
        """Put a checkpoint in place (in a worker thread) while no rebuild reads it."""
        with self._snapshot_lock:
            install(checkpoint)

    def _fatal(self, event: str, exc: BaseException) -> None:
        """The journal or the CDR files failed (or a timer crashed): the state in memory can no
        longer be made durable, so stop; a restart recovers from the journal."""
        self._failed = True
        log.critical(event, error=repr(exc))
        asyncio.get_running_loop().call_soon(_exit_now)

    # --- handlers ------------------------------------------------------------------------------

    def _ccr(self, ctx: RequestContext, message: CCR) -> bytes:
        core = self.core
        origin = _peer_identity(ctx)
        try:
            result = core.handle_ccr(ctx.now_ms, origin, ctx.header.end_to_end, message)
        except Exception as exc:
            raise self._request_failed(exc, ctx, origin, message.session_id) from None
        self._record(ctx, origin, result, CommandCode.CREDIT_CONTROL)
        # the connection the owner last used (events, refused INITIALs and other peers'
        # requests leave no route)
        if core.session_owner(message.session_id) == origin:
            self.routes[message.session_id] = ctx.peer
        return result.body

    def _amr(self, ctx: RequestContext, message: AMR) -> bytes | Callable[[], AMA]:
        origin = _peer_identity(ctx)
        if message.account_operation is AccountOperation.CDR_ROTATE:
            return partial(self._rotation_answer, message, origin, ctx.header.end_to_end)
        try:
            result = self.core.handle_amr(ctx.now_ms, origin, ctx.header.end_to_end, message)
        except Exception as exc:
            raise self._request_failed(exc, ctx, origin, None) from None
        self._record(ctx, origin, result, CommandCode.ACCOUNT_MANAGEMENT)
        if message.bulk_account and not result.duplicate:  # bulk: its weight for checkpoints
            self._bulk_extra_records += len(message.bulk_account) - 1
        # audit (ocs/edge/audit.py): logged once the journal holds the request
        with contextlib.suppress(DurabilityError):
            self.commit.defer(
                partial(
                    log_admin,
                    message,
                    peer=origin,
                    end_to_end=ctx.header.end_to_end,
                    answer=result.answer,
                    duplicate=result.duplicate,
                )
            )
        return result.body

    def _request_failed(
        self, exc: Exception, ctx: RequestContext, origin: str, session_id: str | None
    ) -> ProtocolError:
        """The core raised on a request: roll it back (nothing was journaled, nothing is
        remembered, so a retransmission is processed again) and answer 5012."""
        self._input_failed(
            exc,
            kind="request",
            command=ctx.header.command_code,
            peer=origin,
            session=session_id,
            end_to_end=ctx.header.end_to_end,
        )
        return ProtocolError(
            ResultCode.UNABLE_TO_COMPLY,
            "the request could not be processed; nothing was applied",
            session_id=session_id,
        )

    def _input_failed(self, exc: Exception, **fields: Any) -> None:
        """The core raised on an input it had not finished (never journaled): put the core and
        the ledger back as they were after the last journaled input (`CoreComponent.rebuild`,
        from the latest snapshot) and log it, once. If even that fails, the state in memory
        is unknown: stop; a restart recovers from the journal."""
        started = time.perf_counter()
        journal = self.store.journal
        try:
            with self._snapshot_lock:
                snapshot = journal.load_snapshot()
            replayed = self.component.rebuild(snapshot, journal.last_lsn)
        except Exception as failure:
            log.error("input.failed", **fields, error=_describe(exc))
            self._fatal("rollback.failed", failure)
            return
        self.stats["failed"] += 1
        self._checkpoint_soon = True
        log.error(
            "input.failed",
            **fields,
            error=_describe(exc),
            replayed=replayed,
            rollback_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _record(self, ctx: RequestContext, origin: str, result: Result, command: int) -> None:
        self.stats["requests"] += 1
        if (metrics := self.metrics) is not None:
            metrics.answers[ctx.header.command_code, result.answer.result_code] += 1
        lsn = None
        if not result.duplicate:
            lsn = self._journal_input(
                Input(
                    kind=InputKind.REQUEST,
                    now_ms=ctx.now_ms,
                    origin_host=origin,
                    end_to_end=ctx.header.end_to_end,
                    command=command,
                    body=ctx.body,
                )
            )
        self._after_core(lsn)

    def _journal_input(self, record: Input) -> int:
        self.stats["journaled"] += 1
        body = encode_input(record)
        lsn = self.store.append(KIND_CORE, body)
        self.component.journaled(body)
        return lsn

    def _after_core(self, lsn: int | None) -> None:
        """Collect what the core produced: CDRs (held until their record is durable) and
        server-initiated requests (sent once the input that caused them is durable)."""
        core = self.core
        cdrs = core.take_cdrs()
        if cdrs:
            assert lsn is not None, "only journaled inputs produce CDRs"
            self._pending_cdrs.extend((lsn, seq, line) for seq, line in cdrs)
            self.stats["cdrs"] += len(cdrs)
            self.commit.defer(self._move_cdrs)
        for sid in core.take_closed():
            self.routes.pop(sid, None)
        actions = core.take_actions()
        if actions:
            self.commit.defer(lambda: self._send_actions(actions))
        band = core.load_pricing.band_name()  # load-modulated prices: a band change is logged
        if band != self._load_band:
            log.info("load.band", band=band, previous=self._load_band)
            self._load_band = band

    def _move_cdrs(self) -> None:
        """CDRs whose journal record is durable (fsynced, in relaxed mode too) go to the CDR
        files, one write per batch: so the CDR files never hold a record the journal could
        still lose, and recovery can always renumber from the journal."""
        store, cdrs = self.store, self.cdrs
        durable = store.journal.durable_lsn
        pending = self._pending_cdrs
        if not pending or pending[0][0] > durable:
            return
        try:
            while pending and pending[0][0] <= durable:
                _, seq, line = pending[0]
                cdrs.append(seq, line)
                pending.popleft()
            cdrs.flush()
        except CdrError as exc:
            self._fatal("cdr.failed", exc)
            raise

    # --- CDR hand-off (docs/cdr-files.md, "Rotation on demand") -------------------------------

    def rotate_cdrs(self) -> None:
        """Rotate the CDR file once everything journaled so far is durable (SIGUSR1): the file
        completed holds every CDR of every request answered before."""
        if self.commit.failed is None:
            with contextlib.suppress(DurabilityError):
                self.commit.defer(partial(self._rotate_cdrs, "signal"))

    def _rotation_answer(self, message: AMR, origin: str, end_to_end: int) -> AMA:
        """The answer to a CDR_ROTATE (docs/protocol.md), made when group commit sends it: the
        journal is durable through every request before it, and their CDRs are written."""
        cfg = self.server.config
        try:
            complete = self._rotate_cdrs("request", peer=origin)
        except CdrError:
            failed = AMA(
                result_code=ResultCode.UNABLE_TO_COMPLY,
                origin_host=cfg.origin_host,
                origin_realm=cfg.origin_realm,
                error_message="the CDR files failed; the server stops",
            )
            log_admin(message, peer=origin, end_to_end=end_to_end, answer=failed)  # audit
            return failed
        answer = AMA(
            result_code=ResultCode.SUCCESS,
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            cdr_file=None if complete is None else complete.name,
        )
        log_admin(message, peer=origin, end_to_end=end_to_end, answer=answer)  # audit
        return answer

    def _rotate_cdrs(self, reason: str, **fields: object) -> Path | None:
        """Close the current CDR file with every CDR whose journal record is durable (in
        relaxed mode the journal is fsynced first, so that those of answered requests are),
        under its complete name; the path of the complete file, None if it was empty. Runs on
        the loop, from a group-commit callback or at a clean stop: after the journal's commit,
        as docs/cdr-files.md orders it. A failure of the journal or the CDR files is fatal
        (`_fatal`) and raises `CdrError`."""
        journal = self.store.journal
        try:
            if journal.durable_lsn < journal.written_lsn:
                journal.sync()
        except (JournalError, OSError) as exc:
            self._fatal("journal.failed", exc)
            raise CdrError(f"journal fsync failed: {exc}") from exc
        self._move_cdrs()
        try:
            complete = self.cdrs.rotate_now()
        except CdrError as exc:
            self._fatal("cdr.failed", exc)
            raise
        if complete is None:
            log.info(
                "cdr.rotate_skipped", reason=reason, detail="the current file is empty", **fields
            )
        else:
            log.info("cdr.rotated", reason=reason, file=complete.name, **fields)
        return complete

    # --- server-initiated requests (section 7) -------------------------------------------------

    def _send_actions(self, actions: list[Action]) -> None:
        for action in actions:
            peer = self._route(action)
            if peer is None or peer.conn is None:
                log.warning(
                    "request.undeliverable",
                    kind=action.kind.value,
                    session=action.session_id,
                    peer=action.origin_host,
                    reason=action.reason,
                )
                continue
            cfg = self.server.config
            realm = peer.conn.peer.origin_realm if peer.conn.peer is not None else cfg.origin_realm
            message: RAR | ASR
            if action.kind is ActionKind.RAR:
                message = RAR(
                    session_id=action.session_id,
                    origin_host=cfg.origin_host,
                    origin_realm=cfg.origin_realm,
                    destination_realm=realm,
                    destination_host=action.origin_host,
                    auth_application_id=4,
                    re_auth_request_type=ReAuthRequestType.AUTHORIZE_ONLY,
                    rating_group=action.rating_groups or None,
                    usage_counter=action.usage_counters or None,  # usage counters
                )
                self.stats["rar"] += 1
            else:
                message = ASR(
                    session_id=action.session_id,
                    origin_host=cfg.origin_host,
                    origin_realm=cfg.origin_realm,
                    destination_realm=realm,
                    destination_host=action.origin_host,
                    auth_application_id=4,
                )
                self.stats["asr"] += 1
            try:
                future = peer.send_request(message)
            except Exception as exc:  # the connection is going away: Tcc will clean up
                log.warning(
                    "request.undeliverable",
                    kind=action.kind.value,
                    session=action.session_id,
                    error=repr(exc),
                )
                continue
            future.add_done_callback(partial(_log_answer, action=action))

    def _route(self, action: Action) -> PeerHandle | None:
        """The connection the session last used, else another of the same Origin-Host: only
        ever a connection of the peer that owns the session (WIRE.md 5.3)."""
        peer = self.routes.get(action.session_id)
        if (
            peer is not None
            and peer.conn is not None
            and peer.conn.state is PeerState.OPEN
            and peer.conn.peer_origin_host == action.origin_host
        ):
            return peer
        return next(iter(self.server.peers_of(action.origin_host)), None)

    # --- timers --------------------------------------------------------------------------------

    async def _offload(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run file I/O in a worker thread; `close` waits for it even if this task is
        cancelled (the thread would go on writing anyway)."""
        future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._io = future
        return await asyncio.shield(future)

    async def _timers(self) -> None:
        try:
            await self._timer_loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # without the timers nothing expires or checkpoints
            self._fatal("timers.failed", exc)
            raise

    async def _timer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sync = loop.time()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            store, cdrs = self.store, self.cdrs
            self.tick(_now_ms())
            self._move_cdrs()  # relaxed mode: CDRs whose records were fsynced since
            cdrs.maybe_rotate()
            if loop.time() - last_sync >= CDR_SYNC_SECONDS:
                last_sync = loop.time()
                await self._offload(cdrs.sync)
            since = store.records_since_checkpoint
            weighted = since + self._bulk_extra_records  # bulk: a batch replays as its CREATEs
            if (
                weighted >= self.config.checkpoint_records or (self._checkpoint_soon and since > 0)
            ) and not self._checkpointing:
                self._checkpoint_soon = False
                self._bulk_extra_records = 0
                await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Snapshot + compaction. The snapshot is written only once every CDR it counts is
        in the CDR files and synced, so compaction never drops a CDR's only source.

        The state is captured by a forked child (`Store.fork_checkpoint`), which encodes and
        writes it while the loop goes on serving; the loop only pays for the fork. Without
        `os.fork` (or with ``NodeConfig.fork_checkpoints`` off) it is captured on the loop."""
        store, cdrs, commit, core = self.store, self.cdrs, self.commit, self.core
        self._checkpointing = True
        forked: ForkedCheckpoint | None = None
        running: ForkedCheckpoint | None = None  # a child nobody is reaping yet
        checkpoint: Checkpoint | None = None
        try:
            started = time.perf_counter()
            if self.config.fork_checkpoints and hasattr(os, "fork"):
                try:
                    forked = running = store.fork_checkpoint()
                except OSError as exc:  # no memory or no process for the child: next tick
                    log.error("checkpoint.failed", error=f"fork: {exc!r}")
                    self._counted("failed")
                    return
                lsn = forked.lsn
            else:
                checkpoint = store.capture_checkpoint()
                lsn = checkpoint.lsn
            paused_ms = round((time.perf_counter() - started) * 1000, 1)
            seq = core.cdr_seq
            await commit.durable()
            if store.journal.durable_lsn < lsn:  # relaxed mode: written, not synced
                await self._offload(store.journal.sync)
            self._move_cdrs()
            await self._offload(cdrs.commit)
            if forked is not None:
                running = None  # the worker thread reaps it, even if this task is cancelled
                if not await self._offload(forked.wait):
                    log.error("checkpoint.failed", lsn=lsn, error="snapshot process failed")
                    self._counted("failed")
                    return
            if cdrs.durable_sequence < seq:
                log.warning("checkpoint.skipped", reason="CDRs not yet durable", seq=seq)
                self._counted("skipped")
                return
            try:
                if forked is not None:
                    await self._offload(self._locked, store.install_checkpoint, forked)
                else:
                    assert checkpoint is not None
                    await self._offload(self._locked, store.write_checkpoint, checkpoint)
            except (OSError, JournalError) as exc:
                if store.journal.broken is not None:
                    raise  # the journal itself failed (rotation): fatal
                # the snapshot could not be written (e.g. disk full): the journal still holds
                # everything; try again at the next tick
                log.error("checkpoint.failed", lsn=lsn, error=repr(exc))
                self._counted("failed")
                return
            self.component.forget_through(lsn, store.journal.last_lsn)
            self._counted("written", lsn)
            log.info(
                "checkpoint.written",
                lsn=lsn,
                cdr_sequence=seq,
                forked=forked is not None,
                paused_ms=paused_ms,  # how long the loop stopped serving to capture it
            )
        finally:
            self._checkpointing = False
            if running is not None:  # never waited for: stop and reap it, drop its file
                running.abandon()
            elif forked is not None:  # its file, unless installed (renamed) already
                forked.path.unlink(missing_ok=True)

    def _counted(self, outcome: str, lsn: int | None = None) -> None:
        """A checkpoint ended (`outcome`: written, at `lsn`; failed; skipped)."""
        cp = self.checkpoints
        if outcome == "written":
            cp = replace(cp, written=cp.written + 1, last_lsn=lsn, last_at_s=time.time())
        elif outcome == "failed":
            cp = replace(cp, failed=cp.failed + 1)
        else:
            cp = replace(cp, skipped=cp.skipped + 1)
        self.checkpoints = cp


def _reconcile_cdrs(
    cdrs: CdrWriter, on_disk: int, last: int, regenerated: list[tuple[int, bytes]]
) -> None:
    if on_disk > last:
        raise RecoveryError(f"CDR files hold record {on_disk} but the journal only reaches {last}")
    missing = [(seq, line) for seq, line in regenerated if seq > on_disk]
    if last > on_disk and (not missing or missing[0][0] != on_disk + 1):
        raise RecoveryError(f"CDRs {on_disk + 1}..{last} are neither on disk nor in the journal")
    for seq, line in missing:
        cdrs.append(seq, line)


def _compare_cdrs(directory: Path, regenerated: list[tuple[int, bytes]], on_disk: int) -> None:
    """Replay regenerates the CDRs after the snapshot; those already on disk must be the same
    bytes (the core is deterministic). A difference is a bug in the core: logged, the files are
    kept as they are (mediation may have them already) and the numbering goes on."""
    if not regenerated or regenerated[0][0] > on_disk:
        return
    expected = {seq: line for seq, line in regenerated if seq <= on_disk}
    differ = [
        seq for seq, line in read_lines(directory, min(expected)) if expected.get(seq, line) != line
    ]
    if differ:
        log.error(
            "recovery.cdr_mismatch",
            first=differ[0],
            count=len(differ),
            detail="replay regenerated different CDRs than those on disk",
        )


def _catalog_fields(core: ChargingCore) -> dict[str, object]:
    """The catalog in force, for a log line: its name, digest and since when (ISO 8601)."""
    since_ms = core.catalog_since_ms
    return {
        "name": core.catalog.name,
        "digest": core.catalog_digest,
        "since": None if since_ms is None else iso_ms(since_ms),
    }


def _log_catalog(event: str, core: ChargingCore, level: str = "info", /, **fields: object) -> None:
    """One line naming the catalog in force (name, digest, since) and where it came from
    (`file`: the ``--catalog`` path, left out when None)."""
    file = fields.pop("file", None)
    if file is not None:
        fields["file"] = str(file)
    getattr(log, level)(event, **_catalog_fields(core), **fields)


def _peer_identity(ctx: RequestContext) -> str:
    """The peer a request comes from: the Origin-Host of its connection's capabilities
    exchange (WIRE.md 4), which the connection held the request's own Origin-Host to."""
    conn = ctx.peer.conn
    host = conn.peer_origin_host if conn is not None else None
    if host is None:  # the connection hands out requests only once the peer is open
        raise ProtocolError(ResultCode.UNKNOWN_PEER, "no capabilities exchange")
    return host


def _log_answer(future: asyncio.Future[Answer], *, action: Action) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.warning(
            "request.failed", kind=action.kind.value, session=action.session_id, error=str(exc)
        )
        return
    log.info(
        "request.answered",
        kind=action.kind.value,
        session=action.session_id,
        result_code=future.result().result_code,
        reason=action.reason,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _describe(exc: BaseException) -> str:
    """An exception for a log line: its type, its text cut to `_ERROR_CHARS` (it may quote a
    peer's values) and where it was raised (the innermost frame)."""
    text = str(exc)
    if len(text) > _ERROR_CHARS:
        text = text[:_ERROR_CHARS] + "..."
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"{type(exc).__name__}: {text}"
    last = frames[-1]
    where = f"{Path(last.filename).name}:{last.lineno} in {last.name}"
    return f"{type(exc).__name__}: {text} at {where}"


def _input_kind(body: bytes) -> str:
    """What a journaled input is, for an error message: "request 272", "tick", "catalog", or
    "undecodable" for bytes that are no `Input`."""
    try:
        record = decode_input(body)
    except (msgspec.DecodeError, ValueError):
        return "undecodable"
    if record.kind in REQUEST_KINDS:
        return f"request {record.command} from {record.origin_host[:64]}"
    return record.kind.name.lower()


def _exit_now() -> None:
    """Stop the process (after the critical event that says why: no text on stderr, so that a
    JSON log stays JSON); a restart recovers from the journal."""
    raise SystemExit(int(ExitStatus.FAILED))
