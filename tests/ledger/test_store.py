"""The store: replay reproduces the live state exactly, a cut last record is either fully there
or not at all, idempotency survives restarts, several record kinds, checkpoints, the lock.

The ledger is driven by its own commands, journaled through `Store.append` by a component
(`tests.ledger.commands`), the path the server's charging core takes with its requests."""

from __future__ import annotations

import errno
import random
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from ocs.core.accounts import AccountStatus, SubscriberIdentity
from ocs.core.ledger import (
    Code,
    Command,
    CreateAccount,
    Credit,
    Debit,
    Expire,
    Post,
    Reserve,
    SetStatus,
    Void,
)
from ocs.edge import journal as journal_module
from ocs.edge.journal import DataDirLockedError, JournalBrokenError, JournalError
from ocs.edge.store import KIND_LEDGER, Store
from tests.ledger.commands import KIND_COMMANDS, execute, open_store

T0 = 1_700_000_000_000


def workload(seed: int, n: int) -> list[Command]:
    """A deterministic mix of every command kind, including refusals and repeats."""
    rng = random.Random(seed)
    accounts = [f"acct-{i}" for i in range(8)]
    cmds: list[Command] = [
        CreateAccount(
            id=f"create-{a}",
            now_ms=T0,
            account_id=a,
            subscriptions=(SubscriberIdentity(type=0, data=f"49151{i:06d}"),),
            currency=978,
            credit_limit=rng.choice([0, 0, 500]),
            balance=rng.randint(0, 5_000),
        )
        for i, a in enumerate(accounts)
    ]
    reservations: list[str] = []
    now = T0
    for i in range(n):
        now += rng.randint(0, 400)
        account = rng.choice(accounts)
        kind = rng.random()
        cmd: Command
        if kind < 0.3:
            rid = f"res-{i}"
            reservations.append(rid)
            cmd = Reserve(
                id=rid,
                now_ms=now,
                account_id=account,
                amount=rng.randint(1, 1_500),
                expires_at_ms=now + rng.randint(1, 8_000),
            )
        elif kind < 0.5 and reservations:
            cmd = Post(
                id=f"post-{i}",
                now_ms=now,
                reservation_id=rng.choice(reservations),
                amount=rng.randint(0, 2_000),
            )
        elif kind < 0.6 and reservations:
            cmd = Void(id=f"void-{i}", now_ms=now, reservation_id=rng.choice(reservations))
        elif kind < 0.7:
            cmd = Credit(
                id=f"credit-{i}", now_ms=now, account_id=account, amount=rng.randint(1, 900)
            )
        elif kind < 0.8:
            cmd = Debit(
                id=f"debit-{i}",
                now_ms=now,
                account_id=account,
                amount=rng.randint(1, 900),
                allow_overdraft=rng.random() < 0.3,
            )
        elif kind < 0.85:
            cmd = SetStatus(
                id=f"status-{i}",
                now_ms=now,
                account_id=account,
                status=rng.choice(list(AccountStatus)),
            )
        elif kind < 0.95:
            cmd = Expire(id=f"expire-{i}", now_ms=now)
        else:
            cmd = rng.choice(cmds)  # a repeat of an earlier operation
        cmds.append(cmd)
    return cmds


def test_replaying_the_journal_reproduces_the_live_state(tmp_path: Path) -> None:
    cmds = workload(1, 400)
    outcomes = []
    with open_store(tmp_path) as store:
        for i, cmd in enumerate(cmds):
            outcomes.append(execute(store, cmd))
            if i % 7 == 0:
                store.commit()
        live = store.ledger.snapshot()
        store.ledger.check_invariants()
        last = store.journal.last_lsn
    codes = {o.code for o in outcomes}
    assert {Code.OK, Code.INSUFFICIENT_FUNDS, Code.UNKNOWN_RESERVATION} <= codes
    assert any(o.overdraft for o in outcomes) and any(o.expired for o in outcomes)
    assert last < len(cmds)  # repeats are not journaled
    with open_store(tmp_path) as store:
        assert store.recovery.replayed == last
        assert store.ledger.snapshot() == live
        store.ledger.check_invariants()
        # Repeats still answer the first outcome after the restart.
        for cmd, first in list(zip(cmds, outcomes, strict=True))[-50:]:
            assert execute(store, cmd) == first
        assert store.journal.last_lsn == last
        assert store.ledger.snapshot() == live


