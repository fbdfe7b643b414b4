"""The store: a `Ledger` and the components that change it, made durable by a `Journal`, in
one locked data directory.

``Store.open(data_dir, components={kind: component}, ledger=ledger)`` takes the directory lock,
loads the latest snapshot, replays the journal after it and returns a store ready to append.

Every journal record is ``kind (1 byte) + body``. A component (the charging core in the server)
owns a kind in 2..255: it applies its inputs itself (changing the ledger it shares with the
store) and journals each with `Store.append`; the record is durable once the journal is
committed (directly with `Store.commit`, or by `ocs.edge.group_commit.GroupCommit` on the event
loop), and no answer may be sent before that. On restart every record goes back to its
component through `Component.replay`.

Every checkpoint holds the state of every component under its kind, and the ledger's under kind 1
(`KIND_LEDGER`). No record has kind 1: the ledger changes only through the components' inputs.

A journaled record that recovery cannot apply (an unregistered kind, or any exception its
component raises in `Component.replay`: damage the checksums missed, a bug, a record of another
build) stops `Store.open` with `JournalReplayError`, naming the record (segment, byte offset,
LSN, kind) and the reason; recovery never skips a record.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn, Protocol

import msgspec

from ocs.core.ledger import DAY_MS, Ledger
from ocs.edge.journal import (
    DEFAULT_SEGMENT_BYTES,
    DirLock,
    Journal,
    JournalError,
    JournalRecord,
    TornTail,
    write_snapshot_file,
)

__all__ = [
    "KIND_LEDGER",
    "Checkpoint",
    "Component",
    "ForkedCheckpoint",
    "JournalReplayError",
    "Recovery",
    "Store",
]

KIND_LEDGER: Final = 1  # the ledger's state in snapshots (never a journal record's kind)
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(dict[int, bytes])


class Component(Protocol):
    """A part of the server state that journals its own records (kind 2..255)."""

    def snapshot(self) -> bytes:
        """The whole state, as bytes `restore` accepts."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`'s."""
        ...

    def replay(self, body: bytes, lsn: int) -> None:
        """Re-apply one record that was journaled with `Store.append` (at ``lsn``), on
        restart."""
        ...


