"""WIRE.md §4 Peer procedures (application 0): CER/CEA, DWR/DWA, DPR/DPA, the peer policy and
the outstanding-request limit. Timers and flags get their own server (`spawn`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_BASE,
    APP_CC,
    APP_RELAY,
    APPLICATION_UNSUPPORTED,
    CCR,
    CER,
    CREATE,
    CREDIT,
    DPR,
    DWR,
    EVENT,
    FLAG_E,
    FLAG_R,
    GET,
    INVALID_AVP_VALUE,
    MISSING_AVP,
    MSGPACK_ONLY,
    NO_COMMON_APPLICATION,
    PRICE_ENQUIRY,
    SUCCESS,
    TOO_BUSY,
    UNABLE_TO_COMPLY,
    UNKNOWN_PEER,
    USER_UNKNOWN,
    CcSession,
    Peer,
    amr,
    amr_body,
    avp,
    balance_of,
    ccr_body,
    cer_body,
    create_account,
    new_host,
    new_msisdn,
    new_session_id,
    parse_header,
    units_sms,
)
from tests.server.process import ServerProcess


def _price_enquiry(peer: Peer) -> dict[str, Any]:
    return ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=new_msisdn(),
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", PRICE_ENQUIRY),
    )


async def test_s4_cea_carries_the_server_capabilities(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §4: a CER from loopback is accepted (default policy): CEA 2001 with the same
    keys for the server: Origin-Host, Origin-Realm, Host-IP-Address [str], Vendor-Id int,
    Product-Name str, Auth-Application-Id [int]."""
    peer = await connect(server.port, cer=False)
    cea = await peer.request(CER, APP_BASE, cer_body(peer.origin_host), flags=FLAG_R)
    body = cea.body
    assert cea.result_code == SUCCESS and not cea.header.flags & FLAG_E
    assert isinstance(body["Origin-Host"], str) and isinstance(body["Origin-Realm"], str)
    assert isinstance(body["Host-IP-Address"], list)
    assert body["Host-IP-Address"] and all(isinstance(a, str) for a in body["Host-IP-Address"])
    assert isinstance(body["Vendor-Id"], int)
    assert isinstance(body["Product-Name"], str)
    assert isinstance(body["Auth-Application-Id"], list)


@pytest.mark.parametrize(
    ("offered", "shared"),
    [
        ((APP_CC, APP_ADMIN), {APP_CC, APP_ADMIN}),
        ((APP_CC,), {APP_CC}),
        ((APP_ADMIN,), {APP_ADMIN}),
        ((APP_CC, 99), {APP_CC}),
        ((APP_RELAY,), {APP_CC, APP_ADMIN}),
    ],
    ids=["cc+admin", "cc", "admin", "cc+unknown", "relay"],
)
async def test_s4_cea_lists_shared_applications(
    server: ServerProcess, connect: Connect, offered: tuple[int, ...], shared: set[int]
) -> None:
    """WIRE.md §4: CEA Auth-Application-Id = the applications both sides share that this peer
    may use (loopback default: 4 and administration); Relay counts as every application."""
    peer = await connect(server.port, cer=False)
    cea = await peer.request(CER, APP_BASE, cer_body(peer.origin_host, offered), flags=FLAG_R)
    assert cea.result_code == SUCCESS
    assert isinstance(cea.body["Auth-Application-Id"], list)
    assert set(cea.body["Auth-Application-Id"]) == shared
    assert len(cea.body["Auth-Application-Id"]) == len(shared)
    assert await peer.is_open()


