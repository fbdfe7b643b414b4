"""WIRE.md §1 Framing, against a running `ocs serve`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_BASE,
    APP_CC,
    CCR,
    DWR,
    EVENT,
    FLAG_E,
    FLAG_P,
    FLAG_R,
    FLAG_T,
    GET,
    HEADER_LEN,
    INVALID_HDR_BITS,
    INVALID_MESSAGE_LENGTH,
    MAX_LENGTH,
    MSGPACK,
    PRICE_ENQUIRY,
    SUCCESS,
    VERSION,
    amr_body,
    avp,
    ccr_body,
    decode_message,
    encode,
    frame,
    new_msisdn,
    new_session_id,
    parse_header,
    raw_avp_name,
    units_sms,
)
from tests.conftest import SPEC
from tests.server.process import ServerProcess

VECTORS: list[dict[str, Any]] = json.loads((SPEC / "vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", [v for v in VECTORS if "body" in v], ids=lambda v: v["name"])
def test_s1_s2_spec_vectors_decode_with_the_suite_codec(vector: dict[str, Any]) -> None:
    """WIRE.md §1/§2 (vectors.json): the suite's own framing decodes each vector to exactly the
    map given, and re-encodes a frame that decodes to the same header and map."""
    data = bytes.fromhex(vector["hex"])
    msg = decode_message(data)
    assert msg.header.version == VERSION and msg.header.length == len(data)
    assert msg.body == vector["body"]
    h = msg.header
    again = decode_message(frame(h.code, h.app, msg.body, flags=h.flags, hbh=h.hbh, e2e=h.e2e))
    assert again.header == h
    assert again.body == vector["body"]


async def test_s1_answer_copies_ids_and_clears_r(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1/§3: the answer carries the request's Command-Code, Application-Id,
    Hop-by-Hop-Id and End-to-End-Id, with R clear (checked on every answer by the suite)."""
    peer = await connect(server.port)
    for hbh, e2e in ((1, 1), (0xFFFFFFFF, 0xFFFFFFFF), (0x12345678, 0x0ABCDEF0)):
        answer = await peer.request(DWR, APP_BASE, peer.dwr_body(), hbh=hbh, e2e=e2e)
        assert answer.header.hbh == hbh and answer.header.e2e == e2e
        assert not answer.header.flags & FLAG_R
        answer = await peer.request(AMR, APP_ADMIN, amr_body(peer, GET, "nobody"), hbh=hbh)
        assert answer.header.code == AMR and answer.header.app == APP_ADMIN


