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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import structlog

from ocs.core.charging import (
    Action,
    ActionKind,
    ChargingCore,
    Input,
    InputKind,
    Result,
    decode_input,
    encode_input,
)
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import catalog_text
from ocs.edge.cdr_files import CdrError, CdrWriter, read_lines
from ocs.edge.group_commit import DurabilityError, GroupCommit
from ocs.edge.journal import JournalError
from ocs.edge.server import PeerHandle, RequestContext, Server, ServerConfig
from ocs.edge.store import Checkpoint, ForkedCheckpoint, Store
from protocol.codes import CommandCode, ReAuthRequestType, ResultCode
from protocol.errors import ProtocolError
from protocol.messages import AMR, ASR, CCR, RAR, Answer
from protocol.peer import PeerState
from rating import CatalogError

log = structlog.get_logger("ocs.node")

_T = TypeVar("_T")

KIND_CORE: Final = 2
TICK_SECONDS: Final = 1.0
CDR_SYNC_SECONDS: Final = 1.0


class RecoveryError(RuntimeError):
    """The data directory is inconsistent (CDR files ahead of the journal, or behind a
    snapshot): refuse to start rather than number records twice."""


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
    # capture checkpoints in a forked child (the loop keeps serving) rather than on the loop
    fork_checkpoints: bool = True


class CoreComponent:
    """The core as a journal component: its inputs are records of kind `KIND_CORE`."""

    def __init__(self, core: ChargingCore) -> None:
        self.core = core

    def snapshot(self) -> bytes:
        return self.core.snapshot()

    def restore(self, data: bytes) -> None:
        self.core.restore(data)

    def replay(self, body: bytes) -> None:
        """Re-apply a journaled input. What it asked the network to do (RAR, ASR) was sent, or
        not, before the crash, and no connection is routed yet: those outputs are discarded;
        its CDRs are kept for `recover` to compare with the CDR files."""
        core = self.core
        core.apply(decode_input(body))
        core.take_actions()
        core.take_closed()


class Recovered(NamedTuple):
    """The durable state of a data directory, recovered and locked (`recover`)."""

    store: Store
    core: ChargingCore
    cdrs: CdrWriter
    catalog_text: str  # the catalog file's text (``NodeConfig.catalog``), validated
    cdrs_on_disk: int  # the last CDR sequence number the files held before recovery
    seconds: float


