"""The sans-IO connection: peer procedures, header checks and rejections, without sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import encode_frame
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CommandCode,
    DisconnectCause,
    Flag,
    ReAuthRequestType,
    ResultCode,
)
from protocol.connection import (
    COMMAND_APPLICATION,
    AnswerDropped,
    AnswerReceived,
    Connection,
    ConnectionClosed,
    DisconnectRequested,
    Event,
    LocalIdentity,
    PeerDecision,
    PeerOpened,
    RequestReceived,
    RequestRejected,
    WatchdogReceived,
)
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.framing import FrameBuffer
from protocol.header import Header
from protocol.messages import AMR, CCR, CEA, CER, DPR, DWR, RAA, RAR, Request
from protocol.peer import PeerState, Role
from tests.conftest import VECTOR, VECTORS, frame_of

BOTH = frozenset({ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION})
SERVER_ID = LocalIdentity(origin_host="ocs.test.local", origin_realm="test.local")
CLIENT_ID = LocalIdentity(origin_host="upf1.test.local", origin_realm="test.local")


def state_of(conn: Connection) -> PeerState:
    """The state, read through a call so that mypy does not narrow it across events."""
    return conn.state


def accept(apps: frozenset[int] = BOTH) -> Any:
    return lambda cer: PeerDecision(result_code=2001, applications=apps)


def server(**kw: Any) -> Connection:
    kw.setdefault("peer_policy", accept())
    return Connection(role=Role.SERVER, identity=SERVER_ID, now=0.0, **kw)


def answers(conn: Connection) -> list[tuple[Header, dict[str, Any]]]:
    buf = FrameBuffer(1 << 20)
    buf.feed(conn.data_to_send())
    out = []
    while (frame := buf.next_frame()) is not None:
        out.append((frame[0], msgspec.msgpack.decode(frame[1])))
    return out


def opened_server(**kw: Any) -> Connection:
    conn = server(**kw)
    events = conn.receive_data(frame_of("cer"), 0.0)
    assert [type(e) for e in events] == [PeerOpened]
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 2001 and not header.is_request
    return conn


def test_cer_is_answered_with_shared_applications() -> None:
    conn = server()
    conn.receive_data(frame_of("cer"), 0.0)
    [(header, cea)] = answers(conn)
    request = VECTOR["cer"]
    assert header.command_code == 257 and header.flags == 0
    assert header.hop_by_hop == 1 and header.end_to_end == 1001  # copied from the vector
    assert cea["Auth-Application-Id"] == [4]  # the CER offered only 4
    assert cea["Origin-Host"] == "ocs.test.local" and "Product-Name" in cea
    assert (
        state_of(conn) is PeerState.OPEN and conn.peer_origin_host == request["body"]["Origin-Host"]
    )


def test_relay_application_counts_as_every_application() -> None:
    conn = server()
    cer = CER(
        origin_host="t",
        origin_realm="r",
        host_ip_address=("127.0.0.1",),
        vendor_id=0,
        product_name="x",
        auth_application_id=(0xFFFFFFFF,),
    )
    conn.receive_data(
        encode_frame(
            cer, flags=0x80, command_code=257, application_id=0, hop_by_hop=1, end_to_end=1
        ),
        0.0,
    )
    [(_, cea)] = answers(conn)
    assert sorted(cea["Auth-Application-Id"]) == sorted(BOTH)


def test_refused_peer_gets_3010_with_e_flag_and_close() -> None:
    conn = server(peer_policy=lambda cer: PeerDecision(result_code=3010))
    events = conn.receive_data(frame_of("cer"), 0.0)
    [(header, cea)] = answers(conn)
    assert cea["Result-Code"] == 3010 and header.flags & Flag.ERROR
    # section 3: a 3xxx answer carries only Session-Id, Origin-*, Result-Code, Error-Message,
    # Failed-AVP
    assert set(cea) <= {"Origin-Host", "Origin-Realm", "Result-Code", "Error-Message"}
    assert isinstance(events[-1], ConnectionClosed) and state_of(conn) is PeerState.CLOSED


def test_no_common_application_is_5010_and_close() -> None:
    conn = server(peer_policy=accept(frozenset({ApplicationId.ADMINISTRATION})))
    events = conn.receive_data(frame_of("cer"), 0.0)  # offers only 4
    [(header, cea)] = answers(conn)
    assert cea["Result-Code"] == 5010 and not header.flags & Flag.ERROR
    assert isinstance(events[-1], ConnectionClosed)


@pytest.mark.parametrize("name", ["dwr", "ccr-initial", "amr-create", "bad-unknown-command"])
def test_request_before_cer_is_3010_and_close(name: str) -> None:
    conn = server()
    events = conn.receive_data(frame_of(name), 0.0)
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 3010 and header.flags & Flag.ERROR
    assert [type(e) for e in events] == [RequestRejected, ConnectionClosed]
    assert conn.receive_data(frame_of("cer"), 0.0) == []  # closed: nothing more is read


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if "expect" in v and isinstance(v["expect"]["result"], int)],
    ids=lambda v: v["name"],
)
@pytest.mark.parametrize("split", [False, True])
def test_rejection_vectors(vector: dict[str, Any], split: bool) -> None:
    conn = opened_server()
    frame = bytes.fromhex(vector["hex"])
    chunks = [frame[i : i + 1] for i in range(len(frame))] if split else [frame]
    events: list[Event] = []
    for chunk in chunks:
        events += conn.receive_data(chunk, 0.0)
    [(header, body)] = answers(conn)
    expect = vector["expect"]
    request = next(e for e in events if isinstance(e, RequestRejected)).header
    assert body["Result-Code"] == expect["result"]
    assert bool(header.flags & Flag.ERROR) == expect.get("error_flag", False)
    if "failed_avp" in expect:
        assert list(body["Failed-AVP"]) == [expect["failed_avp"]]
    assert (header.hop_by_hop, header.end_to_end) == (request.hop_by_hop, request.end_to_end)
    assert header.command_code == request.command_code and not header.is_request
    assert state_of(conn) is PeerState.OPEN  # the connection carries on
    conn.receive_data(frame_of("dwr"), 0.0)
    [(_, dwa)] = answers(conn)
    assert dwa["Result-Code"] == 2001


@pytest.mark.parametrize("name", ["bad-version", "bad-length-short"])
def test_framing_errors_close(name: str) -> None:
    conn = opened_server()
    events = conn.receive_data(frame_of(name), 0.0)
    assert isinstance(events[-1], ConnectionClosed) and state_of(conn) is PeerState.CLOSED


def test_bad_length_with_whole_header_is_answered_5015_first() -> None:
    conn = opened_server()
    conn.receive_data(frame_of("bad-length-short"), 0.0)  # 20 bytes claiming 12
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 5015 and header.end_to_end == 2009


def test_message_over_the_limit_closes() -> None:
    conn = opened_server(max_message_length=200)  # the CER is 156 bytes
    events = conn.receive_data(frame_of("ccr-initial"), 0.0)  # 441 bytes
    assert isinstance(events[-1], ConnectionClosed)


def test_many_messages_in_one_read_and_watchdog_answered() -> None:
    conn = server()
    events = conn.receive_data(frame_of("cer") + frame_of("dwr") + frame_of("ccr-initial"), 0.0)
    assert [type(e) for e in events] == [PeerOpened, WatchdogReceived, RequestReceived]
    out = answers(conn)
    assert [h.command_code for h, _ in out] == [257, 280]


def test_known_command_under_wrong_application_is_3007() -> None:
    conn = opened_server()
    frame = bytearray(frame_of("ccr-initial"))
    frame[8:12] = (0).to_bytes(4, "big")
    conn.receive_data(bytes(frame), 0.0)
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 3007 and header.flags & Flag.ERROR


def test_application_not_allowed_for_peer_is_3007() -> None:
    conn = opened_server(peer_policy=accept(frozenset({ApplicationId.CREDIT_CONTROL})))
    conn.receive_data(frame_of("amr-create"), 0.0)
    [(_, body)] = answers(conn)
    assert body["Result-Code"] == 3007


def test_too_many_outstanding_requests_is_3004_then_recovers() -> None:
    conn = opened_server(max_pending_requests=2)
    ccr = bytes.fromhex(VECTOR["ccr-update-linked"]["hex"])
    events = conn.receive_data(ccr * 3, 0.0)
    assert [type(e) for e in events] == [RequestReceived, RequestReceived, RequestRejected]
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 3004 and header.flags & Flag.ERROR
    first = events[0]
    assert isinstance(first, RequestReceived)
    conn.send_error(first.header, ProtocolError(5012, "x"))
    assert [type(e) for e in conn.receive_data(ccr, 0.0)] == [RequestReceived]


def test_answer_copies_ids_and_p_flag() -> None:
    conn = opened_server()
    [event] = conn.receive_data(frame_of("ccr-initial"), 0.0)
    assert isinstance(event, RequestReceived)
    assert event.header.is_proxiable
    conn.send_error(event.header, ProtocolError(ResultCode.UNKNOWN_SESSION_ID, "x", session_id="s"))
    [(header, body)] = answers(conn)
    assert header.flags == Flag.PROXIABLE
    assert (header.hop_by_hop, header.end_to_end) == (4, 1004)
    assert body["Session-Id"] == "s" and body["Result-Code"] == 5002
    with pytest.raises(LocalProtocolError):
        conn.send_error(event.header, ProtocolError(5012, "answered twice"))


def _from(origin_host: str, message: Request, hbh: int) -> bytes:
    """The frame of `message` as a peer would send it (Hop-by-Hop-Id = End-to-End-Id = hbh)."""
    code = message.COMMAND
    return encode_frame(
        message,
        flags=0x80 | (0x40 if code == CommandCode.CREDIT_CONTROL else 0),
        command_code=int(code),
        application_id=COMMAND_APPLICATION[code],
        hop_by_hop=hbh,
        end_to_end=hbh,
    )


def _intruding(origin_host: str) -> list[Request]:
    """A request of every command a peer sends after CER, each naming `origin_host`."""
    realm = "test.local"
    ccr = msgspec.msgpack.decode(frame_of("ccr-initial")[20:], type=CCR)
    return [
        msgspec.structs.replace(ccr, origin_host=origin_host),
        AMR(
            origin_host=origin_host,
            origin_realm=realm,
            account_operation=AccountOperation.GET,
            account_id="acct-1",
        ),
        DWR(origin_host=origin_host, origin_realm=realm),
        DPR(origin_host=origin_host, origin_realm=realm, disconnect_cause=DisconnectCause.BUSY),
    ]


@pytest.mark.parametrize("index", range(4), ids=["CCR", "AMR", "DWR", "DPR"])
def test_a_request_naming_another_origin_host_is_5004_and_goes_nowhere(index: int) -> None:
    """WIRE.md 4: a peer is the Origin-Host of its CER; a later request carrying another is
    answered 5004 with Failed-AVP {Origin-Host} by the connection itself: no event hands it to
    the application (never dispatched, never journaled), no peer procedure runs (a DPR does
    not close), nothing waits for an answer."""
    conn = opened_server()
    assert conn.peer_origin_host == "upf1.test.local"
    message = _intruding("upf2.test.local")[index]
    events = conn.receive_data(_from("upf2.test.local", message, 77), 0.0)
    assert [type(e) for e in events] == [RequestRejected]
    [(header, body)] = answers(conn)
    assert body["Result-Code"] == 5004 and not header.flags & Flag.ERROR
    assert body["Failed-AVP"] == {"Origin-Host": "upf2.test.local"}
    assert (header.command_code, header.hop_by_hop, header.end_to_end) == (message.COMMAND, 77, 77)
    if isinstance(message, CCR):  # answers in application 4 echo the Session-Id
        assert body["Session-Id"] == message.session_id
    assert state_of(conn) is PeerState.OPEN and conn.pending_requests == 0
    # the same request with the peer's own name goes through
    own = _intruding("upf1.test.local")[index]
    events = conn.receive_data(_from("upf1.test.local", own, 78), 0.0)
    assert [type(e) for e in events] == [
        [RequestReceived],
        [RequestReceived],
        [WatchdogReceived],
        [DisconnectRequested],
    ][index]


def test_the_origin_host_is_compared_exactly() -> None:
    """No case folding, no trailing dot, no prefix: the CER's Origin-Host as sent."""
    conn = opened_server()
    for other in ("UPF1.test.local", "upf1.test.local.", "upf1.test", "upf1.test.localx", ""):
        events = conn.receive_data(_from(other, DWR(origin_host=other, origin_realm="r"), 9), 0.0)
        assert [type(e) for e in events] == [RequestRejected], other
        [(_, body)] = answers(conn)
        assert body["Failed-AVP"] == {"Origin-Host": other}


