"""The client library's optional watchdog (WIRE.md section 4, the connection's timers driven by
one loop timer) over a real socket, against a minimal server that answers DWR or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ocs.edge.client import Client
from protocol.connection import Connection, LocalIdentity, PeerDecision, WatchdogReceived
from protocol.peer import Role

IDENTITY = LocalIdentity(origin_host="fake.test.local", origin_realm="test.local")


class FakeServer:
    """Answers CER and DPR through a sans-IO connection without timers; answers DWR only if
    `answer_dwr`; records when each DWR arrived."""

    def __init__(self, *, answer_dwr: bool) -> None:
        self.answer_dwr = answer_dwr
        self.dwr_times: list[float] = []
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        conn = Connection(
            role=Role.SERVER,
            identity=IDENTITY,
            peer_policy=lambda cer: PeerDecision(result_code=2001, applications=frozenset({4})),
            now=loop.time(),
            cer_timeout_s=None,
            watchdog_s=None,
        )
        while data := await reader.read(65_536):
            events = conn.receive_data(data, loop.time())
            dwr = any(isinstance(event, WatchdogReceived) for event in events)
            if dwr:
                self.dwr_times.append(loop.time())
            out = conn.data_to_send()
            if out and (self.answer_dwr or not dwr):
                writer.write(out)
        writer.close()


Start = Callable[..., Awaitable[FakeServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []

    async def start(*, answer_dwr: bool) -> FakeServer:
        srv = FakeServer(answer_dwr=answer_dwr)
        srv.server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
        servers.append(srv.server)
        return srv

    yield start
    for server in servers:
        server.close()


async def test_client_watchdog_answered_keeps_the_connection(start: Start) -> None:
    srv = await start(answer_dwr=True)
    client = await Client.connect(port=srv.port, origin_host="wd.test.local", watchdog_s=0.1)
    await asyncio.sleep(0.65)
    assert client.is_open
    assert len(srv.dwr_times) >= 3  # one per idle Tw, each answered
    await client.close()


async def test_client_watchdog_without_dwa_closes_after_another_tw(
    start: Start,
) -> None:
    srv = await start(answer_dwr=False)
    loop = asyncio.get_running_loop()
    client = await Client.connect(port=srv.port, origin_host="wd.test.local", watchdog_s=0.1)
    opened = loop.time()
    await asyncio.wait_for(client.wait_closed(), 2.0)
    assert 0.15 <= loop.time() - opened < 1.5  # DWR at Tw, close at 2 Tw
    assert len(srv.dwr_times) == 1
    assert not client.is_open


async def test_client_without_watchdog_sends_no_dwr(start: Start) -> None:
    srv = await start(answer_dwr=True)
    client = await Client.connect(port=srv.port, origin_host="wd.test.local")
    assert client.conn.timer_at() is None
    await asyncio.sleep(0.2)
    assert srv.dwr_times == [] and client.is_open
    await client.close()
