"""An ASR waits for the input that caused it to be durable, as a RAR does
(tests/durability/test_app_ordering.py): an operator's TERMINATE_SESSION closes the session
and aborts it at its peer only once the journal holds the termination. Sent earlier, a crash
before the fsync would replay a session still open (its reservation held, its CDR not closed)
while the network element had already stopped the service."""

from __future__ import annotations

import asyncio

import pytest

from ocs.edge.client import Client
from ocs.node import Node
from protocol.codes import AccountOperation, CCRequestType
from protocol.header import Header
from protocol.messages import ASA, ASR, Answer, Request
from tests.durability.test_app_ordering import gate_fsync, strict_app
from tests.durability.util import (
    amr,
    connect_admin,
    create_account,
    get_account,
    next_e2e,
    sms_ccr,
)

__all__ = ["strict_app"]  # the fixture, used below


async def test_asr_waits_until_the_termination_that_caused_it_is_durable(
    strict_app: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = strict_app
    admin_client = await connect_admin(app.server.port)
    await create_account(admin_client, "acct-1", 10_000_000)
    asrs: asyncio.Queue[ASR] = asyncio.Queue()

    def on_request(header: Header, message: Request) -> Answer:
        assert isinstance(message, ASR)
        asrs.put_nowait(message)
        return ASA(
            result_code=2001,
            origin_host="smsc.test.local",
            origin_realm="test.local",
            session_id=message.session_id,
        )

    client = await Client.connect(
        port=app.server.port, origin_host="smsc.test.local", on_request=on_request
    )
    sid = "smsc.test.local;asr;1"
    opened = await client.request(
        sms_ccr("smsc.test.local", sid, CCRequestType.INITIAL, 0, account_id="acct-1"),
        end_to_end=next_e2e(),
    )
    assert opened.result_code == 2001
    assert (await get_account(admin_client, "acct-1")).reserved > 0
    requests = app.stats["requests"]
    gate = gate_fsync(monkeypatch)
    try:
        terminate = admin_client.send(
            amr(admin_client, AccountOperation.TERMINATE_SESSION, "acct-1", session_id=sid),
            end_to_end=next_e2e(),
        )
        async with asyncio.timeout(5):
            while app.stats["requests"] <= requests:  # applied; its fsync is held
                await asyncio.sleep(0.001)
        assert sid not in app.core.sessions  # closed in the core, not yet durable
        await asyncio.sleep(0.3)
        assert asrs.empty() and not terminate.done()
        gate.set()
        asr = await asyncio.wait_for(asrs.get(), 5)
        assert asr.session_id == sid and asr.destination_host == "smsc.test.local"
        assert (await asyncio.wait_for(terminate, 5)).answer.result_code == 2001
        assert (await get_account(admin_client, "acct-1")).reserved == 0
    finally:
        gate.set()
        await client.close()
        await admin_client.close()
