"""Checkpoints captured by a forked child (`Store.fork_checkpoint`): the snapshot is the state
of the instant of the fork, whatever the parent does afterwards; it only counts once installed,
and recovery from it plus the journal rebuilds exactly the live state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocs.core.ledger import CreateAccount, Credit, Debit
from ocs.edge.store import Store
from tests.ledger.commands import execute, open_store

T0 = 1_700_000_000_000

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _accounts(store: Store, count: int) -> None:
    for i in range(count):
        create = CreateAccount(id=f"c{i}", now_ms=T0, account_id=f"a{i}", currency=978)
        assert execute(store, create).ok
        assert execute(store, Credit(id=f"k{i}", now_ms=T0, account_id=f"a{i}", amount=100 + i)).ok


def test_the_snapshot_is_the_state_at_the_fork_and_recovery_is_exact(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        _accounts(store, 50)
        store.commit()
        at_fork = store.capture_checkpoint()
        forked = store.fork_checkpoint()
        assert forked.lsn == at_fork.lsn
        # the parent goes on changing its state while the child writes the snapshot
        for i in range(50):
            assert execute(store, Debit(id=f"d{i}", now_ms=T0 + 1, account_id=f"a{i}", amount=7)).ok
        store.commit()
        assert forked.wait()
        assert forked.path.exists()
        assert store.journal.snapshot_lsn == 0  # written, not yet in force
        store.install_checkpoint(forked)
        assert not forked.path.exists()
        assert store.journal.snapshot_lsn == forked.lsn
        live = store.ledger.snapshot()
    loaded = open_store(tmp_path)
    try:
        assert loaded.recovery.snapshot_lsn == forked.lsn
        assert loaded.recovery.replayed == 50  # the debits after the fork
        assert loaded.ledger.snapshot() == live
        snapshot = loaded.journal.load_snapshot()
        assert snapshot is not None and snapshot == (at_fork.lsn, at_fork.data)
    finally:
        loaded.close()


def test_an_abandoned_child_leaves_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        _accounts(store, 5)
        store.commit()
        forked = store.fork_checkpoint()
        forked.abandon()
        assert not forked.path.exists()
        with pytest.raises(ChildProcessError):  # reaped
            os.waitpid(forked.pid, os.WNOHANG)
        assert store.journal.snapshot_lsn == 0
    with open_store(tmp_path) as store:
        assert store.recovery.snapshot_lsn == 0 and store.recovery.replayed == 10


def test_an_older_checkpoint_is_not_installed_over_a_newer_one(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        _accounts(store, 5)
        store.commit()
        older = store.fork_checkpoint()
        assert older.wait()
        assert execute(store, Credit(id="late", now_ms=T0, account_id="a0", amount=1)).ok
        newer = store.checkpoint()
        store.install_checkpoint(older)
        assert store.journal.snapshot_lsn == newer > older.lsn
        assert not older.path.exists()
