"""Offers through the node: every input journaled (SUBSCRIBE, grants held on allowances,
reports, a renewal tick), and the journal replayed from the start by recovery (what a restart
after a crash does) rebuilds the same core and ledger, byte for byte."""

from __future__ import annotations

from pathlib import Path

from msgspec.structs import replace

from protocol.codes import AccountOperation
from tests.charging.conftest import EUR, INITIAL, SUB, UPDATE, MiB, amr, ccr, mscc, rsu, usu
from tests.charging.peer import UPF
from tests.charging.test_atomic import replayed_state, running


async def test_offers_replay_through_the_node(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as run:
        created = await run.ama(
            amr(AccountOperation.CREATE, "a", amount=40 * EUR, subscriber=SUB, origin=UPF)
        )
        assert created.result_code == 2001
        subscribe = replace(
            amr(AccountOperation.SUBSCRIBE, "a", operation_id="s-1", origin=UPF),
            offer_name="bundle-15",
        )
        assert (await run.ama(subscribe)).result_code == 2001
        opened = await run.cca(
            ccr("n1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB, origin=UPF)
        )
        assert opened.result_code == 2001
        report = ccr("n1", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=3 * MiB),)), origin=UPF)
        assert (await run.cca(report)).result_code == 2001
        # 40 - 15 EUR; the data paid by the allowance, 10 MiB held on it, no money reserved
        assert await run.balance() == (25 * EUR, 0)
        core = run.node.core
        (sub,) = core.offers.subscriptions("a")
        assert sub.next_ms is not None
        # the edge ticks at the renewal's instant (a month on): the second fee, journaled
        assert run.node.tick(sub.next_ms)
        assert core.offers.subscriptions("a")[0].period == 1
        assert await run.balance() == (10 * EUR, 0)
        core.offers.check_invariants()
        live = core.snapshot(), core.ledger.snapshot()
        assert await replayed_state(run, tmp_path) == live
