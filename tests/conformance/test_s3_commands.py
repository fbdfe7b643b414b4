"""WIRE.md §3 Commands: dispatch by Command-Code and Application-Id, and what every answer
carries (the suite checks the latter on every answer it reads: `wire.check_answer`)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_BASE,
    APP_CC,
    APPLICATION_UNSUPPORTED,
    ASR,
    CCR,
    COMMAND_UNSUPPORTED,
    DWR,
    EVENT,
    FLAG_E,
    FLAG_R,
    GET,
    PRICE_ENQUIRY,
    RAR,
    SUCCESS,
    UNKNOWN_SESSION_ID,
    UPDATE,
    USER_UNKNOWN,
    amr_body,
    avp,
    ccr_body,
    frame,
    new_msisdn,
    new_session_id,
    units_sms,
)
from tests.server.process import ServerProcess


@pytest.mark.parametrize(("code", "app"), [(999, APP_BASE), (1, APP_CC), (9002, APP_ADMIN)])
async def test_s3_unknown_command_is_3001(
    server: ServerProcess, connect: Connect, code: int, app: int
) -> None:
    """WIRE.md §3: an unknown Command-Code is answered 3001 DIAMETER_COMMAND_UNSUPPORTED (E
    set, only the keys a 3xxx answer may carry); the connection goes on."""
    peer = await connect(server.port)
    answer = await peer.request(code, app, peer.dwr_body())
    assert answer.result_code == COMMAND_UNSUPPORTED
    assert answer.header.flags & FLAG_E and answer.header.code == code
    assert await peer.is_open()


@pytest.mark.parametrize(
    ("code", "app"),
    [
        (CCR, 99),  # an application nobody serves
        (CCR, APP_ADMIN),  # served, but not the application of command 272
        (AMR, APP_CC),
        (AMR, 0x4F435342),
    ],
)
async def test_s3_known_command_under_another_application_is_3007(
    server: ServerProcess, connect: Connect, code: int, app: int
) -> None:
    """WIRE.md §3: a known command under an Application-Id the server does not serve for that
    peer (or not the command's own, docs/protocol.md) is answered 3007
    DIAMETER_APPLICATION_UNSUPPORTED with E."""
    peer = await connect(server.port)
    if code == CCR:
        body = ccr_body(
            peer,
            new_session_id(peer),
            EVENT,
            0,
            msisdn=new_msisdn(),
            mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
            **avp("Requested-Action", PRICE_ENQUIRY),
        )
    else:
        body = amr_body(peer, GET, "nobody")
    answer = await peer.request(code, app, body)
    assert answer.result_code == APPLICATION_UNSUPPORTED
    assert answer.header.flags & FLAG_E
    assert await peer.is_open()


async def test_s3_every_answer_carries_result_origin_and_session(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §3: every answer carries Result-Code, Origin-Host, Origin-Realm; answers in
    application 4 also echo Session-Id, also when the request failed (5002, 5030, 5004)."""
    peer = await connect(server.port)
    sid = new_session_id(peer)
    cases = [
        (ccr_body(peer, sid, UPDATE, 1), UNKNOWN_SESSION_ID),
        (ccr_body(peer, sid, 1, 0, msisdn=new_msisdn()), USER_UNKNOWN),
        (ccr_body(peer, sid, 7, 0, msisdn=new_msisdn()), 5004),
    ]
    for body, expected in cases:
        answer = await peer.request(CCR, APP_CC, body)
        assert answer.result_code == expected
        assert answer.body["Session-Id"] == sid
        assert answer.body["Origin-Host"] and answer.body["Origin-Realm"]
    answer = await peer.request(AMR, APP_ADMIN, amr_body(peer, GET, "nobody"))
    assert {"Result-Code", "Origin-Host", "Origin-Realm"} <= set(answer.body)


async def test_s3_unmatched_answers_are_dropped(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §3: an answer that matches no outstanding request is dropped: no reply, the
    connection and the server go on."""
    peer = await connect(server.port)
    origin = {"Origin-Host": peer.origin_host, "Origin-Realm": "conformance.test.local"}
    bogus = [
        frame(DWR, APP_BASE, {**origin, "Result-Code": SUCCESS}, flags=0, hbh=4242, e2e=4242),
        frame(RAR, APP_CC, {**origin, "Result-Code": SUCCESS, "Session-Id": "s"}, flags=0, hbh=9),
        frame(ASR, APP_CC, {**origin, "Result-Code": SUCCESS}, flags=0, hbh=77),
        frame(CCR, APP_CC, {**origin, "Result-Code": SUCCESS}, flags=0, hbh=78),
        frame(AMR, APP_ADMIN, b"\xc1 not msgpack", flags=0, hbh=79),
        frame(4711, APP_BASE, {**origin, "Result-Code": SUCCESS}, flags=0, hbh=80),
    ]
    await peer.send(b"".join(bogus))
    assert await peer.is_open()
    await asyncio.sleep(0.1)
    assert all(not v for v in peer.answers.values()), "no reply to a dropped answer"
    assert not peer.inbox
    other = await connect(server.port)
    assert await other.is_open()


async def test_s3_request_flags_on_answer_are_never_r(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §3: answers have R clear, whatever flags the request carried."""
    peer = await connect(server.port)
    answer = await peer.request(DWR, APP_BASE, peer.dwr_body(), flags=FLAG_R | 0x10 | 0x40)
    assert not answer.header.flags & FLAG_R and answer.result_code == SUCCESS
