"""The demo's network element answers server-initiated requests as WIRE.md section 7 asks:
RAA 2001 to a RAR, then the re-authorising UPDATE (`make demo` used to answer every RAR 5012).
Against `ocs serve` on the demo catalog with a low usage threshold, over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.client import Client
from ocs.tools.demo_traffic import DATA, HOST, Demo, drive
from protocol.codes import AccountOperation, ApplicationId, CCRequestType, ReportingReason
from protocol.messages import CCR, MsccRequest, ServiceUnit, UsedServiceUnit
from tests.durability.util import AppProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppProcess]:
    catalog = tmp_path / "catalog.toml"
    text = demo_catalog_text()
    old = 'usage_thresholds = ["5.00", "10.00", "20.00"]'
    assert old in text
    catalog.write_text(text.replace(old, 'usage_thresholds = ["0.05"]'))
    process = AppProcess(tmp_path / "data", "--catalog", str(catalog))
    try:
        yield process.start()
    finally:
        process.kill()


async def test_rar_is_answered_2001_then_the_session_reauthorises(server: AppProcess) -> None:
    client = await Client.connect(
        port=server.port,
        origin_host=HOST,
        applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
    )
    sent: list[CCR] = []
    try:
        demo = Demo(client)
        client.on_request = demo.on_request
        send = demo.send

        async def recording_send(ccr: CCR) -> object:
            sent.append(ccr)
            return await send(ccr)

        demo.send = recording_send  # type: ignore[method-assign,assignment]
        answer = await demo.amr(
            AccountOperation.CREATE,
            "demo-0",
            amount=20_000_000,
            currency_code=978,
            subscription_id=demo.sub(0),
        )
        assert answer.result_code == 2001
        sid = demo.session_id()
        initial = (MsccRequest(rating_group=10, requested_service_unit=ServiceUnit()),)
        assert await demo.open_session(sid, DATA, initial, demo.sub(0))
        await demo.debit_and_refund(0)  # the debit's 0.10 crosses the 0.05 threshold: RAR
        for _ in range(200):
            if demo.rar:
                break
            await asyncio.sleep(0.05)
        await demo.wait_idle()
        assert (demo.rar, demo.reauthorised, demo.rar_ending) == (1, 1, 0)
        final = MsccRequest(
            rating_group=10,
            used_service_unit=(
                UsedServiceUnit(cc_total_octets=1000, reporting_reason=ReportingReason.FINAL),
            ),
        )
        cca = await demo.in_session(sid, CCRequestType.TERMINATION, (final,))
        assert cca is not None and cca.result_code == 2001
    finally:
        await client.close()
    assert set(demo.results) == {2001}, demo.results
    session = [c for c in sent if c.session_id == sid]
    assert [(c.cc_request_type, c.cc_request_number) for c in session] == [
        (CCRequestType.INITIAL, 0),
        (CCRequestType.UPDATE, 1),
        (CCRequestType.TERMINATION, 2),
    ]
    (mscc,) = session[1].multiple_services_credit_control or ()
    assert mscc.rating_group == 10 and mscc.requested_service_unit is not None
    (used,) = mscc.used_service_unit or ()
    assert used.reporting_reason is ReportingReason.FORCED_REAUTHORISATION
    assert used.cc_total_octets == 0
    assert server.terminate() == 0
    answered = [e for e in server.events("request.answered") if e.get("kind") == "rar"]
    assert [(e["session"], e["result_code"]) for e in answered] == [(sid, 2001)]


async def test_the_demo_traffic_runs_every_story_and_reconciles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `make demo` drives, for one second against `ocs serve` on the demo catalog: the
    bundle's allowances, the loan taken and repaid, the estimate equal to the real charge, the
    family group whose statements add up, and the money against the CDRs, gap-free."""
    process = AppProcess(tmp_path / "data").start()
    try:
        assert await drive(process.port, process.data_dir, seconds=1.0)
    finally:
        assert process.terminate() == 0
    out = capsys.readouterr().out
    assert "the same: True" in out  # the estimate
    assert "group reconciles: True" in out
    assert "money reconciles: True" in out
