"""The peer timers of WIRE.md section 4 as data in the sans-IO connection: the CER deadline and
the watchdog (Tw), driven with explicit `now` values, without an event loop."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.codes import ApplicationId, CommandCode, Flag
from protocol.connection import (
    AnswerReceived,
    Connection,
    ConnectionClosed,
    Event,
    LocalIdentity,
    PeerDecision,
    PeerOpened,
    WatchdogReceived,
)
from protocol.framing import FrameBuffer
from protocol.header import Header
from protocol.messages import DWA
from protocol.peer import PeerState, Role
from tests.conftest import frame_of

SERVER_ID = LocalIdentity(origin_host="ocs.test.local", origin_realm="test.local")
CLIENT_ID = LocalIdentity(origin_host="upf1.test.local", origin_realm="test.local")
APPS = frozenset({ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION})
T0 = 1_000.0  # any monotonic origin
CER_S = 10.0
TW = 30.0


def server(now: float = T0, **kw: Any) -> Connection:
    kw.setdefault("peer_policy", lambda cer: PeerDecision(result_code=2001, applications=APPS))
    kw.setdefault("cer_timeout_s", CER_S)
    kw.setdefault("watchdog_s", TW)
    return Connection(role=Role.SERVER, identity=SERVER_ID, now=now, **kw)


def frames(data: bytes) -> list[tuple[Header, dict[str, Any]]]:
    buf = FrameBuffer(1 << 20)
    buf.feed(data)
    out = []
    while (frame := buf.next_frame()) is not None:
        out.append((frame[0], msgspec.msgpack.decode(frame[1])))
    return out


def sent(conn: Connection) -> list[tuple[Header, dict[str, Any]]]:
    return frames(conn.data_to_send())


def opened(now: float = T0) -> Connection:
    """A server connection whose CER arrived at `now`; its CEA already taken."""
    conn = server(now)
    assert [type(e) for e in conn.receive_data(frame_of("cer"), now)] == [PeerOpened]
    sent(conn)
    return conn


def pair(now: float = T0, client_watchdog_s: float | None = TW) -> tuple[Connection, Connection]:
    """A client and a server connection, open at `now`; both outputs drained."""
    client = Connection(role=Role.CLIENT, identity=CLIENT_ID, now=now, watchdog_s=client_watchdog_s)
    srv = server(now)
    client.send_request(client.cer((4,)))
    srv.receive_data(client.data_to_send(), now)
    events = client.receive_data(srv.data_to_send(), now)
    assert [type(e) for e in events] == [AnswerReceived, PeerOpened]
    return client, srv


def state_of(conn: Connection) -> PeerState:
    return conn.state


def is_dwr(frames: list[tuple[Header, dict[str, Any]]], identity: LocalIdentity) -> bool:
    [(header, body)] = frames
    return (
        header.command_code == CommandCode.DEVICE_WATCHDOG
        and bool(header.flags & Flag.REQUEST)
        and header.application_id == ApplicationId.BASE
        and body == {"Origin-Host": identity.origin_host, "Origin-Realm": identity.origin_realm}
    )


def closed(events: list[Event], reason: str) -> bool:
    return events == [ConnectionClosed(reason)]


# --- the CER deadline -------------------------------------------------------------------------


def test_cer_deadline_closes_at_exactly_the_deadline_and_not_before() -> None:
    conn = server()
    assert conn.timer_at() == T0 + CER_S
    assert conn.handle_timer(T0 + CER_S - 0.001) == []
    assert state_of(conn) is PeerState.WAIT_CER and conn.timer_at() == T0 + CER_S
    events = conn.handle_timer(T0 + CER_S)
    assert closed(events, "no CER within deadline")
    assert state_of(conn) is PeerState.CLOSED
    assert conn.data_to_send() == b""  # closed without a word
    assert conn.timer_at() is None
    assert conn.handle_timer(T0 + 1_000) == []


def test_bytes_of_an_unfinished_cer_do_not_move_the_deadline() -> None:
    conn = server()
    cer = frame_of("cer")
    assert conn.receive_data(cer[:25], T0 + 9) == []
    assert conn.timer_at() == T0 + CER_S
    assert closed(conn.handle_timer(T0 + CER_S), "no CER within deadline")


def test_cer_in_time_disarms_the_deadline_and_arms_the_watchdog() -> None:
    conn = server()
    assert [type(e) for e in conn.receive_data(frame_of("cer"), T0 + 9.5)] == [PeerOpened]
    assert conn.timer_at() == T0 + 9.5 + TW
    assert conn.handle_timer(T0 + CER_S) == []  # a late call of the old deadline: nothing
    assert state_of(conn) is PeerState.OPEN
    sent(conn)  # the CEA
    assert conn.data_to_send() == b""


def test_refused_cer_leaves_no_timer() -> None:
    conn = server(peer_policy=lambda cer: PeerDecision(result_code=3010))
    events = conn.receive_data(frame_of("cer"), T0 + 1)
    assert isinstance(events[-1], ConnectionClosed)
    assert conn.timer_at() is None


def test_no_cer_deadline_when_none() -> None:
    conn = server(cer_timeout_s=None)
    assert conn.timer_at() is None
    assert conn.handle_timer(T0 + 10_000) == []
    assert state_of(conn) is PeerState.WAIT_CER
    conn.receive_data(frame_of("cer"), T0 + 500)
    assert conn.timer_at() == T0 + 500 + TW


# --- the watchdog -----------------------------------------------------------------------------


def test_dwr_after_tw_idle_and_not_before() -> None:
    conn = opened()
    assert conn.timer_at() == T0 + TW
    assert conn.handle_timer(T0 + TW - 0.001) == []
    assert conn.data_to_send() == b""
    assert conn.handle_timer(T0 + TW) == []
    assert is_dwr(sent(conn), SERVER_ID)
    assert conn.outstanding_requests == 1
    assert conn.timer_at() == T0 + 2 * TW  # the next Tw counts from the DWR
    assert state_of(conn) is PeerState.OPEN


def test_the_timers_dwr_is_byte_for_byte_the_adapters_former_dwr() -> None:
    by_timer, by_hand = opened(), opened()
    by_timer.handle_timer(T0 + TW)
    by_hand.send_request(by_hand.dwr())
    assert by_timer.data_to_send() == by_hand.data_to_send()


@pytest.mark.parametrize("chunk", [frame_of("dwr"), frame_of("ccr-initial")[:5]])
def test_any_received_bytes_push_the_dwr_back(chunk: bytes) -> None:
    conn = opened()
    conn.receive_data(chunk, T0 + 20)
    conn.data_to_send()  # a DWA, if the chunk was a DWR
    assert conn.timer_at() == T0 + TW  # a read does not move the wake-up ...
    assert conn.handle_timer(T0 + TW) == []  # ... the check finds traffic and moves it
    assert conn.data_to_send() == b""
    assert conn.timer_at() == T0 + 20 + TW
    assert conn.handle_timer(T0 + 20 + TW - 0.001) == []
    assert conn.data_to_send() == b""
    assert conn.handle_timer(T0 + 20 + TW) == []
    assert is_dwr(sent(conn), SERVER_ID)


def test_no_dwa_within_another_tw_closes() -> None:
    conn = opened()
    conn.handle_timer(T0 + TW)
    assert is_dwr(sent(conn), SERVER_ID)
    assert conn.handle_timer(T0 + 2 * TW - 0.001) == []
    assert state_of(conn) is PeerState.OPEN
    events = conn.handle_timer(T0 + 2 * TW)
    assert closed(events, "watchdog: no DWA")
    assert state_of(conn) is PeerState.CLOSED
    assert conn.data_to_send() == b""
    assert conn.timer_at() is None
    assert conn.outstanding_requests == 0


def test_a_dwa_clears_the_outstanding_dwr() -> None:
    client, srv = pair(client_watchdog_s=None)
    srv.handle_timer(T0 + TW)
    [event] = client.receive_data(srv.data_to_send(), T0 + TW + 1)
    assert isinstance(event, WatchdogReceived)  # the client answered it
    [answer] = srv.receive_data(client.data_to_send(), T0 + TW + 5)
    assert isinstance(answer, AnswerReceived) and isinstance(answer.message, DWA)
    assert srv.outstanding_requests == 0
    assert srv.handle_timer(T0 + 2 * TW) == []  # not closed: answered; idle only Tw - 5
    assert state_of(srv) is PeerState.OPEN and srv.data_to_send() == b""
    assert srv.timer_at() == T0 + 2 * TW + 5
    assert srv.handle_timer(T0 + 2 * TW + 5) == []  # idle for Tw again: a new DWR, no close
    assert is_dwr(sent(srv), SERVER_ID)
    assert state_of(srv) is PeerState.OPEN


def test_other_traffic_while_a_dwr_is_outstanding_pushes_the_close_back() -> None:
    """docs/protocol.md: any received message is a sign of life, a DWA or not."""
    conn = opened()
    conn.handle_timer(T0 + TW)
    sent(conn)
    conn.receive_data(frame_of("dwr"), T0 + TW + 15)  # the peer's own DWR, not a DWA
    sent(conn)
    assert conn.handle_timer(T0 + 2 * TW) == []
    assert conn.data_to_send() == b""  # no second DWR: one is outstanding
    assert conn.timer_at() == T0 + 2 * TW + 15
    assert closed(conn.handle_timer(T0 + 2 * TW + 15), "watchdog: no DWA")


def test_a_mute_peer_driven_by_timer_at_is_closed_after_two_tw() -> None:
    """An adapter that calls `handle_timer` exactly at `timer_at()` and nothing else."""
    conn = opened()
    log: list[tuple[float, str]] = []
    while (at := conn.timer_at()) is not None:
        for event in conn.handle_timer(at):
            assert isinstance(event, ConnectionClosed)
            log.append((at, event.reason))
        if conn.data_to_send():
            log.append((at, "DWR"))
    assert log == [(T0 + TW, "DWR"), (T0 + 2 * TW, "watchdog: no DWA")]


def test_closing_state_sends_no_dwr() -> None:
    conn = opened()
    conn.send_request(conn.dpr(2))
    sent(conn)
    assert state_of(conn) is PeerState.CLOSING
    assert conn.handle_timer(T0 + TW) == []
    assert conn.data_to_send() == b""


# --- closed -----------------------------------------------------------------------------------


def test_timer_at_is_none_once_closed() -> None:
    waiting, open_ = server(), opened()
    for conn in (waiting, open_):
        assert conn.timer_at() is not None
        conn.connection_lost()
        assert conn.timer_at() is None
        assert conn.handle_timer(T0 + 1_000) == []
        assert conn.data_to_send() == b""
    client, srv = pair()
    client.send_request(client.dpr(2))
    srv.receive_data(client.data_to_send(), T0 + 1)
    assert [type(e) for e in client.receive_data(srv.data_to_send(), T0 + 2)][-1] is (
        ConnectionClosed
    )
    assert client.timer_at() is None


# --- the client role --------------------------------------------------------------------------


def test_client_has_no_timer_before_cea_then_the_watchdog() -> None:
    client = Connection(
        role=Role.CLIENT, identity=CLIENT_ID, now=T0, cer_timeout_s=CER_S, watchdog_s=TW
    )
    assert client.timer_at() is None  # the client sends the CER: no CER deadline
    client.send_request(client.cer((4,)))
    assert client.timer_at() is None
    client, srv = pair()
    assert client.timer_at() == T0 + TW
    assert client.handle_timer(T0 + TW) == []
    out = client.data_to_send()
    assert is_dwr(frames(out), CLIENT_ID)
    [event] = srv.receive_data(out, T0 + TW + 1)
    assert isinstance(event, WatchdogReceived)
    [answer] = client.receive_data(srv.data_to_send(), T0 + TW + 2)
    assert isinstance(answer, AnswerReceived) and isinstance(answer.message, DWA)
    assert client.handle_timer(T0 + 2 * TW) == []
    assert state_of(client) is PeerState.OPEN and client.data_to_send() == b""


def test_client_without_watchdog_has_no_timer() -> None:
    client, _ = pair(client_watchdog_s=None)
    assert client.timer_at() is None
    assert client.handle_timer(T0 + 10 * TW) == []
    assert client.data_to_send() == b""
