"""The project's own client on standard binary bodies (version 0x01) against the real server on
127.0.0.1: administration (the WIRE.md section 8 extension AVPs), a retransmitted CCR answered
from the duplicate cache (a MessagePack body the connection sends as AVPs), a refusal with
Failed-AVP, and an ASR in the encoding of the CER, across a restart that replays the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocs.edge.client import Client
from protocol.codes import (
    VERSION_DIAMETER,
    AccountOperation,
    AccountStatus,
    ApplicationId,
    CCRequestType,
)
from protocol.header import Header
from protocol.messages import AMA, ASA, ASR, CCA, Answer, Request
from tests.charging.conftest import amr, ccr, mscc, rsu, usu
from tests.interop.test_python_diameter import running

PGW = "pgw.test.local"
APPS = (ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION)
MiB = 1 << 20


async def test_binary_client_full_procedures(tmp_path: Path) -> None:
    asrs: asyncio.Queue[ASR] = asyncio.Queue()

    def serve(header: Header, request: Request) -> Answer:
        assert header.version == VERSION_DIAMETER  # the encoding of our CER
        assert isinstance(request, ASR)
        asrs.put_nowait(request)
        return ASA(
            result_code=2001, origin_host=PGW, origin_realm="test.local",
            session_id=request.session_id,
        )  # fmt: skip

    data_dir = tmp_path / "data"
    async with running(data_dir) as app:
        client = await Client.connect(
            port=app.server.port, origin_host=PGW, applications=APPS, on_request=serve,
            encoding=VERSION_DIAMETER,
        )  # fmt: skip
        create = amr(AccountOperation.CREATE, "a1", amount=5_000_000, subscriber="4901", origin=PGW)
        assert (await client.request(create)).result_code == 2001
        again = await client.request(create)
        assert again.result_code == 5004  # CREATE of an existing Account-Id
        initial = ccr(
            "b1", CCRequestType.INITIAL, 0, mscc(20, ask=rsu()), subscriber="4901", origin=PGW
        )
        first = await client.exchange(initial)
        assert isinstance(first.answer, CCA) and first.answer.result_code == 2001
        assert first.header.version == VERSION_DIAMETER
        repeat = await client.exchange(
            initial, end_to_end=first.request.end_to_end, retransmit=True
        )
        assert repeat.answer == first.answer  # from the duplicate cache, as AVPs
        wrong = ccr("b1", CCRequestType.UPDATE, 5, mscc(20, used=(usu(octets=MiB),)), origin=PGW)
        refused = await client.request(wrong)
        assert refused.result_code == 5004 and refused.failed_avp == {"CC-Request-Number": 5}
        suspend = amr(AccountOperation.SET_STATUS, "a1", status=AccountStatus.SUSPENDED, origin=PGW)
        assert (await client.request(suspend)).result_code == 2001
        asr = await asyncio.wait_for(asrs.get(), 5)
        assert asr.session_id == initial.session_id
        await client.close()
    async with running(data_dir) as app:  # the journal (MessagePack) replays the binary inputs
        client = await Client.connect(
            port=app.server.port, origin_host=PGW, applications=APPS, encoding=VERSION_DIAMETER
        )
        got = await client.request(amr(AccountOperation.GET, "a1", origin=PGW))
        assert isinstance(got, AMA) and got.account is not None
        assert got.account.account_status == AccountStatus.SUSPENDED
        assert got.account.session_count == 1 and got.account.reserved > 0
        await client.close()
