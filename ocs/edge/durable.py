"""The durable-append mechanism the journal and the CDR files share (the I/O edge).

An `AppendFile` writes numbered records (LSNs, CDR sequence numbers: 1, 2, 3, ... without gaps)
to the end of one file at a time:

* `append` only buffers (the per-request hot path: one lock, one list append);
* `flush` hands the whole buffer to the OS in one write(2) (`write_all`): it survives a process
  crash from then on;
* `sync` fdatasyncs it, and the directory if a file was created or renamed since: it survives a
  power loss from then on. The fsync runs outside the lock, so a long-lived thread (group
  commit) syncs while the event loop appends and writes. It needs no new descriptor (a server
  whose descriptors are exhausted stays durable): it fdatasyncs the file's own descriptor and
  the directory through a descriptor held open for the file's lifetime. A descriptor an
  in-flight sync uses is never closed under it: a rotation or `close` meanwhile leaves the
  close to that sync, when its fsync returns;
* `switch_locked` fsyncs the current file and goes on in a new one (rotation: the owner decides
  when, and names the files); with no descriptor free it leaves the rotation for later.

A failed write, fsync, file creation or rename *latches*: the file is broken and refuses every
further operation with the owner's error. After a failed fsync the kernel may have dropped the
dirty pages, and a later fsync could report success without them, so nothing may be retried;
only a restart, recovering from what is on disk, is safe.

The owners keep what differs: the journal its record framing, segment names and compaction, the
CDR writer its file names, the rename of a complete file and rotation by age.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, TypeVar

from ocs.edge.fileio import fdatasync, write_all

__all__ = ["AppendFile", "Failures", "OutOfSequenceError"]

T = TypeVar("T")

#: (record number, payload) -> the bytes written for it.
Frame = Callable[[int, bytes], bytes]
#: What `AppendFile.flush` and `AppendFile.run_locked` run with the file's lock held.
Locked = Callable[["AppendFile"], T]

_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
_CONTINUE: Final = os.O_WRONLY | os.O_APPEND
_DIRECTORY: Final = os.O_RDONLY | os.O_DIRECTORY


def fsync_directory(fd: int) -> None:
    """fsync an open directory: its entries (a new, renamed or deleted file) become durable."""
    os.fsync(fd)


def _open_directory(path: Path) -> int:
    """Open ``path``'s directory (held for the file's lifetime) and fsync it."""
    fd = os.open(path.parent, _DIRECTORY)
    try:
        fsync_directory(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


class OutOfSequenceError(ValueError):
    """`AppendFile.append` was given a record number other than the last one + 1."""

    def __init__(self, number: int, last: int) -> None:
        super().__init__(f"record {number} appended after {last} (expected {last + 1})")
        self.number = number
        self.last = last


@dataclass(frozen=True, slots=True)
class Failures:
    """How an owner's callers see failures: ``what`` names the file in messages, ``error`` is
    raised for misuse (writing to a closed file), ``broken`` once a write or fsync failed."""

    what: str
    error: type[Exception]
    broken: type[Exception]


class AppendFile:
    """Numbered records appended to one file at a time; durable on `sync`. Built open by
    `create` or `resume`.

    `append`, `flush`, `sync`, `run_locked` and `close` are thread-safe (one lock); syncs are
    serialized with each other, so a sync never reports records durable while another one is
    still making their file's directory entry durable.
    """

    __slots__ = (
        "_broken",
        "_buffer",
        "_closed",
        "_datasync",
        "_dir_dirty",
        "_dir_fd",
        "_durable",
        "_failures",
        "_fd",
        "_first",
        "_frame",
        "_last",
        "_lock",
        "_path",
        "_retired",
        "_size",
        "_sync_lock",
        "_syncing",
        "_written",
        "directory",
    )

    def __init__(
        self,
        path: Path,
        fd: int,
        *,
        dir_fd: int,
        size: int,
        first: int,
        last: int,
        frame: Frame,
        failures: Failures,
        datasync: Callable[[int], None],
    ) -> None:
        """Use `create` or `resume`: they open ``fd`` (the file) and ``dir_fd`` (its
        directory) and make them durable first."""
        self.directory = path.parent
        self._path = path
        self._fd = fd
        self._dir_fd = dir_fd
        self._size = size
        self._first = first
        self._last = self._written = self._durable = last
        self._frame = frame
        self._failures = failures
        self._datasync = datasync
        self._lock = threading.Lock()  # buffer, file, numbers, latch
        self._sync_lock = threading.Lock()  # one sync at a time
        self._buffer: list[bytes] = []
        self._dir_dirty = False
        self._broken: OSError | None = None
        self._closed = False
        self._syncing = False  # a sync is using `_fd` / `_dir_fd` outside the lock
        self._retired: list[int] = []  # closed while a sync used them: closed when it returns

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        last: int,
        frame: Frame,
        failures: Failures,
        datasync: Callable[[int], None] = fdatasync,
    ) -> AppendFile:
        """Create ``path`` (it must not exist) for the records after ``last``. The file and its
        directory entry are fsynced before this returns."""
        fd = os.open(path, _CREATE, 0o644)
        try:
            os.fsync(fd)
            dir_fd = _open_directory(path)
        except BaseException:
            os.close(fd)
            raise
        return cls(
            path,
            fd,
            dir_fd=dir_fd,
            size=0,
            first=last + 1,
            last=last,
            frame=frame,
            failures=failures,
            datasync=datasync,
        )

    @classmethod
    def resume(
        cls,
        path: Path,
        *,
        size: int,
        first: int,
        last: int,
        frame: Frame,
        failures: Failures,
        datasync: Callable[[int], None] = fdatasync,
    ) -> AppendFile:
        """Go on appending to ``path``, whose valid records ``first`` .. ``last`` end at byte
        ``size``: anything after (a torn tail) is cut off. The file and its directory are
        fsynced before this returns (a crashed process may have left either in the page cache
        only, and what recovery found must be on disk before anything builds on it)."""
        fd = os.open(path, _CONTINUE)
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            os.fsync(fd)
            dir_fd = _open_directory(path)
        except BaseException:
            os.close(fd)
            raise
        return cls(
            path,
            fd,
            dir_fd=dir_fd,
            size=size,
            first=first,
            last=last,
            frame=frame,
            failures=failures,
            datasync=datasync,
        )

    # -- state (plain reads: each is one value, replaced whole under the lock)

    @property
    def path(self) -> Path:
        """The file being appended to."""
        return self._path

    @property
    def size(self) -> int:
        """Bytes written to the current file."""
        return self._size

    @property
    def first(self) -> int:
        """Number of the first record of the current file."""
        return self._first

    @property
    def last(self) -> int:
        """Number of the last appended record."""
        return self._last

    @property
    def written(self) -> int:
        """Every record up to this one was handed to the OS (survives a process crash)."""
        return self._written

    @property
    def durable(self) -> int:
        """Every record up to this one was fsynced (survives a power loss)."""
        return self._durable

    @property
    def broken(self) -> OSError | None:
        """The error that broke the file, if any."""
        return self._broken

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writing

    def _refuse(self) -> NoReturn:
        failures = self._failures
        if self._broken is not None:
            raise failures.broken(f"the {failures.what} failed earlier") from self._broken
        raise failures.error(f"the {failures.what} is closed")

    def _latch(self, exc: OSError, step: str) -> Exception:
        """Break the file (lock held); the error to raise ``from exc``."""
        self._broken = exc
        return self._failures.broken(f"{self._failures.what} {step} failed: {exc}")

    def append(self, payload: bytes, number: int | None = None) -> int:
        """Buffer one record and return its number, the last one + 1 (``number``, if given,
        must be that: else `OutOfSequenceError`). Nothing reaches the OS before `flush`."""
        with self._lock:
            if self._broken is not None or self._closed:
                self._refuse()
            n = self._last + 1
            if number is not None and number != n:
                raise OutOfSequenceError(number, self._last)
            self._buffer.append(self._frame(n, payload))
            self._last = n
            return n

    def flush(
        self, before: Locked[object] | None = None, after: Locked[object] | None = None
    ) -> int:
        """write(2) the buffered records in one write; return `written`.

        The owner's rotation policy runs with the lock held: ``before`` just before a write
        (only if something is buffered), ``after`` at the end (always); either may call
        `switch_locked`. An OSError in any of it breaks the file.
        """
        with self._lock:
            if self._broken is not None or self._closed:
                self._refuse()
            try:
                if self._buffer:
                    if before is not None:
                        before(self)
                    data = b"".join(self._buffer)
                    self._buffer.clear()
                    write_all(self._fd, data)
                    self._size += len(data)
                    self._written = self._last
                if after is not None:
                    after(self)
            except OSError as exc:
                raise self._latch(exc, "write") from exc
            return self._written

    def sync(self) -> int:
        """fdatasync what `flush` wrote (and the directory, if a file was created or renamed
        since the last sync); return `durable`. Runs the fsync without holding the lock, on
        the descriptors the file holds: it opens none. A rotation or `close` meanwhile does
        not close them under it (`_release_locked`)."""
        with self._sync_lock:
            with self._lock:
                if self._broken is not None or self._closed:
                    self._refuse()
                target = self._written
                if target <= self._durable and not self._dir_dirty:
                    return self._durable
                fd, dir_fd = self._fd, self._dir_fd
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                self._syncing = True
            try:
                self._datasync(fd)
                if dir_dirty:
                    fsync_directory(dir_fd)
            except OSError as exc:
                with self._lock:
                    self._sync_done_locked()
                    raise self._latch(exc, "fsync") from exc
            except BaseException:
                with self._lock:
                    self._sync_done_locked()
                raise
            with self._lock:
                self._sync_done_locked()
                self._durable = max(self._durable, target)
                return self._durable

    def _sync_done_locked(self) -> None:
        """The sync no longer uses its descriptors: close those retired meanwhile."""
        self._syncing = False
        retired, self._retired = self._retired, []
        for fd in retired:
            os.close(fd)

    def _release_locked(self, fd: int) -> None:
        """Close ``fd`` now, or when the sync in flight (which may be using it) returns: its
        number must not be reused by another open while a sync is about to fsync it."""
        if self._syncing:
            self._retired.append(fd)
        else:
            os.close(fd)

    def run_locked(self, action: Locked[T]) -> T:
        """Run ``action(self)`` with the lock held (a rotation); an OSError breaks the file."""
        with self._lock:
            if self._broken is not None or self._closed:
                self._refuse()
            try:
                return action(self)
            except OSError as exc:
                raise self._latch(exc, "rotation") from exc

    # -- rotation (lock held: from a `flush` hook or `run_locked`)

    def switch_locked(self, path: Path) -> Path | None:
        """fsync the current file, create ``path`` (it must not exist) and append there from
        now on; return the path of the file just completed. The new file's directory entry is
        made durable by the next `sync` or `sync_directory_locked`; records count as durable
        only after that.

        With no descriptor free for ``path`` (EMFILE, ENFILE) nothing changes and None is
        returned: appending goes on in the current file, and the owner rotates at a later
        check. A rotation is a policy; durability must not depend on a free descriptor."""
        os.fsync(self._fd)
        try:
            fd = os.open(path, _CREATE, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return None
            raise
        old_fd, old_path = self._fd, self._path
        self._fd, self._path = fd, path
        self._release_locked(old_fd)
        self._size = 0
        self._first = self._written + 1
        self._dir_dirty = True
        return old_path

    def sync_directory_locked(self) -> None:
        """fsync the directory now (after a `switch_locked` and a rename by the owner): every
        record of the files before the current one is then durable."""
        fsync_directory(self._dir_fd)
        self._dir_dirty = False
        self._durable = max(self._durable, self._first - 1)

    # -- lifetime

    def close(self) -> None:
        """Close the file (and its directory). What is buffered is dropped (the owner commits
        first). A sync in flight keeps the descriptors until its fsync returns."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release_locked(self._fd)
                self._release_locked(self._dir_fd)