async def test_s4_no_common_application_5010_then_close(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §4: 5010 DIAMETER_NO_COMMON_APPLICATION if nothing is shared, then the server
    closes."""
    peer = await connect(server.port, cer=False)
    cea = await peer.request(CER, APP_BASE, cer_body(peer.origin_host, (99,)), flags=FLAG_R)
    assert cea.result_code == NO_COMMON_APPLICATION
    assert await peer.closed_by_server()


@pytest.mark.parametrize("first", ["dwr", "ccr", "amr", "dpr"])
async def test_s4_request_before_cer_is_3010_then_close(
    server: ServerProcess, connect: Connect, first: str
) -> None:
    """WIRE.md §4: any request other than CER before a successful CEA: answered 3010 with the E
    flag, then the connection is closed."""
    peer = await connect(server.port, cer=False)
    if first == "dwr":
        answer = await peer.request(DWR, APP_BASE, peer.dwr_body())
    elif first == "ccr":
        answer = await peer.request(CCR, APP_CC, _price_enquiry(peer))
    elif first == "amr":
        answer = await peer.request(AMR, APP_ADMIN, amr_body(peer, GET, "nobody"))
    else:
        answer = await peer.request(DPR, APP_BASE, {**peer.dwr_body(), "Disconnect-Cause": 0})
    assert answer.result_code == UNKNOWN_PEER
    assert answer.header.flags & FLAG_E
    assert await peer.closed_by_server()


async def test_s4_cer_missing_key_is_5005(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2/§4: a CER without a required key (Vendor-Id) is answered 5005 with
    Failed-AVP {Vendor-Id: nil}."""
    peer = await connect(server.port, cer=False)
    body = cer_body(peer.origin_host)
    del body["Vendor-Id"]
    cea = await peer.request(CER, APP_BASE, body, flags=FLAG_R)
    assert cea.result_code == MISSING_AVP
    assert cea.body["Failed-AVP"] == {"Vendor-Id": None}


@MSGPACK_ONLY  # a binary CER repeats the AVP: one is an array of one
async def test_s4_cer_auth_application_id_must_be_an_array(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §2: Auth-Application-Id in CER is *[AVP], always an array: a bare int is 5004."""
    peer = await connect(server.port, cer=False)
    body = cer_body(peer.origin_host)
    body["Auth-Application-Id"] = 4
    cea = await peer.request(CER, APP_BASE, body, flags=FLAG_R)
    assert cea.result_code == INVALID_AVP_VALUE
    assert cea.body["Failed-AVP"] == {"Auth-Application-Id": 4}


async def test_s4_second_cer_is_5012(server: ServerProcess, connect: Connect) -> None:
    """docs/protocol.md (§4): a second CER on an open connection: 5012
    DIAMETER_UNABLE_TO_COMPLY; the connection stays open."""
    peer = await connect(server.port)
    cea = await peer.request(CER, APP_BASE, cer_body(peer.origin_host), flags=FLAG_R)
    assert cea.result_code == UNABLE_TO_COMPLY
    assert await peer.is_open()


async def test_s4_dwr_answered_with_dwa(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §4: DWR (Origin-Host, Origin-Realm) is answered DWA with Result-Code 2001,
    Origin-Host and Origin-Realm."""
    peer = await connect(server.port)
    dwa = await peer.request(DWR, APP_BASE, peer.dwr_body(), flags=FLAG_R)
    assert dwa.header.code == DWR and dwa.result_code == SUCCESS
    assert isinstance(dwa.body["Origin-Host"], str) and isinstance(dwa.body["Origin-Realm"], str)


@pytest.mark.parametrize("cause", [0, 1, 2])
async def test_s4_dpr_answered_dpa_2001(
    server: ServerProcess, connect: Connect, cause: int
) -> None:
    """WIRE.md §4: DPR (Origin-Host, Origin-Realm, Disconnect-Cause 0/1/2): the receiver
    answers DPA 2001; the DPR sender then closes."""
    peer = await connect(server.port)
    body = {**peer.dwr_body(), "Disconnect-Cause": cause}
    dpa = await peer.request(DPR, APP_BASE, body, flags=FLAG_R)
    assert dpa.header.code == DPR and dpa.result_code == SUCCESS
    await peer.close()


async def test_s4_dpr_bad_cause_is_5004(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2/§4: Disconnect-Cause outside 0..2 is a value out of range: 5004."""
    peer = await connect(server.port)
    answer = await peer.request(DPR, APP_BASE, {**peer.dwr_body(), "Disconnect-Cause": 9})
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {"Disconnect-Cause": 9}


async def test_s4_a_request_carries_the_origin_host_of_its_cer(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §4: a peer is the Origin-Host of its CER. Every later request on the connection
    (CCR, AMR, DWR, DPR) naming another is answered 5004 with Failed-AVP {Origin-Host} and
    changes nothing: no debit, no account, no disconnection."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 1_000_000)
    other = new_host("other")
    debit = ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=account.msisdn,
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", 0),
    )
    requests = [
        (CCR, APP_CC, debit),
        (AMR, APP_ADMIN, amr_body(peer, CREDIT, account.account_id, Amount=5)),
        (AMR, APP_ADMIN, amr_body(peer, CREATE, f"x-{other}", Subscription_Id=[])),
        (DWR, APP_BASE, peer.dwr_body()),
        (DPR, APP_BASE, {**peer.dwr_body(), "Disconnect-Cause": 0}),
    ]
    for code, app, body in requests:
        answer = await peer.request(code, app, {**body, "Origin-Host": other})
        assert answer.result_code == INVALID_AVP_VALUE, (code, answer.body)
        assert answer.body["Failed-AVP"] == {"Origin-Host": other}
        assert not answer.header.flags & FLAG_E
    assert await balance_of(admin, account.account_id) == (1_000_000, 0)
    assert (await amr(admin, GET, f"x-{other}")).result_code == USER_UNKNOWN
    assert await peer.is_open(), "the foreign DPR did not disconnect the peer"


async def test_s4_sessions_outlive_the_connection(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §4: credit-control sessions outlive the connection: after DPR/DPA and a close,
    the client comes back on another connection and goes on with the session."""
    admin = await connect(server.port)
    account = await create_account(admin, 1_000_000)
    first = await connect(server.port)
    session = CcSession(first, account.msisdn)
    answer = await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}])
    assert answer.result_code == SUCCESS
    dpa = await first.request(DPR, APP_BASE, {**first.dwr_body(), "Disconnect-Cause": 1})
    assert dpa.result_code == SUCCESS
    await first.close()
    second = await connect(server.port, first.origin_host)
    session.peer = second
    answer = await session.terminate([{"Rating-Group": 30, "Used-Service-Unit": [units_sms(1)]}])
    assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (900_000, 0)


