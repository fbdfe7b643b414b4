"""WIRE.md 1.1 §2 for standard Diameter bodies (version 0x01): the binary counterparts of the
tests that send raw MessagePack on purpose (`test_s2_body_not_exactly_one_map_is_3009`,
`test_s2_failed_avp_answer_keeps_the_connection`,
`test_s2_values_outside_their_domain_are_answered_and_the_server_restarts`). Bodies that are
not well-formed AVPs are answered with the RFC 6733 section 7 codes docs/protocol.md lists
("Binary AVP bodies"), each on a connection that stays open; values outside their domain change
nothing, and the server restarts."""

from __future__ import annotations

import struct

import pytest

from protocol.limits import MAX_UNITS
from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    APP_BASE,
    APP_CC,
    AVP_FLAG_M,
    BINARY_ONLY,
    CCR,
    DIRECT_DEBITING,
    DWR,
    EVENT,
    INVALID_AVP_BITS,
    INVALID_AVP_VALUE,
    REALM,
    SUCCESS,
    UPDATE,
    CcSession,
    avp,
    avp_bytes,
    balance_of,
    ccr_body,
    create_account,
    new_session_id,
    parse_header,
    raw_avp_name,
    units_sms,
)
from tests.server.process import ServerProcess

pytestmark = BINARY_ONLY

AVP_UNSUPPORTED = 5001
AVP_NOT_ALLOWED = 5008
AVP_OCCURS_TOO_MANY_TIMES = 5009
INVALID_AVP_LENGTH = 5014

ORIGIN_REALM = 296
ORIGIN_STATE_ID = 278
RESULT_CODE = 268


def _dwr(origin_host: str, tail: bytes, *, realm: bytes = REALM.encode()) -> bytes:
    """A DWR body: Origin-Host, Origin-Realm (as given), then `tail` as it is."""
    return avp_bytes(264, origin_host.encode()) + avp_bytes(ORIGIN_REALM, realm) + tail


# name: (the AVPs after Origin-Host and Origin-Realm, or another Origin-Realm; the Result-Code)
CASES: dict[str, tuple[bytes, bytes | None, int]] = {
    "truncated-avp-header": (b"\0\0\0", None, INVALID_AVP_LENGTH),
    "length-past-the-end": (struct.pack(">II", ORIGIN_STATE_ID, 0x40_000064), None, 5014),
    "length-below-the-header": (struct.pack(">II", ORIGIN_STATE_ID, 0x40_000004), None, 5014),
    "vendor-bit-without-vendor-id": (struct.pack(">II", 99, 0xC0_000008), None, 5014),
    "unsigned32-of-3-bytes": (avp_bytes(ORIGIN_STATE_ID, b"\0\0\1"), None, INVALID_AVP_LENGTH),
    "reserved-avp-flag-bits": (
        avp_bytes(ORIGIN_STATE_ID, b"\0\0\0\1", flags=AVP_FLAG_M | 0x01),
        None,
        INVALID_AVP_BITS,
    ),
    "unknown-avp-with-m-bit": (avp_bytes(99_999, b"what"), None, AVP_UNSUPPORTED),
    "result-code-in-a-request": (avp_bytes(RESULT_CODE, b"\0\0\x07\xd1"), None, AVP_NOT_ALLOWED),
    "origin-realm-twice": (avp_bytes(ORIGIN_REALM, b"again"), None, AVP_OCCURS_TOO_MANY_TIMES),
    "invalid-utf8": (b"", b"ab\xff\xfe", INVALID_AVP_VALUE),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_s2_binary_body_errors(server: ServerProcess, connect: Connect, name: str) -> None:
    """RFC 6733 section 7 (docs/protocol.md "Binary AVP bodies"): each malformed body is
    answered with its code (E exactly for 3009), Failed-AVP where the AVP can be named, and the
    connection goes on."""
    peer = await connect(server.port)
    tail, realm, code = CASES[name]
    body = _dwr(peer.origin_host, tail, **({} if realm is None else {"realm": realm}))
    answer = await peer.request(DWR, APP_BASE, body)
    assert answer.result_code == code, answer.body
    if name == "unknown-avp-with-m-bit":
        assert answer.body["Failed-AVP"] == {raw_avp_name(99_999): b"what"}
    if name == "unknown-avp-with-m-bit" or name == "origin-realm-twice":
        assert "Failed-AVP" in answer.body
    assert await peer.is_open()


async def test_s2_binary_errors_in_one_read_keep_the_connection(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §2: body errors are answered, not framing errors: many in one read, each
    answered, and the connection goes on (binary counterpart of
    `test_s2_failed_avp_answer_keeps_the_connection`)."""
    peer = await connect(server.port)
    frames = [
        peer.request_frame(DWR, APP_BASE, _dwr(peer.origin_host, tail, realm=realm or b"r"))
        for tail, realm, _ in CASES.values()
    ]
    await peer.send(b"".join(frames))
    codes = [(await peer.answer_to(parse_header(data).hbh)).result_code for data in frames]
    assert codes == [code for _, _, code in CASES.values()]
    assert await peer.is_open()


async def test_s2_binary_values_outside_their_domain_are_answered_and_the_server_restarts(
    spawn: Spawn, connect: Connect
) -> None:
    """Issue 16 over binary AVPs: Service-Information nested deeper than the limit is 3009, a
    usage of 2^64-1 (the largest Unsigned64) or of more than one operation's money is 5004, each
    on a connection that stays open; nothing changes, and the server restarts."""
    server = spawn()
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, 10_000_000)
    deep: dict[str, object] = {"Called-Station-Id": "apn"}
    for _ in range(40):
        deep = {"PS-Information": deep}
    event = ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=account.msisdn,
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", DIRECT_DEBITING),
        **avp("Service-Information", deep),
    )
    answer = await peer.request(CCR, APP_CC, event)
    assert answer.result_code == INVALID_AVP_BITS and answer.header.flags & 0x20
    assert await peer.is_open()
    session = CcSession(peer, account.msisdn)
    opened = await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": {}}])
    assert opened.result_code == SUCCESS
    for units in (2**64 - 1, MAX_UNITS):
        huge = [{"Rating-Group": 30, "Used-Service-Unit": [units_sms(units)]}]
        answer = await peer.request(CCR, APP_CC, session.body(UPDATE, 1, mscc=huge))
        assert answer.result_code == INVALID_AVP_VALUE
        assert await peer.is_open()
    assert await balance_of(admin, account.account_id) == (10_000_000 - 100_000, 100_000)
    server.terminate()
    server.start()  # every input it journaled replays
    admin = await connect(server.port)
    assert await balance_of(admin, account.account_id) == (10_000_000 - 100_000, 100_000)
