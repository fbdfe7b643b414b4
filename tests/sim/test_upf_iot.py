"""`ocs sim upf --iot N`: IoT devices beside the subscribers, against a real server on the demo
catalog (device class "meter"), then reconciled with the CDRs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.tools.sim.iot import IotProfile
from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.upf import UpfConfig, UpfSimulator, iot_subscribers
from ocs.tools.sim.usage_log import SessionEntry, UsageEntry, read_entries
from tests.sim.support import running_app


async def test_iot_devices_hold_one_grant_and_write_one_record(tmp_path: Path) -> None:
    left_s = 86_400 - int(time.time()) % 86_400
    if left_s < 400:  # the grants end at 00:00 UTC: 2 s at x100 must not reach it
        await asyncio.sleep(left_s + 1)
    log = tmp_path / "upf.jsonl"
    iot = IotProfile(report_bytes=200, interval_s=60)
    async with running_app(tmp_path / "data") as app:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=app.server.port,
                    subscribers=1,
                    duration=2.0,
                    speed=100,  # a report every 0.6 real seconds
                    seed=3,
                    usage_log=log,
                    origin_host="upf.test.local",
                ),
                iot_devices=3,
                iot=iot,
            )
        )
        rt = await sim.run()
    stats = rt.stats
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    imsis = {s.msisdn for s in iot_subscribers(iot, 3)}
    entries = list(read_entries(log))
    opened = [e for e in entries if isinstance(e, SessionEntry) and e.subscriber in imsis]
    assert {e.event for e in opened} == {"open", "close"} and len(opened) == 6
    # within the profile a device's grant (1 MiB, until the day's end, QHT 1 d) lasts the run:
    # no UPDATE, the reports all ride in the TERMINATION
    device_usage = [e for e in entries if isinstance(e, UsageEntry) and e.subscriber in imsis]
    assert {e.cc_request_type for e in device_usage} == {"TERMINATION"}
    assert all(e.units % 200 == 0 for e in device_usage)
    records = [r for r in iter_records(tmp_path / "data" / "cdr") if r["servedSubscriber"] in imsis]
    assert len(records) == 3 and all(r["iotDeviceClass"] == "meter" for r in records)
    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()
