"""The durable-append mechanism the journal and the CDR files share (`ocs.edge.durable`):
buffered appends, one write per flush, fsync outside the lock, directory fsyncs on create and
rotation, and the latch that refuses everything once a write, fsync or rotation failed."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocs.edge import durable
from ocs.edge.cdr_files import CdrWriter, read_sequence_numbers
from ocs.edge.durable import AppendFile, Failures, OutOfSequenceError
from ocs.edge.fileio import fdatasync
from ocs.edge.journal import Journal


class FileError(Exception):
    pass


class BrokenFileError(FileError):
    pass


FAILURES = Failures(what="test file", error=FileError, broken=BrokenFileError)


def framed(number: int, payload: bytes) -> bytes:
    return b"%d:%s\n" % (number, payload)


def create(path: Path, last: int = 0, datasync: Callable[[int], None] = fdatasync) -> AppendFile:
    return AppendFile.create(path, last=last, frame=framed, failures=FAILURES, datasync=datasync)


def eio(*_: object) -> int:
    raise OSError(errno.EIO, "I/O error")


@pytest.fixture
def dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories fsynced by `ocs.edge.durable` (really fsynced, and recorded)."""
    synced: list[Path] = []
    real = durable.fsync_directory

    def recording(fd: int) -> None:  # the directory's descriptor, held by the file
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(durable, "fsync_directory", recording)
    return synced


def test_append_buffers_flush_writes_once_sync_makes_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = create(tmp_path / "f", last=10)
    assert (out.append(b"a"), out.append(b"b", 12)) == (11, 12)
    assert (tmp_path / "f").read_bytes() == b""  # buffered only
    assert (out.last, out.written, out.durable) == (12, 10, 10)
    writes: list[int] = []
    real_write = os.write

    def counting(fd: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting)
    assert out.flush() == 12
    assert writes == [len(b"11:a\n12:b\n")]
    assert (tmp_path / "f").read_bytes() == b"11:a\n12:b\n"
    assert out.flush() == 12 and len(writes) == 1  # nothing buffered: no write
    assert (out.size, out.durable) == (10, 10)
    assert out.sync() == 12
    out.close()


def test_append_refuses_a_number_out_of_sequence(tmp_path: Path) -> None:
    out = create(tmp_path / "f")
    out.append(b"a", 1)
    with pytest.raises(OutOfSequenceError, match="expected 2") as raised:
        out.append(b"c", 3)
    assert (raised.value.number, raised.value.last, out.last) == (3, 1, 1)
    out.close()


def test_a_failed_write_latches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = create(tmp_path / "f")
    out.append(b"a")
    out.flush()
    out.append(b"b")
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", eio)
        with pytest.raises(BrokenFileError, match="test file write failed") as raised:
            out.flush()
    assert isinstance(raised.value.__cause__, OSError)
    assert isinstance(out.broken, OSError) and out.written == 1
    # Nothing is written any more, even though writing would work again.
    operations: list[Callable[[], object]] = [lambda: out.append(b"c"), out.flush, out.sync]
    for operation in operations:
        with pytest.raises(BrokenFileError, match="failed earlier"):
            operation()
    with pytest.raises(BrokenFileError):
        out.run_locked(lambda f: None)
    out.close()
    assert (tmp_path / "f").read_bytes() == b"1:a\n"


def test_a_failed_fsync_latches_and_is_never_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "I/O error")

    out = create(tmp_path / "f", datasync=failing)
    out.append(b"a")
    out.flush()
    with pytest.raises(BrokenFileError, match="test file fsync failed"):
        out.sync()
    assert len(calls) == 1 and out.durable == 0 and out.broken is not None
    with pytest.raises(BrokenFileError, match="failed earlier"):
        out.sync()  # a later fsync could "succeed" without the dropped pages
    assert len(calls) == 1
    with pytest.raises(BrokenFileError):
        out.append(b"b")
    out.close()


def test_a_failed_rotation_latches(tmp_path: Path) -> None:
    out = create(tmp_path / "f")
    out.append(b"a")
    out.flush()
    (tmp_path / "g").write_bytes(b"")  # the new file must not exist yet
    with pytest.raises(BrokenFileError, match="test file rotation failed"):
        out.run_locked(lambda f: f.switch_locked(tmp_path / "g"))
    with pytest.raises(BrokenFileError):
        out.append(b"b")
    out.close()


