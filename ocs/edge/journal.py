"""Append-only, checksummed journal of opaque records, with snapshots, compaction and a
durability mark that tells a torn write from damage.

This is the I/O edge of the balance store: a synchronous file API. It knows nothing of what a
record means; the store puts a one-byte kind tag in front of each payload so several layers can
share one log.

Layout of ``<data-dir>/journal/``::

    00000000000000000001.log    segment: records with LSN 1 .. (first LSN of the next) - 1
    00000000000000052001.log    the active segment (the last one)
    00000000000000052000.snap   the latest snapshot: state after applying records 1..52000
    durable.mark                every record up to the LSN it holds was fsynced

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

Durability mark (``durable.mark``): two slots, at bytes 0 and 512, each::

    offset 0   8 bytes  magic b"OCSDUR1\\0"
    offset 8   u64      LSN: every record <= LSN was fsynced before this slot was written
    offset 16  u32      CRC-32 of bytes 0 .. 16

`Journal.sync` writes the LSN it made durable into the older slot (pwrite, no fsync) before it
returns, so before group commit releases an answer: every acknowledged record is at or below
the mark. The mark is a lower bound (a power loss may keep an older slot), never ahead of what
was fsynced. The slot with the highest LSN among those whose CRC holds is the mark.

Torn write or damage (`Journal.recover`; docs/durability.md): a record at or below the mark
that is missing, cut short or fails its checks is **damage** (`JournalCorruptError`, naming the
segment, byte offset, LSN and reason; nothing is changed), and so is anything wrong in a segment
before the last (a segment is fsynced before the next one starts). In the last segment, the
first record above the mark that does not check out starts a **torn tail**: those bytes were
never fsynced, so never acknowledged (strict group commit), and the file is cut there. A
journal without a mark file (written before marks existed) is read with the earlier rule: a
torn tail unless a valid record with a later LSN follows it; recovery then writes the mark.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, NamedTuple

import msgspec

from ocs.edge.durable import AppendFile, Failures
from ocs.edge.fileio import fdatasync, fsync_dir, write_all

__all__ = [
    "MARK_NAME",
    "DataDirLockedError",
    "DirLock",
    "Journal",
    "JournalBrokenError",
    "JournalCorruptError",
    "JournalError",
    "JournalRecord",
    "ScanEnd",
    "TornTail",
    "Unreadable",
    "iter_entries",
    "list_segments",
    "list_snapshots",
    "read_mark",
    "read_snapshot",
    "scan",
    "segment_name",
    "write_snapshot_file",
]

RECORD_HEADER: Final = struct.Struct("<IIQ")  # crc32, payload length, lsn
SNAPSHOT_HEADER: Final = struct.Struct("<8sQQI")  # magic, lsn, length, crc32
SNAPSHOT_MAGIC: Final = b"OCSSNAP1"
SEGMENT_SUFFIX: Final = ".log"
SNAPSHOT_SUFFIX: Final = ".snap"
TMP_SUFFIX: Final = ".tmp"
MARK_NAME: Final = "durable.mark"
MARK_SLOT: Final = struct.Struct("<8sQI")  # magic, lsn, crc32 of magic + lsn
MARK_MAGIC: Final = b"OCSDUR1\0"
MARK_SLOT_OFFSETS: Final = (0, 512)  # in different sectors: a torn write spoils one slot only
DEFAULT_SEGMENT_BYTES: Final = 64 << 20
DEFAULT_MAX_RECORD_BYTES: Final = 16 << 20
# How many LSNs past a damaged record are searched for a valid record (damage in the middle).
_CORRUPTION_LOOKAHEAD: Final = 64
_LSN: Final = struct.Struct("<Q")


class JournalError(Exception):
    """Misuse of the journal or a failed operation."""


class JournalCorruptError(JournalError):
    """The journal or snapshot is damaged in a way recovery must not paper over.

    Where it is known: the file (``segment``, a name in the journal directory), the byte
    ``offset`` in it, the ``lsn`` of the record that should be there, and the ``reason`` (what
    is wrong with the bytes); the message says all of it."""

    def __init__(
        self,
        message: str,
        *,
        segment: str | None = None,
        offset: int | None = None,
        lsn: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.offset = offset
        self.lsn = lsn
        self.reason = message if reason is None else reason


class JournalBrokenError(JournalError):
    """A write or fsync failed: nothing more may be written (the process must restart)."""


class DataDirLockedError(JournalError):
    """Another process (or another store in this one) holds the data directory."""


class JournalRecord(NamedTuple):
    """A record read back, with where it is: ``segment`` (file name) and byte ``offset``."""

    lsn: int
    payload: bytes
    segment: str
    offset: int


class TornTail(msgspec.Struct, frozen=True, kw_only=True):
    """What recovery cut off the last segment: ``dropped_bytes`` from byte ``offset`` of
    ``segment``, where the record ``lsn`` would have started; ``reason``: why it is not one."""

    segment: str
    offset: int
    dropped_bytes: int
    lsn: int
    reason: str


class Unreadable(msgspec.Struct, frozen=True, kw_only=True):
    """`iter_entries`: ``length`` bytes from ``offset`` in ``segment`` that are not the record
    ``lsn`` expected there (``reason``). ``unverified``: the payload its length field delimits,
    if that lies within the file, for an operator to look at (its checksum fails)."""

    segment: str
    offset: int
    length: int
    lsn: int
    reason: str
    unverified: bytes | None = None


class ScanEnd(NamedTuple):
    """How a `scan` ended: the last valid LSN, the valid size of the last segment, the torn
    tail found after it (None: the segment ends with a whole record)."""

    last_lsn: int
    size: int
    torn: TornTail | None


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


# -- reading (no side effects: also for inspection while a server runs)


def segment_name(first_lsn: int) -> str:
    """The file name of the segment whose first record is ``first_lsn``."""
    return f"{first_lsn:020d}{SEGMENT_SUFFIX}"


def _snapshot_name(lsn: int) -> str:
    return f"{lsn:020d}{SNAPSHOT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """The first LSNs of the segments in ``directory``, in order."""
    return sorted(
        int(p.name.removesuffix(SEGMENT_SUFFIX))
        for p in directory.iterdir()
        if p.name.endswith(SEGMENT_SUFFIX)
    )


def list_snapshots(directory: Path) -> list[int]:
    """The LSNs of the snapshots in ``directory``, in order (the last is in force)."""
    return sorted(
        int(p.name.removesuffix(SNAPSHOT_SUFFIX))
        for p in directory.iterdir()
        if p.name.endswith(SNAPSHOT_SUFFIX)
    )


def read_snapshot(directory: Path, lsn: int) -> bytes:
    """The data of snapshot ``lsn``, checked (`JournalCorruptError` if it does not hold)."""
    name = _snapshot_name(lsn)
    raw = (directory / name).read_bytes()
    if len(raw) < SNAPSHOT_HEADER.size:
        raise JournalCorruptError(
            f"snapshot {directory / name} is truncated", segment=name, offset=0, lsn=lsn
        )
    magic, header_lsn, length, crc = SNAPSHOT_HEADER.unpack_from(raw, 0)
    data = raw[SNAPSHOT_HEADER.size :]
    if (
        magic != SNAPSHOT_MAGIC
        or header_lsn != lsn
        or length != len(data)
        or zlib.crc32(data) != crc
    ):
        raise JournalCorruptError(
            f"snapshot {directory / name} fails its checksum",
            segment=name,
            offset=0,
            lsn=lsn,
            reason="snapshot fails its checksum",
        )
    return data


def _pack_mark(lsn: int) -> bytes:
    head = MARK_MAGIC + _LSN.pack(lsn)
    return MARK_SLOT.pack(MARK_MAGIC, lsn, zlib.crc32(head))


def _mark_slots(raw: bytes) -> list[int | None]:
    """The LSN of each slot of a mark file, None where the slot does not check out."""
    slots: list[int | None] = []
    for offset in MARK_SLOT_OFFSETS:
        value = None
        if len(raw) >= offset + MARK_SLOT.size:
            magic, lsn, crc = MARK_SLOT.unpack_from(raw, offset)
            if magic == MARK_MAGIC and zlib.crc32(raw[offset : offset + 16]) == crc:
                value = lsn
        slots.append(value)
    return slots


def read_mark(directory: Path) -> int | None:
    """The durability mark: every record up to this LSN was fsynced. None if there is no mark
    file (a journal written before marks existed); `JournalCorruptError` if neither slot holds
    (the file is created whole, by a rename, so that is damage, not a torn write)."""
    try:
        raw = (directory / MARK_NAME).read_bytes()
    except FileNotFoundError:
        return None
    values = [v for v in _mark_slots(raw) if v is not None]
    if not values:
        raise JournalCorruptError(
            f"{directory / MARK_NAME}: neither slot of the durability mark checks out",
            segment=MARK_NAME,
            offset=0,
            reason="durability mark damaged",
        )
    return max(values)


def _check(data: bytes, offset: int, max_len: int) -> tuple[int, int, int] | str:
    """(lsn, payload start, end) of a whole record with a valid CRC at ``offset``, else what
    is wrong."""
    present = len(data) - offset
    if present < RECORD_HEADER.size:
        return f"header cut short ({present} of {RECORD_HEADER.size} bytes)"
    crc, length, lsn = RECORD_HEADER.unpack_from(data, offset)
    if length > max_len:
        return f"length field {length} exceeds the limit {max_len}"
    size = RECORD_HEADER.size + length
    if size > present:
        return f"record cut short ({present} of {size} bytes)"
    if zlib.crc32(memoryview(data)[offset + 8 : offset + size]) != crc:
        return "checksum mismatch"
    return lsn, offset + RECORD_HEADER.size, offset + size


def _failure(data: bytes, offset: int, checked: tuple[int, int, int] | str, expected: int) -> str:
    """What is wrong at ``offset``, where `_check` found ``checked`` and ``expected`` was due."""
    if isinstance(checked, tuple):
        return f"LSN {checked[0]} where {expected} was expected"
    if data.count(0, offset) == len(data) - offset:
        return f"zero-filled to the end of the file ({len(data) - offset} bytes)"
    return checked


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


def _find_valid_record(data: bytes, offset: int, expected: int, max_len: int) -> int | None:
    """The first byte after ``offset`` where a valid record with an LSN in ``expected`` ..
    ``expected`` + 63 starts, or None."""
    found: int | None = None
    for lsn in range(expected, expected + _CORRUPTION_LOOKAHEAD):
        pattern = _LSN.pack(lsn)
        pos = data.find(pattern, offset + 1)
        while pos != -1 and (found is None or pos - 8 < found):
            start = pos - 8
            if start > offset:
                parsed = _parse(data, start, max_len)
                if parsed is not None and parsed[0] == lsn:
                    found = start
                    break
            pos = data.find(pattern, pos + 1)
    return found


def scan(
    directory: Path,
    segments: list[int],
    *,
    after_lsn: int,
    mark: int | None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Generator[JournalRecord, None, ScanEnd]:
    """Check the log and yield every record after ``after_lsn`` (the snapshot's); return how
    it ends. Reads only: `Journal.recover` cuts the torn tail afterwards.

    Raises `JournalCorruptError` (as soon as it is found, possibly after yielding records) for
    anything recovery must not paper over; see the module documentation for the rule, with
    ``mark`` the durability mark (None: no mark file)."""
    expected = after_lsn + 1
    size = 0
    torn: TornTail | None = None
    name = ""
    if segments:
        if segments[0] > after_lsn + 1:
            name = segment_name(segments[0])
            raise JournalCorruptError(
                f"journal starts at LSN {segments[0]} but the snapshot ends at {after_lsn}: "
                "records are missing",
                segment=name,
                offset=0,
                lsn=after_lsn + 1,
                reason=f"records {after_lsn + 1}..{segments[0] - 1} are missing",
            )
        expected = segments[0]
    for index, first in enumerate(segments):
        last = index == len(segments) - 1
        if not last and segments[index + 1] <= after_lsn + 1:
            expected = segments[index + 1]  # wholly covered by the snapshot: not even read
            continue
        name = segment_name(first)
        if first != expected:
            raise JournalCorruptError(
                f"segment {name} should start at LSN {expected}",
                segment=name,
                offset=0,
                lsn=expected,
                reason=f"records {expected}..{first - 1} are missing",
            )
        data = (directory / name).read_bytes()
        offset = 0
        while offset < len(data):
            checked = _check(data, offset, max_record_bytes)
            if isinstance(checked, tuple) and checked[0] == expected:
                lsn, start, end = checked
                if lsn > after_lsn:
                    yield JournalRecord(lsn, data[start:end], name, offset)
                expected += 1
                offset = end
                continue
            valid = isinstance(checked, tuple)
            reason = _failure(data, offset, checked, expected)
            why = None
            if not last:
                why = "the segment was sealed (fsynced before the next one started)"
            elif mark is not None and expected <= mark:
                why = f"it was made durable (durability mark at LSN {mark})"
            elif mark is None and valid:
                why = "a valid record is out of sequence"
            elif (
                mark is None
                and _find_valid_record(data, offset, expected, max_record_bytes) is not None
            ):
                why = "valid records follow it"
            if why is not None:
                raise JournalCorruptError(
                    f"{name}: record LSN {expected} at byte {offset} is damaged ({reason}); {why}",
                    segment=name,
                    offset=offset,
                    lsn=expected,
                    reason=reason,
                )
            torn = TornTail(
                segment=name,
                offset=offset,
                dropped_bytes=len(data) - offset,
                lsn=expected,
                reason=reason,
            )
            break
        size = offset
    last_lsn = expected - 1
    if last_lsn < after_lsn:
        raise JournalCorruptError(
            f"journal ends at LSN {last_lsn} before the snapshot's LSN {after_lsn}",
            segment=name or None,
            offset=size,
            lsn=last_lsn + 1,
            reason=f"records {last_lsn + 1}..{after_lsn} are missing",
        )
    if mark is not None and last_lsn < mark:
        where = f" ({name} byte {size})" if name else ""
        raise JournalCorruptError(
            f"journal ends at LSN {last_lsn}{where} but records up to LSN {mark} were made "
            "durable (durability mark): records are missing (a cut or a lost file)",
            segment=name or None,
            offset=size,
            lsn=last_lsn + 1,
            reason=f"records {last_lsn + 1}..{mark} were made durable and are missing",
        )
    return ScanEnd(last_lsn, size, torn)


def iter_entries(
    directory: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[JournalRecord | Unreadable]:
    """Every record of every segment in file order, for inspection tools: reads only, never
    stops. Bytes that are not the record expected (by LSN) are one `Unreadable` entry, and
    reading goes on at the next valid record within 64 LSNs, if any, in the same segment."""
    expected: int | None = None
    for first in list_segments(directory):
        name = segment_name(first)
        if expected is None or first != expected:
            expected = first
        data = (directory / name).read_bytes()
        offset = 0
        while offset < len(data):
            checked = _check(data, offset, max_record_bytes)
            if isinstance(checked, tuple) and checked[0] == expected:
                lsn, start, end = checked
                yield JournalRecord(lsn, data[start:end], name, offset)
                expected += 1
                offset = end
                continue
            reason = _failure(data, offset, checked, expected)
            resume = _find_valid_record(data, offset, expected, max_record_bytes)
            stop = len(data) if resume is None else resume
            unverified = None
            if len(data) - offset >= RECORD_HEADER.size and not isinstance(checked, tuple):
                length = RECORD_HEADER.unpack_from(data, offset)[1]
                start = offset + RECORD_HEADER.size
                if length <= max_record_bytes and start + length <= len(data):
                    unverified = data[start : start + length]
            yield Unreadable(
                segment=name,
                offset=offset,
                length=stop - offset,
                lsn=expected,
                reason=reason,
                unverified=unverified,
            )
            if resume is None:
                break
            offset = resume
            expected = RECORD_HEADER.unpack_from(data, resume)[2]


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

    Use: ``j = Journal(dir)``; ``j.load_snapshot()``; iterate ``j.recover(snapshot_lsn)`` (or
    `recover_records`) to the end (it opens the active segment); then `append` (buffers),
    `flush` (write(2) to the OS), `sync` (fsync: durable, and the durability mark written).
    Writing is an `ocs.edge.durable.AppendFile` over the segments:
    `append`/`flush`/`sync`/`rotate`/`write_snapshot` are thread-safe, and `sync` does its
    fsync outside the lock on the descriptors the segment already holds (it opens none, so it
    works with every descriptor taken), so appends and writes continue on the event loop while
    a worker thread fsyncs.

    After a failed write, fsync or mark write the journal is broken (`JournalBrokenError`): the
    page cache may have dropped the data, and a later fsync could report success without it.
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
        for path in self.directory.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                path.unlink()
        self._segments: list[int] = list_segments(self.directory)
        self._snapshot_lsn = 0
        self._out: AppendFile | None = None  # the active segment, from `recover` on
        self._mark_lock = threading.Lock()  # the mark file, its slot and value
        self._mark_fd: int | None = None
        self._mark_slot = 0  # the slot written last
        self._marked = 0  # the LSN in the mark: what `durable_lsn` reports
        self._mark_broken: OSError | None = None
        #: What recovery found: the durability mark (None: no mark file) and the torn tail it
        #: cut (None: none).
        self.mark_found: int | None = None
        self.torn_tail: TornTail | None = None

    # -- file names

    def _segment_path(self, first_lsn: int) -> Path:
        return self.directory / segment_name(first_lsn)

    def _snapshot_path(self, lsn: int) -> Path:
        return self.directory / _snapshot_name(lsn)

    def _snapshot_lsns(self) -> list[int]:
        return list_snapshots(self.directory)

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
        """Every record up to this LSN has been fsynced (survives a power loss), and the
        durability mark says so (recovery will call damage to any of them damage)."""
        return self._marked

    @property
    def snapshot_lsn(self) -> int:
        return self._snapshot_lsn

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def broken(self) -> BaseException | None:
        out = self._out
        if out is not None and out.broken is not None:
            return out.broken
        return self._mark_broken

    # -- snapshots

    def load_snapshot(self) -> tuple[int, bytes] | None:
        """The latest snapshot as (lsn, data), or None. A damaged latest snapshot raises
        `JournalCorruptError`: older snapshots are not a fallback, since the journal records
        they would need are compacted away."""
        lsns = self._snapshot_lsns()
        if not lsns:
            return None
        lsn = lsns[-1]
        data = read_snapshot(self.directory, lsn)
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
        """`recover_records`, as (lsn, payload) pairs."""
        for record in self.recover_records(after_lsn):
            yield record.lsn, record.payload

    def recover_records(self, after_lsn: int = 0) -> Iterator[JournalRecord]:
        """Check the whole log and yield every record after ``after_lsn``, with its place.

        Must be iterated to its end before the first `append`: at the end it cuts a torn tail
        (`torn_tail` tells what), fsyncs what it found (a crashed process may have left it in
        the page cache only), writes the durability mark up to there and positions the writer
        after the last valid record. Damage raises `JournalCorruptError` before anything is
        changed (see the module documentation for how the two are told apart).
        """
        if self._out is not None and not self._out.closed:
            raise JournalError("recover() already ran")
        mark = read_mark(self.directory)
        end = yield from scan(
            self.directory,
            self._segments,
            after_lsn=after_lsn,
            mark=mark,
            max_record_bytes=self.max_record_bytes,
        )
        self.mark_found = mark
        self.torn_tail = end.torn
        self._out = self._open_active(end.size, end.last_lsn)
        self._open_mark(end.last_lsn)
        self._snapshot_lsn = max(self._snapshot_lsn, after_lsn)
        self.compact(after_lsn)

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

    def _open_mark(self, lsn: int) -> None:
        """Mark every record recovery found (fsynced by `_open_active`) as durable: write the
        older slot and fsync it, or create the file whole (temporary name, fsync, rename,
        directory fsync) if there is none."""
        path = self.directory / MARK_NAME
        if path.exists():
            fd = os.open(path, os.O_RDWR)
            try:
                raw = os.pread(fd, MARK_SLOT_OFFSETS[1] + MARK_SLOT.size, 0)
                values = [-1 if v is None else v for v in _mark_slots(raw)]
                self._mark_slot = 1 if values[0] >= values[1] else 0  # the older one
                os.pwrite(fd, _pack_mark(lsn), MARK_SLOT_OFFSETS[self._mark_slot])
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
        else:
            tmp = path.with_name(MARK_NAME + TMP_SUFFIX)
            content = bytearray(MARK_SLOT_OFFSETS[1] + MARK_SLOT.size)
            for offset in MARK_SLOT_OFFSETS:
                content[offset : offset + MARK_SLOT.size] = _pack_mark(lsn)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, bytes(content))
                os.fsync(fd)
                os.replace(tmp, path)
                fsync_dir(self.directory)
            except BaseException:
                os.close(fd)
                raise
            self._mark_slot = 1
        self._mark_fd = fd
        self._marked = lsn

    def _write_mark(self, lsn: int) -> None:
        """(``_mark_lock`` held.) Write ``lsn`` into the older slot; no fsync (the mark is a
        lower bound: an older slot surviving a power loss is still true)."""
        fd = self._mark_fd
        if fd is None:
            raise JournalError("the journal is closed")
        slot = self._mark_slot ^ 1
        try:
            os.pwrite(fd, _pack_mark(lsn), MARK_SLOT_OFFSETS[slot])
        except OSError as exc:
            self._mark_broken = exc
            raise JournalBrokenError(f"journal durability mark write failed: {exc}") from exc
        self._mark_slot = slot
        self._marked = lsn

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
        """fsync what `flush` has written (and the directory after a rotation), then write the
        durability mark; returns `durable_lsn`. The fsync runs without holding the append lock;
        concurrent calls are serialized, so a sync never reports records durable while another
        one is still making their segment's directory entry durable. Records count as durable
        (`durable_lsn`) only once the mark says so: whoever releases an answer on that basis
        can rely on recovery calling damage to its record damage."""
        durable = self._writer().sync()
        with self._mark_lock:
            if self._mark_broken is not None:
                raise JournalBrokenError("the journal failed earlier") from self._mark_broken
            if durable > self._marked:
                self._write_mark(durable)
            return self._marked

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
        """Flush and fsync (unless broken), then close the active segment and the mark."""
        out = self._out
        if out is None:
            return
        try:
            if not out.closed and self.broken is None:
                self.commit()
        finally:
            out.close()
            with self._mark_lock:
                if self._mark_fd is not None:
                    os.close(self._mark_fd)
                    self._mark_fd = None
