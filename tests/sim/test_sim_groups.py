"""The UPF simulator with a shared group (``--group-members``) against a real server on the
demo catalog (its package "family"): the members' usage is charged to the group account, the
others' to their own, and the simulator's log still reconciles with the CDRs."""

from __future__ import annotations

from pathlib import Path

from ocs.tools.sim.groups import group_account_id
from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from protocol.codes import AccountOperation
from rating import parse_money
from tests.sim.support import Operator, running_app


async def test_a_shared_group_in_the_upf_simulator(tmp_path: Path) -> None:
    log = tmp_path / "upf.jsonl"
    balance = parse_money("5")
    async with running_app(tmp_path / "data") as app:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=4,
                    duration=2.0,
                    speed=1000,
                    seed=3,
                    usage_log=log,
                    balance=balance,
                    origin_host="upf.test.local",
                    group_members=2,
                ),
                profile=DataProfile(rate=20_000, session_mean_s=600, off_mean_s=60),
            )
        )
        rt = await sim.run()
        subscribers = rt.subscribers()
        group = group_account_id(subscribers[:2])
        operator = await Operator.connect(app.server.port)
        try:
            balances = {}
            for account in (group, *(s.account_id for s in subscribers)):
                got = await operator.amr(AccountOperation.GET, account)
                assert got.account is not None
                balances[account] = got.account.balance
            statements = [
                await operator.amr(AccountOperation.STATEMENT, s.account_id)
                for s in subscribers[:2]
            ]
        finally:
            await operator.close()
    assert rt.stats.protocol_errors == 0 and rt.stats.sessions_opened > 0
    members, others = subscribers[:2], subscribers[2:]
    # the members' own balances never moved; the group paid for them
    assert all(balances[m.account_id] == balance for m in members)
    group_lost = 2 * balance - balances[group]
    assert group_lost > 0
    charged = 0
    for answer in statements:
        assert answer.result_code == 2001 and answer.statement is not None
        assert answer.statement.group_account_id == group
        charged += answer.statement.usage_charge
    assert charged == group_lost
    assert any(balances[o.account_id] < balance for o in others)
    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
