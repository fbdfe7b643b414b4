"""The echo server (`python -m ocs.tools.echo`): frames, decodes, answers; the bench's ceiling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.tools.spawn import SpawnedServer, echo_argv
from protocol.codec import decode_body
from protocol.codes import CommandCode, Flag
from protocol.header import unpack_header
from protocol.messages import CCA, CEA, ErrorAnswer
from tests.conftest import VECTOR, frame_of


@pytest.fixture
def echo_port(tmp_path: Path) -> Iterator[int]:
    echo = SpawnedServer(echo_argv(), tmp_path, name="echo", ready_timeout=20.0)
    with echo:
        yield echo.port
        assert echo.stop(10) == 0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame: bytes
) -> tuple[int, int, int, int, bytes]:
    writer.write(frame)
    await writer.drain()
    head = await asyncio.wait_for(reader.readexactly(20), 5)
    header = unpack_header(head)
    body = await asyncio.wait_for(reader.readexactly(header.length - 20), 5)
    return header.flags, header.command_code, header.hop_by_hop, header.end_to_end, body


async def test_echo_answers_the_ccr_vectors(echo_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
    try:
        flags, code, _, _, body = await _exchange(reader, writer, frame_of("cer"))
        cea = decode_body(code, False, body)
        assert isinstance(cea, CEA) and cea.result_code == 2001 and not flags & Flag.REQUEST
        for name in ("ccr-initial", "ccr-update-linked", "ccr-termination", "ccr-event-debit"):
            frame = frame_of(name)
            sent = unpack_header(frame)
            flags, code, hbh, e2e, body = await _exchange(reader, writer, frame)
            assert (code, hbh, e2e) == (272, sent.hop_by_hop, sent.end_to_end)
            assert not flags & (Flag.REQUEST | Flag.ERROR)
            cca = decode_body(CommandCode.CREDIT_CONTROL, False, body)
            assert isinstance(cca, CCA) and cca.result_code == 2001
            expected = VECTOR[name]["body"]
            assert cca.session_id == expected["Session-Id"]
            assert cca.cc_request_type == expected["CC-Request-Type"]
            assert cca.cc_request_number == expected["CC-Request-Number"]
        # it decodes and validates like the real server: a bad body gets the codec's answer
        flags, code, _, _, body = await _exchange(
            reader, writer, frame_of("bad-missing-session-id")
        )
        err = decode_body(code, False, body)
        assert isinstance(err, CCA | ErrorAnswer)
        assert err.result_code == VECTOR["bad-missing-session-id"]["expect"]["result"]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_echo_answers_pipelined_requests_split_across_writes(echo_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
    try:
        await _exchange(reader, writer, frame_of("cer"))
        frame = frame_of("ccr-initial")
        stream = frame * 50
        for i in range(0, len(stream), 333):  # many requests, cut at arbitrary points
            writer.write(stream[i : i + 333])
        await writer.drain()
        for _ in range(50):
            head = await asyncio.wait_for(reader.readexactly(20), 5)
            header = unpack_header(head)
            body = await asyncio.wait_for(reader.readexactly(header.length - 20), 5)
            cca = decode_body(272, False, body)
            assert isinstance(cca, CCA) and cca.result_code == 2001
    finally:
        writer.close()
        await writer.wait_closed()
