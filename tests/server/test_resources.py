"""Resource bounds of the server over real sockets on 127.0.0.1 (docs/operations.md, "Resource
bounds"): connections in total, per peer and before CER; the outstanding-request limit per peer
across its connections; output flow control. The same bounds against `ocs serve` with a low
descriptor limit and a peer that never reads are in test_resources_process.py."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from ocs.edge.client import Client, ClientError
from ocs.edge.server import (
    DESCRIPTOR_RESERVE,
    ConnectionLimits,
    ServerConfig,
)
from protocol.codes import Flag, ResultCode
from tests.conftest import frame_of
from tests.server.helpers import HoldingGate, ServerFactory, echo_cca, until
from tests.server.rawpeer import RawPeer

CCR = frame_of("ccr-update-linked")  # Origin-Host upf1.test.local, as the vector CER


# --- limits derived from the descriptor limit ------------------------------------------------


def test_limits_are_derived_from_the_descriptor_limit_keeping_the_reserve() -> None:
    default = ServerConfig()
    limits = ConnectionLimits.derive(default, 256)
    assert limits.total == 256 - DESCRIPTOR_RESERVE
    assert limits.unopened == limits.total // 4
    assert limits.per_peer == limits.total // 4
    big = ConnectionLimits.derive(default, 1 << 20)
    assert big.per_peer == 64 and big.unopened == big.total // 4
    tiny = ConnectionLimits.derive(default, 10)  # less than the reserve: still one of each
    assert (tiny.total, tiny.per_peer, tiny.unopened) == (1, 1, 1)
    configured = ServerConfig(max_connections=10, max_connections_per_peer=50)
    assert ConnectionLimits.derive(configured, 256) == ConnectionLimits(
        total=10, per_peer=10, unopened=2
    )


# --- the outstanding-request limit is per peer -----------------------------------------------


async def test_outstanding_limit_is_per_peer_across_its_connections(
    make_server: ServerFactory,
) -> None:
    """WIRE.md section 4: a peer with more than its limit of outstanding requests gets 3004
    for the excess, whatever connection they come on (it was per connection: two connections
    of one peer could hold twice the limit)."""
    gate = HoldingGate()
    srv = await make_server(max_pending_requests=3, handlers={272: echo_cca}, gate=gate)
    first = await RawPeer.connect(srv.port)
    second = await RawPeer.connect(srv.port)  # the same Origin-Host (the vector CER)
    await first.send(CCR * 2)
    await until(lambda: len(gate.held) == 2)
    await second.send(CCR * 2)
    header, body = await second.read()
    assert body["Result-Code"] == ResultCode.TOO_BUSY and header.flags & Flag.ERROR
    assert len(gate.held) == 3
    # Another peer has a budget of its own.
    other = await Client.connect(port=srv.port, origin_host="other.test.local")
    gate.flush()
    assert [(await first.read())[1]["Result-Code"] for _ in range(2)] == [2001, 2001]
    assert (await second.read())[1]["Result-Code"] == 2001
    # Requests a lost connection never had answered leave the budget with it. (A connection
    # whose peer is at its limit is not read, so its close is seen once answers free the
    # budget and reading resumes.)
    await first.send(CCR * 3)
    await until(lambda: len(gate.held) == 3)
    await first.close()
    gate.flush()  # answers to a closed connection go nowhere
    await until(lambda: len(srv.connections) == 2)
    await second.send(CCR * 4)
    await until(lambda: len(gate.held) == 3)
    _, body = await second.read()
    assert body["Result-Code"] == ResultCode.TOO_BUSY
    gate.flush()
    assert [(await second.read())[1]["Result-Code"] for _ in range(3)] == [2001] * 3
    await second.close()
    await other.close()


async def test_a_peer_at_its_outstanding_limit_is_not_read_until_answers_free_it(
    make_server: ServerFactory,
) -> None:
    """A flooding peer costs the server nothing beyond its limit: once it has as many requests
    outstanding as it may, its connections are not read (what it sends waits in the kernel),
    instead of every further request being decoded and refused; reading resumes as its
    answers go out, and nothing it sent is lost."""
    gate = HoldingGate()
    srv = await make_server(max_pending_requests=3, handlers={272: echo_cca}, gate=gate)
    peer = await RawPeer.connect(srv.port)
    await peer.send(CCR * 3)
    await until(lambda: len(gate.held) == 3)
    (handle,) = srv.budget_held
    await peer.send(CCR * 5)  # not read while the three are outstanding
    await asyncio.sleep(0.2)
    assert len(gate.held) == 3 and srv.budget_held == {handle}
    gate.flush()  # three answers go out: the five are read (three held, two refused 3004)
    await until(lambda: len(gate.held) == 3)
    codes = [(await peer.read())[1]["Result-Code"] for _ in range(5)]
    assert codes == [2001] * 3 + [ResultCode.TOO_BUSY] * 2
    gate.flush()
    assert [(await peer.read())[1]["Result-Code"] for _ in range(3)] == [2001] * 3
    await peer.close()


# --- connection limits -------------------------------------------------------------------------


async def test_connections_beyond_the_per_peer_limit_are_refused_3004_at_cer(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(max_connections_per_peer=2)
    a = await Client.connect(port=srv.port, origin_host="p.test.local")
    b = await Client.connect(port=srv.port, origin_host="p.test.local")
    with pytest.raises(ClientError, match="3004"):
        await Client.connect(port=srv.port, origin_host="p.test.local")
    other = await Client.connect(port=srv.port, origin_host="q.test.local")  # its own count
    assert srv.stats["refused_per_peer"] == 1
    assert len(list(srv.peers_of("p.test.local"))) == 2
    await a.close()
    await until(lambda: len(list(srv.peers_of("p.test.local"))) == 1)
    c = await Client.connect(port=srv.port, origin_host="p.test.local")  # room again
    for client in (b, c, other):
        await client.close()


async def test_connections_beyond_the_total_are_closed_at_once_and_counted(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(max_connections=3)
    clients = [
        await Client.connect(port=srv.port, origin_host=f"p{i}.test.local") for i in (1, 2, 3)
    ]
    with capture_logs() as logs:
        extra = [await RawPeer.connect(srv.port, cer=False) for _ in range(20)]
        for peer in extra:
            assert await peer.closed_by_server(timeout=2.0)
    assert srv.stats["refused_total"] == 20
    refusals = [e for e in logs if e["event"] == "connection.refused"]
    assert len(refusals) == 1 and refusals[0]["refused_total"] == 1  # one line, not twenty
    assert all(c.is_open for c in clients)  # the peers that were there are untouched
    await clients[0].close()
    await until(lambda: len(srv.connections) == 2)
    again = await Client.connect(port=srv.port, origin_host="p4.test.local")
    for client in (*clients[1:], again):
        await client.close()


async def test_connections_without_cer_beyond_their_limit_close_the_oldest(
    make_server: ServerFactory,
) -> None:
    """A flood of connections that never send CER cannot lock a peer out: beyond the limit of
    such connections the oldest one is closed, so a peer that sends its CER after connecting
    gets in (the flood would have to fill the limit in less than that peer's round trip)."""
    srv = await make_server(max_unopened_connections=4)
    idle = [await RawPeer.connect(srv.port, cer=False) for _ in range(10)]
    await until(lambda: srv.stats["evicted_unopened"] == 6)
    for peer in idle[:6]:
        assert await peer.closed_by_server(timeout=2.0)
    assert len(srv.connections) == 4
    client = await Client.connect(port=srv.port, origin_host="late.test.local")
    # Its connection was the newest without CER: the oldest idle one made room for it.
    assert client.is_open and srv.stats["evicted_unopened"] == 7
    assert len(srv.connections) == 4
    more = [await RawPeer.connect(srv.port, cer=False) for _ in range(4)]
    await until(lambda: srv.stats["evicted_unopened"] == 10)
    assert client.is_open  # an open peer is never evicted: it no longer counts here
    for peer in more:
        await peer.close()
    for peer in idle[6:]:
        await peer.close()
    await client.close()


# --- output flow control ------------------------------------------------------------------------


async def test_a_peer_that_does_not_read_is_not_read_and_closed_after_tw(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(watchdog_s=0.5, output_high_water_bytes=16 * 1024)
    peer = await RawPeer.connect(srv.port)
    bystander = await Client.connect(port=srv.port, origin_host="b.test.local")
    dwr = frame_of("dwr") * 2_000
    sent = 0
    with pytest.raises(ConnectionError):
        async with asyncio.timeout(10):
            while True:
                peer.writer.write(dwr)
                sent += len(dwr)
                await peer.writer.drain()
    assert srv.stats["undrained_closed"] == 1
    assert sent < 64 * 1024 * 1024  # the server stopped reading long before
    assert bystander.is_open
    await bystander.close()


async def test_a_slow_reader_is_paused_then_resumed_and_loses_nothing(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(watchdog_s=5.0, output_high_water_bytes=4 * 1024)
    peer = await RawPeer.connect(srv.port)
    count = 20_000
    await peer.send(frame_of("dwr") * count)  # ~1.2 MB of DWR, answers not read yet
    await asyncio.sleep(0.3)
    received = 0
    while received < count:  # reading lets the server drain, resume and read the rest
        header, body = await peer.read(timeout=5.0)
        assert header.command_code == 280 and body["Result-Code"] == 2001
        received += 1
    assert srv.stats["undrained_closed"] == 0
    await peer.close()


async def test_a_closed_connection_whose_output_never_drains_is_aborted_after_tw(
    make_server: ServerFactory,
) -> None:
    """A close (here after a framing error) writes what is queued first; a peer that never
    reads would keep that connection, its buffers and its descriptor forever."""
    srv = await make_server(watchdog_s=0.5, output_high_water_bytes=64 * 1024 * 1024)
    peer = await RawPeer.connect(srv.port)
    dwr = frame_of("dwr") * 20_000
    for _ in range(8):  # ~10 MB of answers, more than the kernel buffers take
        peer.writer.write(dwr)
        await asyncio.sleep(0.05)
    await peer.send(frame_of("bad-version"))  # framing error: the server closes
    await until(lambda: srv.stats["undrained_closed"] == 1, timeout=5.0)
    await until(lambda: not srv.connections)
    peer.writer.transport.abort()


async def test_a_peer_held_at_its_limit_is_read_again_at_half_of_it(
    make_server: ServerFactory,
) -> None:
    """Reading resumes once the peer has at most half its limit outstanding, not at the first
    answer: the read then brings a batch (at the first answer, a flooding peer's next read of
    up to 256 KiB was one request accepted and the rest refused 3004)."""
    gate = HoldingGate()
    srv = await make_server(max_pending_requests=4, handlers={272: echo_cca}, gate=gate)
    peer = await RawPeer.connect(srv.port)
    await peer.send(CCR * 4)
    await until(lambda: len(gate.held) == 4)
    await peer.send(CCR * 3)  # not read while the peer is at its limit
    gate.held.pop(0)()  # one answer: 3 outstanding, more than half of 4
    assert (await peer.read())[1]["Result-Code"] == 2001
    await asyncio.sleep(0.2)
    assert len(gate.held) == 3 and len(srv.budget_held) == 1
    gate.held.pop(0)()  # 2 outstanding: half; the three are read, two fit, one is refused
    codes = [(await peer.read())[1]["Result-Code"] for _ in range(2)]
    assert codes == [2001, ResultCode.TOO_BUSY]
    await until(lambda: len(gate.held) == 4)
    gate.flush()
    assert [(await peer.read())[1]["Result-Code"] for _ in range(4)] == [2001] * 4
    await peer.close()
