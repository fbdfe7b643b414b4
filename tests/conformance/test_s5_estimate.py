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
    VOICE,
    CcSession,
    Peer,
    avp,
    balance_of,
    ccr_body,
    create_account,
    get_account,
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


def voice(ask: bool, *used: tuple[int, int | None]) -> list[dict[str, Any]]:
    """An MSCC of RG 40 (voice): `Requested-Service-Unit {}` when `ask`, a USU of CC-Time per
    (seconds, Tariff-Change-Usage or None)."""
    entry: dict[str, Any] = {"Rating-Group": 40}
    if ask:
        entry["Requested-Service-Unit"] = {}
    if used:
        entry["Used-Service-Unit"] = [
            {"CC-Time": seconds, **({} if tcu is None else {"Tariff-Change-Usage": tcu})}
            for seconds, tcu in used
        ]
    return [entry]


# the recorded usage pattern of one call: the setup fee with the first report, several UPDATEs,
# usage either side of a tariff change (0 UNIT_BEFORE, 1 UNIT_AFTER), then the TERMINATION
PATTERN: list[tuple[str, list[dict[str, Any]]]] = [
    ("initial", voice(True)),
    ("update", voice(True, (120, None))),
    ("update", voice(True, (120, 0), (60, 1))),
    ("update", voice(True, (45, None))),
    ("terminate", voice(False, (30, None))),
]


async def test_estimate_of_a_call_equals_what_the_call_is_charged(
    spawn: Spawn, connect: Connect
) -> None:
    """Issue 15 item 5: the recorded pattern run as an estimate (Estimate on every request)
    and for real, request by request side by side: the same Result-Codes and grants, and the
    same Cost-Information to the micro-unit at every step; at the end what the real call cost
    its account equals the estimate's last Cost-Information, while the estimate's account
    kept its balance with nothing reserved at every step, and no CDR names the estimate."""
    srv = spawn()
    admin = await connect(srv.port)
    peer = await connect(srv.port)
    estimated = await create_account(admin, MICRO)
    charged = await create_account(admin, MICRO)
    estimate = CcSession(peer, estimated.msisdn, service=VOICE)
    real = CcSession(peer, charged.msisdn, service=VOICE)
    mark = {**avp("Estimate", ESTIMATE)}
    aoc = {**avp("AoC-Request-Type", 2)}  # COST_ONLY: the real call's cost so far
    costs: list[int] = []
    for step, mscc in PATTERN:
        answers = []
        for session, extra in ((estimate, mark), (real, aoc)):
            answers.append(await getattr(session, step)(mscc, **extra))
        a, b = answers
        assert a.result_code == b.result_code == SUCCESS, (a.body, b.body)
        cost = micro_of(a.body["Cost-Information"]["Unit-Value"])
        assert cost == micro_of(b.body["Cost-Information"]["Unit-Value"]), step
        assert a.body.get("Multiple-Services-Credit-Control") == b.body.get(
            "Multiple-Services-Credit-Control"
        )
        assert await balance_of(admin, estimated.account_id) == (MICRO, 0)
        costs.append(cost)
    # the setup fee (50,000) and at least the first minute whole were charged
    assert costs[0] == 0 and costs[1] >= 50_000 + 60 * 500 and costs == sorted(costs)
    assert await balance_of(admin, charged.account_id) == (MICRO - costs[-1], 0)
    assert (await get_account(admin, estimated.account_id))["Session-Count"] == 0

    await peer.close()
    await admin.close()
    assert srv.terminate() == 0
    records = read_cdrs(srv.data_dir / "cdr")
    assert estimate.session_id not in {r["sessionId"] for r in records}
    assert sum(r["charge"] for r in records if r["sessionId"] == real.session_id) == costs[-1]


async def test_an_estimate_value_outside_its_domain_is_refused(
    spawn: Spawn, connect: Connect
) -> None:
    """docs/protocol.md "Extension: Estimate": 0 or 1; 2 is 5004 naming the AVP, and nothing
    is debited."""
    srv = spawn()
    admin = await connect(srv.port)
    peer = await connect(srv.port)
    account = await create_account(admin, MICRO)
    body = {**event_body(peer, account.msisdn, DIRECT_DEBITING, 1, estimate=False), "Estimate": 2}
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == 5004, answer.body
    assert answer.body["Failed-AVP"] == {"Estimate": 2}
    assert await balance_of(admin, account.account_id) == (MICRO, 0)
    await peer.close()
    await admin.close()
    assert srv.terminate() == 0
