"""vectors.json (beside WIRE.md) replayed against a running server, byte for byte: the
example conversation of a UPF and an SCP, then the requests the server must reject."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    FLAG_E,
    MSGPACK_ONLY,
    SUCCESS,
    get_account,
    mscc_of,
    parse_header,
)
from tests.conftest import SPEC
from tests.server.process import ServerProcess

VECTORS: dict[str, dict[str, Any]] = {
    v["name"]: v for v in json.loads((SPEC / "vectors.json").read_text())["vectors"]
}


def hexframe(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"])


@MSGPACK_ONLY  # vectors.json holds MessagePack frames, replayed as given
async def test_vectors_conversation(spawn: Spawn, connect: Connect) -> None:
    """vectors.json: CER, AMR CREATE, CCR INITIAL/UPDATE (linked usage)/TERMINATION, the
    TERMINATION retransmitted with T (§6: the same answer), the three events, AMR CREDIT, DWR
    and DPR, each sent as the given bytes, each answered 2001 (checked against §1/§3). The
    events are the SCP's (Origin-Host scp1.test.local): they go on the SCP's own connection
    (§4: a request carries the Origin-Host of its connection's CER)."""
    srv = spawn()
    upf = await connect(srv.port, "upf1.test.local", cer=False)
    cea = await upf.answer_to((await upf.send_frame(hexframe("cer"))).hbh)
    assert cea.result_code == SUCCESS
    assert set(cea.body) >= set(VECTORS["cea"]["body"])
    scp = await connect(srv.port, "scp1.test.local")
    events = {
        n for n, v in VECTORS.items() if v.get("body", {}).get("Origin-Host") == scp.origin_host
    }
    assert events == {"ccr-event-debit", "ccr-event-refund", "ccr-event-price-enquiry"}

    async def send(name: str) -> Any:
        peer = scp if name in events else upf
        answer = await peer.answer_to((await peer.send_frame(hexframe(name))).hbh)
        assert answer.result_code == SUCCESS, (name, answer.body)
        return answer

    await send("amr-create")
    initial = await send("ccr-initial")
    assert mscc_of(initial, 10)["Linked-Rating-Group"] == [20]
    assert mscc_of(initial, 10)["Result-Code"] == SUCCESS
    assert isinstance(mscc_of(initial, 20)["Result-Code"], int)
    await send("ccr-update-linked")
    termination = await send("ccr-termination")
    again = await send("ccr-termination-retransmit")
    assert again.body == termination.body
    debit = await send("ccr-event-debit")
    assert mscc_of(debit, 30)["Granted-Service-Unit"] == {"CC-Service-Specific-Units": 1}
    await send("ccr-event-refund")
    enquiry = await send("ccr-event-price-enquiry")
    assert enquiry.body["Cost-Information"]["Currency-Code"] == 978
    await send("amr-credit")
    account = await get_account(upf, "acct-1")
    assert account["Reserved"] == 0 and account["Session-Count"] == 0
    await send("dwr")
    await send("dpr")


REJECTED = [v for v in VECTORS.values() if "expect" in v]


@MSGPACK_ONLY
@pytest.mark.parametrize("vector", REJECTED, ids=lambda v: v["name"])
async def test_vectors_rejected(
    server: ServerProcess, connect: Connect, vector: dict[str, Any]
) -> None:
    """vectors.json: requests a server must reject as stated, after a successful CER: the
    Result-Code, E flag and Failed-AVP given, or ("close") the connection closed."""
    peer = await connect(server.port)
    data = bytes.fromhex(vector["hex"])
    expect = vector["expect"]
    if expect["result"] == "close":
        await peer.send(data)
        assert await peer.closed_by_server()
        return
    answer = await peer.answer_to((await peer.send_frame(data)).hbh)
    assert answer.result_code == expect["result"]
    assert bool(answer.header.flags & FLAG_E) == expect.get("error_flag", False)
    if "failed_avp" in expect:
        assert list(answer.body["Failed-AVP"]) == [expect["failed_avp"]]
    assert answer.header.hbh == parse_header(data).hbh
    assert await peer.is_open()
