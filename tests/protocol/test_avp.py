"""The binary AVP codec (protocol.avp, WIRE.md 1.1 sections 1 and 2, RFC 6733 section 4):
round trips of every message type, bytes checked by hand against RFC 6733's layout, the error
codes of RFC 6733 section 7, the fuzz invariant, and the same refusals as MessagePack for values
outside the documented domains."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.avp import NTP_TO_UNIX_S, decode_avps, encode_avps, transcode_answer
from protocol.codec import decode_body, encode_body
from protocol.codes import CCRequestType, SubscriptionIdType
from protocol.dictionary import BY_NAME, VENDOR_3GPP, AvpType
from protocol.errors import ProtocolError
from protocol.limits import MAX_IDENTITY_LENGTH, MAX_REQUEST_NUMBER
from protocol.messages import (
    ANSWER_TYPES,
    ASA,
    ASR,
    CCA,
    CCR,
    CER,
    RAA,
    RAR,
    REQUEST_TYPES,
    ErrorAnswer,
    Message,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from tests.protocol.strategies import struct_strategy

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TIME_SPAN = 2**32 - 2 * 61_505_152  # unix seconds the 32-bit NTP Time can carry from 0 on


def avp(code: int, data: bytes, *, flags: int = 0x40, vendor: int | None = None) -> bytes:
    """One AVP as RFC 6733 section 4.1 lays it out, padded."""
    head = 12 if vendor is not None else 8
    length = head + len(data)
    out = struct.pack(">II", code, ((flags | (0x80 if vendor is not None else 0)) << 24) | length)
    if vendor is not None:
        out += struct.pack(">I", vendor)
    return out + data + b"\0" * (-length % 4)


def u32(code: int, value: int, **kw: Any) -> bytes:
    return avp(code, struct.pack(">I", value), **kw)


def utf8(code: int, value: str, **kw: Any) -> bytes:
    return avp(code, value.encode(), **kw)


def ccr_avps(*, extra: bytes = b"", number: int = 0) -> bytes:
    """A CCR INITIAL written by hand from RFC 6733 / RFC 8506 codes."""
    return (
        utf8(263, "upf1.test.local;1;1")  # Session-Id
        + utf8(264, "upf1.test.local")  # Origin-Host
        + utf8(296, "test.local")  # Origin-Realm
        + utf8(283, "ocs.test.local")  # Destination-Realm
        + u32(258, 4)  # Auth-Application-Id
        + utf8(461, "32251@3gpp.org")  # Service-Context-Id
        + u32(416, 1)  # CC-Request-Type INITIAL
        + u32(415, number)  # CC-Request-Number
        + avp(443, u32(450, 0) + utf8(444, "491700000001"))  # Subscription-Id
        + avp(456, u32(432, 10) + avp(437, b""))  # MSCC: Rating-Group 10, empty RSU
        + extra
    )


def _error(command: int, body: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_avps(command, True, body)
    return info.value


# --- the dictionary ----------------------------------------------------------------------------


_WIRE_CLASS = {
    AvpType.UNSIGNED32: "i32",
    AvpType.INTEGER32: "i32",
    AvpType.ENUMERATED: "i32",
    AvpType.UNSIGNED64: "i64",
    AvpType.INTEGER64: "i64",
    AvpType.GROUPED: "grouped",
    AvpType.ADDRESS: "address",
    AvpType.TIME: "time",
    AvpType.UTF8_STRING: "bytes",
    AvpType.DIAMETER_IDENTITY: "bytes",
    AvpType.DIAMETER_URI: "bytes",
    AvpType.OCTET_STRING: "bytes",
}
# python-diameter's names where they differ from TS 32.299's
_THEIR_NAME = {"Reporting-Reason": "3GPP-Reporting-Reason"}


def test_dictionary_agrees_with_python_diameter() -> None:
    """Every standard entry has python-diameter's code, vendor and wire layout (it types
    Enumerated as Integer32 and DiameterIdentity as OctetString: the same bytes)."""
    dictionary = pytest.importorskip("diameter.message.avp.dictionary")
    theirs_by_vendor = dictionary.AVP_VENDOR_DICTIONARY
    theirs_kind = {
        "AvpUnsigned32": "i32",
        "AvpInteger32": "i32",
        "AvpEnumerated": "i32",
        "AvpUnsigned64": "i64",
        "AvpInteger64": "i64",
        "AvpGrouped": "grouped",
        "AvpAddress": "address",
        "AvpTime": "time",
        "AvpUtf8String": "bytes",
        "AvpOctetString": "bytes",
    }
    checked = 0
    for name, ours in BY_NAME.items():
        if ours.vendor_id not in (0, VENDOR_3GPP):
            continue
        table = dictionary.AVP_DICTIONARY if ours.vendor_id == 0 else theirs_by_vendor[10415]
        theirs = table[ours.code]
        assert theirs["name"] == _THEIR_NAME.get(name, name)
        kind = theirs_kind[theirs["type"].__name__]
        # python-diameter types Address-like 3GPP addresses and some times as they are sent
        assert kind == _WIRE_CLASS[ours.type], name
        checked += 1
    assert checked > 140


# --- bytes ------------------------------------------------------------------------------------


def test_hand_written_ccr_decodes_to_the_message_msgpack_gives() -> None:
    ccr = decode_avps(272, True, ccr_avps())
    assert ccr == CCR(
        session_id="upf1.test.local;1;1",
        origin_host="upf1.test.local",
        origin_realm="test.local",
        destination_realm="ocs.test.local",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=CCRequestType.INITIAL,
        cc_request_number=0,
        subscription_id=(
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164,
                subscription_id_data="491700000001",
            ),
        ),
        multiple_services_credit_control=(
            MsccRequest(rating_group=10, requested_service_unit=ServiceUnit()),
        ),
    )
    assert decode_body(272, True, encode_body(ccr)) == ccr


def test_encoding_is_rfc_6733_layout() -> None:
    """Header, V and M bits, Vendor-Id, padding, Unsigned64 and the NTP epoch, by hand."""
    usu = UsedServiceUnit(cc_total_octets=2**33 + 5, reporting_reason=2)  # type: ignore[arg-type]
    assert encode_avps(usu) == (
        avp(421, struct.pack(">Q", 2**33 + 5))
        + u32(872, 2, vendor=VENDOR_3GPP)  # Reporting-Reason: V and M
    )
    cer = CER(
        origin_host="a",
        origin_realm="bc",
        host_ip_address=("127.0.0.1", "::1"),
        vendor_id=10415,
        product_name="p",
        auth_application_id=(4,),
    )
    assert encode_avps(cer) == (
        utf8(264, "a")
        + utf8(296, "bc")
        + avp(257, b"\0\x01\x7f\0\0\x01")
        + avp(257, b"\0\x02" + b"\0" * 15 + b"\x01")
        + u32(266, 10415)
        + utf8(269, "p", flags=0)  # Product-Name: M bit MUST NOT be set (RFC 6733 4.5)
        + u32(258, 4)
    )
    ccr = decode_avps(272, True, ccr_avps(extra=u32(55, 1_800_000_000 + NTP_TO_UNIX_S)))
    assert isinstance(ccr, CCR) and ccr.event_timestamp == 1_800_000_000
    later = decode_avps(272, True, ccr_avps(extra=u32(55, 5)))  # MSB clear: after 2036
    assert isinstance(later, CCR) and later.event_timestamp == 2**32 + 5 - NTP_TO_UNIX_S


def test_cer_offers_applications_inside_vendor_specific_application_id() -> None:
    body = (
        utf8(264, "gw")
        + utf8(296, "realm")
        + avp(257, b"\0\x01\x0a\0\0\x01")
        + u32(266, 0)
        + utf8(269, "pgw", flags=0)
        + avp(260, u32(266, 10415) + u32(258, 4))
    )
    cer = decode_avps(257, True, body)
    assert isinstance(cer, CER) and cer.auth_application_id == (4,)
    assert cer.host_ip_address == ("10.0.0.1",)


def test_service_information_is_kept_unknown_avps_raw() -> None:
    ps = avp(
        874,
        avp(2, b"\0\0\0\x07", vendor=VENDOR_3GPP)  # 3GPP-Charging-Id
        + utf8(30, "internet")  # Called-Station-Id
        + avp(9999, b"raw", vendor=VENDOR_3GPP)  # unknown, M bit: kept, not refused
        + utf8(30, "ims"),
        vendor=VENDOR_3GPP,
    )
    ccr = decode_avps(272, True, ccr_avps(extra=avp(873, ps, vendor=VENDOR_3GPP)))
    assert isinstance(ccr, CCR)
    assert ccr.service_information == {
        "PS-Information": {
            "3GPP-Charging-Id": b"\0\0\0\x07",
            "Called-Station-Id": ["internet", "ims"],
            "AVP-10415-9999": b"raw",
        }
    }
    # what the journal holds (MessagePack) decodes to the same message, and encodes back
    assert decode_body(272, True, encode_body(ccr)) == ccr
    assert decode_avps(272, True, encode_avps(ccr)) == ccr


# --- errors (RFC 6733 section 7) -----------------------------------------------------------------


def test_unknown_avp_with_m_bit_is_5001_with_the_avp() -> None:
    err = _error(272, ccr_avps(extra=avp(99_999, b"abcd")))
    assert err.result_code == 5001
    assert err.failed_avp == {"AVP-0-99999": b"abcd"}
    assert err.session_id == "upf1.test.local;1;1"
    # and it goes back as that AVP inside Failed-AVP
    answer = ErrorAnswer(result_code=5001, origin_host="o", origin_realm="r")
    answer = msgspec.structs.replace(answer, failed_avp=err.failed_avp)
    assert avp(279, avp(99_999, b"abcd", flags=0)) in encode_avps(answer)


def test_unknown_avp_without_m_bit_is_ignored() -> None:
    assert decode_avps(272, True, ccr_avps(extra=avp(99_999, b"x", flags=0))) == decode_avps(
        272, True, ccr_avps()
    )


def test_bad_avp_lengths_are_5014() -> None:
    body = ccr_avps()
    assert _error(272, body[:-3]).result_code == 5014  # the last AVP runs past the body
    short = struct.pack(">II", 263, (0x40 << 24) | 4)  # shorter than its own header
    assert _error(272, short + body).result_code == 5014
    five = avp(415, b"\0\0\0\0\0")  # CC-Request-Number: Unsigned32 in 5 bytes
    err = _error(272, ccr_avps().replace(u32(415, 0), five))
    assert err.result_code == 5014 and "CC-Request-Number" in (err.failed_avp or {})


def test_errors_inside_groups_echo_the_session_id() -> None:
    bad_unit = avp(456, u32(432, 20) + avp(437, avp(421, b"\0\0\0")))  # 3-byte Unsigned64
    err = _error(272, ccr_avps(extra=bad_unit))
    assert err.result_code == 5014 and err.session_id == "upf1.test.local;1;1"
    unknown = avp(456, u32(432, 20) + avp(88_888, b""))
    err = _error(272, ccr_avps(extra=unknown))
    assert err.result_code == 5001 and err.session_id == "upf1.test.local;1;1"


def test_reserved_avp_bits_are_3009() -> None:
    assert _error(272, ccr_avps(extra=u32(55, 0, flags=0x41))).result_code == 3009


def test_answer_avps_in_a_request_are_5008() -> None:
    err = _error(272, ccr_avps(extra=u32(268, 2001)))
    assert err.result_code == 5008 and err.failed_avp == {"Result-Code": 2001}


def test_single_avp_twice_is_5009() -> None:
    assert _error(272, ccr_avps(extra=u32(415, 1))).result_code == 5009


def test_missing_and_invalid_values_as_for_msgpack() -> None:
    no_type = ccr_avps().replace(u32(416, 1), b"")
    err = _error(272, no_type)
    assert (err.result_code, err.failed_avp) == (5005, {"CC-Request-Type": None})
    bad_enum = ccr_avps().replace(u32(416, 1), u32(416, 9))
    err = _error(272, bad_enum)
    assert (err.result_code, err.failed_avp) == (5004, {"CC-Request-Type": 9})
    bad_utf8 = ccr_avps().replace(utf8(461, "32251@3gpp.org"), avp(461, b"\xff\xfe"))
    assert _error(272, bad_utf8).result_code == 5004


def test_domains_are_refused_as_for_msgpack() -> None:
    """protocol.limits: the same 5004 and Failed-AVP whichever the encoding."""
    long_host = "h" * (MAX_IDENTITY_LENGTH + 1)
    body = ccr_avps().replace(utf8(296, "test.local"), utf8(296, long_host))
    err = _error(272, body)
    assert (err.result_code, err.failed_avp) == (5004, {"Origin-Realm": long_host})
    too_far = ccr_avps(number=MAX_REQUEST_NUMBER + 1)
    err = _error(272, too_far)
    assert (err.result_code, err.failed_avp) == (5004, {"CC-Request-Number": 2**19})
    twice = ccr_avps(extra=avp(456, u32(432, 10)))  # Rating-Group 10 in two MSCCs
    err = _error(272, twice)
    assert err.result_code == 5004
    big_value = avp(873, avp(874, utf8(30, "x" * 300), vendor=VENDOR_3GPP), vendor=VENDOR_3GPP)
    err = _error(272, ccr_avps(extra=big_value))
    assert err.result_code == 5004 and "Service-Information" in (err.failed_avp or {})


def test_groups_nested_too_deep_are_3009() -> None:
    inner = b""
    for _ in range(40):
        inner = avp(874, inner, vendor=VENDOR_3GPP)
    err = _error(272, ccr_avps(extra=avp(873, inner, vendor=VENDOR_3GPP)))
    assert err.result_code == 3009


# --- properties ---------------------------------------------------------------------------------


_AT_LEAST_ONE = ("Host-IP-Address", "Auth-Application-Id")  # a CER's 1*{...}


def _representable(value: Any, name: str | None = None) -> Any:
    """`value` as binary AVPs can carry it: opaque maps of random keys dropped (tested apart),
    empty `*[AVP]` lists absent, Time within the 32-bit NTP span, addresses as IPs, the
    thresholds the wire holds in 32 bits capped, Enumerated values within Integer32."""
    if isinstance(value, msgspec.Struct):
        changes: dict[str, Any] = {}
        for f in msgspec.structs.fields(value):
            item = getattr(value, f.name)
            keep = item == () and f.required and f.encode_name not in _AT_LEAST_ONE
            changes[f.name] = item if keep else _representable(item, f.encode_name)
        return msgspec.structs.replace(value, **changes)
    if isinstance(value, dict):
        return None
    if isinstance(value, tuple):
        if name == "Host-IP-Address":
            return ("127.0.0.1", "::1")[: max(1, len(value))]
        if not value:
            return (4,) if name == "Auth-Application-Id" else None
        return tuple(_representable(v, name) for v in value)
    kind = BY_NAME[name].type if name in BY_NAME else None
    if kind is AvpType.TIME and isinstance(value, int):
        return value % _TIME_SPAN
    if kind is AvpType.ENUMERATED and isinstance(value, int) and value >= 2**31:
        return value % 2**31  # Termination-Cause: Unsigned32 in the model
    if name in ("Volume-Quota-Threshold", "Unit-Quota-Threshold") and isinstance(value, int):
        return min(value, 2**32 - 1)
    return value


ALL_TYPES = [*REQUEST_TYPES, *ANSWER_TYPES]


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda t: t.__name__)
@PROPS
@given(data=st.data())
def test_round_trip(message_type: type[Message], data: st.DataObject) -> None:
    message = _representable(data.draw(struct_strategy(message_type)))
    body = encode_avps(message)
    try:  # the same message over MessagePack: refused the same way, or not at all
        decode_body(message_type.COMMAND, message_type.IS_REQUEST, encode_body(message))
    except ProtocolError as refused:
        with pytest.raises(ProtocolError) as info:
            decode_avps(message_type.COMMAND, message_type.IS_REQUEST, body)
        assert (info.value.result_code, info.value.failed_avp) == (
            refused.result_code,
            refused.failed_avp,
        )
        return
    decoded = decode_avps(message_type.COMMAND, message_type.IS_REQUEST, body)
    assert decoded == message
    if not message_type.IS_REQUEST:  # the server's path: MessagePack answer -> binary
        assert transcode_answer(message_type.COMMAND, encode_body(message)) == body


def _avp_soup() -> st.SearchStrategy[bytes]:
    """Byte strings made of AVP-shaped pieces, valid or not, nested a little."""
    codes = st.sampled_from([263, 264, 296, 283, 258, 461, 416, 415, 443, 456, 437, 446, 873, 1])
    leaf = st.builds(
        lambda c, d, f, v: avp(c, d, flags=f, vendor=v),
        codes,
        st.binary(max_size=12),
        st.sampled_from([0, 0x40, 0x20, 0x01]),
        st.sampled_from([None, None, VENDOR_3GPP]),
    )
    return st.recursive(
        leaf,
        lambda inner: st.builds(lambda c, parts: avp(c, b"".join(parts)), codes, st.lists(inner)),
        max_leaves=8,
    )


@pytest.mark.parametrize("message_type", REQUEST_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=150, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=96),
        st.lists(_avp_soup(), max_size=6).map(b"".join),
        st.binary(max_size=8).map(lambda junk: ccr_avps() + junk),
    )
)
def test_any_body_decodes_or_raises_protocol_error(
    message_type: type[Message], body: bytes
) -> None:
    try:
        decode_avps(message_type.COMMAND, True, body)
    except ProtocolError as exc:
        assert exc.result_code in (3009, 5001, 5004, 5005, 5008, 5009, 5014)
        # whatever Failed-AVP holds encodes as an answer
        answer = ErrorAnswer(result_code=exc.result_code, origin_host="o", origin_realm="r")
        encode_avps(msgspec.structs.replace(answer, failed_avp=exc.failed_avp))


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=96))
def test_any_answer_body_decodes_or_raises_protocol_error(body: bytes) -> None:
    for answer_type in ANSWER_TYPES:
        with contextlib.suppress(ProtocolError):
            decode_avps(answer_type.COMMAND, False, body)


def test_answers_with_opaque_failed_avp_round_trip() -> None:
    cca = CCA(
        result_code=5004,
        origin_host="o",
        origin_realm="r",
        session_id="s",
        failed_avp={"Multiple-Services-Credit-Control": {"Rating-Group": 7}},
    )
    assert decode_avps(272, False, encode_avps(cca)) == cca


@pytest.mark.parametrize("message_type", [CCR, CCA, RAR, RAA, ASR, ASA])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_session_id_is_the_first_avp(message_type: type[Message], data: st.DataObject) -> None:
    """RFC 6733 3.2 and 8.8: `< Session-Id >` is fixed at the head of every message that
    carries it (a strict peer, e.g. freeDiameter's rule check, refuses it elsewhere). It came
    after Origin-Host and Origin-Realm, the model's base class fields (regression)."""
    info = msgspec.inspect.type_info(message_type)
    assert isinstance(info, msgspec.inspect.StructType)
    assert "Session-Id" in {f.encode_name for f in info.fields}
    # (what the wire can carry, as in `test_round_trip`: a Termination-Cause above 2^31 - 1
    # cannot be sent in binary, docs/protocol.md)
    sample = _representable(data.draw(struct_strategy(message_type)))
    body = encode_avps(sample)
    if sample.session_id is not None:
        assert struct.unpack_from(">I", body)[0] == 263, body[:16]
