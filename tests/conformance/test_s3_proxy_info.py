"""RFC 6733 6.1.9, 6.2 and 6.7.2 (docs/protocol.md "Proxy-Info"): the `Proxy-Info` AVPs of a
request come back unchanged and in order in its answer, on both encodings; a duplicate's answer
carries its own request's; a 3xxx answer carries only what WIRE.md section 3 lists."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_BASE,
    APP_CC,
    CCR,
    DWR,
    EVENT,
    FLAG_P,
    FLAG_R,
    FLAG_T,
    GET,
    INVALID_AVP_VALUE,
    MSGPACK_ONLY,
    PRICE_ENQUIRY,
    SUCCESS,
    USER_UNKNOWN,
    Peer,
    amr_body,
    avp,
    ccr_body,
    new_msisdn,
    new_session_id,
    next_e2e,
    units_sms,
)
from tests.server.process import ServerProcess

PROXIES = [
    {"Proxy-Host": "dra1.conformance.test.local", "Proxy-State": b"\x00state-1\xff"},
    {"Proxy-Host": "dra2.conformance.test.local", "Proxy-State": b"s2"},
]


def _event(peer: Peer, **extra: Any) -> dict[str, Any]:
    return ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        msisdn=new_msisdn(),
        mscc=[{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}],
        **avp("Requested-Action", PRICE_ENQUIRY),
        **extra,
    )


async def test_s3_proxy_info_is_echoed_unchanged(server: ServerProcess, connect: Connect) -> None:
    peer = await connect(server.port)
    answer = await peer.request(DWR, APP_BASE, {**peer.dwr_body(), "Proxy-Info": PROXIES})
    assert answer.result_code == SUCCESS and answer.body["Proxy-Info"] == PROXIES
    answer = await peer.request(CCR, APP_CC, _event(peer, **avp("Proxy-Info", PROXIES)))
    assert answer.result_code == SUCCESS and answer.body["Proxy-Info"] == PROXIES  # a price
    one = PROXIES[1:]
    body = {**amr_body(peer, GET, "nobody"), "Proxy-Info": one}
    answer = await peer.request(AMR, APP_ADMIN, body)
    assert answer.result_code == USER_UNKNOWN and answer.body["Proxy-Info"] == one
    answer = await peer.request(CCR, APP_CC, _event(peer))
    assert "Proxy-Info" not in answer.body


async def test_s3_a_duplicate_carries_its_own_proxy_info(
    server: ServerProcess, connect: Connect
) -> None:
    """The answer is cached without Proxy-Info (RFC 6733 6.2 asks for the request's own): the
    retransmission through another agent gets that agent's."""
    peer = await connect(server.port)
    e2e = next_e2e()
    body = _event(peer, **avp("Proxy-Info", PROXIES[:1]))
    first = await peer.request(CCR, APP_CC, body, e2e=e2e)
    again = {**body, "Proxy-Info": PROXIES[1:]}
    flags = FLAG_R | FLAG_P | FLAG_T
    second = await peer.request(CCR, APP_CC, again, e2e=e2e, flags=flags)
    assert first.body["Proxy-Info"] == PROXIES[:1] and second.body["Proxy-Info"] == PROXIES[1:]
    assert {k: v for k, v in first.body.items() if k != "Proxy-Info"} == {
        k: v for k, v in second.body.items() if k != "Proxy-Info"
    }


@MSGPACK_ONLY  # a binary Proxy-Info is a group: its contents are echoed as received
@pytest.mark.parametrize(
    "value",
    [{"Proxy-Host": "h", "Proxy-State": b"s"}, [{"Proxy-State": b"s"}], ["x"], [], 7],
    ids=["lone-map", "no-proxy-host", "not-a-map", "empty", "int"],
)
async def test_s3_proxy_info_of_the_wrong_shape_is_5004(
    server: ServerProcess, connect: Connect, value: object
) -> None:
    peer = await connect(server.port)
    answer = await peer.request(DWR, APP_BASE, {**peer.dwr_body(), "Proxy-Info": value})
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {"Proxy-Info": value}
