"""The sans-IO connection on both encodings (WIRE.md 1.1 section 1): the version byte chooses the
codec per message, an answer takes its request's encoding, a server-initiated request the
encoding of the peer's CER, and the application always sees (and journals) the same message."""

from __future__ import annotations

import struct
from typing import Any

from protocol.avp import decode_avps, encode_frame_as
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    VERSION,
    VERSION_DIAMETER,
    ApplicationId,
    CCRequestType,
    Flag,
    ReAuthRequestType,
)
from protocol.connection import (
    Connection,
    LocalIdentity,
    PeerDecision,
    PeerOpened,
    RequestReceived,
    RequestRejected,
    WatchdogReceived,
)
from protocol.framing import FrameBuffer
from protocol.header import Header
from protocol.messages import CCA, CCR, CEA, CER, DWR, RAR, Message, MsccAnswer, ServiceUnit
from protocol.peer import Role

SERVER_ID = LocalIdentity(origin_host="ocs.test.local", origin_realm="test.local")
CLIENT_ID = LocalIdentity(origin_host="upf1.test.local", origin_realm="test.local")
APPS = frozenset({ApplicationId.CREDIT_CONTROL})
CER_ = CER(
    origin_host="upf1.test.local",
    origin_realm="test.local",
    host_ip_address=("127.0.0.1",),
    vendor_id=10415,
    product_name="pgw",
    auth_application_id=(4,),
)
CCR_ = CCR(
    session_id="upf1.test.local;1",
    origin_host="upf1.test.local",
    origin_realm="test.local",
    destination_realm="test.local",
    auth_application_id=4,
    service_context_id="32251@3gpp.org",
    cc_request_type=CCRequestType.UPDATE,
    cc_request_number=1,
)


def frame(message: Message, version: int, *, hbh: int = 1, app: int = 4) -> bytes:
    flags = int(Flag.REQUEST) if message.IS_REQUEST else 0
    return encode_frame_as(
        version,
        message,
        flags=flags,
        command_code=message.COMMAND,
        application_id=app,
        hop_by_hop=hbh,
        end_to_end=hbh,
    )


def sent(conn: Connection) -> list[tuple[Header, bytes]]:
    buf = FrameBuffer(1 << 20)
    buf.feed(conn.data_to_send())
    out = []
    while (f := buf.next_frame()) is not None:
        out.append(f)
    return out


def opened(version: int) -> Connection:
    conn = Connection(
        role=Role.SERVER,
        identity=SERVER_ID,
        now=0.0,
        peer_policy=lambda cer: PeerDecision(result_code=2001, applications=APPS),
    )
    events = conn.receive_data(frame(CER_, version, app=0), 0.0)
    assert [type(e) for e in events] == [PeerOpened]
    [(header, body)] = sent(conn)
    assert header.version == version
    cea = (
        decode_avps(257, False, body)
        if version == VERSION_DIAMETER
        else decode_body(257, False, body)
    )
    assert isinstance(cea, CEA) and cea.result_code == 2001 and cea.auth_application_id == (4,)
    return conn


def test_answers_take_the_encoding_of_their_request() -> None:
    conn = opened(VERSION_DIAMETER)
    dwr = DWR(origin_host="upf1.test.local", origin_realm="test.local")
    conn.receive_data(
        frame(dwr, VERSION, hbh=2, app=0) + frame(dwr, VERSION_DIAMETER, hbh=3, app=0), 1.0
    )
    (h1, b1), (h2, b2) = sent(conn)
    assert (h1.hop_by_hop, h1.version) == (2, VERSION)
    assert decode_body(280, False, b1).result_code == 2001  # type: ignore[attr-defined]
    assert (h2.hop_by_hop, h2.version) == (3, VERSION_DIAMETER)
    assert decode_avps(280, False, b2).result_code == 2001  # type: ignore[attr-defined]


