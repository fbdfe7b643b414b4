"""WIRE.md §2 Body: one MessagePack map keyed by AVP name, and the errors in it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_BASE,
    APP_CC,
    BINARY,
    CCR,
    DATA,
    DWR,
    EVENT,
    FLAG_E,
    GET,
    INITIAL,
    INVALID_AVP_BITS,
    INVALID_AVP_VALUE,
    MISSING_AVP,
    MSGPACK_ONLY,
    PRICE_ENQUIRY,
    SUCCESS,
    Peer,
    amr_body,
    avp,
    ccr_body,
    encode,
    new_msisdn,
    new_session_id,
    parse_header,
    raw_avp_name,
    units_sms,
)
from tests.server.process import ServerProcess

_DWR_MAP = {"Origin-Host": "h.conformance.test.local", "Origin-Realm": "conformance.test.local"}
_DWR_BYTES = msgspec.msgpack.encode(_DWR_MAP)


def _msgpack(case: tuple[Any, ...]) -> Any:
    """A case with no standard Diameter form: MessagePack only."""
    return pytest.param(*case, marks=MSGPACK_ONLY)


BAD_BODIES = {
    "not-msgpack": b"\xc1\xc1\xc1",  # 0xc1 is never used in MessagePack
    "truncated-map": _DWR_BYTES[:-3],
    "array": msgspec.msgpack.encode(list(_DWR_MAP.values())),
    "string": msgspec.msgpack.encode("Origin-Host"),
    "nil": msgspec.msgpack.encode(None),
    "trailing-bytes": _DWR_BYTES + b"\x00",
    "two-maps": _DWR_BYTES + _DWR_BYTES,
    "empty": b"",
    "non-string-key": msgspec.msgpack.encode({**_DWR_MAP, 1: "x"}),
    # a str whose bytes are not UTF-8 (docs/protocol.md: 3009)
    "invalid-utf8": msgspec.msgpack.encode({**_DWR_MAP, "Origin-Realm": "ab"})[:-2] + b"\xff\xfe",
}


@MSGPACK_ONLY  # the binary counterpart: test_s2_binary_body_errors
@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_s2_body_not_exactly_one_map_is_3009(
    server: ServerProcess, connect: Connect, name: str
) -> None:
    """WIRE.md §2: a body that is not exactly one decodable MessagePack map is answered 3009
    DIAMETER_INVALID_AVP_BITS with the E flag; the connection goes on."""
    peer = await connect(server.port)
    body = BAD_BODIES[name]
    answer = await peer.request(DWR, APP_BASE, body)
    assert answer.result_code == INVALID_AVP_BITS
    assert answer.header.flags & FLAG_E
    answer = await peer.request(AMR, APP_ADMIN, body)
    assert answer.result_code == INVALID_AVP_BITS
    assert await peer.is_open()


def _price_enquiry(peer: Peer, **override: Any) -> dict[str, Any]:
    body = ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=new_msisdn(),
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", PRICE_ENQUIRY),
    )
    body.update(override)
    return body


@pytest.mark.parametrize(
    "key",
    [
        "Session-Id",
        "Origin-Host",
        "Origin-Realm",
        "Destination-Realm",
        "Auth-Application-Id",
        "Service-Context-Id",
        "CC-Request-Type",
        "CC-Request-Number",
    ],
)
async def test_s2_missing_required_ccr_key_is_5005(
    server: ServerProcess, connect: Connect, key: str
) -> None:
    """WIRE.md §2/§5.1: a required key missing: 5005 DIAMETER_MISSING_AVP (no E flag),
    Failed-AVP = {name: nil}."""
    peer = await connect(server.port)
    body = _price_enquiry(peer)
    del body[key]
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == MISSING_AVP
    assert answer.body["Failed-AVP"] == {key: None}


async def test_s2_conditionally_required_keys_are_5005(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.1: Subscription-Id is required in INITIAL and EVENT, Requested-Action in
    EVENT: missing, 5005 with Failed-AVP {name: nil}."""
    peer = await connect(server.port)
    body = _price_enquiry(peer)
    del body["Requested-Action"]
    answer = await peer.request(CCR, APP_CC, body)
    assert (answer.result_code, answer.body["Failed-AVP"]) == (
        MISSING_AVP,
        {"Requested-Action": None},
    )
    body = _price_enquiry(peer)
    del body["Subscription-Id"]
    answer = await peer.request(CCR, APP_CC, body)
    assert (answer.result_code, answer.body["Failed-AVP"]) == (
        MISSING_AVP,
        {"Subscription-Id": None},
    )
    body = ccr_body(peer, new_session_id(peer), INITIAL, 0, service=DATA)
    answer = await peer.request(CCR, APP_CC, body)
    assert (answer.result_code, answer.body["Failed-AVP"]) == (
        MISSING_AVP,
        {"Subscription-Id": None},
    )


