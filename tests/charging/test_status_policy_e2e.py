"""Service control by account state and the inhibit threshold over 127.0.0.1: a real node on the
flat policy catalog of test_status_policy.py (prices do not depend on the clock), a network
element that answers RAR/ASR, the push after a top-up and after a change of state, and a
restart that replays the journal into the same state and the same answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import AccountOperation, AccountStatus, CCRequestType, ReportingReason
from protocol.messages import AMA, AMR, ASR, CCA, CCR, RAR, ServiceUnit
from tests.charging.conftest import EUR, MiB, amr, by_rg, ccr, mscc, only, rsu, sid, usu
from tests.charging.peer import APPS, UPF, Peer
from tests.charging.test_status_policy import CARE, INHIBIT, POLICY_CATALOG, TOPUP, ZERO
from tests.durability.test_account_cli import Cli

INITIAL, UPDATE, TERMINATION = (
    CCRequestType.INITIAL,
    CCRequestType.UPDATE,
    CCRequestType.TERMINATION,
)
REAUTH = ReportingReason.FORCED_REAUTHORISATION


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


async def cca(client: Client, message: CCR, end_to_end: int | None = None) -> CCA:
    answer = await client.request(message, end_to_end=end_to_end)
    assert isinstance(answer, CCA), answer
    return answer


async def ama(client: Client, message: AMR) -> AMA:
    answer = await client.request(message)
    assert isinstance(answer, AMA), answer
    return answer


def admin(op: AccountOperation, account_id: str, **keys: object) -> AMR:
    return AMR(
        origin_host=UPF,
        origin_realm="test.local",
        account_operation=op,
        account_id=account_id,
        **keys,  # type: ignore[arg-type]
    )


async def test_inhibit_threshold_top_up_and_status_push_then_replay(tmp_path: Path) -> None:
    catalog = tmp_path / "policy.toml"
    catalog.write_text(POLICY_CATALOG)
    data = tmp_path / "data"
    async with running(data, catalog) as app:
        p = Peer()
        client = await p.connect(app.server.port)
        try:
            create = amr(
                AccountOperation.CREATE, "ap", amount=1_100_000, subscriber="4930", origin=UPF
            )
            assert (await client.request(create)).result_code == 2001
            # 1.10 EUR, inhibit at 1.00: 0.10 EUR of data = 10 MiB, then the top-up page
            g = only(
                await cca(
                    client,
                    ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=50 * MiB)), subscriber="4930"),
                )
            )
            assert g.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
            assert g.final_unit_indication == TOPUP and g.low_balance_indication == INHIBIT
            # used up: charged 0.10, 1.00 left = the threshold: zero units, redirected
            used = (usu(octets=10 * MiB, reason=ReportingReason.QUOTA_EXHAUSTED),)
            g = only(await cca(client, ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=used))))
            assert g.granted_service_unit == ZERO and g.final_unit_indication == TOPUP
            account = (await ama(client, admin(AccountOperation.GET, "ap"))).account
            assert account is not None and account.account_state == "low_balance"
            assert account.balance == 1_000_000
            # top-up 5 EUR: RAR for the inhibited group, re-authorised: a full 10 MiB grant
            credit = amr(
                AccountOperation.CREDIT, "ap", amount=5 * EUR, operation_id="t1", origin=UPF
            )
            assert (await client.request(credit)).result_code == 2001
            pushed = await asyncio.wait_for(p.arrived.get(), 5)
            assert isinstance(pushed, RAR) and pushed.session_id == sid("s")
            assert pushed.rating_group == (10,)
            g = only(await cca(client, ccr("s", UPDATE, 2, mscc(10, ask=rsu(), reason=REAUTH))))
            assert g.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
            assert g.final_unit_indication is None and g.low_balance_indication is None
            # suspended: data is redirected to care (RAR, not ASR) ...
            suspend = admin(
                AccountOperation.SET_STATUS, "ap", account_status=AccountStatus.SUSPENDED
            )
            assert (await ama(client, suspend)).result_code == 2001
            pushed = await asyncio.wait_for(p.arrived.get(), 5)
            assert isinstance(pushed, RAR) and pushed.rating_group == (10,)
            reauth = ccr("s", UPDATE, 3, mscc(10, ask=rsu(), used=(usu(octets=MiB),)))
            g = only(await cca(client, reauth))
            assert g.granted_service_unit == ZERO and g.final_unit_indication == CARE
            # ... and an operator-defined state that denies SMS aborts an SMS session
            activate = admin(
                AccountOperation.UPDATE,
                "ap",
                account_status=AccountStatus.ACTIVE,
                operation_id="u1",
            )
            assert (await ama(client, activate)).result_code == 2001
            pushed = await asyncio.wait_for(p.arrived.get(), 5)
            assert isinstance(pushed, RAR)  # active again
            sms = ccr(
                "m", INITIAL, 0, mscc(30, ask=rsu()), subscriber="4930", service="32274@3gpp.org"
            )
            assert only(await cca(client, sms)).result_code == 2001
            arrears = admin(AccountOperation.SET_STATUS, "ap", account_state="in_arrears")
            assert (await ama(client, arrears)).result_code == 2001
            told = {}
            for _ in range(2):
                request = await asyncio.wait_for(p.arrived.get(), 5)
                assert isinstance(request, RAR | ASR)
                told[request.session_id] = type(request)
            # data keeps a walled garden (RAR), SMS is denied everything (ASR)
            assert told == {sid("s"): RAR, sid("m"): ASR}
            end_sms = ccr("m", TERMINATION, 1, mscc(30, used=(usu(units=0),)))
            assert (await cca(client, end_sms)).result_code == 2001
            last = ccr("s", UPDATE, 4, mscc(10, ask=rsu(), reason=REAUTH), mscc(20, ask=rsu()))
            last_e2e = 777_001
            answer = await cca(client, last, end_to_end=last_e2e)
            assert by_rg(answer)[10].final_unit_indication is not None
            assert by_rg(answer)[20].result_code == 4010
            before = await ama(client, admin(AccountOperation.GET, "ap"))
        finally:
            await client.close()
        state = app.core.snapshot(duplicates=False)
        # a crash once everything was durable: no snapshot at the end, the journal holds it all
        app.store.checkpoint = lambda: 0  # type: ignore[method-assign]
    # 1.10 + 5.00 - 0.10 (10 MiB) - 0.01 (1 MiB); the SMS reserved and gave back
    assert before.account is not None and before.account.balance == 5_990_000
    assert before.account.account_state == "in_arrears"
    # the restart replays the journal: the same state, and the last answer again for a retry
    async with running(data, catalog) as again:
        assert again.store.recovery.replayed > 0  # the journal was replayed through the core
        assert again.core.snapshot(duplicates=False) == state
        client = await Client.connect(port=again.server.port, origin_host=UPF, applications=APPS)
        try:
            repeat = await client.request(last, end_to_end=last_e2e, retransmit=True)
            assert repeat == answer
            assert await ama(client, admin(AccountOperation.GET, "ap")) == before
        finally:
            await client.close()


async def test_the_account_commands_set_the_state_and_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ocs account state` and `ocs account update --state/--inhibit-threshold/
    --notify-threshold`, over 127.0.0.1 against a node on the policy catalog."""
    catalog = tmp_path / "policy.toml"
    catalog.write_text(POLICY_CATALOG)
    async with running(tmp_path / "data", catalog) as app:
        cli = Cli(SimpleNamespace(port=app.server.port), capsys)  # type: ignore[arg-type]

        async def as_json(*args: str) -> tuple[int, dict[str, Any]]:
            """The command's JSON line (the in-process server logs to the same stdout, and its
            audit event may come after the command's line: the last line that is JSON)."""
            code, out, _ = await cli.run(*args, "--json")
            line = [x for x in out.splitlines() if x.startswith("{")][-1]
            obj: dict[str, Any] = json.loads(line)
            return code, obj

        assert (await cli.run("create", "c-1", "--msisdn", "4930", "--balance", "5"))[0] == 0
        code, obj = await as_json("state", "c-1", "in_arrears")
        assert code == 0 and obj["Account"]["Account-State"] == "in_arrears"
        code, out, err = await cli.run("state", "c-1", "vip")
        assert code == 1 and "not one the catalog defines: 'vip'" in err
        code, obj = await as_json(
            "update", "c-1", "--state", "active", "--inhibit-threshold", "4.5",
            "--notify-threshold", "4.8", "--operation-id", "u-1",
        )  # fmt: skip
        account = obj["Account"]
        assert code == 0 and account["Account-State"] == "active"
        assert (account["Inhibit-Threshold"], account["Notify-Threshold"]) == (4_500_000, 4_800_000)
        code, out, _ = await cli.run(
            "update", "c-1", "--inhibit-threshold", "catalog", "--operation-id", "u-2"
        )
        assert code == 0
        assert "state active inhibit-threshold 1.00 notify-threshold 4.80" in out
