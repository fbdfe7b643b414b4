"""Usage counters end to end over 127.0.0.1: the node (in-process) on a catalog with counters,
a network element with two open sessions of one subscriber. A crossing sends RAR to both
sessions with `Usage-Counter`; GET shows the counters; the daily counter resets at local
midnight; a crash image of the data directory recovers (journal replay) to the same state.

The server's clock is the test's: `ocs.edge.server` reads the time of each batch through a
stand-in for its `time` module and the node's timer through `ocs.node._now_ms`. The clock is
set after the real one (so that no real-time tick can expire what the test holds), half an
hour before a local midnight in Paris, when data is off-peak: 0.01 EUR/MiB for RG 10 and a
flat 0.005 EUR/MiB for RG 20 (the demo catalog, docs/catalog.md)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import ocs.edge.server
import ocs.node
from ocs.cli.main import main
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import AccountOperation, CCRequestType, CounterUnit, ReportingReason
from protocol.messages import AMA, CCA, RAR, UsageCounter
from tests.charging.conftest import EUR, MiB, amr, ccr, mscc, rsu, sid, usu
from tests.charging.peer import UPF, Peer
from tests.charging.test_counters import CATALOG

MIN_MS = 60_000
SUB = "4930001"


class Clock:
    """The server's clock: a stand-in for the `time` module of `ocs.edge.server`."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def time_ns(self) -> int:
        return self.now_ms * 1_000_000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def next_paris_midnight_ms(after_s: float) -> int:
    """The first local midnight in Paris at least two days after `after_s`."""
    paris = ZoneInfo("Europe/Paris")
    day = (datetime.fromtimestamp(after_s, tz=UTC) + timedelta(days=2)).astimezone(paris).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=paris)
    return int(midnight.timestamp()) * 1000


@pytest.fixture
async def node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Node, Clock, int]]:
    midnight = next_paris_midnight_ms(time.time())
    clock = Clock(midnight - 30 * MIN_MS)  # 23:30 Paris
    monkeypatch.setattr(ocs.edge.server, "time", clock)
    monkeypatch.setattr(ocs.node, "_now_ms", lambda: clock.now_ms)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=tmp_path / "data", catalog=catalog),
    )
    try:
        await app.start()
        yield app, clock, midnight
    finally:
        await app.stop()
        await app.close()


async def cca(client: Client, message: Any) -> CCA:
    answer = await client.request(message)
    assert isinstance(answer, CCA) and answer.result_code == 2001, answer
    return answer


async def counters(client: Client, account_id: str) -> dict[str, UsageCounter]:
    answer = await client.request(amr(AccountOperation.GET, account_id, origin=UPF))
    assert isinstance(answer, AMA) and answer.account is not None, answer
    return {c.counter_name: c for c in answer.account.usage_counter or ()}


