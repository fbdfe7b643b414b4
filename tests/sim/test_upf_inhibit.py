"""The UPF simulator against a real server with an inhibit threshold (issue 15, item 2): a
subscriber's data is inhibited (redirected to the top-up page, uncounted) when the balance
reaches the threshold while money remains, and restored after a top-up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DATA_RG, DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from ocs.tools.sim.urr import RuleState, UsageRule
from protocol.codes import AccountOperation
from tests.charging.test_status_policy import POLICY_CATALOG
from tests.server.helpers import until
from tests.sim.support import Operator, running_app


def data_rule(sim: UpfSimulator) -> UsageRule | None:
    session = sim.users[0].session if sim.users else None
    if session is None or DATA_RG not in session.engine.rules:
        return None
    return session.engine.rule(DATA_RG)


def state(sim: UpfSimulator) -> RuleState | None:
    rule = data_rule(sim)
    return rule.state if rule is not None else None


@pytest.mark.parametrize("own", [False, True], ids=["catalog-threshold", "account-threshold"])
async def test_upf_is_inhibited_at_the_threshold_and_restored_by_a_top_up(
    tmp_path: Path, own: bool
) -> None:
    """The threshold (1.00 EUR) from the catalog, or given to each account by the simulator
    (`--inhibit-threshold`, an UPDATE) on a catalog without one."""
    catalog = tmp_path / "policy.toml"
    text = POLICY_CATALOG  # flat 0.01 EUR/MiB, inhibit threshold 1.00 EUR
    if own:
        text = text.replace('inhibit_threshold = "1.00"\n', "")
        assert "inhibit_threshold" not in text
    catalog.write_text(text)
    log = tmp_path / "upf.jsonl"
    async with running_app(tmp_path / "data", catalog) as app:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=1,
                    duration=8.0,
                    speed=100,
                    seed=5,
                    usage_log=log,
                    balance=1_500_000,  # 1.50 EUR: 0.50 EUR of data above the threshold
                    inhibit_threshold=1_000_000 if own else None,
                    origin_host="upf.test.local",
                ),
                # one long data session, always sending (~20 MB/s of simulated time)
                profile=DataProfile(
                    rate=200_000,
                    video_probability=0.0,
                    on_mean_s=100_000,
                    off_mean_s=1,
                    session_mean_s=100_000,
                    gap_mean_s=1,
                ),
            )
        )
        run = asyncio.create_task(sim.run())
        operator = await Operator.connect(app.server.port)
        try:
            await until(lambda: state(sim) is RuleState.FINAL, timeout=6.0)
            rule = data_rule(sim)
            assert rule is not None and rule.inhibited >= 1
            account_id = sim.rt.subscribers()[0].account_id
            # money remains: 1.50 - 50 MiB x 0.01 = exactly the threshold, 1.00 EUR, and no
            # reservation (the zero grant holds nothing)
            account = (await operator.amr(AccountOperation.GET, account_id)).account
            assert account is not None
            assert (account.balance, account.reserved) == (1_000_000, 0)
            assert account.account_state == "low_balance"
            counted = rule.counted
            await until(lambda: rule.uncounted > 0, timeout=3.0)  # traffic passes, redirected
            assert rule.counted == counted
            # a top-up: RAR, re-authorisation, counted again
            await operator.top_up(account_id, 2_000_000)
            await until(lambda: rule.state is RuleState.ACTIVE, timeout=3.0)
            await until(lambda: rule.counted > counted, timeout=3.0)
        finally:
            await operator.close()
        rt = await run
    stats = rt.stats
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert stats.rar >= 1 and stats.uncounted[DATA_RG] > 0 and stats.inhibited[DATA_RG] >= 1
    assert "inhibited       zero grants with redirect/restrict RG 10" in rt.summary()
    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
