"""The SCP simulator (SMS by reservation and by event with refunds, voice calls) against a real
server (in-process, demo catalog), then reconciled with the CDRs."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.scp import ScpConfig, ScpProfile, ScpSimulator
from ocs.tools.sim.usage_log import EventEntry, SessionEntry, UsageEntry, read_entries
from rating import parse_money
from tests.sim.support import Operator, running_app


async def test_scp_sms_events_refunds_and_calls_reconcile(tmp_path: Path) -> None:
    log = tmp_path / "scp.jsonl"
    async with running_app(tmp_path / "data") as app:
        sim = ScpSimulator(
            ScpConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=5,
                    duration=3.0,
                    speed=300,
                    seed=11,
                    usage_log=log,
                    balance=parse_money("5"),
                    origin_host="scp.test.local",
                ),
                profile=ScpProfile(sms_rate=0.15, failure_rate=0.3, calls=10, call_mean_s=400),
            )
        )
        run = asyncio.create_task(sim.run())
        operator = await Operator.connect(app.server.port)
        try:
            # suspending an account aborts its open calls (ASR)
            await asyncio.sleep(1.0)
            for _ in range(100):
                calls = sim.scp.calls if sim.scp is not None else []
                talking = [c for c in calls if c.session is not None and c.session.is_open]
                if talking:
                    await operator.suspend(talking[0].subscriber.account_id)
                    break
                await asyncio.sleep(0.02)
        finally:
            await operator.close()
        rt = await run

    stats = rt.stats
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert sum(stats.sessions_closed.values()) == stats.sessions_opened > 0
    assert stats.asr >= 1 and stats.sessions_closed["abort"] >= 1

    entries = list(read_entries(log))
    usage = [e for e in entries if isinstance(e, UsageEntry)]
    events = [e for e in entries if isinstance(e, EventEntry)]
    sessions = [e for e in entries if isinstance(e, SessionEntry)]
    sms = [e for e in usage if e.rating_group == 30]
    voice = [e for e in usage if e.rating_group == 40]
    # SMS by reservation: TERMINATION with 1 unit, or 0 for an undelivered message
    assert {e.units for e in sms} == {0, 1}
    assert all(e.cc_request_type == "TERMINATION" and e.reason == "FINAL" for e in sms)
    # events: debits, and refunds of failed ones with the debit's timestamp
    actions = Counter(e.action for e in events if e.ok)
    assert actions["DIRECT_DEBITING"] > 0 and actions["REFUND_ACCOUNT"] > 0
    debits = {e.session_id: e for e in events if e.action == "DIRECT_DEBITING"}
    for refund in (e for e in events if e.action == "REFUND_ACCOUNT"):
        assert refund.refund_of in debits
        assert refund.event_timestamp == debits[refund.refund_of].event_timestamp
    # calls: time quota, threshold reports, the end of the call
    assert Counter(e.reason for e in voice)["THRESHOLD"] > 0
    assert all(e.unit == "seconds" for e in voice)
    assert {e.service_context_id for e in sessions} == {"32274@3gpp.org", "32260@3gpp.org"}

    records = list(iter_records(tmp_path / "data" / "cdr"))
    refunds = [r for r in records if r.get("requestedAction") == "REFUND_ACCOUNT"]
    assert refunds and all(r["charge"] < 0 for r in refunds)

    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
    assert result.client_events == result.server_events == sum(actions.values())
