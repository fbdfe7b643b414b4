"""The UPF simulator against a real server (in-process), then reconciled with the CDRs."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from ocs.tools.sim.usage_log import SessionEntry, UsageEntry, read_entries
from rating import parse_money
from tests.sim.support import Operator, data_catalog, running_app


async def test_upf_reports_every_kind_of_usage_and_reconciles(tmp_path: Path) -> None:
    log = tmp_path / "upf.jsonl"
    # the tariff change comes 1500 s from now: the simulation clock (x1000) passes it after 1.5 s
    catalog = data_catalog(tmp_path / "catalog.toml", change_in_s=1500)
    async with running_app(tmp_path / "data", catalog) as app:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=6,
                    duration=4.0,
                    speed=1000,
                    seed=7,
                    usage_log=log,
                    balance=parse_money("0.3"),
                    origin_host="upf.test.local",
                ),
                profile=DataProfile(
                    rate=60_000, session_mean_s=2000, off_mean_s=60, video_probability=0.7
                ),
            )
        )
        run = asyncio.create_task(sim.run())
        operator = await Operator.connect(app.server.port)
        try:
            await asyncio.sleep(2.0)
            accounts = [s.account_id for s in sim.rt.subscribers()]
            for account in accounts[1:]:
                await operator.top_up(account, parse_money("2"))  # RAR for starved sessions
            await asyncio.sleep(0.8)
            await operator.suspend(accounts[0])  # ASR for its session
        finally:
            await operator.close()
        rt = await run

    stats = rt.stats
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert stats.sessions_opened > 0
    assert sum(stats.sessions_closed.values()) == stats.sessions_opened
    assert stats.rar > 0 and stats.asr >= 1
    assert stats.sessions_closed["abort"] >= 1

    entries = list(read_entries(log))
    usage = [e for e in entries if isinstance(e, UsageEntry)]
    reasons = Counter(e.reason for e in usage)
    for reason in (
        "THRESHOLD",
        "QUOTA_EXHAUSTED",
        "VALIDITY_TIME",
        "QHT",
        "LINKED_USAGE",
        "FORCED_REAUTHORISATION",
        "FINAL",
    ):
        assert reasons[reason] > 0, (reason, reasons)
    assert all(e.ok for e in usage)
    # linked usage rides in the same CCR as the report that caused it
    by_request = Counter((e.session_id, e.cc_request_number) for e in usage)
    for e in usage:
        if e.reason == "LINKED_USAGE":
            assert by_request[(e.session_id, e.cc_request_number)] >= 2
    # the usage around the tariff change is split
    split = Counter(e.tariff_change_usage for e in usage if e.tariff_change_usage)
    assert split["UNIT_BEFORE_TARIFF_CHANGE"] > 0 and split["UNIT_AFTER_TARIFF_CHANGE"] > 0
    # final units: redirect/restrict let traffic pass uncounted
    assert sum(stats.uncounted.values()) > 0
    sessions = [e for e in entries if isinstance(e, SessionEntry)]
    assert {e.event for e in sessions} == {"open", "close"}

    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
    assert result.client_reports == result.server_containers == len(usage)
    assert result.client_sessions == stats.sessions_opened