async def test_s1_p_bit_copied_into_the_answer(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1 (P 0x40) and docs/protocol.md "Answers copy the request's P bit"."""
    peer = await connect(server.port)
    body = ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=new_msisdn(),
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", PRICE_ENQUIRY),
    )
    with_p = await peer.request(CCR, APP_CC, body, flags=FLAG_R | FLAG_P)
    assert with_p.header.flags & FLAG_P and with_p.result_code == SUCCESS
    body["Session-Id"] = new_session_id(peer)
    without_p = await peer.request(CCR, APP_CC, body, flags=FLAG_R)
    assert not without_p.header.flags & FLAG_P and without_p.result_code == SUCCESS
    dwa = await peer.request(DWR, APP_BASE, peer.dwr_body(), flags=FLAG_R | FLAG_P)
    assert dwa.header.flags & FLAG_P


@pytest.mark.parametrize("bit", [0x01, 0x02, 0x04, 0x08])
async def test_s1_reserved_flag_bits_answered_3008(
    server: ServerProcess, connect: Connect, bit: int
) -> None:
    """WIRE.md §1: bits 0x0F MUST be zero: a request with any of them set is answered 3008
    DIAMETER_INVALID_HDR_BITS (E set); the connection goes on."""
    peer = await connect(server.port)
    answer = await peer.request(DWR, APP_BASE, peer.dwr_body(), flags=FLAG_R | bit)
    assert answer.result_code == INVALID_HDR_BITS
    assert answer.header.flags & FLAG_E
    body = amr_body(peer, GET, "nobody")
    answer = await peer.request(AMR, APP_ADMIN, body, flags=FLAG_R | FLAG_T | bit)
    assert answer.result_code == INVALID_HDR_BITS
    assert await peer.is_open()


async def test_s1_split_reads_byte_by_byte(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1: bytes of a message may arrive split across any number of reads; this MUST
    work (every message here is written one byte at a time)."""
    peer = await connect(server.port)
    frames = [
        peer.request_frame(DWR, APP_BASE, peer.dwr_body()),
        peer.request_frame(AMR, APP_ADMIN, amr_body(peer, GET, "nobody")),
    ]
    for data in frames:
        for i in range(len(data)):
            await peer.send(data[i : i + 1])
            await asyncio.sleep(0.0005)
        answer = await peer.answer_to(parse_header(data).hbh)
        assert answer.result_code in (SUCCESS, 5030)


async def test_s1_split_at_every_position(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1: a message split in two at any offset (inside the header, at its end,
    inside the body) MUST work."""
    peer = await connect(server.port)
    probe = peer.request_frame(DWR, APP_BASE, peer.dwr_body())
    for cut in range(1, len(probe)):
        data = peer.request_frame(DWR, APP_BASE, peer.dwr_body())
        await peer.send(data[:cut])
        await asyncio.sleep(0.001)
        await peer.send(data[cut:])
        answer = await peer.answer_to(parse_header(data).hbh)
        assert answer.result_code == SUCCESS


async def test_s1_many_messages_in_one_read(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1: one read may carry many messages; this MUST work: each is answered once."""
    peer = await connect(server.port)
    frames = []
    for i in range(60):
        if i % 3 == 0:
            frames.append(peer.request_frame(AMR, APP_ADMIN, amr_body(peer, GET, f"x{i}")))
        else:
            frames.append(peer.request_frame(DWR, APP_BASE, peer.dwr_body()))
    await peer.send(b"".join(frames))
    for data in frames:
        answer = await peer.answer_to(parse_header(data).hbh)
        assert answer.header.code == parse_header(data).code
    await asyncio.sleep(0.2)
    assert await peer.is_open()
    assert all(not v for v in peer.answers.values()), "every request answered exactly once"


async def test_s1_message_of_exactly_the_limit_is_accepted(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §1: only MORE than the limit (default 65,536) is a framing error; a message of
    exactly 65,536 bytes is served (with an unknown key as padding, §2)."""
    peer = await connect(server.port)
    pad = MAX_LENGTH - 200
    key = "X-Padding" if peer.encoding == MSGPACK else raw_avp_name(99_999)  # unknown, no M
    while True:
        body = {**peer.dwr_body(), key: "a" * pad}
        size = HEADER_LEN + len(encode(body, peer.version))
        if size == MAX_LENGTH:
            break
        pad += MAX_LENGTH - size
    answer = await peer.request(DWR, APP_BASE, body)
    assert answer.result_code == SUCCESS


async def _assert_only_that_connection_closed(
    server: ServerProcess, connect: Connect, bad: bytes, *, expect_answer: int | None
) -> None:
    bystander = await connect(server.port)
    peer = await connect(server.port)
    await peer.send(bad)
    assert await peer.closed_by_server(), "§1: a framing error closes the connection"
    answers = [m for msgs in peer.answers.values() for m in msgs]
    if expect_answer is None:
        assert answers == []
    else:
        assert [a.result_code for a in answers] == [expect_answer]
        sent = parse_header(bad)
        a = answers[0]
        assert (a.header.hbh, a.header.e2e, a.header.code) == (sent.hbh, sent.e2e, sent.code)
        assert not a.header.flags & FLAG_E, "5015 is not a 3xxx: E clear (docs/protocol.md)"
    assert await bystander.is_open(), "§1: the framing error closes only that connection"


async def test_s1_bad_version_closes_only_that_connection(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md 1.1 §1: Version other than 0x4D and 0x01 is a framing error: the receiver
    closes the connection (docs/protocol.md: without an answer); other connections go on."""
    data = frame(DWR, APP_BASE, {"Origin-Host": "x", "Origin-Realm": "y"}, version=2, hbh=7, e2e=7)
    await _assert_only_that_connection_closed(server, connect, data, expect_answer=None)


async def test_s1_length_below_20_closes(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1: Message-Length less than 20 is a framing error; with a whole request header
    read, the server MAY answer 5015 (docs/protocol.md: it does) and closes."""
    data = frame(DWR, APP_BASE, b"", length=12, hbh=11, e2e=12)
    assert len(data) == HEADER_LEN
    await _assert_only_that_connection_closed(
        server, connect, data, expect_answer=INVALID_MESSAGE_LENGTH
    )


async def test_s1_length_below_20_partial_header_closes_without_answer(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §1 / docs/protocol.md: a bad length with fewer than 20 bytes read closes the
    connection without an answer."""
    data = frame(DWR, APP_BASE, b"", length=12)[:6]
    await _assert_only_that_connection_closed(server, connect, data, expect_answer=None)


async def test_s1_length_over_limit_closes(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §1: Message-Length above the receiver's limit (65,536) is a framing error:
    answered 5015 (docs/protocol.md) and closed; the server does not wait for the body."""
    body = {"Origin-Host": "x", "Origin-Realm": "y"}
    data = frame(DWR, APP_BASE, body, length=MAX_LENGTH + 1, hbh=21, e2e=22)
    await _assert_only_that_connection_closed(
        server, connect, data, expect_answer=INVALID_MESSAGE_LENGTH
    )


async def test_s1_framing_error_after_good_messages(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §1: messages before the framing error in the same read are answered, then the
    connection is closed."""
    peer = await connect(server.port)
    good = peer.request_frame(DWR, APP_BASE, peer.dwr_body())
    bad = frame(DWR, APP_BASE, peer.dwr_body(), version=0x02)  # neither 0x4D nor 0x01
    await peer.send(good + bad)
    answer = await peer.answer_to(parse_header(good).hbh)
    assert answer.result_code == SUCCESS
    assert await peer.closed_by_server()
