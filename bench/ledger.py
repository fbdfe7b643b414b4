"""Balance store benchmark: durable operations/s, recovery time, memory per account.

    .venv/bin/python -m bench.ledger [--accounts 1000000] [--seconds 2] [--dir DIR]

Prints a markdown report (about a minute with the defaults). Not a test: nothing is asserted.

1. Durable operations/s. A charging-like mix (reserve, then post), each command applied to the
   ledger and journaled with `Store.append` (as a record of the ledger-commands component of
   tests/ledger/commands.py; the server journals its requests the same way), the journal
   committed (write + fsync) after every batch of B operations: B = 1 is fsync per operation,
   B = 100 / 1000 is group commit. Then the asyncio path: concurrent clients that
   each execute and wait for `GroupCommit.durable()` (the server's pattern), strict and relaxed.
2. Recovery with N accounts: journal replay of N CreateAccount records, and snapshot load.
3. Memory per account (tracemalloc): a ledger of N accounts with two subscription identities
   each, fresh and after some activity; also per open reservation and per remembered op id.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

from ocs.core.accounts import SubscriberIdentity
from ocs.core.ledger import Command, CreateAccount, Credit, Ledger, Post, Reserve, encode_command
from ocs.edge.group_commit import GroupCommit
from ocs.edge.journal import Journal
from ocs.edge.store import Store
from tests.ledger.commands import KIND_COMMANDS, execute, open_store

T0 = 1_700_000_000_000


def create_command(i: int) -> CreateAccount:
    return CreateAccount(
        id=f"create-{i}",
        now_ms=T0,
        account_id=f"acct-{i:08d}",
        subscriptions=(
            SubscriberIdentity(type=0, data=f"49151{i:08d}"),
            SubscriberIdentity(type=1, data=f"26201{i:010d}"),
        ),
        currency=978,
        balance=10_000_000 + i,
    )


def charging_ops(accounts: int, start: int = 0) -> Iterator[Command]:
    """reserve r, post r, reserve r+1, post r+1, ... spread over the accounts."""
    i = start
    while True:
        account = f"acct-{i % accounts:08d}"
        rid = f"res-{i}"
        now = T0 + i
        yield Reserve(
            id=rid, now_ms=now, account_id=account, amount=1_000, expires_at_ms=now + 60_000
        )
        yield Post(id=f"post-{i}", now_ms=now, reservation_id=rid, amount=700)
        i += 1


def seed(store: Store, accounts: int) -> None:
    for i in range(accounts):
        execute(store, create_command(i))
    store.commit()


def bench_batches(base: Path, batch: int, seconds: float) -> tuple[float, int]:
    directory = base / f"batch-{batch}"
    with open_store(directory) as store:
        seed(store, 1_000)
        ops = charging_ops(1_000)
        done = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            for _ in range(batch):
                execute(store, next(ops))
            store.commit()
            done += batch
        elapsed = time.perf_counter() - started
        fsyncs = done // batch
    shutil.rmtree(directory)
    return done / elapsed, fsyncs


def bench_asyncio(base: Path, clients: int, seconds: float, interval: float | None) -> str:
    directory = base / f"async-{clients}-{interval}"

    async def main(store: Store) -> tuple[float, int, int]:
        commit = GroupCommit(store.journal, sync_interval_ms=interval)
        done = 0
        stop = False

        async def client(n: int) -> None:
            nonlocal done
            ops = charging_ops(1_000, start=n * 10_000_000)
            while not stop:
                execute(store, next(ops))
                await commit.durable()
                done += 1

        tasks = [asyncio.create_task(client(n)) for n in range(clients)]
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        await commit.aclose()
        return done / elapsed, commit.syncs, commit.batches

    with open_store(directory) as store:
        seed(store, 1_000)
        rate, syncs, batches = asyncio.run(main(store))
    shutil.rmtree(directory)
    mode = "strict" if interval is None else f"relaxed {interval:g} ms"
    return (
        f"| asyncio, {clients} clients, {mode} | {rate:,.0f} | {syncs:,} fsyncs, "
        f"{batches:,} batches |"
    )


def bench_in_memory(seconds: float) -> float:
    ledger = Ledger()
    for i in range(1_000):
        ledger.apply(create_command(i))
    ops = charging_ops(1_000)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1_000):
            ledger.apply(next(ops))
        done += 1_000
    return done / (time.perf_counter() - started)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def write_journal(directory: Path, accounts: int) -> None:
    """N CreateAccount records straight into a journal (what N `execute` would write)."""
    journal = Journal(directory / "journal")
    assert list(journal.recover()) == []
    for i in range(accounts):
        journal.append(bytes((KIND_COMMANDS,)) + encode_command(create_command(i)))
        if i % 10_000 == 9_999:
            journal.flush()
    journal.close()


def bench_recovery(base: Path, accounts: int) -> tuple[list[str], bytes]:
    """Returns the report rows and the ledger's snapshot (for the memory figures)."""
    directory = base / "recovery"
    rows: list[str] = []
    write_journal(directory, accounts)
    journal_bytes = sum(p.stat().st_size for p in (directory / "journal").glob("*.log"))
    gc.collect()
    started = time.perf_counter()
    store = open_store(directory)
    replay = time.perf_counter() - started
    assert store.ledger.account_count == accounts
    rows.append(
        f"| **recovery by journal replay**: {store.recovery.replayed:,} CreateAccount records, "
        f"{journal_bytes / 1e6:.0f} MB | **{replay:.2f} s** | "
        f"{store.recovery.replayed / replay:,.0f} records/s |"
    )
    checkpoint = timed(store.checkpoint)
    snap = next((directory / "journal").glob("*.snap")).stat().st_size
    store.close()
    rows.append(
        f"| checkpoint: snapshot encode + write + fsync + rename, compaction | {checkpoint:.2f} s "
        f"| {snap / 1e6:.0f} MB snapshot (incl. {accounts:,} remembered op ids) |"
    )
    del store
    gc.collect()
    started = time.perf_counter()
    store = open_store(directory)
    load = time.perf_counter() - started
    assert store.ledger.account_count == accounts and store.recovery.replayed == 0
    rows.append(
        f"| **recovery by snapshot load** | **{load:.2f} s** | read + check + decode + index |"
    )
    snapshot = store.ledger.snapshot()
    store.close()
    shutil.rmtree(directory)
    return rows, snapshot


