"""Fairness between peers over real sockets on 127.0.0.1 (docs/operations.md, "Fairness
between peers"): what the server read waits in one queue per peer, served one request per peer
in turn; a peer that sends much at once has it decoded slice by slice. A flooding peer is
served slower, never refused or dropped for being fast, and does not hold up another peer's
request behind its backlog."""

from __future__ import annotations

from typing import Any

from ocs.edge.server import DEFAULT_SERVE_BATCH, RequestContext
from protocol.messages import Answer
from tests.conftest import frame_of
from tests.server.helpers import ServerFactory, echo_cca, frame_as
from tests.server.rawpeer import RawPeer

CCR = frame_of("ccr-update-linked")  # Origin-Host upf1.test.local, as the vector CER
OTHER = "other.test.local"


async def connect_as(port: int, origin_host: str) -> RawPeer:
    peer = await RawPeer.connect(port, cer=False)
    await peer.send(frame_as("cer", origin_host))
    header, body = await peer.read()
    assert header.command_code == 257 and body["Result-Code"] == 2001
    return peer


async def test_another_peers_request_is_served_in_turn_not_behind_a_backlog(
    make_server: ServerFactory,
) -> None:
    """The busy peer's 400 requests are read first; the other peer's one, read right after,
    is served within the first batch (it waited behind all 400: a flooding neighbour took the
    normal peers' throughput, `ocs bench --hostile flood`), and all 400 are still answered."""
    served: list[str] = []

    def record(ctx: RequestContext, message: Any) -> Answer:
        served.append(message.origin_host)
        return echo_cca(ctx, message)

    srv = await make_server(handlers={272: record})
    busy = await RawPeer.connect(srv.port)
    other = await connect_as(srv.port, OTHER)
    busy.writer.write(CCR * 400)  # both in the kernel before the server reads either
    other.writer.write(frame_as("ccr-update-linked", OTHER))
    await busy.writer.drain()
    await other.writer.drain()
    _, body = await other.read()
    assert body["Result-Code"] == 2001
    assert [(await busy.read())[1]["Result-Code"] for _ in range(400)] == [2001] * 400
    assert len(served) == 401
    assert served.index(OTHER) < DEFAULT_SERVE_BATCH
    await busy.close()
    await other.close()


async def test_a_large_read_is_decoded_slice_by_slice_in_turn(make_server: ServerFactory) -> None:
    """Two peers each send ~100 KiB at once: their requests are served alternately (one per
    peer in turn) from the start, not one peer's whole read first."""
    served: list[str] = []

    def record(ctx: RequestContext, message: Any) -> Answer:
        served.append(message.origin_host)
        return echo_cca(ctx, message)

    srv = await make_server(handlers={272: record})
    first = await RawPeer.connect(srv.port)
    second = await connect_as(srv.port, OTHER)
    count = 100 * 1024 // len(CCR) + 1
    first.writer.write(CCR * count)
    second.writer.write(frame_as("ccr-update-linked", OTHER) * count)
    await first.writer.drain()
    await second.writer.drain()
    for peer in (first, second):
        assert [(await peer.read())[1]["Result-Code"] for _ in range(count)] == [2001] * count
    # within any 2 x serve_batch consecutive requests served (until one peer is done) both
    # peers appear: neither's read is served whole before the other's
    window = 2 * DEFAULT_SERVE_BATCH
    head = served[: count // 2]
    for start in range(0, len(head) - window, window):
        assert set(head[start : start + window]) == {"upf1.test.local", OTHER}
    await first.close()
    await second.close()