def test_binary_request_reaches_the_application_as_the_same_message() -> None:
    conn = opened(VERSION_DIAMETER)
    [event] = conn.receive_data(frame(CCR_, VERSION_DIAMETER, hbh=5), 1.0)
    assert isinstance(event, RequestReceived) and event.message == CCR_
    assert event.header.version == VERSION_DIAMETER
    # what the application journals is MessagePack, and replays to the same message
    assert event.body == encode_body(CCR_)
    assert decode_body(272, True, event.body) == CCR_
    # the application answers with a MessagePack body (as the core caches it): sent as AVPs
    cca = CCA(
        result_code=2001,
        origin_host="ocs.test.local",
        origin_realm="test.local",
        session_id=CCR_.session_id,
        cc_request_type=CCRequestType.UPDATE,
        cc_request_number=1,
        multiple_services_credit_control=(
            MsccAnswer(
                rating_group=10,
                result_code=2001,
                granted_service_unit=ServiceUnit(cc_total_octets=1 << 20),
            ),
        ),
    )
    conn.send_answer_body(event.header, encode_body(cca))
    [(header, body)] = sent(conn)
    assert (header.version, header.hop_by_hop, header.is_request) == (VERSION_DIAMETER, 5, False)
    assert decode_avps(272, False, body) == cca


def test_server_initiated_requests_take_the_encoding_of_the_cer() -> None:
    for version in (VERSION, VERSION_DIAMETER):
        conn = opened(version)
        rar = RAR(
            session_id=CCR_.session_id,
            origin_host="ocs.test.local",
            origin_realm="test.local",
            destination_realm="test.local",
            destination_host="upf1.test.local",
            auth_application_id=4,
            re_auth_request_type=ReAuthRequestType.AUTHORIZE_ONLY,
            rating_group=(10,),
        )
        header = conn.send_request(rar)
        assert header.version == version
        [(out, body)] = sent(conn)
        assert out.version == version and out.is_request
        decoded = (
            decode_avps(258, True, body)
            if version == VERSION_DIAMETER
            else decode_body(258, True, body)
        )
        assert decoded == rar


def test_unknown_mandatory_avp_answered_5001_in_binary() -> None:
    conn = opened(VERSION_DIAMETER)
    good = frame(CCR_, VERSION_DIAMETER, hbh=9)
    extra = struct.pack(">II", 77_777, (0x40 << 24) | 12) + b"wxyz"
    length = len(good) + len(extra)
    bad = bytes([VERSION_DIAMETER]) + length.to_bytes(3, "big") + good[4:] + extra
    [event] = conn.receive_data(bad, 1.0)
    assert isinstance(event, RequestRejected) and event.error.result_code == 5001
    [(header, body)] = sent(conn)
    assert header.version == VERSION_DIAMETER and not header.is_error  # 5xxx: E clear
    answer: Any = decode_avps(272, False, body)
    assert answer.result_code == 5001 and answer.session_id == CCR_.session_id
    assert answer.failed_avp == {"AVP-0-77777": b"wxyz"}


def test_client_speaks_binary_when_asked() -> None:
    client = Connection(role=Role.CLIENT, identity=CLIENT_ID, now=0.0, encoding=VERSION_DIAMETER)
    client.send_request(client.cer((4,)))
    [(header, body)] = sent(client)
    assert header.version == VERSION_DIAMETER
    assert decode_avps(257, True, body) == client.cer((4,))
    server = Connection(
        role=Role.SERVER,
        identity=SERVER_ID,
        now=0.0,
        peer_policy=lambda cer: PeerDecision(result_code=2001, applications=APPS),
    )
    server.receive_data(
        frame(client.cer((4,)), VERSION_DIAMETER, hbh=header.hop_by_hop, app=0), 0.0
    )
    events = client.receive_data(server.data_to_send(), 0.0)
    assert any(isinstance(e, PeerOpened) for e in events)
    client.send_request(client.dwr())
    events = server.receive_data(client.data_to_send(), 1.0)
    assert [type(e) for e in events] == [WatchdogReceived]
    assert [h.version for h, _ in sent(server)] == [VERSION_DIAMETER]