async def test_s2_missing_keys_of_other_commands_are_5005(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §2: 5005 with Failed-AVP {name: nil} for DWR and AMR too."""
    peer = await connect(server.port)
    answer = await peer.request(DWR, APP_BASE, {"Origin-Host": peer.origin_host})
    assert (answer.result_code, answer.body["Failed-AVP"]) == (MISSING_AVP, {"Origin-Realm": None})
    body = amr_body(peer, GET, "x")
    del body["Account-Id"]
    answer = await peer.request(AMR, APP_ADMIN, body)
    assert (answer.result_code, answer.body["Failed-AVP"]) == (MISSING_AVP, {"Account-Id": None})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # (a MessagePack type an AVP cannot have, a value its type cannot hold, a lone map
        # where a binary body would repeat the AVP: MessagePack only)
        _msgpack(("CC-Request-Type", "1")),  # wrong type (vectors.json bad-request-type-string)
        ("CC-Request-Type", 9),  # out of the enumeration (bad-request-type-range)
        _msgpack(("CC-Request-Type", 1.0)),
        _msgpack(("CC-Request-Number", -1)),  # Unsigned32 range
        _msgpack(("CC-Request-Number", 2**32)),
        ("Requested-Action", 7),
        ("Auth-Application-Id", 5),  # must be 4
        _msgpack(("Session-Id", 42)),
        _msgpack(("Origin-Host", b"bytes")),  # a str, not bin
        ("Event-Timestamp", -1),  # Time: seconds since 1970, never negative
        _msgpack(("Event-Timestamp", "2026-01-05T14:00:00Z")),
        _msgpack(("Subscription-Id", {"Subscription-Id-Type": 0, "Subscription-Id-Data": "1"})),
        _msgpack(("Multiple-Services-Credit-Control", {"Rating-Group": 30})),
    ],
)
async def test_s2_wrong_type_or_range_is_5004_with_value_as_received(
    server: ServerProcess, connect: Connect, key: str, value: Any
) -> None:
    """WIRE.md §2: a known key with a value of the wrong type or range: 5004
    DIAMETER_INVALID_AVP_VALUE, Failed-AVP = {name: value as received}. *[AVP] keys
    (Subscription-Id, Multiple-Services-Credit-Control) are always arrays: a lone map is a
    wrong type."""
    peer = await connect(server.port)
    body = _price_enquiry(peer, **{key: value})
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == INVALID_AVP_VALUE
    assert not answer.header.flags & FLAG_E
    assert answer.body["Failed-AVP"] == {key: value}


@pytest.mark.parametrize(
    ("mscc", "failed"),
    [
        _msgpack(
            (
                [{"Rating-Group": "30", "Requested-Service-Unit": {}}],
                {"Multiple-Services-Credit-Control": [{"Rating-Group": "30"}]},
            )
        ),
        _msgpack(
            (
                [
                    {
                        "Rating-Group": 30,
                        "Requested-Service-Unit": {"CC-Service-Specific-Units": -3},
                    }
                ],
                {
                    "Multiple-Services-Credit-Control": [
                        {"Requested-Service-Unit": {"CC-Service-Specific-Units": -3}}
                    ]
                },
            )
        ),
        _msgpack(
            (
                [{"Rating-Group": 30, "Used-Service-Unit": [{"CC-Time": "ten"}]}],
                {"Multiple-Services-Credit-Control": [{"Used-Service-Unit": [{"CC-Time": "ten"}]}]},
            )
        ),
        (
            [{"Rating-Group": 30, "Used-Service-Unit": [{"Reporting-Reason": 55}]}],
            {
                "Multiple-Services-Credit-Control": [
                    {"Used-Service-Unit": [{"Reporting-Reason": 55}]}
                ]
            },
        ),
        _msgpack(
            (
                [{"Rating-Group": 30, "Used-Service-Unit": {"CC-Service-Specific-Units": 1}}],
                {
                    "Multiple-Services-Credit-Control": [
                        {"Used-Service-Unit": {"CC-Service-Specific-Units": 1}}
                    ]
                },
            )
        ),
    ],
    ids=[
        "rating-group-string",
        "rsu-negative",
        "usu-cc-time-string",
        "usu-reason-range",
        "usu-not-an-array",
    ],
)
async def test_s2_nested_key_5004_reports_the_path(
    server: ServerProcess, connect: Connect, mscc: list[dict[str, Any]], failed: dict[str, Any]
) -> None:
    """WIRE.md §2: for a key inside a group, Failed-AVP is the path of maps to it
    (docs/protocol.md: a one-element array where the AVP is an array)."""
    peer = await connect(server.port)
    body = _price_enquiry(peer, **avp("Multiple-Services-Credit-Control", mscc))
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == failed


async def test_s2_nested_subscription_id_type_5004(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2/§5.1: Subscription-Id-Type out of 0..4 inside the Subscription-Id array."""
    peer = await connect(server.port)
    subs = [{"Subscription-Id-Type": 9, "Subscription-Id-Data": "123"}]
    body = _price_enquiry(peer, **avp("Subscription-Id", subs))
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {"Subscription-Id": [{"Subscription-Id-Type": 9}]}


async def test_s2_nested_missing_key_is_5005(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2/§5.1: Rating-Group is required in an MSCC: 5005, Failed-AVP names it with
    its path and nil (docs/protocol.md)."""
    peer = await connect(server.port)
    body = _price_enquiry(peer, **{"Multiple-Services-Credit-Control": [{"Service-Identifier": 1}]})
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == MISSING_AVP
    assert answer.body["Failed-AVP"] == {
        "Multiple-Services-Credit-Control": [{"Rating-Group": None}]
    }


async def test_s2_unknown_keys_are_ignored(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2: unknown keys are ignored (forward compatibility), at the top level and
    inside groups, whatever their value."""
    peer = await connect(server.port)
    extra: dict[str, Any] = {
        "X-Future-AVP": {"nested": [1, 2, {"deep": b"\x00"}]},
        "Vendor-Specific-1": -7,
    }
    new = "X-New"
    if peer.encoding == BINARY:  # AVPs no dictionary knows, without the M bit
        extra = {raw_avp_name(99_999): b"\x00\x01", raw_avp_name(1, 99_999): "future"}
        new = raw_avp_name(99_998, 10415)
    answer = await peer.request(DWR, APP_BASE, {**peer.dwr_body(), **extra})
    assert answer.result_code == SUCCESS
    mscc = [{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1), new: "y"}]
    body = _price_enquiry(peer, **avp("Multiple-Services-Credit-Control", mscc), **extra)
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == SUCCESS
    answer = await peer.request(AMR, APP_ADMIN, {**amr_body(peer, GET, "nobody"), **extra})
    assert answer.result_code == 5030


@MSGPACK_ONLY  # a binary body has codes, not names
async def test_s2_keys_are_spelled_exactly(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §2: keys are AVP names spelled exactly: a misspelt required key is unknown
    (ignored), so the real one is missing: 5005."""
    peer = await connect(server.port)
    body = _price_enquiry(peer)
    body["session-id"] = body.pop("Session-Id")
    answer = await peer.request(CCR, APP_CC, body)
    assert (answer.result_code, answer.body["Failed-AVP"]) == (MISSING_AVP, {"Session-Id": None})


@MSGPACK_ONLY  # the binary counterpart: test_s2_binary_body_errors
async def test_s2_failed_avp_answer_keeps_the_connection(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §2: body errors are answered, not framing errors: many in one read, each
    answered, and the connection goes on."""
    peer = await connect(server.port)
    frames = [peer.request_frame(CCR, APP_CC, _price_enquiry(peer, **avp("CC-Request-Type", 5)))]
    frames += [peer.request_frame(DWR, APP_BASE, b"\xc1")]
    frames += [peer.request_frame(DWR, APP_BASE, encode({"Origin-Host": "x"}))]
    await peer.send(b"".join(frames))
    codes = []
    for data in frames:
        codes.append((await peer.answer_to(parse_header(data).hbh)).result_code)
    assert codes == [INVALID_AVP_VALUE, INVALID_AVP_BITS, MISSING_AVP]
    assert await peer.is_open()