def test_snapshot_plus_tail_reproduces_the_live_state(tmp_path: Path) -> None:
    cmds = workload(2, 600)
    with open_store(tmp_path, segment_bytes=2_000) as store:
        for i, cmd in enumerate(cmds):
            execute(store, cmd)
            if i % 5 == 0:
                store.commit()
            if i == 300:
                segments_before = store.journal.segment_count
                snapshot_lsn = store.checkpoint()
                assert store.journal.segment_count < segments_before
        live = store.ledger.snapshot()
        last = store.journal.last_lsn
    with open_store(tmp_path, segment_bytes=2_000) as store:
        assert store.recovery.snapshot_lsn == snapshot_lsn > 0
        assert store.recovery.replayed == last - snapshot_lsn > 0
        assert store.ledger.snapshot() == live
    # A checkpoint at the very end leaves nothing to replay.
    with open_store(tmp_path) as store:
        store.checkpoint()
    with open_store(tmp_path) as store:
        assert store.recovery.replayed == 0
        assert store.ledger.snapshot() == live


def test_every_cut_of_the_last_record_recovers_before_or_after_it(tmp_path: Path) -> None:
    """A crash while the last record was being written (handed to the OS, never fsynced, so
    never acknowledged): every cut of it recovers the state before it or after it."""
    src = tmp_path / "src"
    image = tmp_path / "image"
    cmds = workload(3, 60)
    last = Credit(id="the-last-one", now_ms=T0 + 10**6, account_id="acct-1", amount=123_456)
    with open_store(src) as store:
        for cmd in cmds:
            execute(store, cmd)
        store.checkpoint()  # snapshot + a tail, so recovery does both
        for cmd in workload(4, 30)[8:]:
            execute(store, cmd)
        store.commit()
        before = store.ledger.snapshot()
        segment = image / "journal" / f"{store.journal.snapshot_lsn + 1:020d}.log"
        start = (src / "journal" / segment.name).stat().st_size
        assert execute(store, last).ok
        store.journal.flush()  # written, not fsynced: the crash comes now
        after = store.ledger.snapshot()
        shutil.copytree(src, image, ignore=shutil.ignore_patterns("LOCK"))
    whole = segment.read_bytes()
    assert len(whole) > start
    for cut in range(start, len(whole) + 1):
        d = tmp_path / "cut"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(image, d)
        (d / "journal" / segment.name).write_bytes(whole[:cut])
        with open_store(d) as store:
            assert store.ledger.snapshot() == (after if cut == len(whole) else before), cut
            # The operation is then either remembered, or can be applied (once) now.
            assert execute(store, last).ok
            assert store.ledger.snapshot() == after
            store.ledger.check_invariants()


