"""History survives a crash (docs/protocol.md, *Extension: history*): movements made before a
SIGKILL, with no checkpoint since, are rebuilt by replaying the journal, the same movements
with the same numbers and CDR numbers; a checkpoint and a clean restart keep them too."""

from __future__ import annotations

from pathlib import Path

from protocol.codes import AccountOperation, CCRequestType, MovementKind
from protocol.messages import AMA
from tests.durability.util import (
    SMS_PRICE,
    AppProcess,
    admin,
    connect_admin,
    connect_cc,
    create_account,
    sms_ccr,
)

UPF = "smsc1.test.local"


async def _history(port: int) -> AMA:
    client = await connect_admin(port)
    try:
        answer = await admin(client, AccountOperation.HISTORY, "acct-7")
    finally:
        await client.close()
    assert answer.result_code == 2001, answer
    return answer


async def test_history_is_rebuilt_by_replay_after_sigkill(tmp_path: Path) -> None:
    server = AppProcess(tmp_path / "data", "--history-limit", "4")
    try:
        server.start()
        client = await connect_admin(server.port)
        cc = await connect_cc(server.port, UPF)
        try:
            await create_account(client, "acct-7", 10_000_000)  # 1: +10.00
            for i in range(2):  # 2, 3: +1.00, +2.00
                credit = await admin(
                    client, AccountOperation.CREDIT, "acct-7", amount=(i + 1) * 1_000_000,
                    operation_id=f"h-{i}",
                )  # fmt: skip
                assert credit.result_code == 2001
            # 4: an SMS session, 3 messages used at 0.10 EUR: -0.30 EUR under its CDR's number
            sid = f"{UPF};h-1"
            opened = await cc.request(
                sms_ccr(UPF, sid, CCRequestType.INITIAL, 0, account_id="acct-7")
            )
            assert opened.result_code == 2001
            closed = await cc.request(sms_ccr(UPF, sid, CCRequestType.TERMINATION, 1, used=3))
            assert closed.result_code == 2001
            # 5: a debit; the limit of 4 drops movement 1
            debit = await admin(client, AccountOperation.DEBIT, "acct-7", amount=500_000)
            assert debit.result_code == 2001
        finally:
            await cc.close()
            await client.close()
        before = await _history(server.port)
        assert before.movement_count == 5
        kinds = [(m.movement_sequence, m.movement_kind, m.amount) for m in before.movement or ()]
        assert kinds == [
            (5, MovementKind.DEBIT, -500_000),
            (4, MovementKind.CHARGE, -3 * SMS_PRICE),
            (3, MovementKind.CREDIT, 2_000_000),
            (2, MovementKind.CREDIT, 1_000_000),
        ]
        charge = (before.movement or ())[1]
        assert charge.movement_record == 1 and charge.movement_units == 3
        server.kill()  # SIGKILL: no checkpoint since the start, everything replayed
        server.start()
        assert await _history(server.port) == before
        assert server.terminate() == 0  # a clean stop checkpoints: restored from the snapshot
        server.start()
        assert await _history(server.port) == before
        assert server.terminate() == 0
    finally:
        server.kill()
