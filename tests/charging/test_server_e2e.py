"""The charging core behind the real server, over 127.0.0.1 (in-process): the spec's vectors
as a full data session, retransmission, CDR files, RAR and ASR delivered to the client.

The server rates at the wall clock, so amounts are checked against each other (what the
account lost is what the CDRs charge) and against the few prices that do not depend on the
time (video is flat), not against one tariff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codec import decode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CCRequestType,
    FinalUnitAction,
    ReportingReason,
)
from protocol.messages import AMA, AMR, ASR, CCA, CCR, RAR
from tests.charging.conftest import EUR, MiB, amr, by_rg, ccr, mscc, only, rsu, sid, usu
from tests.charging.peer import UPF, Peer
from tests.conftest import VECTOR


def vector(name: str) -> CCR | AMR:
    frame = bytes.fromhex(VECTOR[name]["hex"])
    command = int.from_bytes(frame[5:8], "big")
    message = decode_body(command, True, frame[20:])
    assert isinstance(message, CCR | AMR)
    return message


def ccr_vector(name: str) -> CCR:
    message = vector(name)
    assert isinstance(message, CCR)
    return message


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[Node]:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2), NodeConfig(data_dir=data_dir)
    )
    try:
        await app.start()
        yield app
    finally:
        await app.stop()
        await app.close()


async def cca(client: Client, message: CCR) -> CCA:
    answer = await client.request(message)
    assert isinstance(answer, CCA), answer
    return answer


async def get(client: Client, account_id: str) -> AMA:
    answer = await client.request(amr(AccountOperation.GET, account_id, origin=UPF))
    assert isinstance(answer, AMA) and answer.account is not None, answer
    return answer


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[tuple[Node, Peer, Client]]:
    async with running(tmp_path / "data") as app:
        p = Peer()
        client = await p.connect(app.server.port)
        try:
            yield app, p, client
        finally:
            await client.close()


async def test_data_session_of_the_vectors(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running(data_dir) as app:
        p = Peer()
        client = await p.connect(app.server.port)
        create = await client.request(vector("amr-create"))
        assert create.result_code == 2001

        initial = await cca(client, ccr_vector("ccr-initial"))
        assert initial.result_code == 2001
        grants = by_rg(initial)
        assert grants[10].result_code == 2001 and grants[20].result_code == 2001
        assert grants[10].granted_service_unit is not None
        assert grants[10].granted_service_unit.cc_total_octets == 10 * MiB
        assert grants[20].granted_service_unit is not None
        assert grants[20].granted_service_unit.cc_total_octets == 10 * MiB
        assert grants[10].linked_rating_group == (20,)
        open_ = (await get(client, "acct-1")).account
        assert open_ is not None
        # RG 20 is flat (10 MiB x 0.005); RG 10's 10 MiB cost 0.10 or 0.20 (or half on promotion)
        assert open_.reserved - 50_000 in (50_000, 100_000, 200_000)
        assert open_.balance == 10 * EUR - open_.reserved and open_.session_count == 1

        update = await cca(client, ccr_vector("ccr-update-linked"))
        assert [m.result_code for m in update.multiple_services_credit_control or ()] == [
            2001,
            2001,
        ]
        term = await client.exchange(vector("ccr-termination"))
        assert term.answer.result_code == 2001
        after = (await get(client, "acct-1")).account
        assert after is not None
        assert after.reserved == 0 and after.session_count == 0
        lost = 10 * EUR - after.balance

        # the same TERMINATION again, T flag, same End-to-End-Id: the same answer, no charge
        again = await client.exchange(
            vector("ccr-termination-retransmit"),
            end_to_end=term.request.end_to_end,
            retransmit=True,
        )
        assert again.answer == term.answer
        assert again.header.end_to_end == term.request.end_to_end
        assert again.header.hop_by_hop != term.header.hop_by_hop
        final = (await get(client, "acct-1")).account
        assert final is not None and final.balance == after.balance
        await client.close()

    records = list(iter_records(data_dir / "cdr"))
    assert read_sequence_numbers(data_dir / "cdr") == [1, 2]
    assert sum(r["charge"] for r in records) == lost
    partial, last = records
    assert partial["causeForRecordClosing"] == "partialRecord"  # the linked-usage report
    usage = {u["ratingGroup"]: u["usedUnitContainers"] for u in partial["listOfMultipleUnitUsage"]}
    assert usage[20] == [
        {
            "totalVolume": 1000,
            "triggers": ["LINKED_USAGE"],
            "charge": 5,
            "reportTime": usage[20][0]["reportTime"],
            # the demo prices RG 20 by load (docs/catalog.md "Load bands"): its base band
            "loadBand": "normal",
            "loadFactor": "1",
        }
    ]
    assert usage[10][0]["triggers"] == ["THRESHOLD"]
    assert usage[10][0]["charge"] in (20_000, 40_000, 80_000)  # 4 MiB
    assert last["causeForRecordClosing"] == "normalRelease"
    assert [
        c["tariffChangeUsage"] for c in last["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    ] == [0, 1]
    assert {r["sessionId"] for r in records} == {"upf1.test.local;1700000000;1"}
    assert all(r["accountId"] == "acct-1" and r["nodeId"] == UPF for r in records)


async def test_top_up_sends_rar_to_a_session_held_at_final_units(
    peer: tuple[Node, Peer, Client],
) -> None:
    _, p, client = peer
    create = amr(AccountOperation.CREATE, "poor", amount=500_000, subscriber="4930", origin=UPF)
    assert (await client.request(create)).result_code == 2001
    initial = ccr(
        "rar-1", CCRequestType.INITIAL, 0, mscc(10, ask=rsu(octets=200 * MiB)), subscriber="4930"
    )
    g = only(await cca(client, initial))
    fui = g.final_unit_indication
    assert fui is not None and fui.final_unit_action == FinalUnitAction.REDIRECT
    credit = amr(AccountOperation.CREDIT, "poor", amount=5 * EUR, operation_id="t1", origin=UPF)
    assert (await client.request(credit)).result_code == 2001
    rar = await asyncio.wait_for(p.arrived.get(), 5)
    assert isinstance(rar, RAR)
    assert rar.session_id == sid("rar-1") and rar.rating_group == (10,)
    assert rar.destination_host == UPF and rar.auth_application_id == 4
    # the client re-authorises: a full grant now
    reauth = ccr(
        "rar-1",
        CCRequestType.UPDATE,
        1,
        mscc(10, ask=rsu(), used=(usu(octets=MiB),), reason=ReportingReason.FORCED_REAUTHORISATION),
    )
    g = only(await cca(client, reauth))
    assert g.result_code == 2001 and g.final_unit_indication is None
    assert (await cca(client, ccr("rar-1", CCRequestType.TERMINATION, 2))).result_code == 2001


async def test_suspension_sends_asr(peer: tuple[Node, Peer, Client]) -> None:
    _, p, client = peer
    create = amr(AccountOperation.CREATE, "bad", amount=EUR, subscriber="4931", origin=UPF)
    assert (await client.request(create)).result_code == 2001
    initial = ccr("asr-1", CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber="4931")
    assert (await cca(client, initial)).result_code == 2001
    suspend = amr(AccountOperation.SET_STATUS, "bad", status=AccountStatus.SUSPENDED, origin=UPF)
    assert (await client.request(suspend)).result_code == 2001
    asr = await asyncio.wait_for(p.arrived.get(), 5)
    assert isinstance(asr, ASR) and asr.session_id == sid("asr-1")
    term = ccr("asr-1", CCRequestType.TERMINATION, 1, mscc(10, used=(usu(octets=MiB),)))
    assert (await cca(client, term)).result_code == 2001
    account = (await get(client, "bad")).account
    assert account is not None and account.reserved == 0 and account.session_count == 0
    assert account.balance < EUR
    assert int(account.account_status) == int(AccountStatus.SUSPENDED)