def measure(build: Callable[[], object]) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


def bench_memory(accounts: int, snapshot: bytes) -> list[str]:
    """Per-account memory of a restored ledger: every object of an account is allocated inside
    the measurement. max_remembered=1 leaves the op-id memory out (measured on its own)."""
    rows: list[str] = []

    def restore() -> Ledger:
        ledger = Ledger(max_remembered=1)
        ledger.restore(snapshot)
        return ledger

    used, kept = measure(restore)
    assert isinstance(kept, Ledger) and kept.account_count == accounts
    ledger = kept
    rows.append(
        f"| **account with 2 subscription identities** (id, record, identity strings, both "
        f"indexes) | **{used / accounts:.0f} B** |"
    )
    active = min(accounts, 100_000)

    def activity() -> None:
        # A credit, then a reserve + post: the balance becomes a new int; nothing else grows.
        for i in range(active):
            account = f"acct-{i:08d}"
            ledger.apply(Credit(id=f"c{i}", now_ms=T0, account_id=account, amount=1_000_001 + i))
            ledger.apply(
                Reserve(
                    id=f"r{i}", now_ms=T0, account_id=account, amount=3_000, expires_at_ms=T0 + 1
                )
            )
            ledger.apply(Post(id=f"p{i}", now_ms=T0, reservation_id=f"r{i}", amount=2_345 + i))

    grown, _ = measure(activity)
    rows.append(
        f"| ... after a credit and a reserve + post on it | {used / accounts + grown / active:.0f} "
        "B |"
    )
    ledger = kept = Ledger()  # drop the big one
    gc.collect()

    n = min(accounts, 200_000)
    base = Ledger(max_remembered=1)
    base.apply(CreateAccount(id="c", now_ms=T0, account_id="a", currency=978, balance=10**12))

    def reserve() -> None:
        for i in range(n):
            base.apply(
                Reserve(
                    id=f"res-{i:08d}", now_ms=T0, account_id="a", amount=7, expires_at_ms=T0 + i + 1
                )
            )

    used, _ = measure(reserve)
    rows.append(
        f"| open reservation, each with its own expiry instant (id, record, expiry index) | "
        f"{used / n:.0f} B |"
    )
    remembering = Ledger()
    remembering.apply(CreateAccount(id="c", now_ms=T0, account_id="a", currency=978))

    def remember() -> None:
        for i in range(n):
            remembering.apply(Credit(id=f"op-{i:012d}", now_ms=T0, account_id="a", amount=1))

    used, _ = measure(remember)
    rows.append(f"| remembered operation id (a 16-character id) | {used / n:.0f} B |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=1.0, help="per throughput run")
    parser.add_argument("--dir", type=Path, default=None, help="where to put data dirs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ocs-bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        print(
            f"# Balance store benchmark\n\nPython {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, data in {base}\n"
        )
        print("## Durable operations/s (reserve + post mix)\n")
        print("| mode | ops/s | fsyncs |\n|---|---:|---:|")
        print(f"| in memory only (no journal), for reference | {bench_in_memory(1.0):,.0f} | - |")
        for batch in (1, 10, 100, 1_000):
            rate, fsyncs = bench_batches(base, batch, args.seconds)
            label = "fsync per operation" if batch == 1 else f"group commit, batches of {batch}"
            print(f"| {label} | {rate:,.0f} | {fsyncs:,} |")
        print(bench_asyncio(base, 100, args.seconds, None))
        print(bench_asyncio(base, 1_000, args.seconds, None))
        print(bench_asyncio(base, 1_000, args.seconds, 10.0))
        print(f"\n## Recovery, {args.accounts:,} accounts\n")
        print("| step | time | notes |\n|---|---:|---|")
        rows, snapshot = bench_recovery(base, args.accounts)
        for row in rows:
            print(row)
        print(f"\n## Memory (tracemalloc), {args.accounts:,} accounts\n")
        print("| what | bytes per item |\n|---|---:|")
        for row in bench_memory(args.accounts, snapshot):
            print(row)
        print(f"\nTotal run time {time.perf_counter() - started:.0f} s.")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
