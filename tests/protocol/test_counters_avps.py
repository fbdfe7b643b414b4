"""The usage counters' AVPs (docs/protocol.md, *Extension: usage counters*) on both body
encodings: an AMA `Account` and a RAR with `Usage-Counter` decode to what was encoded, and the
binary form uses the reserved vendor codes 85-89 without the M bit."""

from __future__ import annotations

import struct

import msgspec

from protocol.avp import decode_avps, encode_avps
from protocol.codec import decode_body, encode_body
from protocol.codes import AccountStatus, CommandCode, CounterUnit, ReAuthRequestType
from protocol.dictionary import BY_NAME, VENDOR_OCS
from protocol.messages import AMA, RAR, Account, UsageCounter

COUNTER = UsageCounter(
    counter_name="data-daily",
    counter_unit=CounterUnit.OCTETS,
    counter_value=11 * 2**20,
    start_time=1_767_618_060,
    stop_time=1_767_654_000,
    counter_threshold=10 * 2**20,
)
LEGACY = UsageCounter(counter_name="account", counter_unit=CounterUnit.MONEY, counter_value=85_000)
AMA_ = AMA(
    result_code=2001,
    origin_host="ocs.test.local",
    origin_realm="test.local",
    account=Account(
        account_id="c1",
        account_status=AccountStatus.ACTIVE,
        balance=9_915_000,
        reserved=0,
        credit_limit=0,
        currency_code=978,
        subscription_id=(),
        session_count=2,
        usage_counter=(LEGACY, COUNTER),
    ),
)
RAR_ = RAR(
    session_id="upf1.test.local;a1",
    origin_host="ocs.test.local",
    origin_realm="test.local",
    destination_realm="test.local",
    destination_host="upf1.test.local",
    auth_application_id=4,
    re_auth_request_type=ReAuthRequestType.AUTHORIZE_ONLY,
    rating_group=(10,),
    usage_counter=(COUNTER,),
)


def test_both_encodings_round_trip() -> None:
    for message, is_request in ((AMA_, False), (RAR_, True)):
        command = message.COMMAND
        assert decode_body(command, is_request, encode_body(message)) == message
        assert decode_avps(command, is_request, encode_avps(message)) == message


def test_msgpack_keys_are_the_avp_names() -> None:
    raw = msgspec.msgpack.decode(encode_body(RAR_))
    assert raw["Usage-Counter"] == [
        {
            "Counter-Name": "data-daily",
            "Counter-Unit": 1,
            "Counter-Value": 11 * 2**20,
            "Start-Time": 1_767_618_060,
            "Stop-Time": 1_767_654_000,
            "Counter-Threshold": 10 * 2**20,
        }
    ]


def test_binary_codes_are_the_reserved_ones_without_the_m_bit() -> None:
    codes = {
        name: BY_NAME[name].code
        for name in (
            "Usage-Counter",
            "Counter-Name",
            "Counter-Unit",
            "Counter-Value",
            "Counter-Threshold",
        )
    }
    assert codes == {
        "Usage-Counter": 85,
        "Counter-Name": 86,
        "Counter-Unit": 87,
        "Counter-Value": 88,
        "Counter-Threshold": 89,
    }
    for name in codes:
        assert BY_NAME[name].vendor_id == VENDOR_OCS and not BY_NAME[name].mandatory
    # find the Usage-Counter AVP in the RAR's body: code 85, flags V only, the vendor
    body = encode_avps(RAR_)
    at = 0
    found = []
    while at < len(body):
        code, flags_length = struct.unpack_from(">II", body, at)
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        vendor = struct.unpack_from(">I", body, at + 8)[0] if flags & 0x80 else 0
        found.append((code, flags, vendor))
        at += (length + 3) & ~3
    assert (85, 0x80, VENDOR_OCS) in found
    assert CommandCode.RE_AUTH == RAR_.COMMAND
