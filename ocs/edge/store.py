"""The balance store: a `Ledger` made durable by a `Journal`, in one locked data directory.

``Store.open(data_dir)`` takes the directory lock, loads the latest snapshot, replays the journal
after it and returns a store ready to take commands. ``store.execute(cmd)`` applies a command and
appends it to the journal's buffer; it is durable once the journal is committed (directly with
`Store.commit`, or by `ocs.edge.group_commit.GroupCommit` on the event loop). No answer may be sent
before that.

Every journal record is ``kind (1 byte) + body``. Kind 1 is the ledger (body = msgpack-encoded
command). Other layers (sessions, the duplicate cache, the CDR sequence) register a
`Component` under their own kind: they journal their records with `Store.append`, get them back
through `Component.replay` on restart, and are part of every checkpoint.
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

from ocs.core.ledger import DAY_MS, Code, Command, Ledger, LedgerOps, Outcome, decode_command
from ocs.core.ledger import encode_command as _encode_command
from ocs.edge.journal import (
    DEFAULT_SEGMENT_BYTES,
    DirLock,
    Journal,
    JournalBrokenError,
    JournalError,
    write_snapshot_file,
)

__all__ = ["KIND_LEDGER", "Checkpoint", "Component", "ForkedCheckpoint", "Recovery", "Store"]

KIND_LEDGER: Final = 1
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(dict[int, bytes])


class Component(Protocol):
    """A part of the server state that journals its own records (kind 2..255)."""

    def snapshot(self) -> bytes:
        """The whole state, as bytes `restore` accepts."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`'s."""
        ...

    def replay(self, body: bytes) -> None:
        """Re-apply one record that was journaled with `Store.append`, on restart."""
        ...


class _LedgerComponent:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def snapshot(self) -> bytes:
        return self.ledger.snapshot()

    def restore(self, data: bytes) -> None:
        self.ledger.restore(data)

    def replay(self, body: bytes) -> None:
        self.ledger.apply(decode_command(body), replay=True)


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


class Store(LedgerOps):
    """A `Ledger` + `Journal` + directory lock. Use from one thread (the event loop); only
    `write_checkpoint` may run in a worker thread."""

    def __init__(
        self,
        data_dir: Path,
        lock: DirLock,
        journal: Journal,
        ledger: Ledger,
        components: dict[int, Component],
    ) -> None:
        self.data_dir = data_dir
        self.journal = journal
        self.ledger = ledger
        self._lock = lock
        self._components = components
        self.recovery = Recovery(
            snapshot_lsn=0, replayed=0, last_lsn=0, snapshot_seconds=0.0, replay_seconds=0.0
        )

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
            parts: dict[int, Component] = {KIND_LEDGER: _LedgerComponent(ledger)}
            for kind, component in (components or {}).items():
                if not 1 < kind < 256:
                    raise ValueError(f"component kind {kind} must be in 2..255")
                parts[kind] = component
            journal = Journal(path / "journal", segment_bytes=segment_bytes)
            store = cls(path, lock, journal, ledger, parts)
            store._recover()
        except BaseException:
            lock.release()
            raise
        return store

    def _recover(self) -> None:
        started = time.perf_counter()
        loaded = self.journal.load_snapshot()
        snapshot_lsn = 0
        if loaded is not None:
            snapshot_lsn, data = loaded
            states = _SNAPSHOT_DECODER.decode(data)
            unknown = set(states) - set(self._components)
            if unknown:
                raise JournalError(f"snapshot holds state of unregistered kinds {sorted(unknown)}")
            for kind, state in states.items():
                self._components[kind].restore(state)
        loaded_at = time.perf_counter()
        replayed = 0
        components = self._components
        for lsn, payload in self.journal.recover(snapshot_lsn):
            component = components.get(payload[0]) if payload else None
            if component is None:
                tag = payload[0] if payload else None
                raise JournalError(f"journal record {lsn} has unregistered kind {tag}")
            component.replay(payload[1:])
            replayed += 1
        self.recovery = Recovery(
            snapshot_lsn=snapshot_lsn,
            replayed=replayed,
            last_lsn=self.journal.last_lsn,
            snapshot_seconds=loaded_at - started,
            replay_seconds=time.perf_counter() - loaded_at,
        )

    # -- commands

    def execute(self, cmd: Command) -> Outcome:
        """Apply a ledger command and journal it (buffered: durable after the next commit).

        A repeat of a remembered operation id returns the first outcome and journals nothing;
        an invalid command (`Code.INVALID`) changes nothing and journals nothing. Raises
        `ocs.edge.journal.JournalBrokenError`, before changing anything, once the journal has
        failed.
        """
        if self.journal.broken is not None:
            raise JournalBrokenError("the journal failed; the store takes no more commands")
        prior = self.ledger.recall(cmd.id) if isinstance(cmd.id, str) else None
        if prior is not None:
            return prior
        outcome = self.ledger.apply(cmd)
        if outcome.code is not Code.INVALID:
            self.journal.append(b"\x01" + _encode_command(cmd))
        return outcome

    def _run(self, cmd: Command) -> Outcome:
        return self.execute(cmd)

    def _next_expiry(self) -> int | None:
        return self.ledger.next_expiry()

    def append(self, kind: int, body: bytes) -> int:
        """Journal a record of a registered component (already applied by the caller);
        returns its LSN."""
        if kind == KIND_LEDGER or kind not in self._components:
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
        states = {kind: component.snapshot() for kind, component in self._components.items()}
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
