"""WIRE.md §6 Duplicates and retransmission: the cached answer again (new Hop-by-Hop-Id),
nothing charged twice, also across a restart (SIGTERM or SIGKILL of the subprocess)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_CC,
    CCR,
    CREATE,
    CREDIT,
    DEBIT,
    DIRECT_DEBITING,
    EVENT,
    FLAG_P,
    FLAG_R,
    FLAG_T,
    GET,
    INVALID_AVP_VALUE,
    MICRO,
    PRICE_ENQUIRY,
    REFUND_ACCOUNT,
    SMS,
    SUCCESS,
    TERMINATION,
    UNKNOWN_SESSION_ID,
    UPDATE,
    CcSession,
    Msg,
    Peer,
    amr,
    amr_body,
    avp,
    balance_of,
    ccr_body,
    create_account,
    get_account,
    new_msisdn,
    new_session_id,
    next_e2e,
    subscription,
    uid,
    units_sms,
)
from tests.server.process import ServerProcess

SMS_PRICE = 100_000
CC_FLAGS = FLAG_R | FLAG_P


def sms(requested: int | None = None, used: list[int] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"Rating-Group": 30}
    if requested is not None:
        entry["Requested-Service-Unit"] = units_sms(requested)
    if used is not None:
        entry["Used-Service-Unit"] = [units_sms(n) for n in used]
    return entry


def event(peer: Peer, msisdn: str, action: int, units: int) -> dict[str, Any]:
    return ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        service=SMS,
        msisdn=msisdn,
        mscc=[sms(units)],
        **avp("Requested-Action", action),
    )


def same_answer(first: Msg, again: Msg) -> None:
    """The cached answer: the same body, under the retransmission's own Hop-by-Hop-Id."""
    assert again.body == first.body
    assert again.header.e2e == first.header.e2e
    assert again.header.hbh != first.header.hbh


@pytest.mark.parametrize("t_flag", [True, False], ids=["T", "no-T"])
async def test_s6_duplicate_end_to_end_answered_from_cache_charged_once(
    server: ServerProcess, connect: Connect, t_flag: bool
) -> None:
    """WIRE.md §6: a request whose (Origin-Host, End-to-End-Id) matches one already answered
    is a duplicate, T flag or not: the cached answer again, with the new Hop-by-Hop-Id, and
    nothing changes."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    body = event(peer, account.msisdn, DIRECT_DEBITING, 2)
    e2e = next_e2e()
    first = await peer.request(CCR, APP_CC, body, e2e=e2e)
    assert first.result_code == SUCCESS
    flags = CC_FLAGS | (FLAG_T if t_flag else 0)
    for _ in range(3):
        again = await peer.request(CCR, APP_CC, body, e2e=e2e, flags=flags)
        same_answer(first, again)
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


async def test_s6_duplicate_on_another_connection(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §6: the key is (Origin-Host, End-to-End-Id), not the connection: a client that
    retransmits on a new connection gets the cached answer."""
    admin = await connect(server.port)
    first_conn = await connect(server.port)
    account = await create_account(admin, MICRO)
    body = event(first_conn, account.msisdn, DIRECT_DEBITING, 1)
    e2e = next_e2e()
    first = await first_conn.request(CCR, APP_CC, body, e2e=e2e)
    await first_conn.close()
    second_conn = await connect(server.port, first_conn.origin_host)
    again = await second_conn.request(CCR, APP_CC, body, e2e=e2e, flags=CC_FLAGS | FLAG_T)
    same_answer(first, again)
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


