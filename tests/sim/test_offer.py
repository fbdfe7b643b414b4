"""The UPF simulator with `--offer`: its first subscriber takes the demo bundle and its data
draws on the allowance; the run still reconciles with the CDRs (the fee has its own record)."""

from __future__ import annotations

from pathlib import Path

from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from protocol.codes import AccountOperation
from rating import parse_money
from tests.sim.support import Operator, running_app

GiB = 1 << 30


async def test_the_first_subscriber_uses_its_bundle(tmp_path: Path) -> None:
    log = tmp_path / "upf.jsonl"
    async with running_app(tmp_path / "data") as app:  # the demo catalog: bundle-15
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=2,
                    duration=2.0,
                    speed=100,
                    seed=3,
                    usage_log=log,
                    balance=parse_money("20"),
                    origin_host="upf.test.local",
                    offer="bundle-15",
                ),
                profile=DataProfile(rate=60_000, session_mean_s=200, off_mean_s=20),
            )
        )
        rt = await sim.run()
        operator = await Operator.connect(app.server.port)
        try:
            first, second = (s.account_id for s in rt.subscribers())
            mine = (await operator.amr(AccountOperation.GET, first)).account
            theirs = (await operator.amr(AccountOperation.GET, second)).account
        finally:
            await operator.close()
    assert rt.stats.protocol_errors == 0 and rt.stats.sessions_opened > 0
    assert mine is not None and mine.offer_balance is not None
    data = next(b for b in mine.offer_balance if b.allowance_name == "data")
    assert data.allowance_units < 10 * GiB and data.allowance_reserved == 0  # data was drawn
    assert mine.balance == parse_money("5")  # 20 - the 15 EUR fee: the allowance paid the rest
    assert theirs is not None and theirs.offer_balance is None
    assert theirs.balance < parse_money("20")  # no offer: paid in money
    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
