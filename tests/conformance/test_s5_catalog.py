"""WIRE.md §5.3/§5.5 with a catalog written for the test (`ocs serve --catalog`): a tariff
change inside the validity period (a promotion that doubles the price 10 minutes from now) and
session supervision (a 1 s Validity-Time, so Tcc = 2 s)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.conftest import Connect, stop
from tests.conformance.wire import (
    MICRO,
    SUCCESS,
    UNKNOWN_SESSION_ID,
    UPDATE,
    CcSession,
    balance_of,
    create_account,
    mscc_of,
    units_sms,
)
from tests.server.process import ServerProcess

SURGE_IN = 600  # the promotion starts 10 minutes after the server

CATALOG = """
version = 1
name = "conformance"
timezone = "UTC"

[currency]
code = 978
alpha = "EUR"

[[services]]
context_id = "32274@3gpp.org"
rating_groups = [1, 2]

[[rating_groups]]
id = 1
unit = "units"
price = "1"

[rating_groups.grant]
quantum = 10
validity_time = 3600

[[rating_groups.promotions]]
name = "surge"
start = {start}
end = {end}
factor = "2"

[[rating_groups]]
id = 2
unit = "units"
price = "1"

[rating_groups.grant]
quantum = 1
validity_time = 1
"""


class CatalogServer:
    def __init__(self, server: ServerProcess, surge_start: int) -> None:
        self.server = server
        self.port = server.port
        self.surge_start = surge_start


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogServer]:
    root = tmp_path_factory.mktemp("catalog")
    start = int(time.time()) + SURGE_IN
    path = root / "catalog.toml"
    path.write_text(CATALOG.format(start=start, end=start + 7200))
    srv = ServerProcess(root / "data", "--catalog", str(path)).start()
    try:
        yield CatalogServer(srv, start)
    finally:
        stop(srv)


def rg(group: int, requested: int | None = None, used: list[dict[str, Any]] | None = None) -> Any:
    entry: dict[str, Any] = {"Rating-Group": group}
    if requested is not None:
        entry["Requested-Service-Unit"] = {} if requested < 0 else units_sms(requested)
    if used is not None:
        entry["Used-Service-Unit"] = used
    return entry


async def test_s5_tariff_change_inside_validity(
    catalog_server: CatalogServer, connect: Connect
) -> None:
    """WIRE.md §5.5: if the price changes inside the validity period, the grant carries
    Tariff-Time-Change (the first change, Time in Unix seconds), is sized for the dearer side,
    and usage reported split by Tariff-Change-Usage is charged at each side's price."""
    admin = await connect(catalog_server.port)
    peer = await connect(catalog_server.port)
    account = await create_account(admin, 5 * MICRO)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([rg(1, -1)])
    entry = mscc_of(answer, 1)
    assert entry["Result-Code"] == SUCCESS
    assert entry["Tariff-Time-Change"] == catalog_server.surge_start
    # 10 units asked by default; 5 EUR buys 2 units at the dearer 2 EUR: cut, with FUI
    assert entry["Granted-Service-Unit"] == units_sms(2)
    assert "Final-Unit-Indication" in entry
    assert await balance_of(admin, account.account_id) == (1 * MICRO, 4 * MICRO)
    used = [
        {"CC-Service-Specific-Units": 1, "Tariff-Change-Usage": 0, "Reporting-Reason": 2},
        {"CC-Service-Specific-Units": 1, "Tariff-Change-Usage": 1, "Reporting-Reason": 2},
    ]
    answer = await session.terminate([rg(1, used=used)])
    assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (2 * MICRO, 0)  # 5 - (1 + 2)


async def test_s5_unit_indeterminate_charged_at_the_dearer_price(
    catalog_server: CatalogServer, connect: Connect
) -> None:
    """WIRE.md §5.5: UNIT_INDETERMINATE (2) is charged at the dearer price."""
    admin = await connect(catalog_server.port)
    peer = await connect(catalog_server.port)
    account = await create_account(admin, 5 * MICRO)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([rg(1, 1)])
    assert mscc_of(answer, 1)["Granted-Service-Unit"] == units_sms(1)
    used = [{"CC-Service-Specific-Units": 1, "Tariff-Change-Usage": 2}]
    answer = await session.terminate([rg(1, used=used)])
    assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (3 * MICRO, 0)


def _records(data_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((data_dir / "cdr").glob("cdr-*")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


async def test_s5_session_supervision_tcc(catalog_server: CatalogServer, connect: Connect) -> None:
    """WIRE.md §5.3: a session that receives no request for Tcc = 2 x its longest
    Validity-Time (here 2 x 1 s) is closed by the server, its reservations released, its CDR
    closed with cause "abnormalRelease"; the client then gets 5002."""
    admin = await connect(catalog_server.port)
    peer = await connect(catalog_server.port)
    account = await create_account(admin, 5 * MICRO)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([rg(2, 1)])
    assert mscc_of(answer, 2)["Validity-Time"] == 1
    assert await balance_of(admin, account.account_id) == (4 * MICRO, MICRO)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0  # Tcc 2 s, plus timer granularity
    while await balance_of(admin, account.account_id) != (5 * MICRO, 0):
        assert loop.time() < deadline, "reservation not released after Tcc"
        await asyncio.sleep(0.25)
    answer = await session.update([rg(2, 1)])
    assert answer.result_code == UNKNOWN_SESSION_ID
    assert answer.body["CC-Request-Type"] == UPDATE
    records = [
        r for r in _records(catalog_server.server.data_dir) if r["sessionId"] == session.session_id
    ]
    assert [r["causeForRecordClosing"] for r in records] == ["abnormalRelease"]