def test_operation_ids_make_credit_and_debit_idempotent_across_restarts(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        create = CreateAccount(id="c", now_ms=T0, account_id="a", currency=978, balance=1_000)
        assert execute(store, create).ok
        assert execute(store, Credit(id="op-credit", now_ms=T0, account_id="a", amount=500)).ok
        refused = execute(store, Debit(id="op-debit", now_ms=T0, account_id="a", amount=5_000))
        assert refused.code is Code.INSUFFICIENT_FUNDS
    with open_store(tmp_path) as store:
        lsn = store.journal.last_lsn
        assert execute(store, Credit(id="op-credit", now_ms=T0 + 1, account_id="a", amount=500)).ok
        refused = execute(store, Debit(id="op-debit", now_ms=T0 + 1, account_id="a", amount=5_000))
        assert refused.code is Code.INSUFFICIENT_FUNDS
        assert store.journal.last_lsn == lsn
        view = store.ledger.account("a")
        assert view is not None and view.balance == 1_500
        store.checkpoint()
    with open_store(tmp_path) as store:  # ... and across a snapshot
        assert execute(store, Credit(id="op-credit", now_ms=T0 + 2, account_id="a", amount=500)).ok
        view = store.ledger.account("a")
        assert view is not None and view.balance == 1_500


def test_invalid_commands_are_not_journaled(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        out = execute(store, Credit(id="x", now_ms=T0, account_id="a", amount=-5))
        assert out.code is Code.INVALID
        assert store.journal.last_lsn == 0


class Counter:
    """A toy component journaling its own record kind."""

    def __init__(self) -> None:
        self.total = 0
        self.replays = 0

    def add(self, store: Store, n: int) -> None:
        self.total += n
        store.append(7, msgspec.msgpack.encode(n))

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.total)

    def restore(self, data: bytes) -> None:
        self.total = msgspec.msgpack.decode(data, type=int)

    def replay(self, body: bytes, lsn: int) -> None:
        self.total += msgspec.msgpack.decode(body, type=int)
        self.replays += 1


def test_other_record_kinds_share_the_log_and_the_snapshot(tmp_path: Path) -> None:
    counter = Counter()
    with open_store(tmp_path, components={7: counter}) as store:
        counter.add(store, 5)
        assert execute(store, CreateAccount(id="c", now_ms=T0, account_id="a", currency=978)).ok
        counter.add(store, 6)
        with pytest.raises(ValueError, match="kind"):
            store.append(8, b"")
    again = Counter()
    with open_store(tmp_path, components={7: again}) as store:
        assert (again.total, again.replays) == (11, 2)
        assert store.ledger.account("a") is not None
        store.checkpoint()
        again.add(store, 1)
    third = Counter()
    with open_store(tmp_path, components={7: third}) as store:
        assert (third.total, third.replays) == (12, 1)
    with pytest.raises(JournalError, match="unregistered kind"):
        open_store(tmp_path)
    # The failed open released the lock.
    open_store(tmp_path, components={7: Counter()}).close()


def test_a_snapshot_holds_the_ledger_under_kind_1_then_each_component(tmp_path: Path) -> None:
    counter = Counter()
    with open_store(tmp_path, components={7: counter}) as store:
        assert execute(store, CreateAccount(id="c", now_ms=T0, account_id="a", currency=978)).ok
        counter.add(store, 5)
        lsn = store.checkpoint()
        ledger_state = store.ledger.snapshot()
    snapshot = (tmp_path / "journal" / f"{lsn:020d}.snap").read_bytes()
    data = snapshot[28:]  # after the header: magic, LSN, length, CRC
    assert data == msgspec.msgpack.encode(
        {KIND_LEDGER: ledger_state, KIND_COMMANDS: b"", 7: msgspec.msgpack.encode(5)}
    )


def test_no_journal_record_has_the_ledgers_kind(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(ValueError, match="kind 1"):
            store.append(KIND_LEDGER, b"")
        # A record of kind 1 (none is ever written) is not replayed as anything.
        store.journal.append(bytes((KIND_LEDGER,)) + b"\x90")
    with pytest.raises(JournalError, match=r"LSN 1 .* cannot be replayed: unregistered kind 1"):
        open_store(tmp_path)


def test_two_stores_cannot_share_a_data_directory(tmp_path: Path) -> None:
    with Store.open(tmp_path):
        with pytest.raises(DataDirLockedError):
            Store.open(tmp_path)
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from ocs.edge.store import Store; Store.open({str(tmp_path)!r})",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode != 0
        assert "DataDirLockedError" in child.stderr and "in use" in child.stderr
    Store.open(tmp_path).close()


def test_a_store_whose_journal_failed_takes_no_more_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    create = CreateAccount(id="c", now_ms=T0, account_id="a", currency=978, balance=10)
    assert execute(store, create).ok

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(journal_module, "fdatasync", failing)
    with pytest.raises(JournalBrokenError):
        store.commit()
    monkeypatch.undo()
    before = store.ledger.snapshot()
    with pytest.raises(JournalBrokenError):
        execute(store, Credit(id="op", now_ms=T0, account_id="a", amount=5))
    assert store.ledger.snapshot() == before
    store.close()
    # What was written reached the OS, so a restart still finds it.
    with open_store(tmp_path) as again:
        view = again.ledger.account("a")
        assert view is not None and view.balance == 10


def test_replay_does_not_depend_on_the_retention_settings(tmp_path: Path) -> None:
    with open_store(tmp_path, max_remembered=2) as store:
        assert execute(store, CreateAccount(id="c", now_ms=T0, account_id="a", currency=978)).ok
        for op in ("op-1", "op-2", "op-3", "op-1"):  # op-1 is forgotten when repeated
            assert execute(store, Credit(id=op, now_ms=T0, account_id="a", amount=10)).ok
        view = store.ledger.account("a")
        assert view is not None and view.balance == 40
    with open_store(tmp_path) as store:  # remembers far more: replay must not skip op-1
        assert store.recovery.replayed == 5
        view = store.ledger.account("a")
        assert view is not None and view.balance == 40