async def test_s6_same_end_to_end_from_another_origin_host_is_new(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §1/§6: End-to-End-Ids are unique per Origin-Host, so the same id from another
    Origin-Host is a different request (processed, charged)."""
    admin = await connect(server.port)
    one = await connect(server.port)
    two = await connect(server.port)
    account = await create_account(admin, MICRO)
    e2e = next_e2e()
    a = await one.request(CCR, APP_CC, event(one, account.msisdn, DIRECT_DEBITING, 1), e2e=e2e)
    b = await two.request(CCR, APP_CC, event(two, account.msisdn, DIRECT_DEBITING, 1), e2e=e2e)
    assert a.result_code == b.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


async def test_s6_refund_applied_once(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.4/§6: a refund is applied once, however often it is retransmitted."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    debit = event(peer, account.msisdn, DIRECT_DEBITING, 2)
    assert (await peer.request(CCR, APP_CC, debit)).result_code == SUCCESS
    body = event(peer, account.msisdn, REFUND_ACCOUNT, 1)
    e2e = next_e2e()
    first = await peer.request(CCR, APP_CC, body, e2e=e2e)
    assert first.result_code == SUCCESS
    for flags in (CC_FLAGS | FLAG_T, CC_FLAGS, CC_FLAGS | FLAG_T):
        same_answer(first, await peer.request(CCR, APP_CC, body, e2e=e2e, flags=flags))
    again = await peer.request(CCR, APP_CC, body)  # its Session-Id, a new End-to-End-Id
    assert again.body == first.body
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


@pytest.mark.parametrize("action", [DIRECT_DEBITING, REFUND_ACCOUNT])
async def test_s6_event_sent_again_under_its_session_id_is_a_duplicate(
    server: ServerProcess, connect: Connect, action: int
) -> None:
    """WIRE.md 1.1 §6: for an EVENT the pair (Session-Id, 0) is remembered for the duplicate
    window, so an EVENT sent again under a new End-to-End-Id, T flag or not, gets the cached
    answer and changes nothing."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    if action == REFUND_ACCOUNT:
        debit = event(peer, account.msisdn, DIRECT_DEBITING, 3)
        assert (await peer.request(CCR, APP_CC, debit)).result_code == SUCCESS
    body = event(peer, account.msisdn, action, 1)
    first = await peer.request(CCR, APP_CC, body)
    assert first.result_code == SUCCESS
    for flags in (CC_FLAGS, CC_FLAGS | FLAG_T):
        again = await peer.request(CCR, APP_CC, body, flags=flags)
        assert again.body == first.body and again.header.e2e != first.header.e2e
    expected = MICRO - SMS_PRICE if action == DIRECT_DEBITING else MICRO - 2 * SMS_PRICE
    assert await balance_of(admin, account.account_id) == (expected, 0)


async def test_s6_same_session_and_request_number_answered_the_same(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §6: a CCR whose (Session-Id, CC-Request-Number) equals the last one processed
    for that session is answered the same way (here with a new End-to-End-Id), charged once;
    also for a TERMINATION, after the session closed."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(1)])
    update = session.body(UPDATE, 1, mscc=[sms(1, [1])])
    first = await peer.request(CCR, APP_CC, update)
    assert first.result_code == SUCCESS
    again = await peer.request(CCR, APP_CC, update, flags=CC_FLAGS | FLAG_T)
    assert again.body == first.body
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, SMS_PRICE)
    term = session.body(TERMINATION, 2, mscc=[sms(used=[1])])
    first = await peer.request(CCR, APP_CC, term)
    assert first.result_code == SUCCESS
    again = await peer.request(CCR, APP_CC, term, flags=CC_FLAGS | FLAG_T)
    assert again.body == first.body
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


async def test_s6_duplicate_admin_request(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §6/§8: an AMR CREDIT/DEBIT without Operation-Id retransmitted with the same
    End-to-End-Id is applied once."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    for op, amount in ((CREDIT, 300_000), (DEBIT, 100_000)):
        body = amr_body(admin, op, account.account_id, Amount=amount)
        e2e = next_e2e()
        first = await admin.request(AMR, APP_ADMIN, body, e2e=e2e)
        assert first.result_code == SUCCESS
        again = await admin.request(AMR, APP_ADMIN, body, e2e=e2e, flags=FLAG_R | FLAG_T)
        same_answer(first, again)
    assert await balance_of(admin, account.account_id) == (MICRO + 200_000, 0)


# --- across a restart -------------------------------------------------------------------------


def cdr_records(data_dir: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((data_dir / "cdr").glob("cdr-*")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return sorted(records, key=lambda r: int(r["recordSequenceNumber"]))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_s6_duplicate_detection_survives_a_restart(
    spawn: Spawn, connect: Connect, how: str
) -> None:
    """WIRE.md §6: duplicate detection survives a restart of the server: a request answered
    before a crash (SIGKILL) or a stop (SIGTERM) is not charged again after it, whether it is
    retransmitted with the same End-to-End-Id or as the same (Session-Id, CC-Request-Number)
    (for an EVENT, its Session-Id);
    §8: an Operation-Id is applied once across the restart too; §9: no CDR repeated."""
    srv = spawn()
    admin = await connect(srv.port)
    peer = await connect(srv.port)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    assert (await session.initial([sms(2)])).result_code == SUCCESS
    term = session.body(TERMINATION, 1, mscc=[sms(used=[2])])
    term_e2e = next_e2e()
    term_answer = await peer.request(CCR, APP_CC, term, e2e=term_e2e)
    assert term_answer.result_code == SUCCESS
    debit = event(peer, account.msisdn, DIRECT_DEBITING, 1)
    debit_e2e = next_e2e()
    debit_answer = await peer.request(CCR, APP_CC, debit, e2e=debit_e2e)
    assert debit_answer.result_code == SUCCESS
    credit = amr_body(admin, CREDIT, account.account_id, Amount=500_000, Operation_Id="topup-1")
    assert (await admin.request(AMR, APP_ADMIN, credit)).result_code == SUCCESS
    expected = MICRO - 3 * SMS_PRICE + 500_000
    assert await balance_of(admin, account.account_id) == (expected, 0)

    await peer.close()
    await admin.close()
    assert srv.proc is not None
    if how == "SIGKILL":
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    else:
        assert srv.terminate() == 0
    srv = spawn()  # same data directory

    admin = await connect(srv.port, admin.origin_host)
    peer = await connect(srv.port, peer.origin_host)
    again = await peer.request(CCR, APP_CC, term, e2e=term_e2e, flags=CC_FLAGS | FLAG_T)
    same_answer(term_answer, again)
    again = await peer.request(CCR, APP_CC, term)  # same Session-Id and number, new id
    assert again.body == term_answer.body
    again = await peer.request(CCR, APP_CC, debit, e2e=debit_e2e, flags=CC_FLAGS | FLAG_T)
    same_answer(debit_answer, again)
    again = await peer.request(CCR, APP_CC, debit)  # the EVENT's Session-Id, a new id
    assert again.body == debit_answer.body
    assert (await admin.request(AMR, APP_ADMIN, credit)).result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (expected, 0)

    await peer.close()
    await admin.close()
    assert srv.terminate() == 0
    records = cdr_records(srv.data_dir)
    assert [r["recordSequenceNumber"] for r in records] == list(range(1, len(records) + 1))
    mine = [r for r in records if r["sessionId"] == session.session_id]
    assert len(mine) == 1 and mine[0]["charge"] == 2 * SMS_PRICE
    assert sum(r["charge"] for r in records) == 3 * SMS_PRICE


async def test_s6_t_flag_on_a_first_transmission_is_processed(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §1/§6: T marks a request as potentially retransmitted; one never answered
    before (the first copy was lost) is processed normally, once."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    body = event(peer, account.msisdn, DIRECT_DEBITING, 1)
    e2e = next_e2e()
    first = await peer.request(CCR, APP_CC, body, e2e=e2e, flags=CC_FLAGS | FLAG_T)
    assert first.result_code == SUCCESS
    same_answer(first, await peer.request(CCR, APP_CC, body, e2e=e2e, flags=CC_FLAGS | FLAG_T))
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


async def test_s6_duplicate_of_refused_initial_changes_nothing_later(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §6: a duplicate gets the cached answer again and changes nothing, whatever
    happened since: an INITIAL refused 5030 (no such subscriber), retransmitted after the
    account was created, is still answered 5030 and opens no session, reserves nothing."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    msisdn, account_id = new_msisdn(), f"acct-{uid()}"
    initial = CcSession(peer, msisdn).body(1, 0, msisdn=msisdn, mscc=[sms(1)])
    e2e = next_e2e()
    first = await peer.request(CCR, APP_CC, initial, e2e=e2e)
    assert first.result_code == 5030
    answer = await amr(
        admin, CREATE, account_id, Subscription_Id=subscription(msisdn), Amount=MICRO
    )
    assert answer.result_code == SUCCESS
    again = await peer.request(CCR, APP_CC, initial, e2e=e2e, flags=CC_FLAGS | FLAG_T)
    assert again.body == first.body
    account = await get_account(admin, account_id)
    assert (account["Balance"], account["Reserved"], account["Session-Count"]) == (MICRO, 0, 0)


async def test_s6_duplicate_of_refused_credit_changes_nothing_later(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §6: an AMR CREDIT refused 5030 (no such account), retransmitted (same
    End-to-End-Id, T flag) after the account was created, is still answered 5030 and credits
    nothing."""
    admin = await connect(server.port)
    account_id = f"acct-{uid()}"
    credit = amr_body(admin, CREDIT, account_id, Amount=300_000)
    e2e = next_e2e()
    first = await admin.request(AMR, APP_ADMIN, credit, e2e=e2e)
    assert first.result_code == 5030
    answer = await amr(
        admin, CREATE, account_id, Subscription_Id=subscription(new_msisdn()), Amount=MICRO
    )
    assert answer.result_code == SUCCESS
    again = await admin.request(AMR, APP_ADMIN, credit, e2e=e2e, flags=FLAG_R | FLAG_T)
    assert again.body == first.body
    assert await balance_of(admin, account_id) == (MICRO, 0)


# --- §4/§6 (WIRE.md 1.1): the Origin-Host of a duplicate is the peer's, from its CER ------------


async def test_s6_a_peer_writing_another_origin_host_never_gets_its_answer(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §4/§6: one peer can never receive another's cached answer. A peer that writes
    another peer's Origin-Host into its request (with that peer's End-to-End-Id) is answered
    5004 (Failed-AVP Origin-Host), not with the other's answer and its Remaining-Balance."""
    admin = await connect(server.port)
    victim = await connect(server.port)
    thief = await connect(server.port)
    account = await create_account(admin, MICRO)
    body = event(victim, account.msisdn, DIRECT_DEBITING, 1)
    body["AoC-Request-Type"] = 1  # FULL: the answer tells the Remaining-Balance
    e2e = next_e2e()
    first = await victim.request(CCR, APP_CC, body, e2e=e2e)
    assert first.result_code == SUCCESS and "Remaining-Balance" in first.body
    stolen = await thief.request(CCR, APP_CC, body, e2e=e2e)  # the victim's bytes, verbatim
    assert stolen.result_code == INVALID_AVP_VALUE
    assert stolen.body["Failed-AVP"] == {"Origin-Host": victim.origin_host}
    assert "Remaining-Balance" not in stolen.body and stolen.body != first.body
    # nothing was charged for the thief's attempt; the victim still gets its own answer
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)
    same_answer(first, await victim.request(CCR, APP_CC, body, e2e=e2e, flags=CC_FLAGS | FLAG_T))


async def test_s6_a_pre_empted_end_to_end_id_does_not_make_usage_free(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §6: a peer that sends an End-to-End-Id before the peer that will use it (here
    naming the victim's Origin-Host and session) does not make the victim's next request a
    duplicate: the victim's report (3 messages sent) is processed and charged."""
    admin = await connect(server.port)
    victim = await connect(server.port)
    thief = await connect(server.port)
    account = await create_account(admin, MICRO)
    session = CcSession(victim, account.msisdn)
    assert (await session.initial([sms(3)])).result_code == SUCCESS
    e2e = next_e2e()
    forged = session.body(TERMINATION, 1, mscc=[sms(used=[0])])
    refused = await thief.request(CCR, APP_CC, forged, e2e=e2e)  # the victim's name in it
    assert refused.result_code == INVALID_AVP_VALUE
    own = ccr_body(thief, session.session_id, TERMINATION, 1, service=SMS, mscc=[sms(used=[0])])
    refused = await thief.request(CCR, APP_CC, own, e2e=e2e)  # its own name, the victim's id
    assert refused.result_code == UNKNOWN_SESSION_ID
    body = session.body(TERMINATION, 1, mscc=[sms(used=[3])])
    answer = await victim.request(CCR, APP_CC, body, e2e=e2e)
    assert answer.result_code == SUCCESS and answer.body["CC-Request-Type"] == TERMINATION
    assert await balance_of(admin, account.account_id) == (MICRO - 3 * SMS_PRICE, 0)


CC_PEER = "cc.s6.conformance.test.local"
ADMIN_PEER = "admin.s6.conformance.test.local"


async def test_s6_a_credit_control_peer_cannot_fish_an_administrators_answer(
    spawn: Spawn, connect: Connect
) -> None:
    """WIRE.md §6/§8: a peer allowed only credit control sends the End-to-End-Id of an
    administrator's request: it gets neither the cached AMA nor the account in it."""
    srv = spawn("--peer", f"{ADMIN_PEER}=admin", "--peer", f"{CC_PEER}=cc")
    admin = await connect(srv.port, ADMIN_PEER)
    cc = await connect(srv.port, CC_PEER)
    account = await create_account(admin, 7 * MICRO)
    e2e = next_e2e()
    looked = await admin.request(AMR, APP_ADMIN, amr_body(admin, GET, account.account_id), e2e=e2e)
    assert looked.body["Account"]["Balance"] == 7 * MICRO
    enquiry = event(cc, account.msisdn, PRICE_ENQUIRY, 1)
    for origin in (ADMIN_PEER, CC_PEER):  # the administrator's name, then its own
        fished = await cc.request(CCR, APP_CC, {**enquiry, "Origin-Host": origin}, e2e=e2e)
        assert "Account" not in fished.body and fished.body != looked.body
        assert fished.result_code == (INVALID_AVP_VALUE if origin == ADMIN_PEER else SUCCESS)
