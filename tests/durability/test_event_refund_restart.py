"""EVENT duplicates and the refund window across a SIGKILL (WIRE.md 1.1 sections 5.4 and 6).

An `ocs serve` subprocess with `--refund-window-s 1`: a DIRECT_DEBITING, then (after the
window) a refund of it, refused 5004. SIGKILL, and a restart with the default window (24 h):
the replay applies the window that was in force when each input arrived (it was journaled), so
the refusal stays a refusal and no CDR is rebuilt; the EVENTs sent again under their
Session-Ids with new End-to-End-Ids get their first answers; a new refund, under the 24-hour
window now in force, gives the debit back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.edge.client import Client
from protocol.codes import CCRequestType, RequestedAction, SubscriptionIdType
from protocol.messages import CCA, CCR, MsccRequest, ServiceUnit, SubscriptionId
from tests.durability.util import (
    REALM,
    SMS_CONTEXT,
    SMS_PRICE,
    SMS_RG,
    AppProcess,
    connect_admin,
    connect_cc,
    create_account,
    get_account,
    msisdn,
    next_e2e,
)

SCP = "scp1.test.local"
BALANCE = 1_000_000


def sms_event(session_id: str, action: RequestedAction, units: int) -> CCR:
    return CCR(
        origin_host=SCP,
        origin_realm=REALM,
        destination_realm=REALM,
        auth_application_id=4,
        session_id=session_id,
        service_context_id=SMS_CONTEXT,
        cc_request_type=CCRequestType.EVENT,
        cc_request_number=0,
        requested_action=action,
        subscription_id=(
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164,
                subscription_id_data=msisdn("acct-1"),
            ),
        ),
        multiple_services_credit_control=(
            MsccRequest(
                rating_group=SMS_RG,
                requested_service_unit=ServiceUnit(cc_service_specific_units=units),
            ),
        ),
    )


async def send(client: Client, message: CCR) -> CCA:
    answer = await client.request(message, end_to_end=next_e2e(), timeout=5.0)
    assert isinstance(answer, CCA), answer
    return answer


async def test_event_duplicates_and_the_refund_window_survive_a_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = AppProcess(data_dir, "--refund-window-s", "1")
    try:
        server.start()
        admin = await connect_admin(server.port)
        await create_account(admin, "acct-1", BALANCE)
        scp = await connect_cc(server.port, SCP)
        debit = sms_event(f"{SCP};1;debit", RequestedAction.DIRECT_DEBITING, 2)
        debited = await send(scp, debit)
        assert debited.result_code == 2001
        await asyncio.sleep(1.2)  # the 1-second window passes
        late = sms_event(f"{SCP};1;late-refund", RequestedAction.REFUND_ACCOUNT, 1)
        refused = await send(scp, late)
        assert refused.result_code == 5004
        assert refused.failed_avp == {"Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
        await scp.close()
        await admin.close()
        server.kill()

        server = AppProcess(data_dir)  # the default window, 24 h
        server.start()
        (recovery,) = server.events("recovery.done")[-1:]
        assert recovery["replayed"] >= 3 and recovery["cdrs_rewritten"] == 0
        assert server.events("recovery.cdr_mismatch") == []
        admin = await connect_admin(server.port)
        scp = await connect_cc(server.port, SCP)
        # sent again under their Session-Ids, new End-to-End-Ids: the first answers
        assert (await send(scp, debit)) == debited
        assert (await send(scp, late)) == refused
        assert (await get_account(admin, "acct-1")).balance == BALANCE - 2 * SMS_PRICE
        # the 24-hour window is in force from the restart on: a debit is refundable after
        # more than 1 s (whether the first debit is still refundable depends on whether the
        # late refund, in the second after the old window ended, already forgot it)
        again = sms_event(f"{SCP};2;debit", RequestedAction.DIRECT_DEBITING, 2)
        assert (await send(scp, again)).result_code == 2001
        await asyncio.sleep(1.2)
        refund = sms_event(f"{SCP};2;refund", RequestedAction.REFUND_ACCOUNT, 2)
        assert (await send(scp, refund)).result_code == 2001
        assert (await get_account(admin, "acct-1")).balance == BALANCE - 2 * SMS_PRICE
        assert (
            await send(scp, sms_event(f"{SCP};2;more", RequestedAction.REFUND_ACCOUNT, 3))
        ).result_code == 5004
        await scp.close()
        await admin.close()
        assert server.terminate() == 0
        charges = [(r["sessionId"], r["charge"]) for r in iter_records(data_dir / "cdr")]
        assert charges == [
            (debit.session_id, 2 * SMS_PRICE),
            (again.session_id, 2 * SMS_PRICE),
            (refund.session_id, -2 * SMS_PRICE),
        ]
    finally:
        server.kill()
