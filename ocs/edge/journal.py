"""Append-only, checksummed journal of opaque records, with snapshots and compaction.

This is the I/O edge of the balance store: a synchronous file API. It knows nothing of what a
record means; the store puts a one-byte kind tag in front of each payload so several layers can
share one log.

Layout of ``<data-dir>/journal/``::

    00000000000000000001.log    segment: records with LSN 1 .. (first LSN of the next) - 1
    00000000000000052001.log    the active segment (the last one)
    00000000000000052000.snap   the latest snapshot: state after applying records 1..52000

Record (little-endian)::

    offset 0   u32  CRC-32 (zlib.crc32) of bytes 8 .. end (LSN + payload)
    offset 4   u32  payload length
    offset 8   u64  LSN: 1, 2, 3, ... with no gaps across segments
    offset 16  payload

Snapshot file::

    offset 0   8 bytes  magic b"OCSSNAP1"
    offset 8   u64      LSN the snapshot covers (every record <= LSN is in it)
    offset 16  u64      data length
    offset 24  u32      CRC-32 of the data
    offset 28  data

Recovery (`Journal.recover`): the segments are read in order, every record's CRC, length and LSN
sequence is checked, and records after the snapshot's LSN are yielded. A record that does not
check out in the *last* segment starts a torn tail (a write cut short by a crash): the file is
truncated there, unless a valid record with a later LSN follows it, which means damage in the
middle of the log: `JournalCorruptError`, never a silent skip. Damage in an older segment is
always `JournalCorruptError` (a segment is fsynced before the next one is started).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Final

from ocs.edge.durable import AppendFile, Failures
from ocs.edge.fileio import fdatasync, fsync_dir, write_all

__all__ = [
    "DataDirLockedError",
    "DirLock",
    "Journal",
    "JournalBrokenError",
    "JournalCorruptError",
    "JournalError",
    "write_snapshot_file",
]

RECORD_HEADER: Final = struct.Struct("<IIQ")  # crc32, payload length, lsn
SNAPSHOT_HEADER: Final = struct.Struct("<8sQQI")  # magic, lsn, length, crc32
SNAPSHOT_MAGIC: Final = b"OCSSNAP1"
SEGMENT_SUFFIX: Final = ".log"
SNAPSHOT_SUFFIX: Final = ".snap"
TMP_SUFFIX: Final = ".tmp"
DEFAULT_SEGMENT_BYTES: Final = 64 << 20
DEFAULT_MAX_RECORD_BYTES: Final = 16 << 20
# How many LSNs past a damaged record are searched for a valid record (damage in the middle).
_CORRUPTION_LOOKAHEAD: Final = 64
_LSN: Final = struct.Struct("<Q")


class JournalError(Exception):
    """Misuse of the journal or a failed operation."""


class JournalCorruptError(JournalError):
    """The journal or snapshot is damaged in a way recovery must not paper over."""


class JournalBrokenError(JournalError):
    """A write or fsync failed: nothing more may be written (the process must restart)."""


class DataDirLockedError(JournalError):
    """Another process (or another store in this one) holds the data directory."""


_FAILURES: Final = Failures(what="journal", error=JournalError, broken=JournalBrokenError)


def _frame(lsn: int, payload: bytes) -> bytes:
    """One record as written: header (CRC of LSN + payload, length, LSN) + payload."""
    crc = zlib.crc32(payload, zlib.crc32(_LSN.pack(lsn)))
    return RECORD_HEADER.pack(crc, len(payload), lsn) + payload


def _datasync(fd: int) -> None:
    # This module's `fdatasync`, looked up at each call: tests gate or fail the journal's
    # fsyncs (and only the journal's) by replacing it.
    fdatasync(fd)


class DirLock:
    """An exclusive ``flock`` on ``<directory>/LOCK``, taken without waiting.

    flock locks belong to an open file description, so a second `DirLock` on the same directory
    fails in another process and in this one alike. The holder's pid is written into the file
    for the error message. The lock goes away with the process, however it ends.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "LOCK"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = b""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 64, 0).strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = f" (pid {holder.decode(errors='replace')})" if holder else ""
            raise DataDirLockedError(
                f"data directory {self.directory} is in use by another server{who}; "
                f"lock file {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _parse(data: bytes, offset: int, max_len: int) -> tuple[int, int, int] | None:
    """(lsn, payload start, end) of a valid record at ``offset``, else None."""
    if offset + RECORD_HEADER.size > len(data):
        return None
    crc, length, lsn = RECORD_HEADER.unpack_from(data, offset)
    end = offset + RECORD_HEADER.size + length
    if length > max_len or end > len(data):
        return None
    if zlib.crc32(memoryview(data)[offset + 8 : end]) != crc:
        return None
    return lsn, offset + RECORD_HEADER.size, end


def write_snapshot_file(path: Path, lsn: int, data: bytes) -> None:
    """Write and fsync a snapshot file (header + data) at ``path``; `Journal.install_snapshot`
    puts it in place. Touches nothing else, so a forked child process may call it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, lsn, len(data), zlib.crc32(data)))
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Segmented append-only log of byte records, numbered by LSN (1, 2, 3, ...).

    Use: ``j = Journal(dir)``; ``j.load_snapshot()``; iterate ``j.recover(snapshot_lsn)`` to
    the end (it opens the active segment); then `append` (buffers), `flush` (write(2) to the
    OS), `sync` (fsync: durable). Writing is an `ocs.edge.durable.AppendFile` over the segments:
    `append`/`flush`/`sync`/`rotate`/`write_snapshot` are thread-safe, and `sync` does its
    fsync outside the lock on the descriptors the segment already holds (it opens none, so it
    works with every descriptor taken), so appends and writes continue on the event loop while
    a worker thread fsyncs.

    After a failed write or fsync the journal is broken (`JournalBrokenError`): the page cache
    may have dropped the data, and a later fsync could report success without it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_record_bytes = max_record_bytes
        self._lock = threading.Lock()  # the segment list and the snapshot LSN
        self._segments: list[int] = []
        for path in self.directory.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                path.unlink()
            elif path.name.endswith(SEGMENT_SUFFIX):
                self._segments.append(int(path.name.removesuffix(SEGMENT_SUFFIX)))
        self._segments.sort()
        self._snapshot_lsn = 0
        self._out: AppendFile | None = None  # the active segment, from `recover` on

    # -- file names

    def _segment_path(self, first_lsn: int) -> Path:
        return self.directory / f"{first_lsn:020d}{SEGMENT_SUFFIX}"

    def _snapshot_path(self, lsn: int) -> Path:
        return self.directory / f"{lsn:020d}{SNAPSHOT_SUFFIX}"

    def _snapshot_lsns(self) -> list[int]:
        return sorted(
            int(p.name.removesuffix(SNAPSHOT_SUFFIX))
            for p in self.directory.iterdir()
            if p.name.endswith(SNAPSHOT_SUFFIX)
        )

    # -- state

    @property
    def last_lsn(self) -> int:
        """LSN of the last appended record (0: none yet)."""
        out = self._out
        return 0 if out is None else out.last

    @property
    def written_lsn(self) -> int:
        """Every record up to this LSN has been handed to the OS (survives a process crash)."""
        out = self._out
        return 0 if out is None else out.written

    @property
    def durable_lsn(self) -> int:
        """Every record up to this LSN has been fsynced (survives a power loss)."""
        out = self._out
        return 0 if out is None else out.durable

    @property
    def snapshot_lsn(self) -> int:
        return self._snapshot_lsn

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def broken(self) -> BaseException | None:
        out = self._out
        return None if out is None else out.broken

    # -- snapshots

    def load_snapshot(self) -> tuple[int, bytes] | None:
        """The latest snapshot as (lsn, data), or None. A damaged latest snapshot raises
        `JournalCorruptError`: older snapshots are not a fallback, since the journal records
        they would need are compacted away."""
        lsns = self._snapshot_lsns()
        if not lsns:
            return None
        lsn = lsns[-1]
        path = self._snapshot_path(lsn)
        raw = path.read_bytes()
        if len(raw) < SNAPSHOT_HEADER.size:
            raise JournalCorruptError(f"snapshot {path} is truncated")
        magic, header_lsn, length, crc = SNAPSHOT_HEADER.unpack_from(raw, 0)
        data = raw[SNAPSHOT_HEADER.size :]
        if (
            magic != SNAPSHOT_MAGIC
            or header_lsn != lsn
            or length != len(data)
            or zlib.crc32(data) != crc
        ):
            raise JournalCorruptError(f"snapshot {path} fails its checksum")
        self._snapshot_lsn = lsn
        return lsn, data

    def write_snapshot(self, lsn: int, data: bytes) -> None:
        """Atomically store a snapshot of the state after record ``lsn``, then compact.

        The journal is first made durable up to ``lsn`` (a snapshot must never be ahead of the
        log). The file is written under a temporary name, fsynced, renamed into place and the
        directory fsynced; then older snapshots and the segments holding only records <= lsn
        are deleted. Thread-safe; call `rotate` first so the active segment can go too.
        """
        self._check_snapshot_lsn(lsn)
        tmp = self.snapshot_tmp_path(lsn)
        write_snapshot_file(tmp, lsn, data)
        self.install_snapshot(lsn, tmp)

    def snapshot_tmp_path(self, lsn: int, tag: str = "") -> Path:
        """Where a snapshot of ``lsn`` is written before `install_snapshot` renames it into
        place (``tag`` tells writers apart, e.g. a pid). Left-overs are deleted at the next
        start."""
        final = self._snapshot_path(lsn)
        return final.with_name(f"{final.name}{tag}{TMP_SUFFIX}")

    def _check_snapshot_lsn(self, lsn: int) -> None:
        if lsn > self.last_lsn or lsn < self._snapshot_lsn:
            raise JournalError(f"snapshot LSN {lsn} outside {self._snapshot_lsn}..{self.last_lsn}")

    def install_snapshot(self, lsn: int, tmp: Path) -> None:
        """Put a snapshot file written by `write_snapshot_file` in place, then compact.

        The journal is first made durable up to ``lsn`` (a snapshot must never be ahead of the
        log); then ``tmp`` is renamed into place and the directory fsynced; then older
        snapshots and the segments holding only records <= lsn are deleted. Thread-safe."""
        self._check_snapshot_lsn(lsn)
        if self.written_lsn < lsn:
            self.flush()
        if self.durable_lsn < lsn:
            self.sync()
        os.replace(tmp, self._snapshot_path(lsn))
        fsync_dir(self.directory)
        with self._lock:
            self._snapshot_lsn = max(self._snapshot_lsn, lsn)
        for old in self._snapshot_lsns():
            if old < lsn:
                self._snapshot_path(old).unlink(missing_ok=True)
        self.compact(lsn)

    def compact(self, upto_lsn: int) -> int:
        """Delete segments (never the active one) whose records are all <= ``upto_lsn``.
        Returns how many were deleted."""
        with self._lock:
            doomed = [
                first
                for first, following in zip(self._segments, self._segments[1:], strict=False)
                if following <= upto_lsn + 1
            ]
            for first in doomed:
                self._segment_path(first).unlink(missing_ok=True)
            self._segments = self._segments[len(doomed) :]
        if doomed:
            fsync_dir(self.directory)
        return len(doomed)

    # -- recovery

    def recover(self, after_lsn: int = 0) -> Iterator[tuple[int, bytes]]:
        """Check the whole log and yield (lsn, payload) for every record after ``after_lsn``.

        Must be iterated to its end before the first `append`: at the end it truncates a torn
        tail, fsyncs what it found (a crashed process may have left it in the page cache only)
        and positions the writer after the last valid record.
        """
        if self._out is not None and not self._out.closed:
            raise JournalError("recover() already ran")
        segments = self._segments
        expected = after_lsn + 1
        size = 0
        if segments:
            if segments[0] > after_lsn + 1:
                raise JournalCorruptError(
                    f"journal starts at LSN {segments[0]} but the snapshot ends at {after_lsn}: "
                    "records are missing"
                )
            expected = segments[0]
        for index, first in enumerate(segments):
            last = index == len(segments) - 1
            if not last and segments[index + 1] <= after_lsn + 1:
                expected = segments[index + 1]  # wholly covered by the snapshot: not even read
                continue
            if first != expected:
                raise JournalCorruptError(
                    f"segment {self._segment_path(first).name} should start at LSN {expected}"
                )
            path = self._segment_path(first)
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                parsed = _parse(data, offset, self.max_record_bytes)
                if parsed is None:
                    if not last or self._valid_record_follows(data, offset, expected):
                        raise JournalCorruptError(
                            f"{path.name}: damaged record at byte {offset} (LSN {expected}) "
                            "followed by valid records"
                            if last
                            else f"{path.name}: damaged record at byte {offset} (LSN {expected})"
                        )
                    break  # a torn tail: the active segment is cut here when it is opened
                lsn, start, end = parsed
                if lsn != expected:
                    raise JournalCorruptError(
                        f"{path.name}: LSN {lsn} at byte {offset}, expected {expected}"
                    )
                if lsn > after_lsn:
                    yield lsn, data[start:end]
                expected += 1
                offset = end
            size = offset
        last_lsn = expected - 1
        if last_lsn < after_lsn:
            raise JournalCorruptError(
                f"journal ends at LSN {last_lsn} before the snapshot's LSN {after_lsn}"
            )
        self._out = self._open_active(size, last_lsn)
        self._snapshot_lsn = max(self._snapshot_lsn, after_lsn)
        self.compact(after_lsn)

    def _valid_record_follows(self, data: bytes, offset: int, expected: int) -> bool:
        for lsn in range(expected, expected + _CORRUPTION_LOOKAHEAD):
            pattern = _LSN.pack(lsn)
            pos = data.find(pattern, offset + 1)
            while pos != -1:
                start = pos - 8
                if start >= offset:
                    parsed = _parse(data, start, self.max_record_bytes)
                    if parsed is not None and parsed[0] == lsn:
                        return True
                pos = data.find(pattern, pos + 1)
        return False

    def _open_active(self, size: int, last_lsn: int) -> AppendFile:
        """The last segment, cut at ``size`` (its valid records end there) and fsynced, or a
        new one for the records after ``last_lsn``."""
        if self._segments:
            first = self._segments[-1]
            return AppendFile.resume(
                self._segment_path(first),
                size=size,
                first=first,
                last=last_lsn,
                frame=_frame,
                failures=_FAILURES,
                datasync=_datasync,
            )
        first = last_lsn + 1
        out = AppendFile.create(
            self._segment_path(first),
            last=last_lsn,
            frame=_frame,
            failures=_FAILURES,
            datasync=_datasync,
        )
        self._segments.append(first)
        return out

    # -- writing

    def _writer(self) -> AppendFile:
        out = self._out
        if out is None:
            raise JournalError("recover() must run to completion before writing")
        return out

    def append(self, payload: bytes) -> int:
        """Buffer one record; return its LSN. Nothing reaches the OS before `flush`."""
        if len(payload) > self.max_record_bytes:
            raise ValueError(f"record of {len(payload)} bytes exceeds {self.max_record_bytes}")
        out = self._out  # (not `_writer()`: one call less on the per-request path)
        if out is None:
            raise JournalError("recover() must run to completion before writing")
        return out.append(payload)

    def flush(self) -> int:
        """write(2) the buffered records to the active segment; returns `written_lsn`.

        Starts a new segment first if the active one has reached ``segment_bytes`` (the old one
        is fsynced before anything is written to the new one, so only the last segment can ever
        have a torn tail).
        """
        return self._writer().flush(before=self._rotate_if_full)

    def sync(self) -> int:
        """fsync what `flush` has written (and the directory after a rotation); returns
        `durable_lsn`. The fsync runs without holding the append lock; concurrent calls are
        serialized, so a sync never reports records durable while another one is still making
        their segment's directory entry durable."""
        return self._writer().sync()

    def commit(self) -> int:
        """`flush` then `sync`: everything appended so far is durable on return."""
        self.flush()
        return self.sync()

    def rotate(self) -> None:
        """Flush, then start a new segment (no-op if the active one is empty)."""
        self.flush()
        self._writer().run_locked(self._start_segment)

    def _rotate_if_full(self, out: AppendFile) -> None:
        if out.size >= self.segment_bytes:
            self._start_segment(out)

    def _start_segment(self, out: AppendFile) -> None:
        """(``out``'s lock held.) fsync the active segment and start the next, named after
        its first LSN; its directory entry is fsynced by the next sync."""
        if out.size == 0:
            return
        first = out.written + 1
        if out.switch_locked(self._segment_path(first)) is None:
            return  # no descriptor free: this segment grows until the next flush retries
        with self._lock:
            self._segments.append(first)

    def close(self) -> None:
        """Flush and fsync (unless broken), then close the active segment."""
        out = self._out
        if out is None:
            return
        try:
            if not out.closed and out.broken is None:
                self.commit()
        finally:
            out.close()
