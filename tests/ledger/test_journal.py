"""The journal: record format, torn tails, corruption, segments, snapshots, the directory lock."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocs.edge import journal as journal_module
from ocs.edge.journal import (
    MARK_NAME,
    RECORD_HEADER,
    DataDirLockedError,
    DirLock,
    Journal,
    JournalBrokenError,
    JournalCorruptError,
    JournalError,
)


def fresh(directory: Path, **kwargs: int) -> Journal:
    j = Journal(directory, **kwargs)
    assert list(j.recover()) == []
    return j


def reopen(
    directory: Path, after: int = 0, **kwargs: int
) -> tuple[Journal, list[tuple[int, bytes]]]:
    j = Journal(directory, **kwargs)
    return j, list(j.recover(after))


def payloads(n: int) -> list[bytes]:
    return [f"record-{i}".encode() * (1 + i % 3) for i in range(1, n + 1)]


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def test_records_come_back_in_order_with_their_lsns(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    data = payloads(10)
    assert [j.append(p) for p in data] == list(range(1, 11))
    assert (j.last_lsn, j.written_lsn, j.durable_lsn) == (10, 0, 0)
    assert j.flush() == 10
    assert j.sync() == 10
    j.close()
    j2, records = reopen(tmp_path)
    assert records == list(enumerate(data, start=1))
    assert j2.append(b"next") == 11
    j2.close()
    _, again = reopen(tmp_path, after=8)
    assert [lsn for lsn, _ in again] == [9, 10, 11]


def test_record_layout_is_crc_length_lsn_payload(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    j.append(b"abc")
    j.close()
    raw = segment_files(tmp_path)[0].read_bytes()
    crc, length, lsn = RECORD_HEADER.unpack_from(raw, 0)
    assert (length, lsn, raw[16:]) == (3, 1, b"abc")
    import zlib

    assert crc == zlib.crc32(raw[8:])


def test_appending_before_recovery_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    with pytest.raises(JournalError, match="recover"):
        j.append(b"x")


def test_every_cut_of_the_last_record_is_truncated_away(tmp_path: Path) -> None:
    """(A copy of the segment alone: no durability mark, the rule of journals written before
    marks existed. With marks: tests/ledger/test_journal_damage.py.)"""
    src = tmp_path / "src"
    j = fresh(src)
    data = payloads(5)
    for p in data[:-1]:
        j.append(p)
    j.commit()
    start = segment_files(src)[0].stat().st_size
    j.append(data[-1])
    j.close()
    whole = segment_files(src)[0].read_bytes()
    end = len(whole)
    assert end == start + RECORD_HEADER.size + len(data[-1])
    for cut in range(start, end + 1):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / segment_files(src)[0].name).write_bytes(whole[:cut])
        j2, records = reopen(d)
        expected = data if cut == end else data[:-1]
        assert [p for _, p in records] == expected, cut
        assert segment_files(d)[0].stat().st_size == (end if cut == end else start)
        # The log goes on from there.
        assert j2.append(b"after") == len(expected) + 1
        j2.close()
        _, records = reopen(d)
        assert [p for _, p in records] == [*expected, b"after"]


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    for p in payloads(3):
        j.append(p)
    j.close()
    seg = segment_files(tmp_path)[0]
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(bytes(4096))
    _, records = reopen(tmp_path)
    assert len(records) == 3
    assert seg.stat().st_size == size


def _three_records_then_damage(tmp_path: Path, at: int, value: int | None = None) -> None:
    j = fresh(tmp_path)
    for p in payloads(10):
        j.append(p)
    j.close()
    seg = segment_files(tmp_path)[0]
    raw = bytearray(seg.read_bytes())
    # Locate record 4.
    offset = 0
    for _ in range(3):
        _, length, _ = RECORD_HEADER.unpack_from(raw, offset)
        offset += RECORD_HEADER.size + length
    raw[offset + at] = (raw[offset + at] ^ 0x5A) if value is None else value
    seg.write_bytes(bytes(raw))


@pytest.mark.parametrize("at", [0, 4, 9, 17])  # crc, length, lsn, payload
def test_damage_to_a_durable_record_is_corruption(tmp_path: Path, at: int) -> None:
    _three_records_then_damage(tmp_path, at)
    size = segment_files(tmp_path)[0].stat().st_size
    with pytest.raises(JournalCorruptError, match=r"LSN 4 at byte .* made durable") as info:
        reopen(tmp_path)
    assert (info.value.segment, info.value.lsn) == (segment_files(tmp_path)[0].name, 4)
    assert segment_files(tmp_path)[0].stat().st_size == size  # nothing was cut


@pytest.mark.parametrize("at", [0, 4, 9, 17])  # crc, length, lsn, payload
def test_without_a_mark_damage_followed_by_valid_records_is_corruption(
    tmp_path: Path, at: int
) -> None:
    """A journal written before durability marks existed: the earlier rule."""
    _three_records_then_damage(tmp_path, at)
    (tmp_path / MARK_NAME).unlink()
    size = segment_files(tmp_path)[0].stat().st_size
    with pytest.raises(JournalCorruptError, match="valid records follow it"):
        reopen(tmp_path)
    assert segment_files(tmp_path)[0].stat().st_size == size  # nothing was cut


def test_damage_in_an_older_segment_is_corruption(tmp_path: Path) -> None:
    j = fresh(tmp_path, segment_bytes=100)
    for p in payloads(30):
        j.append(p)
        j.flush()
    j.close()
    segs = segment_files(tmp_path)
    assert len(segs) > 3
    raw = bytearray(segs[1].read_bytes())
    raw[-1] ^= 1  # the last record of a sealed segment
    segs[1].write_bytes(bytes(raw))
    with pytest.raises(JournalCorruptError, match=segs[1].name):
        reopen(tmp_path, segment_bytes=100)


def test_segments_rotate_and_read_back_as_one_log(tmp_path: Path) -> None:
    j = fresh(tmp_path, segment_bytes=200)
    data = payloads(50)
    for i, p in enumerate(data):
        j.append(p)
        if i % 3 == 0:
            j.commit()
    j.close()
    segs = segment_files(tmp_path)
    assert len(segs) > 5
    assert int(segs[0].stem) == 1
    _, records = reopen(tmp_path, segment_bytes=200)
    assert records == list(enumerate(data, start=1))


def test_a_missing_segment_is_detected(tmp_path: Path) -> None:
    j = fresh(tmp_path, segment_bytes=100)
    for p in payloads(30):
        j.append(p)
        j.flush()
    j.close()
    segment_files(tmp_path)[2].unlink()
    with pytest.raises(JournalCorruptError, match="should start at LSN"):
        reopen(tmp_path)


def test_snapshot_compacts_the_log_and_recovery_starts_after_it(tmp_path: Path) -> None:
    j = fresh(tmp_path, segment_bytes=100)
    for p in payloads(20):
        j.append(p)
        j.flush()
    j.rotate()
    before = len(segment_files(tmp_path))
    j.write_snapshot(20, b"state@20")
    assert [int(s.stem) for s in segment_files(tmp_path)] == [21]
    assert before > 1
    for p in payloads(3):
        j.append(p)
    j.write_snapshot(22, b"state@22")  # without rotation the active segment stays
    assert [p.name for p in tmp_path.glob("*.snap")] == [f"{22:020d}.snap"]
    j.close()
    j2 = Journal(tmp_path)
    assert j2.load_snapshot() == (22, b"state@22")
    assert [lsn for lsn, _ in j2.recover(22)] == [23]
    assert j2.append(b"x") == 24


def test_recovery_with_an_empty_log_after_a_snapshot_continues_numbering(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    for p in payloads(4):
        j.append(p)
    j.rotate()
    j.write_snapshot(4, b"s")
    j.close()
    for seg in segment_files(tmp_path):
        seg.unlink()  # even with no segment at all
    j2 = Journal(tmp_path)
    loaded = j2.load_snapshot()
    assert loaded is not None
    assert list(j2.recover(loaded[0])) == []
    assert j2.append(b"x") == 5


def test_a_damaged_snapshot_is_refused_and_a_temp_file_ignored(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    j.append(b"a")
    j.write_snapshot(1, b"state")
    j.close()
    (tmp_path / f"{9:020d}.snap.tmp").write_bytes(b"half written")
    j2 = Journal(tmp_path)
    assert j2.load_snapshot() == (1, b"state")
    assert not list(tmp_path.glob("*.tmp"))
    snap = next(tmp_path.glob("*.snap"))
    raw = bytearray(snap.read_bytes())
    raw[-1] ^= 0xFF
    snap.write_bytes(bytes(raw))
    with pytest.raises(JournalCorruptError, match="checksum"):
        Journal(tmp_path).load_snapshot()


def test_a_snapshot_cannot_run_ahead_of_the_log(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    j.append(b"a")
    with pytest.raises(JournalError, match="outside"):
        j.write_snapshot(2, b"x")
    j.write_snapshot(1, b"x")  # makes record 1 durable first
    assert j.durable_lsn == 1


def test_a_log_that_ends_before_the_snapshot_is_refused(tmp_path: Path) -> None:
    j = fresh(tmp_path)
    for p in payloads(3):
        j.append(p)
    j.close()
    with pytest.raises(JournalCorruptError, match="before the snapshot"):
        list(Journal(tmp_path).recover(5))


def test_a_failed_fsync_breaks_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = fresh(tmp_path)
    j.append(b"a")
    j.flush()

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(journal_module, "fdatasync", failing)
    with pytest.raises(JournalBrokenError):
        j.sync()
    monkeypatch.undo()
    assert j.durable_lsn == 0
    assert j.broken is not None
    with pytest.raises(JournalBrokenError):
        j.append(b"b")
    with pytest.raises(JournalBrokenError):
        j.sync()
    j.close()


def test_the_directory_lock_is_exclusive_within_a_process(tmp_path: Path) -> None:
    lock = DirLock(tmp_path)
    with pytest.raises(DataDirLockedError, match=f"pid {os.getpid()}"):
        DirLock(tmp_path)
    lock.release()
    with DirLock(tmp_path):
        pass


def test_the_directory_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from ocs.edge.journal import DirLock; "
            f"lock = DirLock({str(tmp_path)!r}); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLockedError, match=f"pid {holder.pid}"):
            DirLock(tmp_path)
    finally:
        holder.communicate("", timeout=30)
    # The lock dies with its process.
    with DirLock(tmp_path):
        pass