def test_dpr_is_answered_and_closes_after_peer() -> None:
    conn = opened_server()
    events = conn.receive_data(frame_of("dpr"), 0.0)
    assert isinstance(events[0], DisconnectRequested) and events[0].cause == 0
    [(_, dpa)] = answers(conn)
    assert dpa["Result-Code"] == 2001 and state_of(conn) is PeerState.CLOSING


def test_unmatched_answer_is_dropped() -> None:
    conn = opened_server()
    events = conn.receive_data(frame_of("cca-initial"), 0.0)
    assert [type(e) for e in events] == [AnswerDropped]
    assert answers(conn) == []


def client_and_server() -> tuple[Connection, Connection]:
    client = Connection(role=Role.CLIENT, identity=CLIENT_ID, now=0.0)
    srv = server()
    client.send_request(client.cer((4,)))
    assert state_of(client) is PeerState.WAIT_CEA
    srv.receive_data(client.data_to_send(), 0.0)
    events = client.receive_data(srv.data_to_send(), 0.0)
    assert [type(e) for e in events] == [AnswerReceived, PeerOpened]
    assert state_of(client) is PeerState.OPEN
    return client, srv


def test_server_initiated_request_and_its_answer() -> None:
    client, srv = client_and_server()
    rar = RAR(
        origin_host="ocs.test.local",
        origin_realm="test.local",
        session_id="s",
        destination_realm="test.local",
        destination_host="upf1.test.local",
        auth_application_id=4,
        re_auth_request_type=ReAuthRequestType.AUTHORIZE_ONLY,
    )
    sent = srv.send_request(rar)
    [event] = client.receive_data(srv.data_to_send(), 0.0)
    assert isinstance(event, RequestReceived) and event.message == rar
    client.send_answer(
        event.header,
        RAA(
            result_code=2001,
            origin_host="upf1.test.local",
            origin_realm="test.local",
            session_id="s",
        ),
    )
    [answer] = srv.receive_data(client.data_to_send(), 0.0)
    assert isinstance(answer, AnswerReceived) and answer.request == sent
    assert isinstance(answer.message, RAA) and answer.message.result_code == 2001
    # the same answer again matches nothing
    again = srv.receive_data(client.encode_answer(event.header, answer.message), 0.0)
    assert [type(e) for e in again] == [AnswerDropped]


