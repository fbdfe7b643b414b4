"""The outstanding-request limit is per peer (WIRE.md section 4): connections that share a
`PendingBudget` (a server gives one to every connection of an Origin-Host) answer 3004 for
requests beyond the limit across all of them."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.connection import (
    Connection,
    LocalIdentity,
    PeerDecision,
    PendingBudget,
    RequestReceived,
    RequestRejected,
)
from protocol.errors import ProtocolError
from protocol.framing import FrameBuffer
from protocol.header import Header
from protocol.peer import Role
from tests.conftest import frame_of

SERVER_ID = LocalIdentity(origin_host="ocs.test.local", origin_realm="test.local")
CCR = frame_of("ccr-update-linked")


def accept(cer: Any) -> PeerDecision:
    return PeerDecision(result_code=2001, applications=frozenset({4}))


class Peers:
    """The budgets a server would keep, one per Origin-Host."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.budgets: dict[str, PendingBudget] = {}
        self.asked: list[str] = []

    def budget(self, origin_host: str) -> PendingBudget:
        self.asked.append(origin_host)
        return self.budgets.setdefault(origin_host, PendingBudget(self.limit))


def opened(peers: Peers, limit: int = 1024) -> Connection:
    conn = Connection(
        role=Role.SERVER,
        identity=SERVER_ID,
        peer_policy=accept,
        max_pending_requests=limit,
        peer_budget=peers.budget,
        now=0.0,
    )
    conn.receive_data(frame_of("cer"), 0.0)
    conn.data_to_send()
    return conn


def result_codes(conn: Connection) -> list[int]:
    buf = FrameBuffer(1 << 20)
    buf.feed(conn.data_to_send())
    codes = []
    while (frame := buf.next_frame()) is not None:
        codes.append(msgspec.msgpack.decode(frame[1])["Result-Code"])
    return codes


def test_the_budget_is_asked_once_per_accepted_cer_and_replaces_the_connection_limit() -> None:
    peers = Peers(limit=2)
    a, b = opened(peers, limit=100), opened(peers, limit=100)
    assert peers.asked == ["upf1.test.local", "upf1.test.local"]
    assert a.max_pending_requests == 2
    assert [type(e) for e in a.receive_data(CCR, 0.0)] == [RequestReceived]
    assert [type(e) for e in b.receive_data(CCR * 2, 0.0)] == [RequestReceived, RequestRejected]
    assert result_codes(b) == [3004]


def test_a_lost_connection_returns_its_unanswered_requests_to_the_budget() -> None:
    peers = Peers(limit=2)
    a, b = opened(peers), opened(peers)
    a.receive_data(CCR * 2, 0.0)
    assert peers.budgets["upf1.test.local"].count == 2
    a.connection_lost()
    a.connection_lost()  # twice: counted once
    assert peers.budgets["upf1.test.local"].count == 0
    assert [type(e) for e in b.receive_data(CCR * 2, 0.0)] == [RequestReceived] * 2


def test_without_a_shared_budget_the_limit_is_the_connections() -> None:
    conn = Connection(
        role=Role.SERVER, identity=SERVER_ID, peer_policy=accept, max_pending_requests=1, now=0.0
    )
    conn.receive_data(frame_of("cer"), 0.0)
    assert [type(e) for e in conn.receive_data(CCR * 2, 0.0)] == [
        RequestReceived,
        RequestRejected,
    ]


# One step: (connection index, action): "send" n requests, "answer" its oldest, "lose" it.
steps = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["send", "answer", "lose"]), st.integers(1, 4)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(1, 5), script=steps)
def test_the_limit_holds_across_any_interleaving_of_connections(
    limit: int, script: list[tuple[int, str, int]]
) -> None:
    """Whatever the three connections of one peer do, a request is accepted exactly when
    fewer than `limit` are outstanding across the live ones, and the budget counts exactly
    those."""
    peers = Peers(limit)
    conns = [opened(peers) for _ in range(3)]
    pending: list[list[Header]] = [[], [], []]
    live = [True, True, True]
    budget = peers.budgets["upf1.test.local"]
    for index, action, n in script:
        conn = conns[index]
        if not live[index]:
            continue
        if action == "send":
            for _ in range(n):
                outstanding = sum(len(p) for p in pending)
                [event] = conn.receive_data(CCR, 0.0)
                if outstanding < limit:
                    assert isinstance(event, RequestReceived)
                    pending[index].append(event.header)
                else:
                    assert isinstance(event, RequestRejected)
                    assert event.error.result_code == 3004
        elif action == "answer" and pending[index]:
            conn.send_error(pending[index].pop(0), ProtocolError(5012, "x"))
        elif action == "lose":
            conn.connection_lost()
            pending[index].clear()
            live[index] = False
        assert budget.count == sum(len(p) for p in pending) <= limit
