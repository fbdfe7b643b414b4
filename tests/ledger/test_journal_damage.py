"""A torn write is not damage (issue 16, part 7).

A journal is written by the real path (`Store.append`, `GroupCommit` on an event loop, its fsync
thread): a few batches that were made durable and acknowledged, then one batch that group
commit wrote but whose fsync never returned: the crash image is taken at that instant. Then,
at every byte offset: a cut or a flip inside the unacknowledged batch recovers without it (from
the first record it spoils); a flip, a wrong length or a cut anywhere in a durable batch (the
last ones, an earlier one, one in a sealed segment) stops recovery with `JournalCorruptError`
naming the record, and changes nothing. The journal is small, so the sweeps stay fast.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocs.core.ledger import Command, CreateAccount, Credit, Debit, Ledger, decode_command
from ocs.edge import fileio
from ocs.edge import journal as journal_module
from ocs.edge.group_commit import GroupCommit
from ocs.edge.journal import (
    MARK_NAME,
    MARK_SLOT,
    MARK_SLOT_OFFSETS,
    RECORD_HEADER,
    Journal,
    JournalCorruptError,
    JournalRecord,
    iter_entries,
)
from ocs.edge.store import Component, JournalReplayError
from tests.ledger.commands import KIND_COMMANDS, execute, open_store

T0 = 1_700_000_000_000


def _cmds() -> tuple[list[list[Command]], list[Command]]:
    """Durable batches (each acknowledged), then the batch being written at the crash."""
    t = iter(range(T0, T0 + 10**6, 1_000))
    durable: list[list[Command]] = [
        [
            CreateAccount(id="c1", now_ms=next(t), account_id="a1", currency=978, balance=900),
            CreateAccount(id="c2", now_ms=next(t), account_id="a2", currency=978, balance=50),
        ],
        [Credit(id="k1", now_ms=next(t), account_id="a1", amount=11)],
        [
            Debit(id="d1", now_ms=next(t), account_id="a1", amount=7),
            Credit(id="k2", now_ms=next(t), account_id="a2", amount=13),
        ],
        [Credit(id="k3", now_ms=next(t), account_id="a2", amount=17)],
        [
            Debit(id="d2", now_ms=next(t), account_id="a2", amount=19),
            Credit(id="k4", now_ms=next(t), account_id="a1", amount=23),
        ],
    ]
    last: list[Command] = [
        Credit(id="k5", now_ms=next(t), account_id="a1", amount=29),
        Debit(id="d3", now_ms=next(t), account_id="a1", amount=31),
    ]
    return durable, last


@dataclass(frozen=True)
class Batch:
    segment: str
    start: int  # byte offsets in the segment
    end: int
    first: int  # LSNs
    last: int


@dataclass(frozen=True)
class Image:
    """A crash image of the journal directory and where everything is in it."""

    journal: Path
    durable: list[Batch]
    unacked: Batch
    records: list[JournalRecord]
    states: dict[int, bytes]  # the ledger's snapshot after each LSN (0: empty)

    def record_at(self, segment: str, offset: int) -> JournalRecord:
        for record in self.records:
            end = record.offset + RECORD_HEADER.size + len(record.payload)
            if record.segment == segment and record.offset <= offset < end:
                return record
        raise AssertionError(f"no record at {segment}:{offset}")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _active(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


async def _write(src: Path, image: Path, segment_bytes: int) -> tuple[list[Batch], Batch]:
    durable_cmds, last_cmds = _cmds()
    store = open_store(src, segment_bytes=segment_bytes)
    journal_dir = src / "journal"
    gate = threading.Event()
    gate.set()
    entered = threading.Event()
    real = fileio.fdatasync

    def gated(fd: int) -> None:
        entered.set()
        assert gate.wait(10)
        real(fd)

    patch = pytest.MonkeyPatch()
    patch.setattr(journal_module, "fdatasync", gated)
    try:
        commit = GroupCommit(store.journal)
        batches = []

        for cmds in durable_cmds:
            before = _active(journal_dir)
            start_of = _size(before)
            first = store.journal.last_lsn + 1
            for cmd in cmds:
                assert execute(store, cmd).ok
            await commit.durable()  # acknowledged: released once durable (one write, fsync)
            segment = _active(journal_dir)
            if segment.name != before.name:  # group commit's write started a new segment
                start_of = 0
            batches.append(
                Batch(segment.name, start_of, _size(segment), first, store.journal.last_lsn)
            )
        # The last batch: group commit writes it, then its fsync never returns (the crash).
        gate.clear()
        entered.clear()
        before = _active(journal_dir)
        start_of = _size(before)
        first = store.journal.last_lsn + 1
        for cmd in last_cmds:
            assert execute(store, cmd).ok
        released = commit.durable()
        async with asyncio.timeout(10):
            while not entered.is_set():
                await asyncio.sleep(0.001)
        assert store.journal.written_lsn == store.journal.last_lsn
        assert store.journal.durable_lsn < first  # not acknowledged
        segment = _active(journal_dir)
        if segment.name != before.name:
            start_of = 0
        unacked = Batch(segment.name, start_of, _size(segment), first, store.journal.last_lsn)
        shutil.copytree(journal_dir, image)  # what a SIGKILL now leaves
        gate.set()
        await released
        await commit.aclose()
    finally:
        patch.undo()
        store.close()
    return batches, unacked


def _states(records: list[JournalRecord]) -> dict[int, bytes]:
    ledger = Ledger()
    states = {0: ledger.snapshot()}
    for record in records:
        assert record.payload[0] == KIND_COMMANDS
        ledger.apply(decode_command(record.payload[1:]), replay=True)
        states[record.lsn] = ledger.snapshot()
    return states


def _build(root: Path, segment_bytes: int = 1 << 20) -> Image:
    batches, unacked = asyncio.run(_write(root / "src", root / "image", segment_bytes))
    records = [e for e in iter_entries(root / "image") if isinstance(e, JournalRecord)]
    assert [r.lsn for r in records] == list(range(1, unacked.last + 1))
    return Image(root / "image", batches, unacked, records, _states(records))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return _build(tmp_path_factory.mktemp("one-segment"))


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """Segments of ~100 bytes: the earlier batches are in sealed segments."""
    return _build(tmp_path_factory.mktemp("segments"), segment_bytes=100)


class Case:
    """A copy of an image, damaged, to recover."""

    def __init__(self, image: Image, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(image.journal, directory / "journal")
        self.data_dir = directory
        self.image = image

    def path(self, segment: str) -> Path:
        return self.data_dir / "journal" / segment

    def cut(self, segment: str, size: int) -> None:
        path = self.path(segment)
        path.write_bytes(path.read_bytes()[:size])

    def flip(self, segment: str, offset: int, mask: int = 0x01) -> None:
        path = self.path(segment)
        raw = bytearray(path.read_bytes())
        raw[offset] ^= mask
        path.write_bytes(bytes(raw))

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((self.data_dir / "journal").iterdir())}

    def recovers_to(self, lsn: int, *, torn_at: int | None, again: bool = True) -> None:
        """Recovery succeeds with exactly the records 1..``lsn``; a torn tail was cut where
        record ``torn_at`` would have started (None: none); ``again``: a second start finds a
        clean journal."""
        with open_store(self.data_dir) as store:
            recovery = store.recovery
            assert recovery.last_lsn == lsn
            assert store.ledger.snapshot() == self.image.states[lsn]
            assert (None if recovery.torn_tail is None else recovery.torn_tail.lsn) == torn_at
            store.ledger.check_invariants()
        if not again:
            return
        with open_store(self.data_dir) as store:
            assert store.recovery.torn_tail is None
            assert store.recovery.durable_mark == lsn

    def is_damage(self, lsn: int, segment: str | None = None, offset: int | None = None) -> None:
        """Recovery stops with `JournalCorruptError` naming record ``lsn`` (and where it is),
        and changes nothing."""
        before = self.files()
        with pytest.raises(JournalCorruptError) as info:
            open_store(self.data_dir)
        assert info.value.lsn == lsn, str(info.value)
        if segment is not None:
            assert info.value.segment == segment, str(info.value)
        if offset is not None:
            assert info.value.offset == offset, str(info.value)
        assert self.files() == before


def _offsets(batches: list[Batch]) -> Iterator[tuple[Batch, int]]:
    for batch in batches:
        for offset in range(batch.start, batch.end):
            yield batch, offset


# --- the unacknowledged batch: torn -------------------------------------------------------------


def test_every_cut_inside_the_unacknowledged_batch_recovers_without_it(
    image: Image, tmp_path: Path
) -> None:
    last = image.unacked
    acked = image.durable[-1].last
    for size in range(last.start, last.end + 1):
        case = Case(image, tmp_path / "case")
        case.cut(last.segment, size)
        whole = [
            r.lsn
            for r in image.records
            if r.segment == last.segment
            and r.offset + RECORD_HEADER.size + len(r.payload) <= size
            and r.lsn > acked
        ]
        kept = max(whole, default=acked)
        boundary = size == last.start or any(
            r.offset + RECORD_HEADER.size + len(r.payload) == size for r in image.records
        )
        case.recovers_to(kept, torn_at=None if boundary else kept + 1)


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_every_flip_inside_the_unacknowledged_batch_recovers_before_the_record(
    image: Image, tmp_path: Path, mask: int
) -> None:
    for batch, offset in _offsets([image.unacked]):
        case = Case(image, tmp_path / "case")
        case.flip(batch.segment, offset, mask)
        spoiled = image.record_at(batch.segment, offset).lsn
        case.recovers_to(spoiled - 1, torn_at=spoiled, again=mask == 0x01)


def test_a_zero_filled_unacknowledged_batch_or_tail_is_torn(image: Image, tmp_path: Path) -> None:
    """A power loss can leave the file longer, with zeros where the unsynced data was."""
    last = image.unacked
    case = Case(image, tmp_path / "zeroed")
    path = case.path(last.segment)
    raw = bytearray(path.read_bytes())
    raw[last.start : last.end] = bytes(last.end - last.start)
    path.write_bytes(bytes(raw) + bytes(4096))
    case.recovers_to(last.first - 1, torn_at=last.first)

    case = Case(image, tmp_path / "tail")
    with case.path(last.segment).open("ab") as f:
        f.write(bytes(4096))
    case.recovers_to(last.last, torn_at=last.last + 1)


# --- durable batches: damage --------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_every_flip_in_the_last_durable_batches_is_damage(
    image: Image, tmp_path: Path, mask: int
) -> None:
    for batch, offset in _offsets(image.durable[-2:]):
        case = Case(image, tmp_path / "case")
        case.flip(batch.segment, offset, mask)
        record = image.record_at(batch.segment, offset)
        case.is_damage(record.lsn, batch.segment, record.offset)


def test_every_flip_in_an_earlier_durable_batch_is_damage(image: Image, tmp_path: Path) -> None:
    for batch, offset in _offsets([image.durable[1]]):
        case = Case(image, tmp_path / "case")
        case.flip(batch.segment, offset)
        record = image.record_at(batch.segment, offset)
        case.is_damage(record.lsn, batch.segment, record.offset)


def test_every_flip_in_a_batch_of_a_sealed_segment_is_damage(
    segmented: Image, tmp_path: Path
) -> None:
    segments = sorted({b.segment for b in segmented.durable})
    assert len(segments) >= 3 and segmented.unacked.segment != segments[0]
    sealed = [b for b in segmented.durable if b.segment == segments[0]]
    for batch, offset in _offsets(sealed[-1:]):
        case = Case(segmented, tmp_path / "case")
        case.flip(batch.segment, offset)
        record = segmented.record_at(batch.segment, offset)
        case.is_damage(record.lsn, batch.segment, record.offset)


def test_every_cut_inside_a_durable_batch_is_damage(image: Image, tmp_path: Path) -> None:
    """Including a cut at a batch boundary, which leaves a journal that is well formed but
    lacks acknowledged records: only the mark can tell."""
    for batch, size in _offsets(image.durable[-2:]):
        case = Case(image, tmp_path / "case")
        case.cut(batch.segment, size)
        spoiled = (
            image.record_at(batch.segment, size).lsn
            if size < image.unacked.start
            else image.unacked.first
        )
        case.is_damage(spoiled, batch.segment)


def test_a_sealed_segment_cut_or_lost_is_damage(segmented: Image, tmp_path: Path) -> None:
    first = sorted({b.segment for b in segmented.durable})[0]
    case = Case(segmented, tmp_path / "cut")
    case.cut(first, case.path(first).stat().st_size - 1)
    with pytest.raises(JournalCorruptError, match=first):
        open_store(case.data_dir)
    case = Case(segmented, tmp_path / "lost")
    case.path(_active(case.data_dir / "journal").name).unlink()  # the last segment, whole
    with pytest.raises(JournalCorruptError, match="made durable"):
        open_store(case.data_dir)


@pytest.mark.parametrize("length", [0, -1, +1, 0xFFFF_FFFF, 1 << 24])
def test_a_wrong_length_in_a_durable_record_is_damage(
    image: Image, tmp_path: Path, length: int
) -> None:
    durable_records = [r for r in image.records if r.lsn <= image.durable[-1].last]
    for record in durable_records[-4:]:
        case = Case(image, tmp_path / "case")
        path = case.path(record.segment)
        raw = bytearray(path.read_bytes())
        value = len(record.payload) + length if length in (-1, 1) else length
        struct.pack_into("<I", raw, record.offset + 4, value)
        path.write_bytes(bytes(raw))
        case.is_damage(record.lsn, record.segment, record.offset)


def test_zeros_over_a_durable_batch_are_damage(image: Image, tmp_path: Path) -> None:
    batch = image.durable[-1]
    case = Case(image, tmp_path / "case")
    path = case.path(batch.segment)
    raw = path.read_bytes()
    path.write_bytes(raw[: batch.start] + bytes(len(raw) - batch.start))
    case.is_damage(batch.first, batch.segment, batch.start)


# --- the mark itself ---------------------------------------------------------------------------


def test_any_single_flip_in_the_mark_leaves_a_true_mark(image: Image, tmp_path: Path) -> None:
    """Two slots: one damaged slot leaves the other, an older but true mark. (Every byte of
    both slots, and some of the padding between them, which is never read.)"""
    slots = [range(at, at + MARK_SLOT.size) for at in MARK_SLOT_OFFSETS]
    for offset in [*slots[0], MARK_SLOT.size + 1, MARK_SLOT_OFFSETS[1] - 1, *slots[1]]:
        case = Case(image, tmp_path / "case")
        case.flip(MARK_NAME, offset)
        case.recovers_to(image.unacked.last, torn_at=None, again=False)


def test_both_slots_of_the_mark_damaged_is_damage(image: Image, tmp_path: Path) -> None:
    case = Case(image, tmp_path / "case")
    for slot in MARK_SLOT_OFFSETS:
        case.flip(MARK_NAME, slot + 9)
    with pytest.raises(JournalCorruptError, match="durability mark"):
        open_store(case.data_dir)


def test_without_a_mark_the_earlier_rule_applies_and_a_mark_is_written(
    image: Image, tmp_path: Path
) -> None:
    """A journal written before marks existed: torn unless valid records follow."""
    last = image.unacked
    case = Case(image, tmp_path / "torn")
    (case.data_dir / "journal" / MARK_NAME).unlink()
    case.cut(last.segment, last.end - 1)
    case.recovers_to(last.last - 1, torn_at=last.last)
    assert (case.data_dir / "journal" / MARK_NAME).exists()

    case = Case(image, tmp_path / "middle")
    (case.data_dir / "journal" / MARK_NAME).unlink()
    record = image.records[2]
    case.flip(record.segment, record.offset + RECORD_HEADER.size)
    case.is_damage(record.lsn, record.segment, record.offset)


# --- records that cannot be replayed ------------------------------------------------------------


class Refuses:
    """A component that cannot replay its records (a bug, a record of another build)."""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass

    def replay(self, body: bytes, lsn: int) -> None:
        raise RuntimeError(f"cannot apply {body!r}")


def test_a_record_that_cannot_be_replayed_stops_recovery_naming_it(tmp_path: Path) -> None:
    refuses: Component = Refuses()
    with open_store(tmp_path, components={9: refuses}) as store:
        assert execute(store, _cmds()[0][0][0]).ok
        store.append(9, b"\x01\x02")
    segment = tmp_path / "journal" / f"{1:020d}.log"
    with pytest.raises(JournalReplayError) as info:
        open_store(tmp_path, components={9: refuses})
    error = info.value
    record = [e for e in iter_entries(tmp_path / "journal") if isinstance(e, JournalRecord)][1]
    assert (error.lsn, error.kind, error.segment, error.offset) == (
        2,
        9,
        segment.name,
        record.offset,
    )
    assert error.payload == b"\x09\x01\x02"
    assert error.reason == "RuntimeError: cannot apply b'\\x01\\x02'"
    assert isinstance(error.__cause__, RuntimeError)
    assert "LSN 2" in str(error) and segment.name in str(error)
    # An unregistered kind is refused the same way; nothing is cut, though a torn tail follows.
    with segment.open("ab") as f:
        f.write(b"\x00\x01torn")
    before = segment.read_bytes()
    with pytest.raises(JournalReplayError, match=r"LSN 2 .* unregistered kind 9"):
        open_store(tmp_path)
    assert segment.read_bytes() == before
    open_store(tmp_path, components={9: _Accepts()}).close()  # the lock was released


class _Accepts(Refuses):
    def replay(self, body: bytes, lsn: int) -> None:
        pass


# --- the whole domain: any journal, any single damage ------------------------------------------


@dataclass(frozen=True)
class Written:
    """A journal written through the `Journal` API as group commit drives it (one flush per
    batch, a sync after each durable one), imaged before the last batches' fsync."""

    directory: Path
    payloads: dict[int, bytes]
    durable: int  # the mark: every LSN up to it was acknowledged
    places: list[JournalRecord]  # every record, where it is


