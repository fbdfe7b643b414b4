"""WIRE.md 1.1 §2 "Limits" against a running server (docs/protocol.md "Limits"; issue 16 parts
1 and 6): a value outside its domain is answered (5004 with Failed-AVP, or 3009 for a body
nested too deep) on a connection that stays open, changes nothing, and the server restarts;
a hostile peer cannot make the log grow by more than a small multiple of what it sends."""

from __future__ import annotations

from typing import Any

from protocol.limits import MAX_LOG_STRING, MAX_TIME_S, MAX_UNITS
from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    APP_BASE,
    APP_CC,
    CCR,
    CER,
    DIRECT_DEBITING,
    DWR,
    EVENT,
    INITIAL,
    INVALID_AVP_VALUE,
    MSGPACK_ONLY,
    SMS,
    SUCCESS,
    UPDATE,
    CcSession,
    Peer,
    avp,
    balance_of,
    ccr_body,
    cer_body,
    create_account,
    encode,
    frame,
    new_session_id,
    units_sms,
)

HUGE = 60_000  # characters of a hostile string (issue 16: a 60 KB Origin-Host)


def _with_raw(body: dict[str, Any], key: str, raw: bytes) -> bytes:
    """The encoded body with one more key holding the raw MessagePack `raw`."""
    head = encode(body)
    assert head[0] == 0x80 | len(body) and len(body) < 15
    return bytes([head[0] + 1]) + head[1:] + encode(key) + raw  # type: ignore[arg-type]


async def _alive(peer: Peer) -> None:
    answer = await peer.request(DWR, APP_BASE, peer.dwr_body())
    assert answer.result_code == SUCCESS


@MSGPACK_ONLY  # raw MessagePack; the binary counterpart: test_s2_binary_values_outside_domain
async def test_s2_values_outside_their_domain_are_answered_and_the_server_restarts(
    spawn: Spawn, connect: Connect
) -> None:
    """Issue 16: Event-Timestamp 2^33, Service-Information 1,000 deep, a usage of 2^64-1 and a
    nil key in Service-Information each dropped the connection (or were accepted and broke every
    restart). Each is answered on a connection that stays open, and the server restarts."""
    server = spawn()
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 10_000_000)
    sid = new_session_id(peer)
    event = ccr_body(
        peer,
        sid,
        EVENT,
        0,
        msisdn=account.msisdn,
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", DIRECT_DEBITING),
    )
    answer = await peer.request(CCR, APP_CC, {**event, "Event-Timestamp": MAX_TIME_S + 1})
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {"Event-Timestamp": MAX_TIME_S + 1}
    await _alive(peer)
    deep = _with_raw(event, "Service-Information", b"\x81\xa1k" * 1000 + b"\x01")
    answer = await peer.request(CCR, APP_CC, deep)
    assert answer.result_code == 3009 and answer.header.flags & 0x20  # E bit: 3xxx
    await _alive(peer)
    nil_key = _with_raw(event, "Service-Information", b"\x81\xa1a\x81\xc0\x01")
    answer = await peer.request(CCR, APP_CC, nil_key)
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {"Service-Information": {"a": None}}
    session = CcSession(peer, account.msisdn)
    opened = await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": {}}])
    assert opened.result_code == SUCCESS
    huge = [{"Rating-Group": 30, "Used-Service-Unit": [units_sms(2**64 - 1)]}]
    answer = await peer.request(CCR, APP_CC, session.body(UPDATE, 1, mscc=huge))
    assert answer.result_code == INVALID_AVP_VALUE
    costly = [{"Rating-Group": 30, "Used-Service-Unit": [units_sms(MAX_UNITS)]}]
    answer = await peer.request(CCR, APP_CC, session.body(UPDATE, 1, mscc=costly))
    assert answer.result_code == INVALID_AVP_VALUE  # more than one operation's money
    await _alive(peer)
    assert await balance_of(admin, account.account_id) == (10_000_000 - 100_000, 100_000)
    server.terminate()
    server.start()  # every input it journaled replays
    admin = await connect(server.port)
    assert await balance_of(admin, account.account_id) == (10_000_000 - 100_000, 100_000)


async def test_s2_a_hostile_peer_cannot_grow_the_log_much(spawn: Spawn, connect: Connect) -> None:
    """Issue 16: a 60 KB Origin-Host made every log line about that peer 60 KB (3,000 bytes of
    log per byte received). Values are cut to MAX_LOG_STRING characters in every line: the log
    grows by far less than such a peer sends, and by a bounded multiple for a flood of the
    smallest refused messages."""
    server = spawn("--log-json")
    sent = 0
    start = server.log_path.stat().st_size

    # a CER whose Origin-Host is 60 KB, on connections of their own
    for _ in range(3):
        peer = await connect(server.port, "h" * HUGE, cer=False)
        data = frame(CER, APP_BASE, cer_body(peer.origin_host), hbh=1, e2e=1)
        await peer.send(data)
        sent += len(data)
        await peer.closed_by_server(timeout=3)
    # a peer that passed CER sends 60 KB strings wherever a string goes
    peer = await connect(server.port)
    for n in range(20):  # one 60 KB string per request: a message is at most 64 KiB
        huge = {"User-Name": "u" * HUGE} if n % 2 else {"Service-Context-Id": "c" * HUGE}
        sid = ("s" * HUGE) if n % 3 == 0 else new_session_id(peer)
        body = ccr_body(peer, sid, INITIAL, 0, msisdn="1" * 20, service=SMS)
        body.update({} if n % 3 == 0 else huge)
        data = frame(CCR, APP_CC, body, hbh=n, e2e=n)
        await peer.send(data)
        sent += len(data)
        # (read as it comes: a Session-Id outside its domain is not echoed, WIRE.md §3 aside)
        answer = await peer.read_message()
        assert answer.header.hbh == n and answer.result_code == INVALID_AVP_VALUE
        assert len(answer.raw) < len(data) + 1024
    big = server.log_path.stat().st_size - start
    assert big < sent // 20, (big, sent)

    # a flood of the smallest refused requests: a header with a reserved flag bit (3008)
    small_start, small_sent = server.log_path.stat().st_size, 0
    for n in range(200):
        data = frame(CCR, APP_CC, b"", flags=0x80 | 0x01, hbh=10_000 + n, e2e=10_000 + n)
        await peer.send(data)
        small_sent += len(data)
    for n in range(200):
        answer = await peer.read_message()
        assert answer.header.hbh == 10_000 + n and answer.result_code == 3008
    await _alive(peer)
    small = server.log_path.stat().st_size - small_start
    assert small <= 16 * small_sent, (small, small_sent)

    lines = server.log_path.read_text().splitlines()
    longest = max(len(line) for line in lines)
    assert longest < 8 * MAX_LOG_STRING, longest
