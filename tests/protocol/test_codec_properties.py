"""Round trips for every message type, and the fuzz invariant of the codec and the framing:
any input either decodes or raises the protocol error, never anything else."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import decode_body, encode_body, encode_frame
from protocol.codes import HEADER_LENGTH, CCRequestType, Flag
from protocol.errors import FramingError, ProtocolError
from protocol.framing import FrameBuffer
from protocol.limits import MAX_UNITS
from protocol.messages import ANSWER_TYPES, CCR, REQUEST_TYPES, Message
from tests.conftest import VECTORS
from tests.protocol.strategies import struct_strategy, to_wire_map

ALL_TYPES = [*REQUEST_TYPES, *ANSWER_TYPES]
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _ccr_refusal(ccr: CCR) -> int | None:
    """WIRE.md 5.1: Subscription-Id in INITIAL and EVENT, Requested-Action in EVENT (5005);
    docs/protocol.md "Limits": a Rating-Group at most once, a Requested-Service-Unit of at most
    MAX_UNITS octets in + out (5004)."""
    kind = ccr.cc_request_type
    if kind in (CCRequestType.INITIAL, CCRequestType.EVENT) and ccr.subscription_id is None:
        return 5005
    if kind is CCRequestType.EVENT and ccr.requested_action is None:
        return 5005
    msccs = ccr.multiple_services_credit_control or ()
    if len({m.rating_group for m in msccs}) < len(msccs):
        return 5004
    for m in msccs:
        rsu = m.requested_service_unit
        if (
            rsu is not None
            and rsu.cc_total_octets is None
            and (rsu.cc_input_octets or 0) + (rsu.cc_output_octets or 0) > MAX_UNITS
        ):
            return 5004
    return None


def _breaks_ccr_rules(ccr: CCR) -> bool:
    return _ccr_refusal(ccr) is not None


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda t: t.__name__)
@PROPS
@given(data=st.data())
def test_round_trip(message_type: type[Message], data: st.DataObject) -> None:
    message = data.draw(struct_strategy(message_type))
    body = encode_body(message)
    if isinstance(message, CCR) and _breaks_ccr_rules(message):
        with pytest.raises(ProtocolError) as info:
            decode_body(message_type.COMMAND, message_type.IS_REQUEST, body)
        assert info.value.result_code == _ccr_refusal(message)
        return
    decoded = decode_body(message_type.COMMAND, message_type.IS_REQUEST, body)
    assert decoded == message
    assert to_wire_map(decoded) == msgspec.msgpack.decode(body)


@pytest.mark.parametrize("message_type", ALL_TYPES, ids=lambda t: t.__name__)
@PROPS
@given(data=st.data(), hbh=st.integers(0, 2**32 - 1), e2e=st.integers(0, 2**32 - 1))
def test_frame_round_trip_through_any_split(
    message_type: type[Message], data: st.DataObject, hbh: int, e2e: int
) -> None:
    message = data.draw(struct_strategy(message_type))
    if isinstance(message, CCR) and _breaks_ccr_rules(message):
        return
    flags = Flag.REQUEST if message_type.IS_REQUEST else 0
    frame = encode_frame(
        message,
        flags=int(flags),
        command_code=message_type.COMMAND,
        application_id=4,
        hop_by_hop=hbh,
        end_to_end=e2e,
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(frame)), max_size=4)))
    buf = FrameBuffer(1 << 24)
    got = []
    last = 0
    for cut in [*cuts, len(frame)]:
        buf.feed(frame[last:cut])
        last = cut
        while (f := buf.next_frame()) is not None:
            got.append(f)
    assert len(got) == 1
    header, body = got[0]
    assert (header.hop_by_hop, header.end_to_end, header.length) == (hbh, e2e, len(frame))
    assert decode_body(message_type.COMMAND, message_type.IS_REQUEST, body) == message


@pytest.mark.parametrize("message_type", REQUEST_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=64))
def test_any_body_decodes_or_raises_protocol_error(
    message_type: type[Message], body: bytes
) -> None:
    try:
        decode_body(message_type.COMMAND, True, body)
    except ProtocolError as exc:
        assert exc.result_code in (3009, 5004, 5005)


MAPS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "Session-Id",
        "CC-Request-Type",
        "Multiple-Services-Credit-Control",
        "Rating-Group",
        "Subscription-Id",
        "Used-Service-Unit",
        "Origin-Host",
        "Auth-Application-Id",
        "Amount",
    ]
)


@pytest.mark.parametrize("message_type", REQUEST_TYPES, ids=lambda t: t.__name__)
@settings(max_examples=150, deadline=None)
@given(body=st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), MAPS, max_size=8))
def test_any_map_decodes_or_raises_protocol_error(
    message_type: type[Message], body: dict[str, object]
) -> None:
    try:
        decode_body(message_type.COMMAND, True, msgspec.msgpack.encode(body))
    except ProtocolError as exc:
        assert exc.result_code in (3009, 5004, 5005)
        if exc.result_code in (5004, 5005):
            assert exc.failed_avp is not None and len(exc.failed_avp) == 1


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(VECTORS).map(lambda v: bytes.fromhex(v["hex"])),
        st.sampled_from(VECTORS).flatmap(
            lambda v: st.binary(max_size=40).map(lambda junk: bytes.fromhex(v["hex"]) + junk)
        ),
    ),
    byte_at_a_time=st.booleans(),
)
def test_any_stream_frames_or_raises_framing_error(data: bytes, byte_at_a_time: bool) -> None:
    buf = FrameBuffer(65_536)
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_at_a_time else [data]
    try:
        for chunk in chunks:
            buf.feed(chunk)
            while (frame := buf.next_frame()) is not None:
                header, body = frame
                assert header.length == HEADER_LENGTH + len(body)
    except FramingError:
        pass
