"""The UPF simulator against a server whose catalog counts data per subscriber and day: the RARs
of the counter's thresholds reach the simulated sessions, which re-authorise, and the summary
counts them by counter (docs/simulators.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from rating import parse_money
from tests.sim.support import data_catalog, running_app

# every 2 MiB of data or video a subscriber uses in a day re-authorises its sessions
COUNTER = """
[[counters]]
name = "data-daily"
unit = "octets"
rating_groups = [10, 20]
period = "daily"
thresholds = ["2 MiB", "4 MiB", "6 MiB", "8 MiB", "10 MiB", "12 MiB", "14 MiB", "16 MiB"]
"""


async def test_upf_sessions_get_the_rar_of_a_usage_counter(tmp_path: Path) -> None:
    catalog = data_catalog(tmp_path / "catalog.toml", change_in_s=10 * 86400)
    catalog.write_text(catalog.read_text() + COUNTER)
    async with running_app(tmp_path / "data", catalog) as app:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=3,
                    duration=3.0,
                    speed=1000,
                    seed=11,
                    balance=parse_money("5"),
                    origin_host="upf.test.local",
                ),
                profile=DataProfile(
                    rate=60_000, session_mean_s=2000, off_mean_s=60, video_probability=0.7
                ),
            )
        )
        rt = await asyncio.wait_for(sim.run(), 120)
    stats = rt.stats
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert stats.counter_rars["data-daily"] > 0, rt.summary()
    # (with the legacy counter "account" of the catalog's [account] usage_thresholds)
    line = next(x for x in rt.summary().splitlines() if x.startswith("  usage counters"))
    assert f"data-daily {stats.counter_rars['data-daily']}" in line
    assert stats.reasons["FORCED_REAUTHORISATION"] > 0  # the sessions re-authorised
