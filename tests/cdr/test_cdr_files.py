"""CDR files: numbering, batching, rotation by size and age, recovery of torn tails, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocs.edge.cdr_files import (
    CdrBrokenError,
    CdrCorruptError,
    CdrError,
    CdrSequenceError,
    CdrWriter,
    current_name,
    iter_records,
    read_sequence_numbers,
    rotated_name,
)
from tests.cdr.util import (
    FakeClock,
    abandon,
    append_range,
    file_bytes,
    line,
    listing,
    record,
)


def opened(directory: Path, rotate_bytes: int = 64 << 20) -> tuple[CdrWriter, int]:
    writer = CdrWriter(directory, rotate_bytes=rotate_bytes)
    return writer, writer.open()


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def rotated_ranges(directory: Path) -> list[tuple[int, int]]:
    ranges = []
    for name in names(directory):
        if name.endswith(".jsonl"):
            first, last = name.removeprefix("cdr-").removesuffix(".jsonl").split("-")
            ranges.append((int(first), int(last)))
    return ranges


def check_complete_files(directory: Path) -> None:
    """Every complete file holds exactly the records its name says, whole lines."""
    for first, last in rotated_ranges(directory):
        assert (directory / rotated_name(first, last)).read_bytes() == file_bytes(first, last)


# -- numbering, batching, reopening


def test_fresh_directory(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "cdr"
    writer, last = opened(directory)
    assert last == 0
    assert writer.last_sequence == 0
    assert names(directory) == [current_name(1)]
    assert writer.current_path == directory / "cdr-000000000001.jsonl.current"
    assert read_sequence_numbers(directory) == []
    writer.close()
    assert writer.current_path is None


def test_append_commit_reopen_continues_numbering(tmp_path: Path) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 5)
    assert writer.last_sequence == 5
    assert writer.written_sequence == 0
    assert writer.commit() == 5
    assert writer.durable_sequence == 5
    writer.close()

    writer, last = opened(tmp_path)
    assert last == 5
    assert writer.last_sequence == 5
    append_range(writer, 6, 9)
    writer.close()  # flushes and fsyncs

    assert read_sequence_numbers(tmp_path) == list(range(1, 10))
    assert list(iter_records(tmp_path)) == [record(s) for s in range(1, 10)]
    assert (tmp_path / current_name(1)).read_bytes() == file_bytes(1, 9)
    assert names(tmp_path) == [current_name(1)]  # close never rotates


def test_flush_writes_each_batch_with_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, _ = opened(tmp_path)
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes | memoryview) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr("ocs.edge.cdr_files.os.write", counting_write)
    append_range(writer, 1, 50)
    assert read_sequence_numbers(tmp_path) == []  # buffered only
    assert writer.flush() == 50
    assert writes == [len(file_bytes(1, 50))]
    assert read_sequence_numbers(tmp_path) == list(range(1, 51))
    assert writer.durable_sequence == 0
    assert writer.flush() == 50  # nothing buffered: no write
    assert len(writes) == 1
    assert writer.sync() == 50
    assert writer.durable_sequence == 50
    writer.close()


def test_append_rejects_bad_sequence_numbers(tmp_path: Path) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 2)
    with pytest.raises(CdrSequenceError, match="expected 3"):
        writer.append(4, line(4))  # skip
    with pytest.raises(CdrSequenceError):
        writer.append(2, line(2))  # repeat
    writer.append(3, line(3))
    writer.close()
    assert read_sequence_numbers(tmp_path) == [1, 2, 3]


@pytest.mark.parametrize(
    "bad",
    [
        line(1) + b"\n",
        b'{"recordSequenceNumber": 1,\n"x": 2}',
        b'{"recordSequenceNumber": 2}',
        b'{"recordSequenceNumber": "1"}',
        b'{"sessionId": "s"}',
        b"[1]",
        b"{not json",
        b"",
    ],
)
def test_append_rejects_lines_that_are_not_one_record(tmp_path: Path, bad: bytes) -> None:
    writer, _ = opened(tmp_path)
    with pytest.raises(ValueError):
        writer.append(1, bad)
    assert writer.last_sequence == 0
    writer.append(1, line(1))
    writer.close()


def test_misuse(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CdrWriter(tmp_path, rotate_bytes=0)
    with pytest.raises(ValueError):
        CdrWriter(tmp_path, rotate_seconds=0)
    writer = CdrWriter(tmp_path)
    with pytest.raises(CdrError, match="open"):
        writer.append(1, line(1))
    writer.open()
    with pytest.raises(CdrError, match="already open"):
        writer.open()
    writer.close()


# -- rotation


def test_rotation_by_size(tmp_path: Path) -> None:
    limit = 3 * (len(line(1)) + 1)
    writer, _ = opened(tmp_path, rotate_bytes=limit)
    expected: list[tuple[int, int]] = []  # a file is rotated by the flush that fills it
    first = size = seq = 0
    for batch in [1, 1, 1, 4, 2, 1, 7, 1, 1]:
        append_range(writer, seq + 1, seq + batch)
        writer.commit()
        first = first or seq + 1
        size += len(file_bytes(seq + 1, seq + batch))
        seq += batch
        if size >= limit:
            expected.append((first, seq))
            first = size = 0
    writer.close()

    assert len(expected) >= 3
    assert rotated_ranges(tmp_path) == expected
    check_complete_files(tmp_path)
    assert names(tmp_path)[-1] == current_name(expected[-1][1] + 1)
    assert read_sequence_numbers(tmp_path) == list(range(1, seq + 1))
    assert [r["recordSequenceNumber"] for r in iter_records(tmp_path)] == list(range(1, seq + 1))


def test_rotation_by_size_exact_boundaries(tmp_path: Path) -> None:
    # Every record is the same length here, so the files are predictable.
    writer, _ = opened(tmp_path, rotate_bytes=1)
    for seq in range(1, 4):
        writer.append(seq, line(seq))
        writer.flush()
    writer.close()
    assert names(tmp_path) == [
        rotated_name(1, 1),
        rotated_name(2, 2),
        rotated_name(3, 3),
        current_name(4),
    ]
    check_complete_files(tmp_path)
    assert (tmp_path / current_name(4)).read_bytes() == b""


def test_rotation_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = CdrWriter(tmp_path, rotate_seconds=60, clock=clock)
    writer.open()
    clock.advance(3600)  # an empty file has no age
    assert writer.maybe_rotate() is False
    append_range(writer, 1, 2)
    writer.commit()  # the file's age counts from here
    clock.advance(59)
    assert writer.maybe_rotate() is False
    append_range(writer, 3, 3)
    writer.commit()
    clock.advance(1)
    assert writer.maybe_rotate() is True
    assert names(tmp_path) == [rotated_name(1, 3), current_name(4)]
    clock.advance(1000)
    assert writer.maybe_rotate() is False  # never an empty file

    append_range(writer, 4, 5)
    writer.commit()
    clock.advance(60)
    append_range(writer, 6, 7)
    writer.commit()  # too old: rotated before the batch is written
    assert names(tmp_path) == [rotated_name(1, 3), rotated_name(4, 5), current_name(6)]
    writer.close()
    check_complete_files(tmp_path)
    assert read_sequence_numbers(tmp_path) == list(range(1, 8))


def test_rotation_moves_only_written_records(tmp_path: Path) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 3)
    writer.flush()
    append_range(writer, 4, 5)  # buffered: its journal records may not be durable yet
    assert writer.rotate() is True
    assert names(tmp_path) == [rotated_name(1, 3), current_name(4)]
    assert writer.durable_sequence == 3  # a rotated file is fsynced
    assert writer.rotate() is False  # the new file is empty
    writer.commit()
    assert (tmp_path / current_name(4)).read_bytes() == file_bytes(4, 5)
    writer.close()


def test_reopen_after_rotation(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = CdrWriter(tmp_path, rotate_seconds=10, clock=clock)
    writer.open()
    append_range(writer, 1, 4)
    writer.commit()
    clock.advance(10)
    assert writer.maybe_rotate()
    writer.close()

    writer = CdrWriter(tmp_path, rotate_seconds=10, clock=clock)
    assert writer.open() == 4
    append_range(writer, 5, 6)
    writer.close()
    assert names(tmp_path) == [rotated_name(1, 4), current_name(5)]

    writer = CdrWriter(tmp_path, rotate_seconds=10, clock=clock)
    assert writer.open() == 6
    clock.advance(9)  # a continued file's age counts from the restart
    assert writer.maybe_rotate() is False
    clock.advance(1)
    assert writer.maybe_rotate() is True
    writer.close()
    assert names(tmp_path) == [rotated_name(1, 4), rotated_name(5, 6), current_name(7)]
    check_complete_files(tmp_path)
    assert read_sequence_numbers(tmp_path) == list(range(1, 7))


def test_collected_complete_files_do_not_reset_numbering(tmp_path: Path) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 3)
    writer.flush()
    writer.rotate()
    append_range(writer, 4, 5)
    writer.flush()
    writer.rotate()
    writer.close()
    for first, last in rotated_ranges(tmp_path):  # downstream mediation takes them
        (tmp_path / rotated_name(first, last)).unlink()
    assert names(tmp_path) == [current_name(6)]

    writer, last = opened(tmp_path)
    assert last == 5
    append_range(writer, 6, 7)
    writer.close()
    assert read_sequence_numbers(tmp_path) == [6, 7]


def test_only_the_newest_complete_file_is_read(tmp_path: Path) -> None:
    (tmp_path / rotated_name(1, 3)).write_bytes(b"not read at all\n")
    (tmp_path / rotated_name(4, 6)).write_bytes(file_bytes(4, 6))
    writer, last = opened(tmp_path)
    assert last == 6
    writer.close()


# -- recovery


def build(directory: Path, upto: int = 5, rotate_at: int = 3) -> Path:
    """Records 1..rotate_at in a complete file, rotate_at+1..upto in the current file."""
    writer, _ = opened(directory)
    append_range(writer, 1, rotate_at)
    writer.flush()
    writer.rotate()
    append_range(writer, rotate_at + 1, upto)
    writer.close()
    return directory / current_name(rotate_at + 1)


def continue_and_check(directory: Path, expected_last: int, upto: int = 8) -> None:
    writer, last = opened(directory)
    assert last == expected_last
    append_range(writer, last + 1, upto)
    writer.close()
    assert read_sequence_numbers(directory) == list(range(1, upto + 1))
    assert list(iter_records(directory)) == [record(s) for s in range(1, upto + 1)]
    check_complete_files(directory)
    assert (directory / current_name(4)).read_bytes() == file_bytes(4, upto)


def test_cut_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    current = build(tmp_path)
    whole = current.read_bytes()
    start = len(file_bytes(4, 4))
    assert whole[start:] == line(5) + b"\n"
    for cut in range(start, len(whole) + 1):
        current.write_bytes(whole[:cut])
        # A record counts only with its newline: whole JSON without it is a torn tail.
        expected = 5 if cut == len(whole) else 4
        continue_and_check(tmp_path, expected)


def test_crash_before_flush_loses_only_the_buffer(tmp_path: Path) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 3)
    writer.flush()  # in the page cache: survives a process crash
    append_range(writer, 4, 6)
    abandon(writer)
    writer, last = opened(tmp_path)
    assert last == 3
    writer.close()


TORN_TAILS = [
    b"garbage",
    b"garbage\n",
    b"\x00" * 100,
    b"\x00" * 10 + b"\n" + b"\x00" * 10,
    b'{"recordSequenceNumber": 6',
    b'{"recordSequenceNumber": 6}',  # whole JSON, no newline: not a record
    b'{"recordSequenceNumber": 6, "charge": 5',
    b'{"other": 1}\n',
    b'{"recordSequenceNumber": "6"}\n',
    b"[6]\n",
    b"\n",
    b"\n\n\n",
    line(6)[:-1] + b"\n",
    b"garbage\n" + line(6)[:10],
]


@pytest.mark.parametrize("tail", TORN_TAILS)
def test_torn_tail_is_truncated(tmp_path: Path, tail: bytes) -> None:
    current = build(tmp_path)
    whole = current.read_bytes()
    with current.open("ab") as f:
        f.write(tail)
    writer, last = opened(tmp_path)
    assert last == 5
    assert current.read_bytes() == whole
    writer.close()
    continue_and_check(tmp_path, 5)


def test_torn_tail_of_an_empty_current_file(tmp_path: Path) -> None:
    build(tmp_path, upto=3)
    (tmp_path / current_name(4)).write_bytes(line(4)[:7])
    continue_and_check(tmp_path, 3)


def test_iter_records_skips_a_line_being_written(tmp_path: Path) -> None:
    current = build(tmp_path)
    with current.open("ab") as f:
        f.write(line(6)[:9])
    assert read_sequence_numbers(tmp_path) == [1, 2, 3, 4, 5]
    assert len(list(iter_records(tmp_path))) == 5


def test_iter_records_follows_a_rotation_while_reading(tmp_path: Path) -> None:
    build(tmp_path)
    writer, _ = opened(tmp_path)
    records = iter_records(tmp_path)
    assert next(records) == record(1)  # the listing is taken: the current file is cdr-4
    assert writer.rotate()  # ... and renamed to cdr-4-5 before the reader gets to it
    assert [r["recordSequenceNumber"] for r in records] == [2, 3, 4, 5]
    writer.close()


def test_crash_inside_rotation_is_finished_on_open(tmp_path: Path) -> None:
    # The next current file was created, the crash came before the rename.
    (tmp_path / current_name(1)).write_bytes(file_bytes(1, 5))
    (tmp_path / current_name(6)).write_bytes(b"")
    writer, last = opened(tmp_path)
    assert last == 5
    assert names(tmp_path) == [rotated_name(1, 5), current_name(6)]
    append_range(writer, 6, 7)
    writer.close()
    assert read_sequence_numbers(tmp_path) == list(range(1, 8))


def test_write_failure_breaks_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, _ = opened(tmp_path)
    append_range(writer, 1, 2)
    writer.commit()

    def failing_write(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    append_range(writer, 3, 4)
    with monkeypatch.context() as patch:
        patch.setattr("ocs.edge.cdr_files.os.write", failing_write)
        with pytest.raises(CdrBrokenError, match="No space"):
            writer.flush()
    assert writer.broken is not None
    with pytest.raises(CdrBrokenError):
        writer.append(5, line(5))
    with pytest.raises(CdrBrokenError):
        writer.commit()
    writer.close()  # releases the file, writes nothing
    writer, last = opened(tmp_path)
    assert last == 2
    writer.close()


# -- corruption: raised, and nothing on disk is changed


def write(directory: Path, name: str, data: bytes) -> None:
    (directory / name).write_bytes(data)


CORRUPT = {
    "gap between complete files": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (rotated_name(5, 6), file_bytes(5, 6)),
        (current_name(7), b""),
    ],
    "overlapping complete files": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (rotated_name(3, 6), file_bytes(3, 6)),
    ],
    "gap before the current file": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (current_name(5), file_bytes(5, 6)),
    ],
    "repeat before the current file": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (current_name(3), file_bytes(3, 4)),
    ],
    "two files start at the same record": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (current_name(1), file_bytes(1, 3)),
    ],
    "gap inside the current file": [
        (current_name(1), file_bytes(1, 2) + file_bytes(4, 5)),
    ],
    "repeat inside the current file": [
        (current_name(1), file_bytes(1, 2) + file_bytes(2, 3)),
    ],
    "current file does not start at its name": [
        (rotated_name(1, 3), file_bytes(1, 3)),
        (current_name(4), file_bytes(5, 6)),
    ],
    "garbage followed by a record": [
        (current_name(1), file_bytes(1, 2) + b"garbage\n" + file_bytes(3, 3)),
    ],
    "torn line followed by a record": [
        (current_name(1), file_bytes(1, 1) + line(2)[:5] + b"\n" + file_bytes(3, 3)),
    ],
    "newest complete file does not end at its name": [
        (rotated_name(1, 3), file_bytes(1, 2)),
        (current_name(4), b""),
    ],
    "newest complete file has a torn tail": [
        (rotated_name(1, 3), file_bytes(1, 3)[:-1]),
    ],
    "newest complete file is empty": [
        (rotated_name(1, 3), b""),
    ],
    "current file older than a complete file": [
        (current_name(1), file_bytes(1, 3)),
        (rotated_name(4, 6), file_bytes(4, 6)),
    ],
    "torn tail in a current file being rotated": [
        (current_name(1), file_bytes(1, 5) + line(6)[:4]),
        (current_name(6), b""),
    ],
    "sequence numbers start at 0": [
        (current_name(0), b""),
    ],
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corruption_raises_and_changes_nothing(tmp_path: Path, case: str) -> None:
    for name, data in CORRUPT[case]:
        write(tmp_path, name, data)
    before = listing(tmp_path)
    writer = CdrWriter(tmp_path)
    with pytest.raises(CdrCorruptError):
        writer.open()
    assert listing(tmp_path) == before
    with pytest.raises(CdrError):
        writer.append(1, line(1))


def test_other_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "README", b"mediation picks up cdr-*.jsonl\n")
    write(tmp_path, "cdr-1-2.jsonl", b"wrong width: not ours\n")
    write(tmp_path, current_name(1), file_bytes(1, 2))
    writer, last = opened(tmp_path)
    assert last == 2
    writer.close()


def test_readers_reject_a_bad_line(tmp_path: Path) -> None:
    write(tmp_path, rotated_name(1, 2), file_bytes(1, 1) + b'{"x": 1}\n')
    with pytest.raises(CdrCorruptError):
        read_sequence_numbers(tmp_path)
    with pytest.raises(CdrCorruptError):
        list(iter_records(tmp_path))
