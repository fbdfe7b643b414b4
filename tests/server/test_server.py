"""The server over real sockets on 127.0.0.1: peer procedures, rejections, timers."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from structlog.testing import capture_logs

from ocs.edge.client import Client, ClientError
from ocs.edge.server import (
    PeerEntry,
    default_peer_policy,
)
from protocol.codec import encode_frame
from protocol.codes import ApplicationId, Flag, ReAuthRequestType, ResultCode
from protocol.messages import CER, DWR, RAA, RAR, Answer, ErrorAnswer, Request
from tests.conftest import VECTORS, frame_of
from tests.server.helpers import HoldingGate, ServerFactory, echo_cca
from tests.server.rawpeer import RawPeer

INT_EXPECT = [v for v in VECTORS if "expect" in v and isinstance(v["expect"]["result"], int)]
CLOSE_EXPECT = [v for v in VECTORS if "expect" in v and v["expect"]["result"] == "close"]


@pytest.mark.parametrize("vector", INT_EXPECT, ids=lambda v: v["name"])
async def test_rejection_vectors_answered_and_connection_goes_on(
    make_server: ServerFactory, vector: dict[str, Any]
) -> None:
    srv = await make_server()
    peer = await RawPeer.connect(srv.port)
    frame = bytes.fromhex(vector["hex"])
    await peer.send(frame[:7])  # split across writes
    await asyncio.sleep(0.01)
    await peer.send(frame[7:])
    header, body = await peer.read()
    expect = vector["expect"]
    assert body["Result-Code"] == expect["result"]
    assert bool(header.flags & Flag.ERROR) == expect.get("error_flag", False)
    if "failed_avp" in expect:
        assert list(body["Failed-AVP"]) == [expect["failed_avp"]]
    assert header.end_to_end == int.from_bytes(frame[16:20], "big")
    await peer.send(frame_of("dwr"))
    header, body = await peer.read()
    assert header.command_code == 280 and body["Result-Code"] == 2001
    await peer.close()


@pytest.mark.parametrize("vector", CLOSE_EXPECT, ids=lambda v: v["name"])
async def test_framing_errors_close_only_that_connection(
    make_server: ServerFactory, vector: dict[str, Any]
) -> None:
    srv = await make_server()
    bystander = await RawPeer.connect(srv.port)
    peer = await RawPeer.connect(srv.port)
    await peer.send(bytes.fromhex(vector["hex"]))
    assert await peer.closed_by_server()
    await bystander.send(frame_of("dwr"))
    _, body = await bystander.read()
    assert body["Result-Code"] == 2001
    await bystander.close()


async def test_request_before_cer_is_3010_then_closed(make_server: ServerFactory) -> None:
    srv = await make_server()
    peer = await RawPeer.connect(srv.port, cer=False)
    await peer.send(frame_of("dwr"))
    header, body = await peer.read()
    assert body["Result-Code"] == 3010 and header.flags & Flag.ERROR
    assert await peer.closed_by_server()


async def test_no_cer_within_deadline_is_closed(make_server: ServerFactory) -> None:
    srv = await make_server(cer_timeout_s=0.2)
    peer = await RawPeer.connect(srv.port, cer=False)
    assert await peer.closed_by_server(timeout=2.0)


async def test_server_sends_dwr_when_idle_and_closes_without_dwa(
    make_server: ServerFactory,
) -> None:
    srv = await make_server(watchdog_s=0.2)
    peer = await RawPeer.connect(srv.port)
    header, body = await peer.read(timeout=2.0)
    assert header.is_request and header.command_code == 280
    assert body["Origin-Host"] == srv.config.origin_host
    assert await peer.closed_by_server(timeout=2.0)  # we never answer


async def test_watchdog_answered_keeps_connection(make_server: ServerFactory) -> None:
    srv = await make_server(watchdog_s=0.15)
    client = await Client.connect(port=srv.port, origin_host="wd.test.local")
    await asyncio.sleep(0.8)  # several Tw: the client library answers every DWR
    assert client.is_open
    answer = await client.request(DWR(origin_host="wd.test.local", origin_realm="test.local"))
    assert answer.result_code == 2001
    await client.close()


async def test_configured_peer_list_refuses_unlisted_hosts(make_server: ServerFactory) -> None:
    srv = await make_server(peers={"known.test.local": PeerEntry(applications=frozenset({4}))})
    with pytest.raises(ClientError, match="3010"):
        await Client.connect(port=srv.port, origin_host="stranger.test.local")
    client = await Client.connect(port=srv.port, origin_host="known.test.local")
    assert client.peer is not None and client.peer.auth_application_id == (4,)
    await client.close()


async def test_a_refused_peer_is_logged_with_its_origin_host(make_server: ServerFactory) -> None:
    """Issue 12: the line of a refused CER names the Origin-Host it claimed (and the
    Result-Code is logged as a number with its name, ocs.edge.logs)."""
    srv = await make_server(peers={"known.test.local": PeerEntry(applications=frozenset({4}))})
    with capture_logs() as logs:
        with pytest.raises(ClientError, match="3010"):
            await Client.connect(port=srv.port, origin_host="stranger.test.local")
        for _ in range(100):
            if any(e["event"] == "connection.close" for e in logs):
                break
            await asyncio.sleep(0.01)
    (closed,) = [e for e in logs if e["event"] == "connection.close"]
    assert closed["peer"] == "stranger.test.local"
    assert closed["reason"] == "CER refused: 3010 peer refused by policy"


async def test_a_name_bound_to_addresses_is_refused_from_any_other(
    make_server: ServerFactory,
) -> None:
    """WIRE.md 4: the peer list can bind an Origin-Host to the addresses it may connect from;
    from another address the CER gets 3010 and the connection is closed."""
    cc = frozenset({4})
    srv = await make_server(
        peers={
            "here.test.local": PeerEntry(
                applications=cc, networks=(ipaddress.ip_network("127.0.0.0/8"),)
            ),
            "elsewhere.test.local": PeerEntry(
                applications=cc, networks=(ipaddress.ip_network("192.0.2.0/24"),)
            ),
        }
    )
    client = await Client.connect(port=srv.port, origin_host="here.test.local")
    assert client.is_open
    await client.close()
    peer = await RawPeer.connect(srv.port, cer=False)
    cer = CER(
        origin_host="elsewhere.test.local",
        origin_realm="test.local",
        host_ip_address=("192.0.2.7",),  # what a CER says is not where it comes from
        vendor_id=0,
        product_name="p",
        auth_application_id=(4,),
    )
    await peer.send(
        encode_frame(
            cer, flags=0x80, command_code=257, application_id=0, hop_by_hop=1, end_to_end=1
        )
    )
    header, body = await peer.read()
    assert body["Result-Code"] == 3010 and header.flags & Flag.ERROR
    assert await peer.closed_by_server()


def test_peer_list_binds_names_to_networks() -> None:
    cer = CER(
        origin_host="pgw1.operator.net",
        origin_realm="operator.net",
        host_ip_address=("10.1.2.3",),
        vendor_id=0,
        product_name="p",
        auth_application_id=(4,),
    )
    bound = {
        "pgw1.operator.net": PeerEntry(
            applications=frozenset({4}),
            networks=(ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("2001:db8::/32")),
        )
    }
    for ip in ("10.1.2.3", "10.1.2.254", "::ffff:10.1.2.3", "2001:db8::7"):
        assert default_peer_policy(bound, ip)(cer).result_code == 2001, ip
    for other in ("10.1.3.1", "127.0.0.1", "::1", "2001:db9::1", None, "x"):
        assert default_peer_policy(bound, other)(cer).result_code == 3010, other
    anywhere = {"pgw1.operator.net": PeerEntry(applications=frozenset({4}))}
    assert default_peer_policy(anywhere, "203.0.113.9")(cer).result_code == 2001


def test_default_policy_accepts_loopback_only() -> None:
    cer = CER(
        origin_host="a",
        origin_realm="b",
        host_ip_address=("1.2.3.4",),
        vendor_id=0,
        product_name="p",
        auth_application_id=(4,),
    )
    for ip in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        decision = default_peer_policy(None, ip)(cer)
        assert decision.result_code == 2001
        assert decision.applications == {4, ApplicationId.ADMINISTRATION}
    refused: tuple[str | None, ...] = ("10.0.0.1", "192.168.1.1", "2001:db8::1", None, "x")
    for remote in refused:
        assert default_peer_policy(None, remote)(cer).result_code == ResultCode.UNKNOWN_PEER


async def test_unserved_command_is_5012_and_validation_errors_come_first(
    make_server: ServerFactory,
) -> None:
    srv = await make_server()
    peer = await RawPeer.connect(srv.port)
    await peer.send(frame_of("ccr-initial"))
    _, body = await peer.read()
    assert body["Result-Code"] == 5012 and body["Session-Id"] == "upf1.test.local;1700000000;1"
    await peer.send(frame_of("bad-missing-session-id"))
    _, body = await peer.read()
    assert body["Result-Code"] == 5005


async def test_outstanding_limit_answers_3004_for_the_excess(make_server: ServerFactory) -> None:
    gate = HoldingGate()
    srv = await make_server(max_pending_requests=3, handlers={272: echo_cca}, gate=gate)
    peer = await RawPeer.connect(srv.port)
    ccr = frame_of("ccr-update-linked")
    await peer.send(ccr * 5)
    for _ in range(2):
        header, body = await peer.read()
        assert body["Result-Code"] == 3004 and header.flags & Flag.ERROR
    assert len(gate.held) == 3
    gate.flush()
    codes = [(await peer.read())[1]["Result-Code"] for _ in range(3)]
    assert codes == [2001, 2001, 2001]
    await peer.send(ccr)
    await asyncio.sleep(0.05)
    gate.flush()
    assert (await peer.read())[1]["Result-Code"] == 2001


async def test_server_initiated_request_reaches_client_callback(
    make_server: ServerFactory,
) -> None:
    srv = await make_server()
    seen: list[Request] = []

    def on_request(header: Any, message: Request) -> Answer:
        seen.append(message)
        return RAA(
            result_code=2001,
            origin_host="cb.test.local",
            origin_realm="test.local",
            session_id=getattr(message, "session_id", None),
        )

    client = await Client.connect(port=srv.port, origin_host="cb.test.local", on_request=on_request)
    [handle] = list(srv.peers_of("cb.test.local"))
    rar = RAR(
        origin_host=srv.config.origin_host,
        origin_realm="test.local",
        session_id="s-1",
        destination_realm="test.local",
        destination_host="cb.test.local",
        auth_application_id=4,
        re_auth_request_type=ReAuthRequestType.AUTHORIZE_ONLY,
        rating_group=(10,),
    )
    answer = await asyncio.wait_for(handle.send_request(rar), 2.0)
    assert isinstance(answer, RAA) and answer.result_code == 2001 and answer.session_id == "s-1"
    assert seen == [rar]
    await client.close()


async def test_many_requests_in_flight_are_matched(make_server: ServerFactory) -> None:
    srv = await make_server()
    client = await Client.connect(port=srv.port, origin_host="many.test.local")
    dwr = DWR(origin_host="many.test.local", origin_realm="test.local")
    exchanges = await asyncio.gather(*(client.exchange(dwr) for _ in range(200)))
    assert all(x.header.hop_by_hop == x.request.hop_by_hop for x in exchanges)
    assert len({x.request.hop_by_hop for x in exchanges}) == 200
    await client.close()


async def test_stop_says_dpr_to_connected_peers(make_server: ServerFactory) -> None:
    srv = await make_server()
    client = await Client.connect(port=srv.port, origin_host="bye.test.local")
    await srv.stop()
    await asyncio.wait_for(client.wait_closed(), 3.0)
    assert not client.is_open


async def test_request_read_with_the_dpa_is_answered_before_close(
    make_server: ServerFactory,
) -> None:
    """Shutdown: the server says DPR; a request the peer sent just before its DPA (in the same
    read) was read, so it is answered before the connection closes (WIRE.md section 10)."""
    gate = HoldingGate()  # answers wait, as they do for group commit
    srv = await make_server(handlers={272: echo_cca}, gate=gate)
    peer = await RawPeer.connect(srv.port)
    stopping = asyncio.create_task(srv.stop())
    header, _ = await peer.read()
    assert header.is_request and header.command_code == 282
    dpa = ErrorAnswer(result_code=2001, origin_host="upf1.test.local", origin_realm="test.local")
    frame = encode_frame(
        dpa,
        flags=0,
        command_code=282,
        application_id=0,
        hop_by_hop=header.hop_by_hop,
        end_to_end=header.end_to_end,
    )
    await peer.send(frame_of("ccr-update-linked") + frame)
    await asyncio.sleep(0.1)  # the DPA has been read; the answer is still held
    gate.flush()
    answer_header, answer = await peer.read()
    assert answer_header.command_code == 272 and answer["Result-Code"] == 2001
    assert await peer.closed_by_server()
    await stopping
