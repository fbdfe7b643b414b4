"""The IoT low-signalling profile behind the real server, over 127.0.0.1: profile grants, the
fall back beyond the threshold set with its record and RAR, the CDR files, and the state a
replay of the journal after a crash rebuilds (docs/charging.md, *IoT low-signalling profile*).

The catalog is flat (0.01 EUR/MiB at any time, UTC) so that amounts do not depend on the wall
clock; the period (a UTC day) does: the test waits out the last 30 s of a day."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from protocol.codes import AccountOperation, ReportingReason, SubscriptionIdType
from protocol.messages import RAR
from tests.charging.conftest import (
    EUR,
    INITIAL,
    TERMINATION,
    UPDATE,
    KiB,
    MiB,
    amr,
    ccr,
    mscc,
    only,
    rsu,
    sid,
    usu,
)
from tests.charging.peer import UPF
from tests.charging.test_atomic import Running, replayed_state, running, state

CATALOG = """
version = 1
name = "iot-test"
timezone = "UTC"

[currency]
code = 978

[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10]

[[rating_groups]]
id = 10
unit = "octets"
price = "0.01"
block = "1 MiB"
increment = "1 KiB"

[rating_groups.grant]
quantum = "4 MiB"
validity_time = "1 h"
threshold = "0.2"
quota_holding_time = "2 min"
final_unit_action = "terminate"

[[device_classes]]
name = "meter"
imsi_prefixes = ["99901"]
rating_groups = [10]
period = "1 d"
max_octets = "1 MiB"
max_reports = 3
reserve = "0.002"
quota_holding_time = "12 h"
"""

IMSI = "999010000000007"
DAY_S = 86_400


async def reserved(run: Running) -> tuple[int, int]:
    answer = await run.ama(amr(AccountOperation.GET, "m", origin=UPF))
    assert answer.account is not None
    return answer.account.balance, answer.account.reserved


async def test_profile_fall_back_records_and_replay(tmp_path: Path) -> None:
    left_s = DAY_S - int(time.time()) % DAY_S
    if left_s < 30:  # the whole test within one period (a UTC day)
        await asyncio.sleep(left_s + 1)
    catalog = tmp_path / "iot.toml"
    catalog.write_text(CATALOG)
    async with running(tmp_path / "data", catalog=catalog) as run:
        create = amr(
            AccountOperation.CREATE,
            "m",
            amount=EUR,
            subscriber=IMSI,
            subscriber_type=SubscriptionIdType.END_USER_IMSI,
            origin=UPF,
        )
        assert (await run.ama(create)).result_code == 2001

        def opening(name: str):  # type: ignore[no-untyped-def]
            return ccr(
                name,
                INITIAL,
                0,
                mscc(10, ask=rsu()),
                subscriber=IMSI,
                subscriber_type=SubscriptionIdType.END_USER_IMSI,
            )

        # requests 1 and 2 of the day: two sessions of the device, each granted the whole set
        # (1 MiB), until the day's end, Quota-Holding-Time 12 h, no threshold; each reserves
        # min(1 MiB x 0.01 EUR = 10,000, 2,000) = 2,000
        before_s = int(time.time())
        g1 = only(await run.cca(opening("s1")))
        after_s = int(time.time())
        assert g1.granted_service_unit is not None
        assert g1.granted_service_unit.cc_total_octets == MiB
        assert DAY_S - after_s % DAY_S <= (g1.validity_time or 0) <= DAY_S - before_s % DAY_S
        assert g1.quota_holding_time == 43_200 and g1.volume_quota_threshold is None
        g2 = only(await run.cca(opening("s2")))
        assert g2.granted_service_unit is not None
        assert g2.granted_service_unit.cc_total_octets == MiB
        assert await reserved(run) == (EUR - 4_000, 4_000)

        # request 3: 512 KiB used (0.5 x 10,000 = 5,000); the grant is what is left, 512 KiB
        used = mscc(10, ask=rsu(), used=(usu(octets=512 * KiB),))
        g = only(await run.cca(ccr("s1", UPDATE, 1, used)))
        assert g.granted_service_unit is not None
        assert g.granted_service_unit.cc_total_octets == 512 * KiB
        assert g.quota_holding_time == 43_200
        # posted 1,000,000 - 5,000; reserved 2,000 + min(5,000, 2,000)
        assert await reserved(run) == (EUR - 5_000 - 4_000, 4_000)

        # request 4: beyond max_reports (3): the device falls back. s1's answer is the normal
        # grant (4 MiB, an hour, threshold floor(0.2 x 4 MiB) = 838,860, QHT 2 min, reserving
        # 4 x 10,000); s2 is re-authorised by RAR
        g = only(await run.cca(ccr("s1", UPDATE, 2, mscc(10, ask=rsu(), used=(usu(octets=0),)))))
        assert g.granted_service_unit is not None
        assert g.granted_service_unit.cc_total_octets == 4 * MiB
        assert (g.validity_time, g.quota_holding_time) == (3_600, 120)
        assert g.volume_quota_threshold == 838_860
        rar = await asyncio.wait_for(run.peer.arrived.get(), 5)
        assert isinstance(rar, RAR) and rar.session_id == sid("s2") and rar.rating_group == (10,)
        reauth = mscc(
            10, ask=rsu(), used=(usu(octets=0),), reason=ReportingReason.FORCED_REAUTHORISATION
        )
        g = only(await run.cca(ccr("s2", UPDATE, 1, reauth)))
        assert g.quota_holding_time == 120
        assert await reserved(run) == (EUR - 5_000 - 80_000, 80_000)

        for name, number in (("s1", 3), ("s2", 2)):
            end = ccr(name, TERMINATION, number, mscc(10, used=(usu(octets=0),)))
            assert (await run.cca(end)).result_code == 2001
        assert await reserved(run) == (EUR - 5_000, 0)

        # a crash now: a replay of the journal from the start rebuilds the same state
        live = state(run.node)
        assert await replayed_state(run, tmp_path) == live

    records = list(iter_records(tmp_path / "data" / "cdr"))
    by_cause = [(r["sessionId"], r["causeForRecordClosing"], r["charge"]) for r in records]
    assert by_cause == [
        (sid("s1"), "partialRecord", 5_000),  # s1's aggregate, written at the fall back
        (sid("s1"), "normalRelease", 0),
        (sid("s2"), "normalRelease", 0),
    ]
    assert records[0]["iotFallback"] == "maxReports"
    assert all(r["iotDeviceClass"] == "meter" for r in records)
    assert sum(r["charge"] for r in records) == 5_000  # what the account lost
    # and a restart on the data directory (snapshot or replay) has the same state
    async with running(tmp_path / "data", catalog=catalog) as restarted:
        assert state(restarted.node) == live