def test_a_failed_rotation_hook_in_flush_latches(tmp_path: Path) -> None:
    out = create(tmp_path / "f")
    out.append(b"a")

    def before(f: AppendFile) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(BrokenFileError, match="No space"):
        out.flush(before=before)
    with pytest.raises(BrokenFileError):
        out.flush()
    out.close()


def test_the_directory_is_fsynced_on_create_and_on_resume(
    tmp_path: Path, dir_syncs: list[Path]
) -> None:
    out = create(tmp_path / "f")
    assert dir_syncs == [tmp_path]
    out.append(b"a")
    out.append(b"b")
    out.flush()
    out.sync()
    assert dir_syncs == [tmp_path]  # a sync with no new file: the file only
    out.close()
    with (tmp_path / "f").open("ab") as f:
        f.write(b"3:torn")  # a torn tail after the two records
    again = AppendFile.resume(
        tmp_path / "f", size=8, first=1, last=2, frame=framed, failures=FAILURES
    )
    assert dir_syncs == [tmp_path, tmp_path]
    assert (tmp_path / "f").read_bytes() == b"1:a\n2:b\n"
    assert (again.size, again.last, again.durable) == (8, 2, 2)
    again.append(b"c")
    again.close()  # unflushed: dropped
    assert (tmp_path / "f").read_bytes() == b"1:a\n2:b\n"


def test_a_new_file_counts_only_once_its_directory_entry_is_durable(
    tmp_path: Path, dir_syncs: list[Path]
) -> None:
    out = create(tmp_path / "f")
    out.append(b"a")
    out.flush()
    completed = out.run_locked(lambda f: f.switch_locked(tmp_path / "g"))
    assert completed == tmp_path / "f" and out.path == tmp_path / "g"
    assert (out.first, out.size, out.durable) == (2, 0, 0)
    assert dir_syncs == [tmp_path]  # only the create so far
    out.append(b"b")
    out.flush()
    assert out.sync() == 2
    assert dir_syncs == [tmp_path, tmp_path]  # the sync made the new entry durable
    assert (tmp_path / "f").read_bytes() == b"1:a\n" and (tmp_path / "g").read_bytes() == b"2:b\n"
    # An owner that renames the completed file fsyncs the directory at once.
    out.run_locked(lambda f: f.switch_locked(tmp_path / "h"))
    assert out.durable == 2
    out.append(b"c")
    out.flush()

    def rename(f: AppendFile) -> None:
        completed = f.switch_locked(tmp_path / "i")
        assert completed is not None
        completed.rename(tmp_path / "h.done")
        f.sync_directory_locked()

    out.run_locked(rename)
    assert len(dir_syncs) == 3 and out.durable == 3  # the completed files are durable
    out.close()


