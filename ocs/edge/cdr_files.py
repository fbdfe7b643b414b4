"""CDR files: JSON Lines, one record a line, rotated by size or age (WIRE.md section 9).

This is the I/O edge of the CDR path: a synchronous file API. The domain core produces each CDR
as an encoded JSON object with a ``recordSequenceNumber`` it assigned (1, 2, 3, ... per data
directory); this module only moves those bytes, in order, and tells the server at start-up how
far the files go, so that the records journal replay regenerates are written exactly once.

Layout of ``<data-dir>/cdr/`` (the ``directory`` given to `CdrWriter` and the readers)::

    cdr-000000000001-000000052000.jsonl   complete: records 1 .. 52000 (name: first-last)
    cdr-000000052001-000000104377.jsonl   complete: records 52001 .. 104377
    cdr-000000104378.jsonl.current        being written: records from 104378 on

The current file carries the sequence number of its first record, so the directory tells the
last sequence number written even when every complete file has been collected and removed by
downstream mediation, and even when the current file is empty. Only ``*.jsonl`` files are
complete; the current file does not match ``cdr-*.jsonl``, so a collector never takes it.

Rotation (`CdrWriter.flush`, `CdrWriter.maybe_rotate`, `CdrWriter.rotate`): fsync the current
file, create the next current file (first = last + 1), rename the old one to its complete name,
fsync the directory. A crash between the create and the rename leaves two current files: `open`
finishes the rotation (the older one was fsynced before the newer one was created).

Recovery (`CdrWriter.open`): the complete files are known by name alone (only the last line of
the newest is read, as a check); the current file is read line by line. The first line that is
not whole (no final ``\\n``, even if the JSON before it is complete), is not a JSON object or has
no integer ``recordSequenceNumber`` starts a torn tail, which is truncated away, unless a valid
record follows it (damage in the middle: `CdrCorruptError`). A gap or a repeat in the sequence
anywhere (across the names and inside the current file) is `CdrCorruptError`; nothing is changed
on disk when `open` raises.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from ocs.edge.durable import AppendFile, Failures, OutOfSequenceError

__all__ = [
    "CdrBrokenError",
    "CdrCorruptError",
    "CdrError",
    "CdrSequenceError",
    "CdrWriter",
    "cdr_files",
    "current_name",
    "iter_file_records",
    "iter_records",
    "read_lines",
    "read_sequence_numbers",
    "rotated_name",
]

DEFAULT_ROTATE_BYTES: Final = 64 << 20
DEFAULT_ROTATE_SECONDS: Final = 3600.0
CURRENT_SUFFIX: Final = ".jsonl.current"
COMPLETE_SUFFIX: Final = ".jsonl"

_CURRENT_RE: Final = re.compile(r"cdr-(\d{12,})\.jsonl\.current")
_ROTATED_RE: Final = re.compile(r"cdr-(\d{12,})-(\d{12,})\.jsonl")
_NL: Final = b"\n"
# How much of the end of a complete file is read at a time to find its last line.
_TAIL_CHUNK: Final = 64 << 10


class CdrError(Exception):
    """Misuse of the CDR writer or a failed operation."""


class CdrCorruptError(CdrError):
    """The CDR files are damaged in a way recovery must not paper over (gap, repeat, bad file)."""


class CdrBrokenError(CdrError):
    """A write, fsync or rotation failed: nothing more may be written (the process must restart,
    and `CdrWriter.open` recovers from what is on disk)."""


class CdrSequenceError(CdrError):
    """`CdrWriter.append` was given a sequence number other than last + 1 (a bug in the caller)."""


_FAILURES: Final = Failures(what="CDR writer", error=CdrError, broken=CdrBrokenError)


def _frame(seq: int, line: bytes) -> bytes:
    return line + _NL


class _Seq(msgspec.Struct):
    seq: int = msgspec.field(name="recordSequenceNumber")


_SEQ_DECODER: Final = msgspec.json.Decoder(_Seq)
_ANY_DECODER: Final = msgspec.json.Decoder()


def _decode_seq(line: bytes | memoryview) -> int | None:
    """The ``recordSequenceNumber`` of one line (without its newline), None if not a record."""
    try:
        return _SEQ_DECODER.decode(line).seq
    except msgspec.DecodeError:  # ValidationError is a DecodeError
        return None


def current_name(first: int) -> str:
    """File name of the current file whose first record is ``first``."""
    return f"cdr-{first:012d}{CURRENT_SUFFIX}"


def rotated_name(first: int, last: int) -> str:
    """File name of the complete file holding records ``first`` .. ``last``."""
    return f"cdr-{first:012d}-{last:012d}{COMPLETE_SUFFIX}"


@dataclass(frozen=True, slots=True)
class _File:
    first: int
    last: int | None  # None: a current file (its end is known only by reading it)
    path: Path

    @property
    def current(self) -> bool:
        return self.last is None


def _list_files(directory: Path) -> list[_File]:
    """CDR files of ``directory`` sorted by first sequence number (complete before current on a
    tie, which is corruption anyway). Other names are ignored."""
    files: list[_File] = []
    for path in directory.iterdir():
        if match := _CURRENT_RE.fullmatch(path.name):
            files.append(_File(int(match[1]), None, path))
        elif match := _ROTATED_RE.fullmatch(path.name):
            files.append(_File(int(match[1]), int(match[2]), path))
    files.sort(key=lambda f: (f.first, f.current))
    return files


@dataclass(frozen=True, slots=True)
class _Scan:
    last: int  # sequence number of the last whole record (first - 1 if none)
    valid_end: int  # byte offset just past it
    size: int  # size of the file as read


def _scan(path: Path, first: int) -> _Scan:
    """Read a current file: check the records run first, first + 1, ... and find where the valid
    records end. Raises `CdrCorruptError` on a gap or repeat, or on a valid record after a bad
    line (damage in the middle, not a torn tail)."""
    data = path.read_bytes()
    view = memoryview(data)
    expected = first
    pos = 0
    size = len(data)
    while pos < size:
        nl = data.find(_NL, pos)
        seq = None if nl < 0 else _decode_seq(view[pos:nl])
        if seq is None:
            if _record_follows(data, pos):
                raise CdrCorruptError(
                    f"{path.name}: damaged line at byte {pos} (expected record {expected}) "
                    "followed by valid records"
                )
            break
        if seq != expected:
            kind = "repeat" if seq < expected else "gap"
            raise CdrCorruptError(
                f"{path.name}: record {seq} at byte {pos}, expected {expected} ({kind})"
            )
        expected += 1
        pos = nl + 1
    return _Scan(last=expected - 1, valid_end=pos, size=size)


def _record_follows(data: bytes, bad: int) -> bool:
    """Whether a whole line after the bad line at ``bad`` decodes as a record."""
    view = memoryview(data)
    pos = data.find(_NL, bad)
    while pos >= 0:
        start = pos + 1
        nl = data.find(_NL, start)
        if nl < 0:
            return False
        if _decode_seq(view[start:nl]) is not None:
            return True
        pos = nl
    return False


def _last_line(path: Path) -> bytes | None:
    """The last line of a file without its newline; None if the file is empty or does not end
    with a newline."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None
        f.seek(end - 1)
        if f.read(1) != _NL:
            return None
        tail = b""
        pos = end - 1  # the final newline
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            f.seek(start)
            tail = f.read(pos - start) + tail
            nl = tail.rfind(_NL)
            if nl >= 0:
                return tail[nl + 1 :]
            pos = start
        return tail


