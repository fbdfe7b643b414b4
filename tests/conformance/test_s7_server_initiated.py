"""WIRE.md §7 Server-initiated requests: RAR (258) and ASR (274), their keys, where they go,
and the client's side of the procedure (RAA/ASA, then CCR)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    APP_CC,
    ASR,
    BARRED,
    CCR,
    CREDIT,
    FLAG_R,
    FORCED_REAUTHORISATION,
    MICRO,
    RAR,
    SET_STATUS,
    SUCCESS,
    SUSPENDED,
    CcSession,
    Msg,
    Peer,
    amr,
    avp,
    balance_of,
    create_account,
    mscc_of,
    units_sms,
)
from tests.server.process import ServerProcess

SMS_PRICE = 100_000


def sms(requested: int | None = None, used: list[int] | None = None, **kw: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"Rating-Group": 30, **kw}
    if requested is not None:
        entry["Requested-Service-Unit"] = units_sms(requested)
    if used is not None:
        entry["Used-Service-Unit"] = [units_sms(n) for n in used]
    return entry


def check_server_request(msg: Msg, code: int, session: CcSession) -> None:
    """WIRE.md §7: RAR/ASR keys: Session-Id, Origin-Host, Origin-Realm, Destination-Realm,
    Destination-Host (the session's client), Auth-Application-Id 4; application 4, R set."""
    h, body = msg.header, msg.body
    assert h.code == code and h.app == APP_CC and h.flags & FLAG_R
    assert not h.flags & 0x0F
    assert body["Session-Id"] == session.session_id
    assert isinstance(body["Origin-Host"], str) and isinstance(body["Origin-Realm"], str)
    assert isinstance(body["Destination-Realm"], str)
    assert body["Destination-Host"] == session.peer.origin_host
    assert body["Auth-Application-Id"] == 4


def raa(peer: Peer, request: Msg, result: int = SUCCESS) -> dict[str, Any]:
    return peer.base_answer(result, **avp("Session-Id", request.body["Session-Id"]))


async def test_s7_rar_after_top_up_of_session_held_at_final_units(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §7: a top-up that makes credit available to a session held at its final units
    sends RAR (Re-Auth-Request-Type 0, optional Rating-Group [int]) on the session's
    connection; the client answers RAA 2001 and sends CCR UPDATE with reason 7
    FORCED_REAUTHORISATION, which gets a fresh grant."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 250_000)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([sms(5)])
    entry = mscc_of(answer, 30)
    assert entry["Granted-Service-Unit"] == units_sms(2) and "Final-Unit-Indication" in entry

    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    rar = await peer.expect_request(RAR)
    check_server_request(rar, RAR, session)
    assert rar.body["Re-Auth-Request-Type"] == 0
    if "Rating-Group" in rar.body:
        assert rar.body["Rating-Group"] == [30]
    assert not admin.inbox, "the RAR goes to the session's connection"
    await peer.answer(rar, raa(peer, rar))

    answer = await session.update([sms(5, [2], **avp("Reporting-Reason", FORCED_REAUTHORISATION))])
    assert answer.result_code == SUCCESS
    entry = mscc_of(answer, 30)
    assert entry["Result-Code"] == SUCCESS
    assert entry["Granted-Service-Unit"] == units_sms(5)
    assert "Final-Unit-Indication" not in entry
    # 0.25 + 1.00 - 2 used - 5 reserved
    assert await balance_of(admin, account.account_id) == (
        1_250_000 - 7 * SMS_PRICE,
        5 * SMS_PRICE,
    )
    await session.terminate([sms(used=[0])])


async def test_s7_rar_after_top_up_of_session_refused_credit(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §7: a session whose MSCC got 4012 (nothing grantable) also gets RAR once a
    top-up makes credit available."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 0)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([sms(1)])
    assert mscc_of(answer, 30)["Result-Code"] == 4012
    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    rar = await peer.expect_request(RAR)
    check_server_request(rar, RAR, session)
    await peer.answer(rar, raa(peer, rar))
    answer = await session.update([sms(1, **avp("Reporting-Reason", FORCED_REAUTHORISATION))])
    assert mscc_of(answer, 30)["Granted-Service-Unit"] == units_sms(1)
    await session.terminate([sms(used=[1])])


async def test_s7_rar_on_account_usage_threshold(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §7: the server sends RAR when an account-wide usage threshold is crossed (demo
    catalog: 5 EUR charged)."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 10 * MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(1)])
    answer = await session.update([sms(1, [49])])  # 4.90 EUR: below the threshold
    assert answer.result_code == SUCCESS
    answer = await session.update([sms(1, [2])])  # 5.10 EUR: crosses 5 EUR
    assert answer.result_code == SUCCESS
    rar = await peer.expect_request(RAR)
    check_server_request(rar, RAR, session)
    await peer.answer(rar, raa(peer, rar))
    await session.terminate([sms(used=[0])])


async def test_s7_asr_when_account_suspended_or_barred(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §7: SET_STATUS to suspended or barred sends ASR for the account's sessions; the
    client answers ASA 2001 and ends the session with a CCR TERMINATION (Reserved back to 0)."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    for status in (SUSPENDED, BARRED):
        account = await create_account(admin, MICRO)
        session = CcSession(peer, account.msisdn)
        await session.initial([sms(2)])
        answer = await amr(admin, SET_STATUS, account.account_id, Account_Status=status)
        assert answer.result_code == SUCCESS
        asr = await peer.expect_request(ASR)
        check_server_request(asr, ASR, session)
        await peer.answer(asr, raa(peer, asr))
        answer = await session.terminate([sms(used=[1])])
        assert answer.result_code == SUCCESS
        assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


async def test_s7_goes_to_another_connection_of_the_same_origin_host(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §7: RAR/ASR go to the connection the session last used; if it is gone, to
    another open connection of the same Origin-Host."""
    admin = await connect(server.port)
    first = await connect(server.port)
    second = await connect(server.port, first.origin_host)
    account = await create_account(admin, 250_000)
    session = CcSession(first, account.msisdn)
    await session.initial([sms(5)])  # cut to 2: held at final units
    await first.close()
    await asyncio.sleep(0.3)
    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    rar = await second.expect_request(RAR)
    assert rar.body["Session-Id"] == session.session_id
    assert rar.body["Destination-Host"] == first.origin_host
    await second.answer(rar, raa(second, rar))
    assert (
        await amr(admin, SET_STATUS, account.account_id, Account_Status=SUSPENDED)
    ).result_code == SUCCESS
    asr = await second.expect_request(ASR)
    assert asr.body["Session-Id"] == session.session_id
    await second.answer(asr, raa(second, asr))
    session.peer = second
    assert (await session.terminate([sms(used=[2])])).result_code == SUCCESS
    assert not admin.inbox


async def test_s7_rar_follows_the_connection_the_session_last_used(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §7: "the connection the session last used": after the session moves to a
    second connection (both stay open), the RAR goes there."""
    admin = await connect(server.port)
    first = await connect(server.port)
    second = await connect(server.port, first.origin_host)
    account = await create_account(admin, 250_000)
    session = CcSession(first, account.msisdn)
    await session.initial([sms(5)])
    session.peer = second
    answer = await session.update([sms(5, [0])])
    assert "Final-Unit-Indication" in mscc_of(answer, 30)
    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    rar = await second.expect_request(RAR)
    assert rar.body["Session-Id"] == session.session_id
    await second.answer(rar, raa(second, rar))
    assert await first.is_open()
    assert not first.inbox, "not sent on the connection the session no longer uses"
    await session.terminate([sms(used=[0])])


async def test_s7_no_connection_left_is_not_fatal(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §7: with no open connection of the Origin-Host, the server records the failure
    and relies on Tcc: the top-up itself succeeds and the server goes on; the client, back
    later, can still end its session."""
    admin = await connect(server.port)
    gone = await connect(server.port)
    account = await create_account(admin, 250_000)
    session = CcSession(gone, account.msisdn)
    await session.initial([sms(5)])
    await gone.close()
    await asyncio.sleep(0.2)
    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    assert await admin.is_open()
    back = await connect(server.port, gone.origin_host)
    session.peer = back
    assert (await session.terminate([sms(used=[2])])).result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (1_250_000 - 2 * SMS_PRICE, 0)


async def test_s7_rar_and_asr_go_only_to_the_sessions_owner(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3/§7: RAR and ASR go only to the peer that owns the session: another peer
    that names the session (refused 5002) does not become the connection it "last used"."""
    admin = await connect(server.port)
    owner = await connect(server.port)
    intruder = await connect(server.port)
    account = await create_account(admin, 250_000)
    session = CcSession(owner, account.msisdn)
    await session.initial([sms(5)])  # cut to 2: held at final units
    for kind in (2, 3):  # UPDATE, TERMINATION
        body = session.body(kind, 1, mscc=[sms(5, [0])])
        answer = await intruder.request(CCR, APP_CC, {**body, "Origin-Host": intruder.origin_host})
        assert answer.result_code == 5002
    assert (await amr(admin, CREDIT, account.account_id, Amount=MICRO)).result_code == SUCCESS
    rar = await owner.expect_request(RAR)
    check_server_request(rar, RAR, session)
    await owner.answer(rar, raa(owner, rar))
    assert (
        await amr(admin, SET_STATUS, account.account_id, Account_Status=SUSPENDED)
    ).result_code == SUCCESS
    asr = await owner.expect_request(ASR)
    check_server_request(asr, ASR, session)
    await owner.answer(asr, raa(owner, asr))
    assert await intruder.is_open()
    assert not intruder.inbox, "nothing sent to a peer that does not own the session"
    assert (await session.terminate([sms(used=[0])])).result_code == SUCCESS