def _written(root: Path, batches: list[list[int]], durable: int, segment_bytes: int) -> Written:
    src, image = root / "src", root / "image"
    journal = Journal(src, segment_bytes=segment_bytes)
    assert list(journal.recover()) == []
    payloads: dict[int, bytes] = {}
    for index, sizes in enumerate(batches):
        for size in sizes:
            lsn = journal.last_lsn + 1
            payloads[lsn] = bytes((lsn * 7 + i) % 251 + 1 for i in range(size))
            assert journal.append(payloads[lsn]) == lsn
        journal.flush()
        if index < durable:
            journal.sync()
    mark = journal.durable_lsn
    shutil.copytree(src, image)  # the crash: the last batches were written, never fsynced
    journal.close()
    places = [e for e in iter_entries(image) if isinstance(e, JournalRecord)]
    assert [p.lsn for p in places] == sorted(payloads)
    return Written(image, payloads, mark, places)


@st.composite
def _journals(draw: st.DrawFn) -> tuple[list[list[int]], int, int]:
    batches = draw(
        st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=4), min_size=1, max_size=6)
    )
    durable = draw(st.integers(0, len(batches)))
    return batches, durable, draw(st.sampled_from([1 << 20, 120]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    journal=_journals(),
    kind=st.sampled_from(["flip", "cut", "zeros"]),
    where=st.floats(0, 1, exclude_max=True),
    which=st.integers(0, 1 << 30),
    mask=st.integers(1, 255),
)
def test_any_single_damage_is_cut_only_above_the_mark(
    journal: tuple[list[list[int]], int, int], kind: str, where: float, which: int, mask: int
) -> None:
    """For any journal and any one flip, cut or zero-filled tail in any segment: recovery
    either returns a prefix of the records, holding every one at or below the mark, each with
    its bytes as written; or, exactly when the damage reaches a record at or below the mark or a
    sealed segment, refuses naming the first record it spoils and changes nothing."""
    batches, durable, segment_bytes = journal
    with tempfile.TemporaryDirectory() as tmp:
        written = _written(Path(tmp), batches, durable, segment_bytes)
        segments = sorted(written.directory.glob("*.log"))
        segment = segments[which % len(segments)]
        raw = bytearray(segment.read_bytes())
        if not raw:
            return
        offset = int(where * len(raw))
        if kind == "flip":
            raw[offset] ^= mask
        elif kind == "cut":
            del raw[offset:]
        else:
            raw[offset:] = bytes(len(raw) - offset)
        segment.write_bytes(bytes(raw))
        spoiled = min(
            (
                p.lsn
                for p in written.places
                if p.segment == segment.name
                and offset < p.offset + RECORD_HEADER.size + len(p.payload)
            ),
            default=None,
        )
        # (spoiled is None: a cut or zeros after the last record, which spoil nothing)
        expect_damage = spoiled is not None and (
            segment != segments[-1] or spoiled <= written.durable
        )
        event(f"{kind}: {'damage' if expect_damage else 'recovers'}")
        files = {p.name: p.read_bytes() for p in written.directory.iterdir()}
        again = Journal(written.directory, segment_bytes=segment_bytes)
        if expect_damage:
            with pytest.raises(JournalCorruptError) as info:
                list(again.recover())
            assert info.value.lsn == spoiled, (str(info.value), spoiled)
            assert {p.name: p.read_bytes() for p in written.directory.iterdir()} == files
            return
        records = list(again.recover())
        again.close()
        kept = len(records) if spoiled is None else spoiled - 1
        assert records == [(lsn, written.payloads[lsn]) for lsn in range(1, kept + 1)]
        assert kept >= written.durable
