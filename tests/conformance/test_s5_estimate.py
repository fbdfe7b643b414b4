"""The `Estimate` extension of a CCR (docs/protocol.md "Estimate"; issue 15 item 5), end to end
over 127.0.0.1 with the demo catalog: a request marked as an estimate runs the charging logic
and answers with `Cost-Information` of what it would have cost, and changes no balance, no
reservation and writes no CDR; the same request for real is charged exactly that."""

from __future__ import annotations

from typing import Any

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.test_s9_cdrs import read_cdrs
from tests.conformance.wire import (
    APP_CC,
    CCR,
    DIRECT_DEBITING,
    EVENT,
    MICRO,
    REFUND_ACCOUNT,
    SMS,
    SUCCESS,
    Peer,
    avp,
    balance_of,
    ccr_body,
    create_account,
    micro_of,
    new_session_id,
    units_sms,
)

ESTIMATE = 1  # Estimate ESTIMATE (docs/protocol.md "Estimate")
SMS_PRICE = 100_000  # 0.10 EUR per message (docs/catalog.md)


def event_body(
    peer: Peer, msisdn: str, action: int, messages: int, *, estimate: bool
) -> dict[str, Any]:
    extra = avp("Estimate", ESTIMATE) if estimate else {}
    return ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        service=SMS,
        msisdn=msisdn,
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(messages)}],
        **avp("Requested-Action", action),
        **extra,
    )


async def test_estimate_of_events_changes_nothing_and_equals_the_real_charge(
    spawn: Spawn, connect: Connect
) -> None:
    """3 SMS at 0.10 EUR: the estimate of the debit answers 300,000 and the balance stays 1 EUR
    with nothing reserved; the real debit takes 300,000. The estimate of a refund of 2 answers
    the 200,000 it would give back and gives nothing back; no CDR names an estimate."""
    srv = spawn()
    admin = await connect(srv.port)
    peer = await connect(srv.port)
    account = await create_account(admin, MICRO)
    estimate = event_body(peer, account.msisdn, DIRECT_DEBITING, 3, estimate=True)
    answer = await peer.request(CCR, APP_CC, estimate)
    assert answer.result_code == SUCCESS, answer.body
    assert micro_of(answer.body["Cost-Information"]["Unit-Value"]) == 3 * SMS_PRICE
    assert answer.body["Multiple-Services-Credit-Control"][0]["Result-Code"] == SUCCESS
    assert await balance_of(admin, account.account_id) == (MICRO, 0)

    real = event_body(peer, account.msisdn, DIRECT_DEBITING, 3, estimate=False)
    answer = await peer.request(CCR, APP_CC, {**real, **avp("AoC-Request-Type", 2)})
    assert answer.result_code == SUCCESS, answer.body
    assert micro_of(answer.body["Cost-Information"]["Unit-Value"]) == 3 * SMS_PRICE
    assert await balance_of(admin, account.account_id) == (MICRO - 3 * SMS_PRICE, 0)

    refund = event_body(peer, account.msisdn, REFUND_ACCOUNT, 2, estimate=True)
    answer = await peer.request(CCR, APP_CC, refund)
    assert answer.result_code == SUCCESS, answer.body
    assert micro_of(answer.body["Cost-Information"]["Unit-Value"]) == 2 * SMS_PRICE
    assert await balance_of(admin, account.account_id) == (MICRO - 3 * SMS_PRICE, 0)
    # nothing was drawn: the whole debit is still refundable, for real
    answer = await peer.request(
        CCR, APP_CC, event_body(peer, account.msisdn, REFUND_ACCOUNT, 3, estimate=False)
    )
    assert answer.result_code == SUCCESS, answer.body
    assert await balance_of(admin, account.account_id) == (MICRO, 0)

    await peer.close()
    await admin.close()
    assert srv.terminate() == 0
    records = read_cdrs(srv.data_dir / "cdr")
    sessions = {r["sessionId"] for r in records}
    assert estimate["Session-Id"] not in sessions and refund["Session-Id"] not in sessions
    assert real["Session-Id"] in sessions
    assert [r["charge"] for r in records] == [3 * SMS_PRICE, -3 * SMS_PRICE]
