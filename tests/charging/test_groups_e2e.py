"""docs/accounts.md's worked example end to end: a server on 127.0.0.1 (in-process node on the
example's catalog), real CCRs and AMRs over TCP, a TICK past the period's end through the
node's own tick path, STATEMENT answers, the apportionment record in the CDR files; then a
restart that replays the journal (no checkpoint at exit) and answers the same.

The node rates at the wall clock, but the example's prices are flat and the apportioning counts
units, so every amount is the example's to the micro-unit (tests/charging/family.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import AccountOperation, SubscriptionIdType
from protocol.messages import AMA, AMR, CCA, CCR, Statement, SubscriptionId
from tests.charging.conftest import DATA, INITIAL, TERMINATION, VOICE, MiB, ccr, mscc, rsu, usu
from tests.charging.family import (
    CATALOG,
    GROUP_END,
    GROUP_START,
    SHARES,
    TOTALS,
    USAGE,
    USAGE_CHARGE,
)
from tests.charging.peer import UPF, Peer

DAY_MS = 86_400_000


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Node]:
    catalog = tmp_path / "family.toml"
    catalog.write_text(CATALOG)
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=tmp_path / "data", catalog=catalog, fork_checkpoints=False),
    )
    try:
        await app.start()
        yield app
    finally:
        await app.stop()
        await app.close()


def admin(op: AccountOperation, account_id: str, **kw: Any) -> AMR:
    return AMR(
        origin_host=UPF,
        origin_realm="test.local",
        account_operation=op,
        account_id=account_id,
        **kw,
    )


async def ama(client: Client, message: AMR) -> AMA:
    answer = await client.request(message)
    assert isinstance(answer, AMA), answer
    return answer


async def cca(client: Client, message: CCR) -> CCA:
    answer = await client.request(message)
    assert isinstance(answer, CCA) and answer.result_code == 2001, answer
    return answer


async def create(client: Client, account_id: str, msisdn: str, amount: int) -> None:
    sub = SubscriptionId(
        subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data=msisdn
    )
    made = await ama(
        client, admin(AccountOperation.CREATE, account_id, amount=amount, subscription_id=(sub,))
    )
    assert made.result_code == 2001, made


async def statement(client: Client, member: str, at_s: int | None = None) -> Statement:
    answer = await ama(client, admin(AccountOperation.STATEMENT, member, period_start=at_s))
    assert answer.result_code == 2001 and answer.statement is not None, answer
    return answer.statement


async def balance(client: Client, account_id: str) -> int:
    got = await ama(client, admin(AccountOperation.GET, account_id))
    assert got.account is not None
    return got.account.balance


def check_statement(found: Statement, member: str) -> None:
    lines = {s.service_name: s for s in found.statement_service}
    assert found.group_account_id == "family" and found.package_name == "family"
    assert {n: s.share for n, s in lines.items()} == SHARES[member]
    assert {n: s.usage_charge for n, s in lines.items()} == USAGE_CHARGE[member]
    assert found.share == TOTALS[member]
    assert found.usage_charge == sum(USAGE_CHARGE[member].values())


@pytest.mark.asyncio
async def test_the_family_of_three_over_the_wire(tmp_path: Path, monkeypatch: Any) -> None:
    # no checkpoint at exit: the restart below replays every input from the journal
    monkeypatch.setattr("ocs.edge.store.Store.checkpoint", lambda self: None)
    async with running(tmp_path) as app:
        client = await Peer().connect(app.server.port)
        try:
            await create(client, "family", "491700000100", GROUP_START)
            for member, msisdn, _, _ in USAGE:
                await create(client, member, msisdn, 5_000_000)
                joined = await ama(
                    client,
                    admin(
                        AccountOperation.GROUP_JOIN,
                        member,
                        group_account_id="family",
                        package_name="family",
                        operation_id=f"join-{member}",
                    ),
                )
                assert joined.result_code == 2001, joined
            for member, msisdn, seconds, octets in USAGE:
                for service, rg, used, ask in (
                    (VOICE, 40, usu(seconds=seconds), rsu(seconds=60)),
                    (DATA, 10, usu(octets=octets), rsu(octets=MiB)),
                ):
                    if not used.cc_time and not used.cc_total_octets:
                        continue  # carol never calls
                    name = f"{member}-{rg}"
                    opened = ccr(
                        name, INITIAL, 0, mscc(rg, ask=ask), subscriber=msisdn, service=service
                    )
                    await cca(client, opened)
                    await cca(
                        client, ccr(name, TERMINATION, 1, mscc(rg, used=(used,)), service=service)
                    )
            # usage so far: 8.668 EUR from the group, nothing from the members
            assert await balance(client, "family") == GROUP_START - 8_668_000
            assert await balance(client, "carol") == 5_000_000
            open_ = await statement(client, "alice")
            assert open_.share is None and open_.usage_charge == 3_048_000
            # the month ends: the node's tick, as its timer would run it then (journaled)
            end_s = open_.period_end
            assert app.tick(end_s * 1000 + 500)
            await app.drain()
            for member, _, _, _ in USAGE:
                check_statement(await statement(client, member, end_s - 1), member)
            assert await balance(client, "family") == GROUP_END
        finally:
            await client.close()
    data = tmp_path / "data"
    records = list(iter_records(data / "cdr"))
    seqs = read_sequence_numbers(data / "cdr")
    assert seqs == list(range(1, len(records) + 1))
    last = records[-1]
    assert last["recordType"] == "apportionment" and last["charge"] == 50_000_000
    assert {m["accountId"]: m["share"] for m in last["apportionment"]} == TOTALS
    # what the group lost is what the records charge: usage CDRs and the fee
    assert sum(int(r["charge"]) for r in records) == GROUP_START - GROUP_END

    # a restart that replays the whole journal (no checkpoint was written: as after a crash)
    assert not list((data / "journal").glob("*.snap"))
    async with running(tmp_path) as app:
        client = await Peer().connect(app.server.port)
        try:
            assert await balance(client, "family") == GROUP_END
            for member, _, _, _ in USAGE:
                check_statement(await statement(client, member, end_s - 1), member)
            # still members: the next period is open
            assert (await statement(client, "carol")).group_account_id == "family"
        finally:
            await client.close()
    assert read_sequence_numbers(data / "cdr") == seqs  # nothing written twice, nothing lost
