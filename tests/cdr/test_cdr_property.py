"""A hypothesis state machine over the CDR writer: appends, flushes, commits, rotations by size,
age and hand, clean restarts, process crashes, torn tails and power losses.

After every step the directory holds records 1..N, contiguous, each exactly as the core encoded
it, with N at least the last committed (acknowledged) sequence number; complete files hold what
their names say. After a crash `open` returns some N between the last committed and the last
written record (flushed records may or may not survive, buffered ones never do) and the server
re-writes from N + 1, as it does with the records journal replay regenerates.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ocs.edge.cdr_files import CdrWriter, current_name, read_sequence_numbers, rotated_name
from tests.cdr.util import FakeClock, abandon, file_bytes, line

ROTATE_BYTES = 700
ROTATE_SECONDS = 10.0


class CdrFilesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="cdr-prop-")) / "cdr"
        self.clock = FakeClock()
        self.writer = self.new_writer()
        assert self.writer.open() == 0
        self.committed = 0  # acknowledged: must survive anything
        self.on_disk = 0  # the directory holds exactly 1..on_disk

    def new_writer(self) -> CdrWriter:
        return CdrWriter(
            self.directory,
            rotate_bytes=ROTATE_BYTES,
            rotate_seconds=ROTATE_SECONDS,
            clock=self.clock,
        )

    def teardown(self) -> None:
        abandon(self.writer)
        shutil.rmtree(self.directory.parent)

    # -- normal operation

    @rule(count=st.integers(1, 6))
    def append(self, count: int) -> None:
        last = self.writer.last_sequence
        for seq in range(last + 1, last + count + 1):
            self.writer.append(seq, line(seq))
        assert self.writer.last_sequence == last + count

    @rule()
    def flush(self) -> None:
        assert self.writer.flush() == self.writer.last_sequence
        self.on_disk = self.writer.last_sequence

    @rule()
    def commit(self) -> None:
        assert self.writer.commit() == self.writer.last_sequence
        self.committed = self.on_disk = self.writer.last_sequence

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.99, 10.0, 25.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def maybe_rotate(self) -> None:
        self.writer.maybe_rotate()

    @rule()
    def rotate(self) -> None:
        self.writer.rotate()

    @rule()
    def clean_restart(self) -> None:
        last = self.writer.last_sequence
        self.writer.close()
        self.committed = self.on_disk = last
        self.reopen(expect=last)

    # -- failures

    def reopen(self, expect: int | None = None) -> None:
        written = self.writer.written_sequence
        self.writer = self.new_writer()
        found = self.writer.open()
        if expect is not None:
            assert found == expect
        assert self.committed <= found <= written
        # open() fsyncs what it found: from here on it is all acknowledged.
        self.committed = self.on_disk = found
        assert self.writer.last_sequence == found

    @rule()
    def process_crash(self) -> None:
        abandon(self.writer)  # written records are in the page cache, the buffer is gone
        self.reopen(expect=self.writer.written_sequence)

    @rule(garbage=st.none() | st.binary(max_size=40), data=st.data())
    def crash_with_torn_tail(self, garbage: bytes | None, data: st.DataObject) -> None:
        """The process died during a write: a prefix of the next record (up to its whole JSON
        without the newline), or garbage."""
        writer = self.writer
        current = writer.current_path
        assert current is not None
        abandon(writer)
        tail = garbage
        if tail is None:
            next_line = line(writer.written_sequence + 1)
            tail = next_line[: data.draw(st.integers(0, len(next_line)), label="cut")]
        with current.open("ab") as f:
            f.write(tail)
        self.reopen(expect=writer.written_sequence)

    @precondition(lambda self: self.writer.written_sequence > self.writer.durable_sequence)
    @rule(data=st.data())
    def power_loss(self, data: st.DataObject) -> None:
        """Anything written after the last fsync of the current file may be lost, from any
        byte on (and the current file was fsynced at least through the committed records)."""
        writer = self.writer
        current = writer.current_path
        assert current is not None
        first = int(current.name.removeprefix("cdr-").split(".")[0])
        durable = writer.durable_sequence
        abandon(writer)
        content = current.read_bytes()
        keep = 0
        if durable >= first:
            keep = len(file_bytes(first, durable))
            assert content[:keep] == file_bytes(first, durable)
        cut = data.draw(st.integers(keep, len(content)), label="cut")
        current.write_bytes(content[:cut])
        self.reopen()

    # -- invariants

    @invariant()
    def directory_holds_one_to_n(self) -> None:
        numbers = read_sequence_numbers(self.directory)
        assert numbers == list(range(1, self.on_disk + 1))
        assert self.on_disk >= self.committed

    @invariant()
    def files_are_named_by_content(self) -> None:
        names = sorted(p.name for p in self.directory.iterdir())
        assert names[-1] == current_name(self.on_disk_first_of_current())
        seq = 1
        for name in names[:-1]:
            first, last = (int(n) for n in name.removeprefix("cdr-").split(".")[0].split("-"))
            assert name == rotated_name(first, last)
            assert first == seq
            assert (self.directory / name).read_bytes() == file_bytes(first, last)
            seq = last + 1
        assert (self.directory / names[-1]).read_bytes() == file_bytes(seq, self.on_disk)

    def on_disk_first_of_current(self) -> int:
        current = self.writer.current_path
        assert current is not None
        return int(current.name.removeprefix("cdr-").split(".")[0])


CdrFilesMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCdrFiles = CdrFilesMachine.TestCase