class CdrWriter:
    """Writes CDR lines in sequence into ``directory`` (``<data-dir>/cdr``).

    Use: ``w = CdrWriter(dir)``; ``last = w.open()``; the server re-writes every record journal
    replay regenerates with a sequence number above ``last``, then `append` (buffers), `flush`
    (one write(2) per batch), `sync` (fsync); `commit` is both, once per batch, after the
    journal's own commit of the requests that produced the records (see docs/cdr-files.md).

    Writing is an `ocs.edge.durable.AppendFile` over the files: `append`, `flush`, `sync`,
    `commit`, `rotate`, `maybe_rotate` and `close` are thread-safe, and `sync` runs its fsync
    outside the lock on the descriptors the file already holds (it opens none), so a worker
    thread can fsync while the event loop appends and writes.

    After a failed write, fsync or rotation the writer is broken (`CdrBrokenError`): the page
    cache may have dropped data, so nothing more is written; a restart recovers with `open`.
    The data directory lock (`ocs.edge.journal.DirLock`) keeps a second server out.
    """

    __slots__ = (
        "_clock",
        "_file_started",
        "_out",
        "directory",
        "rotate_bytes",
        "rotate_seconds",
    )

    def __init__(
        self,
        directory: Path,
        *,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rotate_bytes <= 0:
            raise ValueError(f"rotate_bytes must be positive, not {rotate_bytes}")
        if not rotate_seconds > 0:
            raise ValueError(f"rotate_seconds must be positive, not {rotate_seconds}")
        self.directory = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self._clock = clock
        self._out: AppendFile | None = None  # the current file, from `open` on
        self._file_started: float | None = None  # clock() when the current file got a record

    # -- state

    @property
    def last_sequence(self) -> int:
        """Sequence number of the last appended record (0: none); after `open`, the last on
        disk."""
        out = self._out
        return 0 if out is None else out.last

    @property
    def written_sequence(self) -> int:
        """Every record up to this one has been handed to the OS (survives a process crash)."""
        out = self._out
        return 0 if out is None else out.written

    @property
    def durable_sequence(self) -> int:
        """Every record up to this one has been fsynced (survives a power loss)."""
        out = self._out
        return 0 if out is None else out.durable

    @property
    def current_path(self) -> Path | None:
        """The file being written (None before `open` and after `close`)."""
        out = self._out
        return None if out is None or out.closed else out.path

    @property
    def broken(self) -> BaseException | None:
        """The error that broke the writer, if any."""
        out = self._out
        return None if out is None else out.broken

    # -- recovery

    def open(self) -> int:
        """Create the directory if needed, recover the files and return the highest
        ``recordSequenceNumber`` completely on disk (0 if none).

        Checks that the sequence is contiguous over all files (`CdrCorruptError` if not; the
        oldest file present may start above 1, since complete files may have been collected),
        truncates a torn tail of the current file, finishes a rotation a crash interrupted,
        fsyncs the current file (a crashed process may have left it in the page cache only) and
        positions the writer after the last record.
        """
        out = self._out
        if out is not None:
            if not out.closed:
                raise CdrError("the CDR writer is already open")
            if out.broken is not None:
                raise CdrBrokenError("the CDR writer failed earlier") from out.broken
        self.directory.mkdir(parents=True, exist_ok=True)
        files = _list_files(self.directory)
        last, scans = self._check(files)
        self._out = self._recover(files, scans, last)
        return last

    def _check(self, files: list[_File]) -> tuple[int, dict[Path, _Scan]]:
        """Validate ``files`` without changing anything; return the last sequence number and
        what was found in the current files."""
        newest_current = max((f for f in files if f.current), key=lambda f: f.first, default=None)
        if newest_current is not None and newest_current is not files[-1]:
            raise CdrCorruptError(
                f"current file {newest_current.path.name} precedes {files[-1].path.name}"
            )
        newest_rotated = max(
            (f for f in files if not f.current), key=lambda f: f.first, default=None
        )
        previous: _File | None = None
        scans: dict[Path, _Scan] = {}
        expected = files[0].first if files else 1
        for f in files:
            if f.first < 1:
                raise CdrCorruptError(f"{f.path.name}: sequence numbers start at 1")
            if f.first != expected:
                assert previous is not None
                kind = "repeat" if f.first < expected else "gap"
                raise CdrCorruptError(
                    f"{f.path.name} starts at {f.first} but {previous.path.name} ends at "
                    f"{expected - 1} ({kind})"
                )
            if f.last is not None:
                if f.last < f.first:
                    raise CdrCorruptError(f"{f.path.name}: last record before first")
                if f is newest_rotated:
                    line = _last_line(f.path)
                    seq = None if line is None else _decode_seq(line)
                    if seq != f.last:
                        raise CdrCorruptError(
                            f"{f.path.name}: last line is not record {f.last} "
                            f"({'not a whole record' if seq is None else f'record {seq}'})"
                        )
                expected = f.last + 1
            else:
                scan = scans[f.path] = _scan(f.path, f.first)
                if f is not newest_current and scan.valid_end != scan.size:
                    raise CdrCorruptError(
                        f"{f.path.name}: torn tail in a current file that was being rotated "
                        "(it was fsynced before the next one was created)"
                    )
                if f is not newest_current and scan.last < f.first:
                    raise CdrCorruptError(f"{f.path.name}: empty current file being rotated")
                expected = scan.last + 1
            previous = f
        return expected - 1, scans

    def _recover(self, files: list[_File], scans: dict[Path, _Scan], last: int) -> AppendFile:
        """Apply what `_check` found: finish interrupted rotations, cut the torn tail, create
        the current file if there is none; return it open for appending (fsynced, and the
        directory too)."""
        currents = [f for f in files if f.current]
        for older in currents[:-1]:  # left by a crash inside a rotation: finish it
            older.path.rename(self.directory / rotated_name(older.first, scans[older.path].last))
        if currents:
            newest = currents[-1]
            out = AppendFile.resume(
                newest.path,
                size=scans[newest.path].valid_end,
                first=newest.first,
                last=last,
                frame=_frame,
                failures=_FAILURES,
            )
        else:
            out = AppendFile.create(
                self.directory / current_name(last + 1),
                last=last,
                frame=_frame,
                failures=_FAILURES,
            )
        self._file_started = self._clock() if out.size else None
        return out

    # -- writing

    def _writer(self) -> AppendFile:
        out = self._out
        if out is None:
            raise CdrError("open() must run before writing")
        return out

    def append(self, seq: int, line: bytes) -> None:
        """Buffer one record: ``line`` is its JSON object, without a trailing newline, whose
        ``recordSequenceNumber`` is ``seq``, which must be `last_sequence` + 1 (else
        `CdrSequenceError`). Nothing reaches the OS before `flush`."""
        if _NL in line:
            raise ValueError("a CDR line must not contain a newline")
        found = _decode_seq(line)
        if found is None:
            raise ValueError("a CDR line must be a JSON object with an int recordSequenceNumber")
        if found != seq:
            raise ValueError(f"line has recordSequenceNumber {found}, appended as {seq}")
        try:
            self._writer().append(line, seq)
        except OutOfSequenceError as exc:
            raise CdrSequenceError(
                f"CDR sequence number {seq} appended after {exc.last} (expected {exc.last + 1})"
            ) from None

    def flush(self) -> int:
        """write(2) the buffered records to the current file in one write; return
        `written_sequence`.

        Rotates first if the current file is older than ``rotate_seconds``, and after the write
        if it has reached ``rotate_bytes`` (the rotation fsyncs the file it completes).
        """
        return self._writer().flush(before=self._rotate_if_old, after=self._after_write)

    def sync(self) -> int:
        """fsync what `flush` has written; return `durable_sequence`. The fsync runs without
        holding the lock."""
        return self._writer().sync()

    def commit(self) -> int:
        """`flush` then `sync`: every appended record is durable on return."""
        self.flush()
        return self.sync()

    def maybe_rotate(self) -> bool:
        """Rotate if the current file has reached ``rotate_bytes`` or is older than
        ``rotate_seconds`` (for a timer); return whether it rotated. Only what was written is
        rotated: buffered records go to the next file with the next `flush`."""
        return self._writer().run_locked(self._rotate_if_due)

    def rotate(self) -> bool:
        """Rotate now unless the current file is empty; return whether it rotated. Like
        `maybe_rotate`, does not flush the buffer."""
        return self.rotate_now() is not None

    def rotate_now(self) -> Path | None:
        """Rotate now unless the current file is empty (or no descriptor is free for the next
        one); return the path of the complete file, None if nothing was rotated. Like
        `maybe_rotate`, does not flush the buffer: the caller flushes first what may go to
        disk (rotation on demand, docs/cdr-files.md)."""
        return self._writer().run_locked(self._complete_locked)

    # -- rotation (with the AppendFile's lock held)

    def _age_due(self, out: AppendFile) -> bool:
        started = self._file_started
        return (
            out.size > 0 and started is not None and self._clock() - started >= self.rotate_seconds
        )

    def _rotation_due(self, out: AppendFile) -> bool:
        return out.size >= self.rotate_bytes or self._age_due(out)

    def _rotate_if_old(self, out: AppendFile) -> None:
        if self._age_due(out):
            self._rotate_locked(out)

    def _after_write(self, out: AppendFile) -> None:
        if self._file_started is None and out.size > 0:
            self._file_started = self._clock()
        if self._rotation_due(out):
            self._rotate_locked(out)

    def _rotate_if_due(self, out: AppendFile) -> bool:
        return self._rotation_due(out) and self._rotate_locked(out)

    def _rotate_locked(self, out: AppendFile) -> bool:
        return self._complete_locked(out) is not None

    def _complete_locked(self, out: AppendFile) -> Path | None:
        """fsync the current file, create the next one, rename the old one to its complete name,
        fsync the directory; return the complete file's path. Never rotates an empty file."""
        if out.size == 0:
            return None
        first, last = out.first, out.written
        completed = out.switch_locked(self.directory / current_name(last + 1))
        if completed is None:
            return None  # no descriptor free: this file grows until the next check retries
        self._file_started = None
        complete = self.directory / rotated_name(first, last)
        os.rename(completed, complete)
        out.sync_directory_locked()
        return complete

    def close(self) -> None:
        """Flush and fsync (unless broken), then close the current file. No rotation: the next
        `open` continues it."""
        out = self._out
        if out is None:
            return
        try:
            if not out.closed and out.broken is None:
                self.commit()
        finally:
            out.close()


# -- readers (tests and tools)


def _record_lines(directory: Path, first: int = 1) -> Iterator[tuple[str, bytes]]:
    """(file name, line without newline) for every whole line of every CDR file of
    ``directory``, in sequence order, skipping the complete files that end before record
    ``first``. An incomplete last line of a current file (a write in progress, or a torn tail
    `CdrWriter.open` has not yet truncated) is skipped. A current file renamed by a rotation
    while this runs is read under its complete name."""
    for f in _list_files(directory):
        if f.last is not None and f.last < first:
            continue
        path = f.path
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            if not f.current:
                raise
            renamed = [g for g in _list_files(directory) if g.first == f.first and not g.current]
            if not renamed:
                raise
            path = renamed[0].path
            handle = path.open("rb")
        with handle:
            for raw in handle:
                if not raw.endswith(_NL):
                    if f.current:
                        break
                    raise CdrCorruptError(f"{path.name}: last line has no newline")
                yield path.name, raw[:-1]


def iter_records(directory: Path) -> Iterator[dict[str, Any]]:
    """Every record in ``directory`` (``<data-dir>/cdr``), decoded, in sequence order: complete
    files first, then the current file. A line that is not a JSON object with an int
    ``recordSequenceNumber`` is `CdrCorruptError`."""
    for name, line in _record_lines(directory):
        try:
            record = _ANY_DECODER.decode(line)
        except msgspec.DecodeError as exc:
            raise CdrCorruptError(f"{name}: not a JSON line: {exc}") from exc
        seq = record.get("recordSequenceNumber") if isinstance(record, dict) else None
        if type(seq) is not int:
            raise CdrCorruptError(f"{name}: line without an int recordSequenceNumber")
        yield record


def read_lines(directory: Path, first: int) -> Iterator[tuple[int, bytes]]:
    """(``recordSequenceNumber``, line without newline) of every record from ``first`` on, in
    file order (recovery compares them with the records journal replay regenerated)."""
    for name, line in _record_lines(directory, first):
        seq = _decode_seq(line)
        if seq is None:
            raise CdrCorruptError(f"{name}: line without an int recordSequenceNumber")
        if seq >= first:
            yield seq, line


def read_sequence_numbers(directory: Path) -> list[int]:
    """The ``recordSequenceNumber`` of every record in ``directory``, in file order (a correct
    directory gives first, first + 1, ..., last)."""
    numbers: list[int] = []
    for name, line in _record_lines(directory):
        seq = _decode_seq(line)
        if seq is None:
            raise CdrCorruptError(f"{name}: line without an int recordSequenceNumber")
        numbers.append(seq)
    return numbers


def iter_file_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of one CDR file (complete or current), decoded, in file order (`ocs cdr
    show`). An incomplete last line of a current file (a write in progress) is skipped; a
    current file that a rotation renamed before it was opened is read under its complete
    name. A line that is not a record is `CdrCorruptError`."""
    path = Path(path)
    current = path.name.endswith(CURRENT_SUFFIX)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        match = _CURRENT_RE.fullmatch(path.name)
        if match is None:
            raise
        renamed = [f for f in _list_files(path.parent) if f.first == int(match[1]) and f.last]
        if not renamed:
            raise
        path, current = renamed[0].path, False
        handle = path.open("rb")
    with handle:
        for raw in handle:
            if not raw.endswith(_NL):
                if current:
                    return
                raise CdrCorruptError(f"{path.name}: last line has no newline")
            try:
                record = _ANY_DECODER.decode(raw[:-1])
            except msgspec.DecodeError as exc:
                raise CdrCorruptError(f"{path.name}: not a JSON line: {exc}") from exc
            seq = record.get("recordSequenceNumber") if isinstance(record, dict) else None
            if type(seq) is not int:
                raise CdrCorruptError(f"{path.name}: line without an int recordSequenceNumber")
            yield record


def cdr_files(directory: Path) -> list[Path]:
    """The CDR files of ``directory``, complete ones first, in sequence order."""
    return [f.path for f in _list_files(Path(directory))]
