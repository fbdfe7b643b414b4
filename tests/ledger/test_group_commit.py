"""Group commit on a real event loop and a real journal in a temp directory."""

from __future__ import annotations

import asyncio
import errno
import functools
import threading
from pathlib import Path

import pytest

from ocs.core.ledger import CreateAccount, Credit
from ocs.edge import fileio
from ocs.edge import journal as journal_module
from ocs.edge.group_commit import DurabilityError, GroupCommit
from ocs.edge.journal import Journal, JournalBrokenError
from tests.ledger.commands import execute, open_store

T0 = 1_700_000_000_000


class GatedJournal(Journal):
    """A journal whose fsync (the system call itself) waits until the test opens the gate, or
    fails on demand; records what each sync made durable."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(directory)
        assert list(self.recover()) == []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.synced_upto: list[int] = []
        self.fail_next = False
        real = fileio.fdatasync

        def gated(fd: int) -> None:
            self.entered.set()
            assert self.gate.wait(10)
            if self.fail_next:
                raise OSError(errno.EIO, "simulated fsync failure")
            real(fd)

        monkeypatch.setattr(journal_module, "fdatasync", gated)

    def sync(self) -> int:
        durable = super().sync()
        self.synced_upto.append(durable)
        return durable


async def until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_one_fsync_for_a_batch_and_answers_only_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    gc = GroupCommit(journal)
    journal.gate.clear()
    released: list[tuple[int, int]] = []
    for i in range(100):  # 100 requests handled in one loop iteration
        lsn = journal.append(f"op{i}".encode())

        def answer(i: int = i, lsn: int = lsn) -> None:
            released.append((i, journal.durable_lsn - lsn))

        gc.defer(answer)
    await asyncio.to_thread(journal.entered.wait, 5)
    # The batch was written with one write(2) and the fsync is in flight: nothing released.
    assert journal.written_lsn == 100
    await asyncio.sleep(0.02)
    assert released == []
    journal.gate.set()
    await until(lambda: len(released) == 100)
    assert [i for i, _ in released] == list(range(100))
    assert all(margin >= 0 for _, margin in released)
    assert (gc.syncs, journal.synced_upto) == (1, [100])
    await gc.aclose()
    journal.close()


async def test_records_appended_during_an_fsync_form_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    gc = GroupCommit(journal)
    journal.gate.clear()
    order: list[str] = []
    journal.append(b"first")
    gc.defer(lambda: order.append("first"))
    await asyncio.to_thread(journal.entered.wait, 5)
    journal.entered.clear()
    # Next iterations: more requests while the first fsync is still running.
    for name in ("second", "third"):
        journal.append(name.encode())
        gc.defer(functools.partial(order.append, name))
        await asyncio.sleep(0)
    # A read-only answer also waits for everything before it.
    gc.defer(lambda: order.append("read-only"))
    await asyncio.sleep(0.02)
    assert journal.written_lsn == 3  # written while the fsync ran
    assert order == [] and gc.syncs == 1
    journal.gate.set()
    await until(lambda: len(order) == 4)
    assert order == ["first", "second", "third", "read-only"]
    assert journal.synced_upto == [1, 3] and gc.syncs == 2
    await gc.aclose()
    journal.close()


async def test_an_answer_with_nothing_to_sync_is_released_next_iteration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    gc = GroupCommit(journal)
    done = gc.durable()
    await asyncio.wait_for(done, 5)
    assert gc.syncs == 0
    journal.append(b"x")
    await asyncio.wait_for(gc.durable(), 5)
    assert journal.durable_lsn == 1 and gc.syncs == 1
    await gc.aclose()
    journal.close()


async def test_a_failed_fsync_withholds_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    failures: list[BaseException] = []
    gc = GroupCommit(journal, on_failure=failures.append)
    journal.fail_next = True
    released: list[int] = []
    journal.append(b"x")
    gc.defer(lambda: released.append(1))
    await until(lambda: bool(failures))
    await asyncio.sleep(0.01)
    assert released == []
    assert isinstance(failures[0], JournalBrokenError) and gc.failed is failures[0]
    assert isinstance(failures[0].__cause__, OSError)
    assert journal.durable_lsn == 0
    with pytest.raises(DurabilityError):
        gc.defer(lambda: released.append(2))
    with pytest.raises(DurabilityError):
        await gc.aclose()
    assert released == []


async def test_relaxed_mode_answers_after_write_and_syncs_within_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    gc = GroupCommit(journal, sync_interval_ms=30)
    assert gc.relaxed
    seen: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    for round_ in range(10):
        for _ in range(10):
            journal.append(b"r")
        gc.defer(lambda: seen.append((journal.written_lsn, journal.durable_lsn)))
        await asyncio.sleep(0.002)
        assert len(seen) == round_ + 1
        assert seen[-1][0] == journal.last_lsn  # written before the answer
    await until(lambda: journal.durable_lsn == 100, timeout=2)
    elapsed = loop.time() - started
    # At most one fsync per interval (the first one starts at once), fewer than batches.
    assert 1 <= gc.syncs <= 2 + elapsed / 0.030
    assert gc.syncs < gc.batches
    assert any(durable < written for written, durable in seen)
    await gc.aclose()
    journal.close()


async def test_aclose_makes_everything_durable_and_releases_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = GatedJournal(tmp_path, monkeypatch)
    gc = GroupCommit(journal, sync_interval_ms=10_000)
    released: list[int] = []
    for i in range(3):
        journal.append(b"x")
        gc.defer(functools.partial(released.append, i))
    journal.append(b"no callback")
    await gc.aclose()
    assert released == [0, 1, 2]
    assert journal.durable_lsn == 4
    with pytest.raises(DurabilityError):
        gc.defer(lambda: None)
    journal.close()


async def test_store_with_group_commit_and_a_checkpoint_in_a_worker(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    with open_store(tmp_path) as store:
        gc = GroupCommit(store.journal)
        assert execute(store, CreateAccount(id="c", now_ms=T0, account_id="a", currency=978)).ok
        await gc.durable()

        async def client(n: int) -> None:
            for i in range(20):
                out = execute(
                    store, Credit(id=f"op-{n}-{i}", now_ms=T0 + i, account_id="a", amount=1)
                )
                assert out.ok
                lsn = store.journal.last_lsn
                await gc.durable()
                assert store.journal.durable_lsn >= lsn

        async def checkpointer() -> None:
            for _ in range(3):
                await asyncio.sleep(0.002)
                captured = store.capture_checkpoint()
                await loop.run_in_executor(None, store.write_checkpoint, captured)

        await asyncio.gather(*(client(n) for n in range(10)), checkpointer())
        assert gc.syncs < 200
        await gc.aclose()
        live = store.ledger.snapshot()
        view = store.ledger.account("a")
        assert view is not None and view.balance == 200
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot_lsn > 0
        assert store.ledger.snapshot() == live