class JournalReplayError(JournalError):
    """A journaled record that recovery cannot apply: the record ``lsn`` at byte ``offset`` of
    ``segment``, of ``kind`` (its first byte), its ``payload`` (kind byte included), and the
    ``reason``; the component's exception, if any, is the ``__cause__``."""

    def __init__(
        self, reason: str, *, lsn: int, segment: str, offset: int, kind: int | None, payload: bytes
    ) -> None:
        super().__init__(
            f"journal record LSN {lsn} ({segment} byte {offset}, kind {kind}) cannot be "
            f"replayed: {reason}"
        )
        self.reason = reason
        self.lsn = lsn
        self.segment = segment
        self.offset = offset
        self.kind = kind
        self.payload = payload


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A state captured by `Store.capture_checkpoint`: everything up to journal record `lsn`."""

    lsn: int
    data: bytes


class ForkedCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint being written by a child process (`Store.fork_checkpoint`)."""

    lsn: int
    pid: int
    path: Path  # the snapshot file the child writes; `Store.install_checkpoint` renames it

    def wait(self) -> bool:
        """Block until the child has exited (call from a worker thread); True if it wrote and
        fsynced the file."""
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status) == 0

    def abandon(self) -> None:
        """Stop the child (if still running), reap it and delete its file."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.path.unlink(missing_ok=True)


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """What `Store.open` found."""

    snapshot_lsn: int
    replayed: int
    last_lsn: int
    snapshot_seconds: float
    replay_seconds: float
    durable_mark: int | None = None  # the journal's durability mark (None: no mark file)
    torn_tail: TornTail | None = None  # what was cut off the last segment (never acknowledged)


class Store:
    """A `Ledger` + its components + `Journal` + directory lock. Use from one thread (the event
    loop); only `write_checkpoint` and `install_checkpoint` may run in a worker thread."""

    def __init__(
        self,
        data_dir: Path,
        lock: DirLock,
        journal: Journal,
        ledger: Ledger,
        components: dict[int, Component],
        recovery: Recovery,
    ) -> None:
        """Use `open`: it recovers the state first."""
        self.data_dir = data_dir
        self.journal = journal
        self.ledger = ledger
        self._lock = lock
        self._components = components
        self.recovery = recovery

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        components: Mapping[int, Component] | None = None,
        retention_ms: int = DAY_MS,
        max_remembered: int = 1_000_000,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        ledger: Ledger | None = None,
    ) -> Store:
        """Lock ``data_dir`` (`ocs.edge.journal.DataDirLockedError` if another server holds it),
        load the latest snapshot, replay the journal after it, and return the store."""
        path = Path(data_dir)
        lock = DirLock(path)
        try:
            if ledger is None:  # a caller may bring its own (one its components also use)
                ledger = Ledger(retention_ms=retention_ms, max_remembered=max_remembered)
            parts: dict[int, Component] = {}
            for kind, component in (components or {}).items():
                if not 1 < kind < 256:
                    raise ValueError(f"component kind {kind} must be in 2..255")
                parts[kind] = component
            journal = Journal(path / "journal", segment_bytes=segment_bytes)
            recovery = _recover(journal, ledger, parts)
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, journal, ledger, parts, recovery)

    # -- journaling

    def append(self, kind: int, body: bytes) -> int:
        """Journal a record of a registered component (already applied by the caller);
        returns its LSN."""
        if kind not in self._components:
            raise ValueError(f"kind {kind} is not a registered component kind")
        return self.journal.append(bytes((kind,)) + body)

    def commit(self) -> int:
        """Write and fsync everything journaled so far (synchronous); returns the durable LSN."""
        return self.journal.commit()

    # -- checkpoints

    @property
    def records_since_checkpoint(self) -> int:
        return self.journal.last_lsn - self.journal.snapshot_lsn

    def capture_checkpoint(self) -> Checkpoint:
        """Snapshot every component now (on the thread that runs commands)."""
        return Checkpoint(lsn=self.journal.last_lsn, data=self._encode_state())

    def _encode_state(self) -> bytes:
        states = {KIND_LEDGER: self.ledger.snapshot()}
        for kind, component in self._components.items():
            states[kind] = component.snapshot()
        return msgspec.msgpack.encode(states)

    def fork_checkpoint(self) -> ForkedCheckpoint:
        """Capture the state at the current LSN without stopping this process: `os.fork`, and
        the child (a copy-on-write image of this instant) encodes every component, writes and
        fsyncs the snapshot file under a temporary name, and exits. This thread only pays for
        the fork (page tables). Then: `ForkedCheckpoint.wait` in a worker thread, and
        `install_checkpoint` (or `ForkedCheckpoint.abandon`).

        The child closes every inherited descriptor first (the directory lock, the journal,
        the CDR files, the sockets), so it never holds the lock or a port after this process
        is gone, and never runs anything of the parent's (no threads, no event loop, no exit
        handlers: it ends with `os._exit`)."""
        lsn = self.journal.last_lsn
        parent = os.getpid()
        path = self.journal.snapshot_tmp_path(lsn, f".{parent}")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child process (its exit status is checked)
            _checkpoint_child(self, parent, lsn, path)
        return ForkedCheckpoint(lsn=lsn, pid=pid, path=path)

    def install_checkpoint(self, forked: ForkedCheckpoint) -> None:
        """Put a snapshot written by a `fork_checkpoint` child in place (the journal is made
        durable up to it first) and delete the journal it makes redundant. Thread-safe."""
        if forked.lsn <= self.journal.snapshot_lsn:
            forked.path.unlink(missing_ok=True)
            return
        self.journal.rotate()
        self.journal.install_snapshot(forked.lsn, forked.path)

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Persist a captured checkpoint and delete the journal it makes redundant.

        Thread-safe with respect to appends and group commit (may run in an executor)."""
        if checkpoint.lsn <= self.journal.snapshot_lsn:
            return  # nothing new since the last one
        self.journal.rotate()
        self.journal.write_snapshot(checkpoint.lsn, checkpoint.data)

    def checkpoint(self) -> int:
        """`capture_checkpoint` + `write_checkpoint`; returns the snapshot's LSN."""
        checkpoint = self.capture_checkpoint()
        self.write_checkpoint(checkpoint)
        return checkpoint.lsn

    # -- lifetime

    def close(self) -> None:
        """Commit what is buffered, close the journal and release the lock."""
        try:
            self.journal.close()
        finally:
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _recover(journal: Journal, ledger: Ledger, components: dict[int, Component]) -> Recovery:
    """Restore the latest snapshot into ``ledger`` and ``components``, and replay the journal
    after it through the components."""
    started = time.perf_counter()
    loaded = journal.load_snapshot()
    snapshot_lsn = 0
    if loaded is not None:
        snapshot_lsn, data = loaded
        states = _SNAPSHOT_DECODER.decode(data)
        unknown = set(states) - {KIND_LEDGER, *components}
        if unknown:
            raise JournalError(f"snapshot holds state of unregistered kinds {sorted(unknown)}")
        for kind, state in states.items():
            try:
                if kind == KIND_LEDGER:
                    ledger.restore(state)
                else:
                    components[kind].restore(state)
            except Exception as exc:  # e.g. a snapshot of another build
                raise JournalError(
                    f"snapshot {snapshot_lsn}: the state of kind {kind} cannot be restored: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    loaded_at = time.perf_counter()
    replayed = 0
    for record in journal.recover_records(snapshot_lsn):
        payload = record.payload
        tag = payload[0] if payload else None
        component = None if tag is None else components.get(tag)
        if component is None:
            raise _replay_error(f"unregistered kind {tag}", record, tag)
        try:
            component.replay(payload[1:], record.lsn)
        except Exception as exc:  # whatever it is, the record cannot be applied: stop here
            raise _replay_error(f"{type(exc).__name__}: {exc}", record, tag) from exc
        replayed += 1
    return Recovery(
        snapshot_lsn=snapshot_lsn,
        replayed=replayed,
        last_lsn=journal.last_lsn,
        snapshot_seconds=loaded_at - started,
        replay_seconds=time.perf_counter() - loaded_at,
        durable_mark=journal.mark_found,
        torn_tail=journal.torn_tail,
    )


def _replay_error(reason: str, record: JournalRecord, kind: int | None) -> JournalReplayError:
    return JournalReplayError(
        reason,
        lsn=record.lsn,
        segment=record.segment,
        offset=record.offset,
        kind=kind,
        payload=record.payload,
    )


def _checkpoint_child(store: Store, parent: int, lsn: int, path: Path) -> NoReturn:
    """The body of a `Store.fork_checkpoint` child: exit status 0 once the file is fsynced."""
    code = 1
    try:
        gc.disable()  # a collection would touch (and copy) every page of the heap
        os.nice(19)  # the server, on the same CPU(s), comes first
        with contextlib.suppress(ValueError):  # (only possible in the main thread)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        data = store._encode_state()
        if os.getppid() == parent:  # the server died meanwhile: its successor recovers
            write_snapshot_file(path, lsn, data)
            code = 0
    except BaseException:
        code = 1
    finally:
        os._exit(code)