async def test_counters_over_the_wire(
    node: tuple[Node, Clock, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, clock, midnight = node
    t0 = clock.now_ms
    p = Peer()
    client = await p.connect(app.server.port)
    create = amr(AccountOperation.CREATE, "c1", amount=10 * EUR, subscriber=SUB, origin=UPF)
    assert (await client.request(create)).result_code == 2001
    await cca(client, ccr("s1", CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB))
    await cca(client, ccr("s2", CCRequestType.INITIAL, 0, mscc(20, ask=rsu()), subscriber=SUB))

    # 23:31: 6 MiB of RG 10 -> data-daily 6 MiB (anchored here, its first use): below 10 MiB
    clock.now_ms = t0 + MIN_MS
    report = mscc(10, ask=rsu(), used=(usu(octets=6 * MiB),))
    await cca(client, ccr("s1", CCRequestType.UPDATE, 1, report))
    # 23:32: 5 MiB of RG 20 -> 6 + 5 = 11 MiB: crosses 10 MiB; RAR to s1 and s2
    clock.now_ms = t0 + 2 * MIN_MS
    report = mscc(20, ask=rsu(), used=(usu(octets=5 * MiB),))
    await cca(client, ccr("s2", CCRequestType.UPDATE, 1, report))
    rars = [await asyncio.wait_for(p.arrived.get(), 5) for _ in range(2)]
    assert all(isinstance(r, RAR) for r in rars)
    assert sorted(r.session_id for r in rars if isinstance(r, RAR)) == [sid("s1"), sid("s2")]
    crossed = UsageCounter(
        counter_name="data-daily",
        counter_unit=CounterUnit.OCTETS,
        counter_value=11 * MiB,
        start_time=(t0 + MIN_MS) // 1000,
        stop_time=midnight // 1000,
        counter_threshold=10 * MiB,
    )
    assert all(r.usage_counter == (crossed,) for r in rars if isinstance(r, RAR))

    # GET: money 6 MiB x 0.01 + 5 MiB x 0.005 = 0.06 + 0.025 = 0.085 EUR
    shown = await counters(client, "c1")
    assert list(shown) == ["account", "data-daily", "money-monthly", "sms-weekly"]
    assert shown["account"].counter_value == 85_000
    assert shown["data-daily"] == crossed
    assert shown["money-monthly"].counter_value == 85_000
    assert shown["sms-weekly"].counter_value == 0 and shown["sms-weekly"].start_time is None

    # both sessions re-authorise (reason 7) as WIRE.md 7 asks: no new crossing, no RAR
    for name in ("s1", "s2"):
        rg = 10 if name == "s1" else 20
        reauth = mscc(rg, ask=rsu(), reason=ReportingReason.FORCED_REAUTHORISATION)
        await cca(client, ccr(name, CCRequestType.UPDATE, 2, reauth))

    # 00:10 the next day: data-daily starts again from zero, dated at midnight
    clock.now_ms = midnight + 10 * MIN_MS
    report = mscc(10, ask=rsu(), used=(usu(octets=2 * MiB),))
    await cca(client, ccr("s1", CCRequestType.UPDATE, 3, report))
    shown = await counters(client, "c1")
    assert shown["data-daily"] == UsageCounter(
        counter_name="data-daily",
        counter_unit=CounterUnit.OCTETS,
        counter_value=2 * MiB,
        start_time=midnight // 1000,
        stop_time=shown["data-daily"].stop_time,
    )
    stop = shown["data-daily"].stop_time
    assert stop is not None and 23 * 3600 <= stop - midnight // 1000 <= 25 * 3600  # a day (DST)
    # money: 0.085 + 2 MiB x 0.01 = 0.105 EUR (the monthly counter resets on the 1st only,
    # so unless this midnight is a 1st it goes on)
    first = datetime.fromtimestamp(midnight // 1000, tz=ZoneInfo("Europe/Paris")).day == 1
    assert shown["money-monthly"].counter_value == (20_000 if first else 105_000)
    assert len(p.requests) == 2  # no RAR since the crossing

    # `ocs account get` prints a line per counter (money in currency units, times in UTC)
    capsys.readouterr()
    argv = ["account", "get", "c1", "--server", f"127.0.0.1:{app.server.port}"]
    assert await asyncio.to_thread(main, [*argv, "--origin-host", "admin.test.local"]) == 0
    out = capsys.readouterr().out.splitlines()  # (the in-process server logs there too)
    lines = [x for x in out if x.startswith(("account: c1", "  counter "))]
    utc = datetime.fromtimestamp(midnight // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines[1] == "  counter account 0.105"
    assert lines[2].startswith(f"  counter data-daily {2 * MiB} octets since {utc} until ")

    # a crash image of the data directory now: recovery replays the journal to the same state
    image = tmp_path / "image"
    shutil.copytree(tmp_path / "data", image, ignore=shutil.ignore_patterns("LOCK"))
    recovered = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=image, catalog=tmp_path / "catalog.toml"),
    )
    try:
        assert recovered.core.counters.snapshot() == app.core.counters.snapshot()
        assert recovered.core.snapshot(duplicates=False) == app.core.snapshot(duplicates=False)
        assert recovered.core.ledger.snapshot() == app.core.ledger.snapshot()
    finally:
        await recovered.close()
    await client.close()
