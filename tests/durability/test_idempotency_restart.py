"""Idempotency survives a restart (WIRE.md sections 6 and 8): a CREDIT or DEBIT sent again
with its Operation-Id after the server stopped (SIGTERM) or crashed (SIGKILL) changes nothing and
answers 2001 with the same balance; a request sent again with its (Origin-Host, End-to-End-Id)
gets the cached answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.codes import AccountOperation
from tests.durability.util import (
    AppProcess,
    admin,
    connect_admin,
    create_account,
    get_account,
    next_e2e,
)

INITIAL = 5_000_000


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_operation_id_applies_once_across_restart(tmp_path: Path, stop: str) -> None:
    server = AppProcess(tmp_path / "data")
    try:
        server.start()
        client = await connect_admin(server.port)
        await create_account(client, "acct-1", INITIAL)
        credit = await admin(
            client, AccountOperation.CREDIT, "acct-1", amount=1_230_000, operation_id="top-up-1"
        )
        assert credit.result_code == 2001 and credit.account is not None
        assert credit.account.balance == INITIAL + 1_230_000
        debit = await admin(
            client, AccountOperation.DEBIT, "acct-1", amount=30_000, operation_id="fee-1"
        )
        assert debit.result_code == 2001 and debit.account is not None
        # A CREDIT without Operation-Id is identified by (Origin-Host, End-to-End-Id) alone.
        bare_e2e = next_e2e()
        bare = await admin(client, AccountOperation.CREDIT, "acct-1", amount=7, end_to_end=bare_e2e)
        assert bare.result_code == 2001 and bare.account is not None
        balance = INITIAL + 1_230_000 - 30_000 + 7
        assert bare.account.balance == balance
        await client.close()

        if stop == "sigterm":
            assert server.terminate() == 0
        else:
            server.kill()
        server.start()

        client = await connect_admin(server.port)
        again = await admin(
            client, AccountOperation.CREDIT, "acct-1", amount=1_230_000, operation_id="top-up-1"
        )
        assert again.result_code == 2001 and again.account is not None
        assert again.account.balance == balance
        again_debit = await admin(
            client, AccountOperation.DEBIT, "acct-1", amount=30_000, operation_id="fee-1"
        )
        assert again_debit.result_code == 2001 and again_debit.account is not None
        assert again_debit.account.balance == balance
        # The duplicate cache survived too: the cached answer (balance as it was then).
        cached = await admin(
            client, AccountOperation.CREDIT, "acct-1", amount=7, end_to_end=bare_e2e
        )
        assert cached.result_code == 2001 and cached.account is not None
        assert cached.account.balance == balance
        assert (await get_account(client, "acct-1")).balance == balance
        # A new Operation-Id is a new operation: the check above can fail.
        fresh = await admin(
            client, AccountOperation.CREDIT, "acct-1", amount=1_230_000, operation_id="top-up-2"
        )
        assert fresh.account is not None and fresh.account.balance == balance + 1_230_000
        await client.close()
        assert server.terminate() == 0
        recoveries = server.events("recovery.done")
        assert len(recoveries) == 2
        if stop == "sigterm":  # a clean stop checkpoints: nothing to replay
            assert recoveries[1]["snapshot_lsn"] > 0 and recoveries[1]["replayed"] == 0
        else:
            assert recoveries[1]["snapshot_lsn"] == 0 and recoveries[1]["replayed"] >= 4
    finally:
        server.kill()