def test_the_fsync_runs_outside_the_lock(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    def slow(fd: int) -> None:
        entered.set()
        assert gate.wait(10)
        fdatasync(fd)

    out = create(tmp_path / "f", datasync=slow)
    out.append(b"a")
    out.flush()
    results: list[int] = []
    syncer = threading.Thread(target=lambda: results.append(out.sync()))
    syncer.start()
    assert entered.wait(10)
    # While the fsync is in progress: appends and writes go on.
    assert out.append(b"b") == 2
    assert out.flush() == 2
    gate.set()
    syncer.join(10)
    assert results == [1]  # what was written when the sync started
    assert out.sync() == 2
    out.close()


def test_a_closed_file_refuses_writes_with_the_owners_error(tmp_path: Path) -> None:
    out = create(tmp_path / "f")
    out.close()
    out.close()  # idempotent
    assert out.closed
    with pytest.raises(FileError, match="closed") as raised:
        out.append(b"a")
    assert type(raised.value) is FileError
    with pytest.raises(FileError, match="closed"):
        out.sync()


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Every descriptor this process may open is taken (a lowered soft RLIMIT_NOFILE, filled
    with opens of /dev/null) until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    fillers: list[int] = []
    try:
        with pytest.raises(OSError) as full:
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        assert full.value.errno == errno.EMFILE
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_sync_needs_no_new_descriptor(tmp_path: Path) -> None:
    """With every descriptor taken (a flood of connections), appends, writes and fsyncs go on:
    the server stays durable (it used to dup the descriptor for the fsync: EMFILE, broken)."""
    out = create(tmp_path / "f")
    out.run_locked(lambda f: f.switch_locked(tmp_path / "g"))  # a directory fsync is due
    with descriptors_exhausted():
        out.append(b"a")
        assert out.flush() == 1
        assert out.sync() == 1
        out.append(b"b")
        out.flush()
        assert out.sync() == 2 and out.broken is None
    out.close()
    assert (tmp_path / "g").read_bytes() == b"1:a\n2:b\n"


def test_a_rotation_or_close_during_a_sync_leaves_its_descriptor_open_until_it_returns(
    tmp_path: Path,
) -> None:
    """The fsync runs on the file's own descriptor outside the lock; a rotation (or `close`)
    meanwhile must not close it, or its number could be reused by another open and the sync
    would fsync (and report durable) some other file."""
    gate, entered = threading.Event(), threading.Event()
    used: list[int] = []

    def slow(fd: int) -> None:
        used.append(fd)
        entered.set()
        assert gate.wait(10)
        os.fstat(fd)  # still this file's descriptor
        fdatasync(fd)

    out = create(tmp_path / "f", datasync=slow)
    out.append(b"a")
    out.flush()
    results: list[int] = []
    syncer = threading.Thread(target=lambda: results.append(out.sync()))
    syncer.start()
    assert entered.wait(10)
    [fd] = used
    out.run_locked(lambda f: f.switch_locked(tmp_path / "g"))
    assert os.readlink(f"/proc/self/fd/{fd}") == str(tmp_path / "f")  # not closed yet
    gate.set()
    syncer.join(10)
    assert results == [1]
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed once the sync returned
    # close() during a sync: the descriptors stay until the fsync returns
    gate.clear()
    entered.clear()
    out.append(b"b")
    out.flush()
    syncer = threading.Thread(target=lambda: results.append(out.sync()))
    syncer.start()
    assert entered.wait(10)
    fd = used[-1]
    out.close()
    assert os.readlink(f"/proc/self/fd/{fd}") == str(tmp_path / "g")
    gate.set()
    syncer.join(10)
    assert results == [1, 2]
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_a_rotation_without_a_free_descriptor_is_postponed_not_fatal(tmp_path: Path) -> None:
    """A rotation is a policy: with no descriptor free for the next file, the journal and the
    CDR files go on in the current one (durably) and rotate once one is free again."""
    journal = Journal(tmp_path / "journal", segment_bytes=100)
    assert list(journal.recover()) == []
    cdrs = CdrWriter(tmp_path / "cdr", rotate_bytes=100)
    cdrs.open()
    out = create(tmp_path / "f")
    out.append(b"a")
    out.flush()
    with descriptors_exhausted():
        assert out.run_locked(lambda f: f.switch_locked(tmp_path / "g")) is None
        for seq in range(1, 21):
            journal.append(b"record-%d" % seq)
            assert journal.commit() == seq
            cdrs.append(seq, b'{"recordSequenceNumber":%d}' % seq)
            assert cdrs.commit() == seq
        assert cdrs.maybe_rotate() is False
    assert out.path == tmp_path / "f" and out.broken is None
    assert len(list((tmp_path / "journal").glob("*.log"))) == 1
    assert len(list((tmp_path / "cdr").glob("cdr-*"))) == 1
    journal.append(b"record-21")
    journal.commit()  # a descriptor is free again: the full segment is rotated
    cdrs.append(21, b'{"recordSequenceNumber":21}')
    cdrs.commit()
    assert len(list((tmp_path / "journal").glob("*.log"))) == 2
    assert len(list((tmp_path / "cdr").glob("cdr-*"))) == 2
    journal.close()
    cdrs.close()
    out.close()
    again = Journal(tmp_path / "journal", segment_bytes=100)
    assert [lsn for lsn, _ in again.recover()] == list(range(1, 22))
    again.close()
    assert read_sequence_numbers(tmp_path / "cdr") == list(range(1, 22))
