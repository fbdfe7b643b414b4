"""The loan of docs/accounts.md ("A loan") end to end over 127.0.0.1: a real node (journal, CDR
files), an operator tool and a voice network element on their own connections, to the
micro-unit; then a restart of the node on the same data directory gives the same state.

The node rates at the wall clock, so the catalog here is the demo catalog with its voice rating
group flat (no half-price weekend): the numbers are those of docs/accounts.md on any day."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocs.cli.main import main
from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig, recover
from protocol.codes import VERSION_DIAMETER, AccountOperation, ApplicationId, CCRequestType
from protocol.messages import AMA, AMR, CCA, Account
from tests.charging.conftest import DEMO, EUR, VOICE, amr, ccr, mscc, only, rsu, usu

ADMIN = "admin.test.local"
NE = "scp1.test.local"
SUB = "491700000042"
WEEKEND = """
[[rating_groups.periods]]
name = "weekend"
days = ["sat", "sun"]
start = "00:00"
end = "24:00"
factor = "0.5"                 # half price all weekend
"""


def flat_voice_catalog() -> str:
    assert WEEKEND in DEMO
    return DEMO.replace(WEEKEND, "\n")


@contextlib.asynccontextmanager
async def running(data_dir: Path, catalog: Path) -> AsyncIterator[Node]:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=data_dir, catalog=catalog),
    )
    try:
        await app.start()
        yield app
    finally:
        await app.stop()
        await app.close()


async def admin(client: Client, message: AMR) -> AMA:
    answer = await client.request(message)
    assert isinstance(answer, AMA), answer
    return answer


async def account(client: Client) -> Account:
    answer = await admin(client, amr(AccountOperation.GET, "a", origin=ADMIN))
    assert answer.result_code == 2001 and answer.account is not None, answer
    return answer.account


async def test_the_loan_of_docs_accounts_end_to_end(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(flat_voice_catalog())
    data_dir = tmp_path / "data"
    async with running(data_dir, catalog) as app:
        port = app.server.port
        operator = await Client.connect(
            port=port, origin_host=ADMIN, applications=(ApplicationId.ADMINISTRATION,)
        )
        ne = await Client.connect(
            port=port, origin_host=NE, applications=(ApplicationId.CREDIT_CONTROL,)
        )
        try:
            create = amr(AccountOperation.CREATE, "a", amount=200_000, subscriber=SUB, origin=ADMIN)
            assert (await admin(operator, create)).result_code == 2001  # 0.20 EUR
            # LOAN of 2.00: fee = 2.00 x 0.1 rounded up = 0.20
            loan = amr(AccountOperation.LOAN, "a", amount=2 * EUR, operation_id="L1", origin=ADMIN)
            taken = await admin(operator, loan)
            assert taken.result_code == 2001, taken
            assert taken.account is not None and taken.account.loan is not None
            assert taken.account.balance == 200_000 and taken.account.loan_balance == 2_000_000
            assert taken.account.loan[0].loan_fee == 200_000
            # the call: 0.05 setup fee + 1,950 s x 0.001 = 2.00, all of it from the loan, as
            # the money (0.20) is at or below the threshold (0.50)
            sid = f"{NE};call-1"
            ask = mscc(40, ask=rsu(seconds=1_950))
            first = ccr(
                sid, CCRequestType.INITIAL, 0, ask, subscriber=SUB, service=VOICE, origin=NE
            )
            granted = await ne.request(first)
            assert isinstance(granted, CCA) and granted.result_code == 2001
            assert only(granted).granted_service_unit is not None
            assert only(granted).granted_service_unit.cc_time == 1_950  # type: ignore[union-attr]
            used = mscc(40, used=(usu(seconds=1_950),))
            end = ccr(sid, CCRequestType.TERMINATION, 1, used, service=VOICE, origin=NE)
            ended = await ne.request(end)
            assert ended.result_code == 2001
            spent = await account(operator)
            assert spent.balance == 200_000 and spent.loan_balance == 0
            assert spent.loan is not None and spent.loan[0].loan_principal_due == 2 * EUR
            # the same answer in binary AVPs (the Loan AVPs of vendor OCS, codes 40-47)
            binary = await Client.connect(
                port=port,
                origin_host="admin2.test.local",
                applications=(ApplicationId.ADMINISTRATION,),
                encoding=VERSION_DIAMETER,
            )
            try:
                get = amr(AccountOperation.GET, "a", origin="admin2.test.local")
                seen = await binary.request(get)
                assert isinstance(seen, AMA) and seen.account == spent
            finally:
                await binary.close()
            # the next top-up, 10.00: repays 2.00 + 0.20 = 2.20, the rest (7.80) is money
            topup = amr(
                AccountOperation.CREDIT, "a", amount=10 * EUR, operation_id="T1", origin=ADMIN
            )
            assert (await admin(operator, topup)).result_code == 2001
            final = await account(operator)
            assert final.balance == 200_000 + 7_800_000 == 8_000_000
            assert final.loan is None and final.loan_balance is None and final.reserved == 0
            # retried (same Operation-Id): nothing more is repaid or credited
            assert (await admin(operator, topup)).result_code == 2001
            assert (await account(operator)).balance == 8_000_000
            # a crash now: the journal, durable, copied as a crash would leave it and replayed
            # from the start by `recover` (what `Node.open` does) gives the same state
            await app.drain()
            image = tmp_path / "crash-image"
            shutil.copytree(data_dir / "journal", image / "journal")
            recovered = recover(
                NodeConfig(data_dir=image), origin_host=app.core.origin_host,
                origin_realm=app.core.origin_realm,
            )  # fmt: skip
            try:
                assert recovered.core.snapshot(duplicates=False) == app.core.snapshot(
                    duplicates=False
                )
                assert recovered.core.ledger.snapshot() == app.core.ledger.snapshot()
            finally:
                recovered.cdrs.close()
                recovered.store.close()
        finally:
            await operator.close()
            await ne.close()
        before_core = app.core.snapshot(duplicates=False)
        before_ledger = app.core.ledger.snapshot()
    records = list(iter_records(data_dir / "cdr"))
    mine = [(r["recordType"], r["charge"]) for r in records if r["accountId"] == "a"]
    assert mine == [("loan", -2_000_000), ("session", 2_000_000), ("loanRepayment", 2_200_000)]
    # what the account lost: 0.20 + 10.00 - 8.00 = 2.20, the call and the fee
    assert sum(charge for _, charge in mine) == 2_200_000
    seqs = read_sequence_numbers(data_dir / "cdr")
    assert seqs == list(range(1, len(seqs) + 1))

    # restarted on the same data directory: the same accounts, loans and records
    async with running(data_dir, catalog) as again:
        assert again.core.snapshot(duplicates=False) == before_core
        assert again.core.ledger.snapshot() == before_ledger
        balances = {a.account_id: a.balance for a in again.core.ledger.accounts()}
        again.core.loans.check_invariants(balances)
        again.core.ledger.check_invariants()
    assert read_sequence_numbers(data_dir / "cdr") == seqs


async def test_ocs_account_loan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ocs account loan` and what `get` shows of a loan (the demo catalog's policy)."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(DEMO)
    async with running(tmp_path / "data", catalog) as app:
        server = f"127.0.0.1:{app.server.port}"

        async def cli(*args: str) -> tuple[int, str]:
            capsys.readouterr()
            argv = ["account", *args, "--server", server, "--origin-host", ADMIN]
            code = await asyncio.to_thread(main, argv)
            out, err = capsys.readouterr()
            return code, out + err

        assert (await cli("create", "a", "--msisdn", SUB, "--balance", "0.20"))[0] == 0
        code, out = await cli("loan", "a", "3.00")
        assert code == 1 and "5004" in out and "offered: 1000000, 2000000, 5000000" in out
        code, out = await cli("loan", "a", "2.00", "--operation-id", "L1")
        assert code == 0, out
        assert "loan taken 2.00: a active balance 0.20 " in out
        assert "loan-balance 2.00 loans loan-1 2.00 fee 0.20 owes 2.00+0.20" in out
        code, out = await cli("loan", "a", "1.00", "--operation-id", "L2")
        assert code == 1 and "5012" in out and "1 loan(s) outstanding" in out
        code, out = await cli("credit", "a", "10", "--operation-id", "T1")
        # 0.20 + 2.00 (loan money, paid for now) + 10.00 - 2.20 = 10.00
        assert code == 0 and "balance 10.00 " in out and "loan-balance" not in out
        code, out = await cli("get", "a", "--json")
        line = next(x for x in out.splitlines() if x.startswith("{"))
        assert code == 0 and json.loads(line)["Account"]["Balance"] == 10_000_000
