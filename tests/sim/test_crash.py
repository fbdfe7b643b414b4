"""The server dies (SIGKILL) under the UPF's traffic and comes back: the UPF reconnects, sends
what was in flight again with the T flag and the same End-to-End-Id, and nothing is charged
twice or lost (reconcile finds no difference)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.tools.sim.link import Link
from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, UpfSimulator
from ocs.tools.sim.usage_log import UsageEntry, read_entries
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.messages import (
    AMR,
    CCA,
    CCR,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from rating import parse_money
from tests.server.process import ServerProcess
from tests.sim.support import LossyProxy, running_app


async def test_upf_survives_a_server_crash_without_double_charging(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "upf.jsonl"
    server = ServerProcess(data).start()
    port = server.port
    restarted: ServerProcess | None = None
    try:
        sim = UpfSimulator(
            UpfConfig(
                sim=SimConfig(
                    port=port,
                    subscribers=6,
                    duration=5.0,
                    speed=500,
                    seed=5,
                    usage_log=log,
                    balance=parse_money("20"),
                    origin_host="upf-crash.test.local",
                    answer_timeout=10.0,
                ),
                profile=DataProfile(rate=80_000, session_mean_s=600, off_mean_s=30),
            )
        )
        run = asyncio.create_task(sim.run())
        await asyncio.sleep(1.5)
        # freeze the server so that requests are in flight, then kill it
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        for _ in range(200):
            client = sim.rt.link.client
            if client is not None and client.conn.outstanding_requests >= 2:
                break
            await asyncio.sleep(0.01)
        in_flight = client.conn.outstanding_requests if client is not None else 0
        server.kill()
        await asyncio.sleep(0.3)  # the UPF finds the server gone and keeps trying
        restarted = await asyncio.to_thread(
            ServerProcess(data, "--listen", f"127.0.0.1:{port}").start
        )
        rt = await run
        assert restarted.terminate() == 0
    finally:
        server.kill()
        if restarted is not None:
            restarted.kill()

    stats = rt.stats
    assert in_flight >= 2
    assert stats.reconnects >= 1
    assert stats.retransmissions >= in_flight
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert sum(stats.sessions_closed.values()) == stats.sessions_opened
    usage = [e for e in read_entries(log) if isinstance(e, UsageEntry)]
    assert any(e.retransmitted for e in usage)
    assert all(e.ok for e in usage)

    result = reconcile([log], data / "cdr")
    assert result.ok, result.render()
    assert result.client_reports == result.server_containers == len(usage)


async def test_lost_answers_are_retransmitted_and_answered_from_the_duplicate_cache(
    tmp_path: Path,
) -> None:
    log = tmp_path / "upf.jsonl"
    async with running_app(tmp_path / "data") as app:
        proxy = LossyProxy(app.server.port)
        await proxy.start()
        try:
            sim = UpfSimulator(
                UpfConfig(
                    sim=SimConfig(
                        port=proxy.port,
                        subscribers=4,
                        duration=2.5,
                        speed=1000,
                        seed=9,
                        usage_log=log,
                        origin_host="upf-lossy.test.local",
                    ),
                )
            )
            run = asyncio.create_task(sim.run())
            for _ in range(3):
                await asyncio.sleep(0.6)
                proxy.lose_next_answer()
            rt = await run
        finally:
            await proxy.close()
        # every request changes state, except retransmissions of requests the server had
        # processed already (at least the 3 whose answer was lost), answered from its duplicate
        # cache; the one journal input that is not a request is the catalog
        unchanged = app.stats["requests"] - (app.stats["journaled"] - 1)
    assert len(proxy.lost) == 3
    for e2e in proxy.lost:
        # sent once without the T flag, then again with it, same End-to-End-Id
        assert [t for e, t in proxy.requests if e == e2e] == [False, True]
    stats = rt.stats
    assert stats.retransmissions >= 3 and stats.reconnects >= 3
    assert stats.protocol_errors == 0 and stats.unanswered == 0
    assert 3 <= unchanged <= stats.retransmissions
    result = reconcile([log], tmp_path / "data" / "cdr")
    assert result.ok, result.render()


async def test_link_resends_a_lost_termination_and_refund_with_the_t_flag(tmp_path: Path) -> None:
    host, realm = "link.test.local", "test.local"
    sub = SimConfig(first_msisdn=491790000000, subscribers=1)

    def ccr(sid: str, kind: CCRequestType, number: int, **kw: object) -> CCR:
        return CCR(
            session_id=sid,
            origin_host=host,
            origin_realm=realm,
            destination_realm=realm,
            auth_application_id=4,
            service_context_id="32274@3gpp.org",
            cc_request_type=kind,
            cc_request_number=number,
            **kw,  # type: ignore[arg-type]
        )

    async with running_app(tmp_path / "data") as app:
        proxy = LossyProxy(app.server.port)
        await proxy.start()
        link = Link(
            "127.0.0.1",
            proxy.port,
            origin_host=host,
            origin_realm=realm,
            applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
        )
        await link.start()
        try:
            subs = (
                SubscriptionId(
                    subscription_id_type=SubscriptionIdType.END_USER_E164,
                    subscription_id_data=str(sub.first_msisdn),
                ),
            )
            created = await link.call(
                AMR(
                    origin_host=host,
                    origin_realm=realm,
                    account_operation=AccountOperation.CREATE,
                    account_id="link-1",
                    subscription_id=subs,
                    amount=1_000_000,
                )
            )
            assert created.answer is not None and created.answer.result_code == 2001
            rsu = ServiceUnit(cc_service_specific_units=1)
            opened = await link.call(
                ccr(
                    f"{host};sms-1",
                    CCRequestType.INITIAL,
                    0,
                    subscription_id=subs,
                    multiple_services_credit_control=(
                        MsccRequest(rating_group=30, requested_service_unit=rsu),
                    ),
                )
            )
            assert opened.answer is not None and opened.answer.result_code == 2001
            proxy.lose_next_answer()
            used = (UsedServiceUnit(cc_service_specific_units=1),)
            ended = await link.call(
                ccr(
                    f"{host};sms-1",
                    CCRequestType.TERMINATION,
                    1,
                    multiple_services_credit_control=(
                        MsccRequest(rating_group=30, used_service_unit=used),
                    ),
                )
            )
            assert ended.retransmitted and ended.sends == 2
            assert isinstance(ended.answer, CCA) and ended.answer.result_code == 2001
            assert ended.answer.cc_request_number == 1
            # a refund gives back what DIRECT_DEBITING took (WIRE.md 5.4): an SMS by event
            debit = await link.call(
                ccr(
                    f"{host};debit-1",
                    CCRequestType.EVENT,
                    0,
                    requested_action=RequestedAction.DIRECT_DEBITING,
                    subscription_id=subs,
                    multiple_services_credit_control=(
                        MsccRequest(rating_group=30, requested_service_unit=rsu),
                    ),
                )
            )
            assert debit.answer is not None and debit.answer.result_code == 2001
            proxy.lose_next_answer()
            refund = await link.call(
                ccr(
                    f"{host};refund-1",
                    CCRequestType.EVENT,
                    0,
                    requested_action=RequestedAction.REFUND_ACCOUNT,
                    subscription_id=subs,
                    multiple_services_credit_control=(
                        MsccRequest(rating_group=30, requested_service_unit=rsu),
                    ),
                )
            )
            assert refund.retransmitted and refund.answer is not None
            assert refund.answer.result_code == 2001
            balance = await link.call(
                AMR(
                    origin_host=host,
                    origin_realm=realm,
                    account_operation=AccountOperation.GET,
                    account_id="link-1",
                )
            )
        finally:
            await link.close()
            await proxy.close()
    assert [t for _, t in proxy.requests] == [False, False, True, False, False, True]
    assert link.retransmissions == 2 and link.connects == 3
    account = getattr(balance.answer, "account", None)
    assert account is not None and account.balance == 900_000  # 2 x 0.10 charged, 1 refunded
    records = list(iter_records(tmp_path / "data" / "cdr"))
    assert [(r["sessionId"], r["charge"]) for r in records] == [
        (f"{host};sms-1", 100_000),
        (f"{host};debit-1", 100_000),
        (f"{host};refund-1", -100_000),
    ]
