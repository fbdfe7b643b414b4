"""Recovery from a snapshot: with a small ``checkpoint_records`` the server checkpoints during
the load (snapshot + compaction of the journal); SIGKILL after it, restart: recovery loads the
snapshot and replays only the journal written since, so the restart stays quick, and the books
are exactly right."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.durability.util import (
    AppProcess,
    Load,
    check_books,
    connect_admin,
    create_account,
    run_load,
    settle,
    terminate_all,
)

# 10,000 EUR each: two rounds of load spend ~300 EUR per account on SMS, hold ~90 EUR in the
# sessions the kills leave open, and the administrative CREDIT/DEBIT random walk (its step count
# grows with the server's speed) drifts by a hundred or more; with 500 EUR an account could run
# dry and an SMS be refused (4012), which this test does not expect.
ACCOUNTS = {f"acct-{i}": 10_000_000_000 for i in range(3)}
CHECKPOINT_RECORDS = 400


async def _wait_for_checkpoints(server: AppProcess, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(server.events("checkpoint.written")) < count:
        assert server.running, "the server died"
        assert time.monotonic() < deadline, "no checkpoint was written"
        await asyncio.sleep(0.05)


async def test_sigkill_after_checkpoints_recovers_from_snapshot(tmp_path: Path) -> None:
    rng = random.Random(11)
    data_dir = tmp_path / "data"
    journal_dir = data_dir / "journal"
    server = AppProcess(
        data_dir,
        "--checkpoint-records",
        str(CHECKPOINT_RECORDS),
        module="tests.durability.serve_app",
    )
    load = Load(accounts=dict(ACCOUNTS), rng=random.Random(12))
    try:
        server.start()
        client = await connect_admin(server.port)
        for account_id, balance in ACCOUNTS.items():
            await create_account(client, account_id, balance)
        await client.close()
        for round_no in range(2):
            written = len(server.events("checkpoint.written"))
            stop, tasks = await run_load(
                load, server.port, admins=1, sessions=2, until=None, round_no=round_no
            )
            await _wait_for_checkpoints(server, written + 2)
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            server.kill()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            stop.set()
            snapshots = sorted(journal_dir.glob("*.snap"))
            assert len(snapshots) == 1  # older snapshots are deleted
            segments = sorted(journal_dir.glob("*.log"))
            snap_lsn = int(snapshots[0].name.removesuffix(".snap"))
            # compaction: no segment whose records the snapshot covers is left
            assert 1 <= len(segments) <= 3, segments
            if len(segments) > 1:
                assert int(segments[1].name.removesuffix(".log")) > snap_lsn + 1, segments
            server.start()
            recovery = server.events("recovery.done")[-1]
            assert recovery["snapshot_lsn"] == snap_lsn > 0
            total = recovery["snapshot_lsn"] + recovery["replayed"]
            assert recovery["replayed"] < total // 2, recovery
            await settle(load, server.port)
            await check_books(load, server.port, data_dir)
        await terminate_all(load, server.port)
        accounts = await check_books(load, server.port, data_dir)
        assert all(a.reserved == 0 for a in accounts.values())
        assert server.terminate() == 0
        assert server.events("recovery.cdr_mismatch") == []  # replay is deterministic
    finally:
        server.kill()
