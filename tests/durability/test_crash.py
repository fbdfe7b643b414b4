"""Crash tests: run a server subprocess, drive admin and reservation load, SIGKILL it at random
moments, restart it and check that every acknowledged operation is present exactly once.

The load: admin clients send CREDITs and DEBITs with unique Operation-Ids; credit-control
clients open SMS sessions (INITIAL reserves one message) and close them (TERMINATION charges
0..3 messages), leaving some open across the crashes. After each restart, every operation not
acknowledged is sent again with its Operation-Id (applied before the crash or not, it must
count once), every acknowledged one too (it must change nothing), and every unanswered session
request is sent again. The books are then checked against the CDR files.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

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

ACCOUNTS = {f"acct-{i}": 1_000_000_000 + i for i in range(4)}  # ~1000 EUR each


async def _setup(load: Load, port: int) -> None:
    client = await connect_admin(port)
    try:
        for account_id, balance in load.accounts.items():
            await create_account(client, account_id, balance)
    finally:
        await client.close()


@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkill_at_random_moments_loses_and_repeats_nothing(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    server = AppProcess(data_dir)
    load = Load(accounts=dict(ACCOUNTS), rng=random.Random(seed * 1000))
    try:
        server.start()
        await _setup(load, server.port)
        acknowledged = settled = 0  # operations answered before a crash / already re-sent
        for round_no in range(3):
            stop, tasks = await run_load(
                load,
                server.port,
                admins=2,
                sessions=3,
                until=rng.uniform(0.3, 1.0),
                round_no=round_no,
            )
            server.kill()  # SIGKILL in the middle of the load
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            stop.set()
            assert load.ops and load.sessions, "the load did not run"
            acknowledged += sum(op.result is not None for op in load.ops[settled:])
            settled = len(load.ops)
            server.start()
            await settle(load, server.port)
            await check_books(load, server.port, data_dir)
        await terminate_all(load, server.port)
        accounts = await check_books(load, server.port, data_dir)
        assert all(a.reserved == 0 and a.session_count == 0 for a in accounts.values())
        # Every unacknowledged operation was sent again: all have an outcome now.
        assert all(op.result is not None for op in load.ops)
        assert acknowledged > 0
        assert server.terminate() == 0
        recoveries = server.events("recovery.done")
        assert len(recoveries) == 4  # the first start and three restarts after SIGKILL
        assert all(r["replayed"] > 0 for r in recoveries[1:])
        assert server.events("recovery.cdr_mismatch") == []  # replay is deterministic
    finally:
        server.kill()