def test_client_cannot_send_application_requests_before_cea() -> None:
    client = Connection(role=Role.CLIENT, identity=CLIENT_ID, now=0.0)
    with pytest.raises(LocalProtocolError):
        client.send_request(DWR(origin_host="a", origin_realm="b"))
    amr = AMR(
        origin_host="a", origin_realm="b", account_operation=AccountOperation.GET, account_id="x"
    )
    with pytest.raises(LocalProtocolError):
        client.send_request(amr)


def test_client_sees_refusal() -> None:
    client = Connection(role=Role.CLIENT, identity=CLIENT_ID, now=0.0)
    srv = server(peer_policy=lambda cer: PeerDecision(result_code=3010))
    client.send_request(client.cer((4,)))
    srv.receive_data(client.data_to_send(), 0.0)
    events = client.receive_data(srv.data_to_send(), 0.0)
    assert isinstance(events[0], AnswerReceived) and isinstance(events[0].message, CEA)
    assert isinstance(events[-1], ConnectionClosed) and state_of(client) is PeerState.CLOSED


def test_dpr_from_client_closes_both() -> None:
    client, srv = client_and_server()
    client.send_request(client.dpr(2))
    assert state_of(client) is PeerState.CLOSING
    srv.receive_data(client.data_to_send(), 0.0)
    events = client.receive_data(srv.data_to_send(), 0.0)
    assert isinstance(events[-1], ConnectionClosed) and state_of(client) is PeerState.CLOSED


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.sampled_from(VECTORS).map(lambda v: bytes.fromhex(v["hex"])),
        ),
        max_size=6,
    ),
    open_first=st.booleans(),
)
def test_any_input_yields_events_never_exceptions(data: list[bytes], open_first: bool) -> None:
    """The fuzz invariant at connection level: whatever arrives, the connection answers or
    closes; it never raises."""
    conn = opened_server() if open_first else server()
    for chunk in data:
        for event in conn.receive_data(chunk, 0.0):
            assert isinstance(event, Event)
            if isinstance(event, RequestReceived):
                conn.send_error(event.header, ProtocolError(5012, "test"))
        answers(conn)  # everything sent is well framed and decodable
    if state_of(conn) is PeerState.CLOSED:
        assert conn.receive_data(frame_of("dwr"), 0.0) == []


def test_command_codes_are_the_specs() -> None:
    assert {c.value for c in CommandCode} == {257, 258, 272, 274, 280, 282, 9001}
