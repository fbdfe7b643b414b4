"""The HTTP listener's bounds, over real sockets on 127.0.0.1: connections beyond its limit are
closed at once, a request head that does not come in time is not waited for, a route that
raises is a 500 and the listener goes on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

import ocs.edge.http as http_module
from ocs.edge.http import HttpListener, Response, text


def ok() -> Response:
    return text(200, "ok\n")


def broken() -> Response:
    raise RuntimeError("a bug")


async def request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def listening(max_connections: int = 16) -> AsyncIterator[HttpListener]:
    listener = HttpListener(
        host="127.0.0.1",
        port=0,
        routes={"/ok": ok, "/broken": broken},
        max_connections=max_connections,
    )
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


async def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    async with listening(max_connections=2) as listener:
        held = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(2)]
        await asyncio.sleep(0.05)  # both accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
        writer.close()
        assert listener.refused == 1
        for _, w in held:
            w.close()
        async with asyncio.timeout(5):
            while True:  # once the held ones are gone, requests are served again
                answer = await request(listener.port, b"GET /ok HTTP/1.1\r\n\r\n")
                if answer:
                    break
                await asyncio.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok\n")


async def test_a_head_that_does_not_come_in_time_is_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_module, "HEAD_TIMEOUT_S", 0.2)
    async with listening() as listener:
        # half a request line, then nothing: closed without an answer
        assert await request(listener.port, b"GET /ok HT") == b""
        assert listener.served == 0


async def test_a_route_that_raises_is_a_500_and_the_listener_goes_on() -> None:
    async with listening() as listener:
        with capture_logs() as events:
            answer = await request(listener.port, b"GET /broken HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 500 ")
        (failed,) = [e for e in events if e["event"] == "metrics.failed"]
        assert failed["path"] == "/broken" and "RuntimeError: a bug" in failed["error"]
        assert (await request(listener.port, b"GET /ok?x=1 HTTP/1.0\r\n\r\n")).startswith(
            b"HTTP/1.1 200 "
        )
