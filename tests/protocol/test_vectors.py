"""Golden tests: every vector of ../shared/spec/vectors.json."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.codec import (
    ANSWER_TYPE_BY_CODE,
    REQUEST_TYPE_BY_CODE,
    decode_body,
    encode_body,
    encode_frame,
)
from protocol.codes import HEADER_LENGTH, VERSION
from protocol.errors import ProtocolError
from protocol.framing import FrameBuffer
from protocol.header import unpack_header
from tests.conftest import VECTORS

BODY_VECTORS = [v for v in VECTORS if "body" in v]
EXPECT_VECTORS = [v for v in VECTORS if "expect" in v]


def test_the_spec_ships_vectors() -> None:
    assert len(BODY_VECTORS) >= 14 and len(EXPECT_VECTORS) >= 10


@pytest.mark.parametrize("vector", BODY_VECTORS, ids=lambda v: v["name"])
def test_body_vector_decodes_to_its_map(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["hex"])
    header = unpack_header(frame)
    assert frame[0] == VERSION and header.length == len(frame)
    message = decode_body(header.command_code, header.is_request, frame[HEADER_LENGTH:])
    types = REQUEST_TYPE_BY_CODE if header.is_request else ANSWER_TYPE_BY_CODE
    assert type(message) is types[header.command_code]
    # the typed message, seen as a map keyed by AVP name, is exactly the vector's map
    assert msgspec.msgpack.decode(encode_body(message)) == vector["body"]


@pytest.mark.parametrize("vector", BODY_VECTORS, ids=lambda v: v["name"])
def test_body_vector_reencodes_to_same_header_and_map(vector: dict[str, Any]) -> None:
    frame = bytes.fromhex(vector["hex"])
    header = unpack_header(frame)
    message = decode_body(header.command_code, header.is_request, frame[HEADER_LENGTH:])
    again = encode_frame(
        message,
        flags=header.flags,
        command_code=header.command_code,
        application_id=header.application_id,
        hop_by_hop=header.hop_by_hop,
        end_to_end=header.end_to_end,
    )
    h2 = unpack_header(again)
    assert (h2.flags, h2.command_code, h2.application_id, h2.hop_by_hop, h2.end_to_end) == (
        header.flags,
        header.command_code,
        header.application_id,
        header.hop_by_hop,
        header.end_to_end,
    )
    assert h2.length == len(again)
    assert msgspec.msgpack.decode(again[HEADER_LENGTH:]) == vector["body"]


@pytest.mark.parametrize(
    "vector",
    [v for v in EXPECT_VECTORS if isinstance(v["expect"]["result"], int)],
    ids=lambda v: v["name"],
)
def test_body_errors_carry_the_expected_code(vector: dict[str, Any]) -> None:
    """The codec alone finds the body errors; header errors are the connection's."""
    frame = bytes.fromhex(vector["hex"])
    header = unpack_header(frame)
    expect = vector["expect"]
    if header.command_code not in REQUEST_TYPE_BY_CODE or header.flags & 0x0F:
        pytest.skip("a header error, checked in test_connection")
    with pytest.raises(ProtocolError) as info:
        decode_body(header.command_code, True, frame[HEADER_LENGTH:])
    assert info.value.result_code == expect["result"]
    assert info.value.error_flag == expect.get("error_flag", False)
    if "failed_avp" in expect:
        assert info.value.failed_avp is not None
        assert list(info.value.failed_avp) == [expect["failed_avp"]]


@pytest.mark.parametrize(
    "vector",
    [v for v in EXPECT_VECTORS if v["expect"]["result"] == "close"],
    ids=lambda v: v["name"],
)
def test_framing_vectors_are_framing_errors(vector: dict[str, Any]) -> None:
    buf = FrameBuffer(65_536)
    buf.feed(bytes.fromhex(vector["hex"]))
    with pytest.raises(Exception) as info:
        buf.next_frame()
    assert type(info.value).__name__ == "FramingFailure"


@pytest.mark.parametrize(
    "tail",
    [b"\xa2\xff\xfe", b"\xa1\x80", b"\xa3\xed\xa0\x80"],  # bad start byte, lone
    ids=["bad-start", "continuation", "surrogate"],  # continuation, encoded surrogate
)
def test_invalid_utf8_in_a_string_is_3009(tail: bytes) -> None:
    """WIRE.md section 2: a body that is not a decodable map (here: a str that is not UTF-8)."""
    body = (
        b"\x82"
        + msgspec.msgpack.encode("Origin-Host")
        + msgspec.msgpack.encode("a")
        + msgspec.msgpack.encode("Origin-Realm")
        + tail
    )
    with pytest.raises(ProtocolError) as info:
        decode_body(280, True, body)
    assert info.value.result_code == 3009 and info.value.error_flag