def recover(config: NodeConfig, *, origin_host: str, origin_realm: str) -> Recovered:
    """Lock the data directory, load the snapshot, replay the journal through a new core, and
    bring the CDR files up to the journal (the records they lack are written again)."""
    text = catalog_text(config.catalog)
    ledger = Ledger()
    core = ChargingCore(
        ledger,
        text,
        origin_host=origin_host,
        origin_realm=origin_realm,
        min_tcc_s=config.min_tcc_s,
    )
    started = time.perf_counter()
    try:
        store = Store.open(
            config.data_dir, ledger=ledger, components={KIND_CORE: CoreComponent(core)}
        )
    except JournalError as exc:  # e.g. DataDirLockedError: another server has the directory
        log.critical("startup.failed", data_dir=str(config.data_dir), error=str(exc))
        raise
    try:
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
        log.critical("startup.failed", data_dir=str(config.data_dir), error=str(exc))
        store.close()
        raise
    return Recovered(
        store=store,
        core=core,
        cdrs=cdrs,
        catalog_text=text,
        cdrs_on_disk=on_disk,
        seconds=time.perf_counter() - started,
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
        self.cdrs = recovered.cdrs
        self._pending_cdrs: deque[tuple[int, int, bytes]] = deque()  # (lsn, seq, line)
        # the connection each open session last used: where its RAR/ASR go (section 7)
        self.routes: dict[str, PeerHandle] = {}
        self._timer: asyncio.Task[None] | None = None
        self._io: asyncio.Future[Any] | None = None  # file I/O of the timers, in a worker
        self._checkpointing = False
        self.stats = {"requests": 0, "journaled": 0, "cdrs": 0, "rar": 0, "asr": 0}
        self.commit = GroupCommit(
            self.store.journal,
            sync_interval_ms=config.relaxed_sync_ms,
            on_failure=self._journal_failed,
            # the answers of a durable batch leave at once, one write per connection
            before_release=self._hold_flushes,
            after_release=self._release_flushes,
        )
        self.server = Server(
            server_config,
            handlers={
                CommandCode.CREDIT_CONTROL: self._ccr,
                CommandCode.ACCOUNT_MANAGEMENT: self._amr,
            },
            gate=self.commit,
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
        if not core.catalog_journaled or core.catalog_text != recovered.catalog_text:
            node._put_catalog(recovered.catalog_text)
        node._timer = asyncio.get_running_loop().create_task(node._timers())
        return node

    async def start(self) -> None:
        """Listen for peers."""
        await self.server.start()

    async def stop(self) -> None:
        """Stop serving: the answers that group commit still holds (their records are being
        fsynced) go out first, then the server stops accepting, answers what was read, says
        DPR and closes (`Server.stop`)."""
        await self.drain()
        await self.server.stop()

    def _hold_flushes(self) -> None:
        self.server.hold_flushes()

    def _release_flushes(self) -> None:
        self.server.release_flushes()

    def reload_catalog(self) -> bool:
        """Read the catalog file again (SIGHUP). A changed catalog is journaled as an input
        and put in force; sessions whose open grants it prices differently get RAR (WIRE.md
        section 7). An invalid file is refused and the catalog in force stays."""
        core = self.core
        try:
            text = catalog_text(self.config.catalog)
        except CatalogError as exc:
            log.error("catalog.reload_refused", error=str(exc))
            return False
        if text == core.catalog_text:
            log.info("catalog.unchanged")
            return False
        self._put_catalog(text)
        log.info("catalog.reloaded", sessions=len(core.sessions))
        return True

    def _put_catalog(self, text: str) -> None:
        """Journal a catalog as an input and put it in force (at start-up and on SIGHUP)."""
        record = Input(kind=InputKind.CATALOG, now_ms=_now_ms(), body=text.encode())
        lsn = self._journal_input(record)
        self.core.apply(record)
        self._after_core(lsn)
        self.commit.schedule()

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

    def _journal_failed(self, exc: BaseException) -> None:
        self._fatal("journal.failed", exc)

    def _fatal(self, event: str, exc: BaseException) -> None:
        """The journal or the CDR files failed (or a timer crashed): the state in memory can no
        longer be made durable, so stop; a restart recovers from the journal."""
        log.critical(event, error=repr(exc))
        asyncio.get_running_loop().call_soon(_exit_now)

    # --- handlers ------------------------------------------------------------------------------

    def _ccr(self, ctx: RequestContext, message: CCR) -> bytes:
        core = self.core
        origin = _peer_identity(ctx)
        result = core.handle_ccr(ctx.now_ms, origin, ctx.header.end_to_end, message)
        self._record(ctx, origin, result, CommandCode.CREDIT_CONTROL)
        # the connection the owner last used (events, refused INITIALs and other peers'
        # requests leave no route)
        if core.session_owner(message.session_id) == origin:
            self.routes[message.session_id] = ctx.peer
        return result.body

    def _amr(self, ctx: RequestContext, message: AMR) -> bytes:
        origin = _peer_identity(ctx)
        result = self.core.handle_amr(ctx.now_ms, origin, ctx.header.end_to_end, message)
        self._record(ctx, origin, result, CommandCode.ACCOUNT_MANAGEMENT)
        return result.body

    def _record(self, ctx: RequestContext, origin: str, result: Result, command: int) -> None:
        self.stats["requests"] += 1
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
        return self.store.append(KIND_CORE, encode_input(record))

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
            core, store, cdrs = self.core, self.store, self.cdrs
            now_ms = _now_ms()
            if core.due(now_ms):
                lsn = self._journal_input(Input(kind=InputKind.TICK, now_ms=now_ms))
                core.tick(now_ms)
                self._after_core(lsn)
                self.commit.schedule()
            self._move_cdrs()  # relaxed mode: CDRs whose records were fsynced since
            cdrs.maybe_rotate()
            if loop.time() - last_sync >= CDR_SYNC_SECONDS:
                last_sync = loop.time()
                await self._offload(cdrs.sync)
            if (
                store.records_since_checkpoint >= self.config.checkpoint_records
                and not self._checkpointing
            ):
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
                    return
            if cdrs.durable_sequence < seq:
                log.warning("checkpoint.skipped", reason="CDRs not yet durable", seq=seq)
                return
            try:
                if forked is not None:
                    await self._offload(store.install_checkpoint, forked)
                else:
                    assert checkpoint is not None
                    await self._offload(store.write_checkpoint, checkpoint)
            except (OSError, JournalError) as exc:
                if store.journal.broken is not None:
                    raise  # the journal itself failed (rotation): fatal
                # the snapshot could not be written (e.g. disk full): the journal still holds
                # everything; try again at the next tick
                log.error("checkpoint.failed", lsn=lsn, error=repr(exc))
                return
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


def _exit_now() -> None:
    raise SystemExit("journal failed: stopping so that a restart recovers from the log")