# --- dedicated servers: timers, limits, peer lists --------------------------------------------


async def test_s4_no_cer_within_deadline_closes(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §4: a connection with no CER within the deadline (10 s; `--cer-timeout 1` here)
    is closed; one that sent its CER stays open."""
    srv = spawn("--cer-timeout", "1")
    silent = await connect(srv.port, cer=False)
    talker = await connect(srv.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await silent.closed_by_server(timeout=4.0)
    assert 0.5 <= loop.time() - started <= 4.0
    assert await talker.is_open()


async def test_s4_server_sends_dwr_after_tw_and_closes_without_dwa(
    spawn: Spawn, connect: Connect
) -> None:
    """WIRE.md §4: the server sends DWR on a connection idle for Tw (`--watchdog 1`) and
    closes it if no DWA comes within another Tw; a peer that answers DWA stays open."""
    srv = spawn("--watchdog", "1")
    answering = await connect(srv.port)  # answers DWR automatically while it reads
    mute = await connect(srv.port, auto_dwa=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    keeper = asyncio.create_task(answering.closed_by_server(timeout=30.0))
    dwr = await mute.expect_request(DWR, timeout=4.0)
    assert 0.5 <= loop.time() - started <= 4.0
    assert dwr.header.flags & FLAG_R and dwr.header.app == APP_BASE
    assert not dwr.header.flags & 0x0F
    assert isinstance(dwr.body["Origin-Host"], str) and isinstance(dwr.body["Origin-Realm"], str)
    assert await mute.closed_by_server(timeout=4.0), "no DWA within Tw: closed"
    await asyncio.sleep(0.5)
    assert not keeper.done(), "a peer that answers DWA is not closed"
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper
    assert any(m.header.code == DWR for m in answering.requests_seen)
    assert await answering.is_open()


async def test_s4_outstanding_limit_answers_3004(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §4: a peer with more than its limit of outstanding requests (`--max-pending 2`)
    gets 3004 DIAMETER_TOO_BUSY for the excess; every request gets exactly one answer and a
    refused request changes nothing."""
    srv = spawn("--max-pending", "2")
    admin = await connect(srv.port)
    account = await create_account(admin, 0)
    peer = await connect(srv.port)
    frames = [
        peer.request_frame(
            AMR,
            APP_ADMIN,
            amr_body(peer, CREDIT, account.account_id, Amount=1, Operation_Id=f"busy-{i}"),
        )
        for i in range(200)
    ]
    await peer.send(b"".join(frames))
    codes = [(await peer.answer_to(parse_header(f).hbh)).result_code for f in frames]
    assert set(codes) <= {SUCCESS, TOO_BUSY}
    assert codes.count(TOO_BUSY) > 0, "never an unbounded queue"
    assert codes.count(SUCCESS) >= 2
    await asyncio.sleep(0.2)
    assert all(not v for v in peer.answers.values()), "exactly one answer per request"
    assert await balance_of(admin, account.account_id) == (codes.count(SUCCESS), 0)
    # once answered, the peer is served again
    answer = await peer.request(AMR, APP_ADMIN, amr_body(peer, GET, account.account_id))
    assert answer.result_code == SUCCESS


GOOD = "good.conformance.test.local"
CC_ONLY = "cconly.conformance.test.local"


async def test_s4_peer_list_refuses_others_with_3010(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §4/§8: with a peer list (`--peer`), an Origin-Host not on it gets CEA 3010
    DIAMETER_UNKNOWN_PEER (E) and is closed; listed peers get the applications listed for
    them (the CEA lists only those), and administration only if allowed (else 3007)."""
    srv = spawn("--peer", f"{GOOD}=cc,admin", "--peer", f"{CC_ONLY}=cc")
    stranger = await connect(srv.port, new_host("stranger"), cer=False)
    body = cer_body(stranger.origin_host)
    # the keys of this 3xxx CEA are checked by test_s4_refusing_cea_carries_only_error_keys
    cea = await stranger.request(CER, APP_BASE, body, flags=FLAG_R, error_keys=False)
    assert cea.result_code == UNKNOWN_PEER and cea.header.flags & FLAG_E
    assert await stranger.closed_by_server()

    good = await connect(srv.port, GOOD)
    assert good.cea is not None
    assert set(good.cea.body["Auth-Application-Id"]) == {APP_CC, APP_ADMIN}
    answer = await good.request(AMR, APP_ADMIN, amr_body(good, GET, "nobody"))
    assert answer.result_code == 5030

    cc_only = await connect(srv.port, CC_ONLY)
    assert cc_only.cea is not None
    assert cc_only.cea.body["Auth-Application-Id"] == [APP_CC]
    answer = await cc_only.request(AMR, APP_ADMIN, amr_body(cc_only, GET, "nobody"))
    assert answer.result_code == APPLICATION_UNSUPPORTED and answer.header.flags & FLAG_E
    answer = await cc_only.request(CCR, APP_CC, _price_enquiry(cc_only))
    assert answer.result_code == SUCCESS

    admin_only = await connect(srv.port, CC_ONLY, cer=False)
    cea = await admin_only.request(CER, APP_BASE, cer_body(CC_ONLY, (APP_ADMIN,)), flags=FLAG_R)
    assert cea.result_code == NO_COMMON_APPLICATION
    assert await admin_only.closed_by_server()


BOUND = "bound.conformance.test.local"
FAR = "far.conformance.test.local"


async def test_s4_peer_list_binds_a_name_to_its_addresses(spawn: Spawn, connect: Connect) -> None:
    """docs/protocol.md (§4): `--peer HOST[=apps]@ADDRESS[,ADDRESS]` binds an Origin-Host to
    the addresses or networks it may connect from; from anywhere else its CER gets 3010
    DIAMETER_UNKNOWN_PEER (E) and the connection is closed."""
    srv = spawn("--peer", f"{BOUND}=cc,admin@127.0.0.0/8,::1", "--peer", f"{FAR}=cc@192.0.2.1")
    bound = await connect(srv.port, BOUND)
    assert bound.cea is not None and await bound.is_open()
    far = await connect(srv.port, FAR, cer=False)
    cea = await far.request(CER, APP_BASE, cer_body(FAR), flags=FLAG_R, error_keys=False)
    assert cea.result_code == UNKNOWN_PEER and cea.header.flags & FLAG_E
    assert await far.closed_by_server()


async def test_s4_refusing_cea_carries_only_error_keys(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §3/§4: the CEA 3010 of a refused peer is a 3xxx answer, so it carries only the
    keys a 3xxx answer may carry."""
    srv = spawn("--peer", f"{GOOD}=cc,admin")
    stranger = await connect(srv.port, new_host("stranger"), cer=False)
    cea = await stranger.request(CER, APP_BASE, cer_body(stranger.origin_host), flags=FLAG_R)
    assert cea.result_code == UNKNOWN_PEER


async def test_s4_administration_served_even_if_cer_listed_only_cc(
    server: ServerProcess, connect: Connect
) -> None:
    """docs/protocol.md (§4 "Applications"): requests are served for every application the
    policy allows the peer, even if its CER did not list it: an operator tool that says only
    Auth-Application-Id [4] can still send AMR from loopback."""
    peer = await connect(server.port, apps=(APP_CC,))
    assert peer.cea is not None and peer.cea.body["Auth-Application-Id"] == [APP_CC]
    answer = await peer.request(AMR, APP_ADMIN, amr_body(peer, GET, "nobody"))
    assert answer.result_code == 5030
