"""Ordering rules of the app, in process with a journal fsync the test controls: answers held
by group commit still go out at shutdown; CDRs never reach the CDR files before their journal
record is durable (relaxed mode included); a RAR waits for the input that caused it to be
durable; only open sessions keep a route for RAR/ASR."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ocs.edge import fileio
from ocs.edge import journal as journal_module
from ocs.edge.cdr_files import CdrWriter, read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import AccountOperation, CCRequestType, RequestedAction, SubscriptionIdType
from protocol.header import Header
from protocol.messages import (
    AMA,
    CCA,
    CCR,
    RAA,
    RAR,
    Answer,
    MsccRequest,
    Request,
    ServiceUnit,
    SubscriptionId,
)
from tests.durability.util import (
    SMS_CONTEXT,
    SMS_RG,
    amr,
    connect_admin,
    connect_cc,
    create_account,
    msisdn,
    next_e2e,
    sms_ccr,
)


def gate_fsync(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Journal fsyncs wait until the returned event is set."""
    gate = threading.Event()
    real: Callable[[int], None] = fileio.fdatasync

    def gated(fd: int) -> None:
        assert gate.wait(10)
        real(fd)

    monkeypatch.setattr(journal_module, "fdatasync", gated)
    return gate


async def started(tmp_path: Path, *, relaxed_sync_ms: float | None = None) -> Node:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=1.0),
        NodeConfig(data_dir=tmp_path / "data", relaxed_sync_ms=relaxed_sync_ms),
    )
    await app.start()
    return app


@pytest.fixture
async def strict_app(tmp_path: Path) -> AsyncIterator[Node]:
    app = await started(tmp_path)
    try:
        yield app
    finally:
        await app.stop()
        await app.close()


async def test_shutdown_answers_what_group_commit_holds(
    strict_app: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = strict_app
    client = await connect_admin(app.server.port)
    gate = gate_fsync(monkeypatch)
    pending = client.send(
        amr(client, AccountOperation.CREATE, "acct-1", amount=5), end_to_end=next_e2e()
    )
    async with asyncio.timeout(5):
        while app.stats["requests"] < 1:  # read and applied; its answer waits for the fsync
            await asyncio.sleep(0.001)
    assert not pending.done()
    threading.Timer(0.3, gate.set).start()  # an fsync slower than a DPR/DPA exchange
    started_at = time.monotonic()
    await app.stop()
    assert time.monotonic() - started_at >= 0.25
    exchange = await asyncio.wait_for(pending, 5)
    assert isinstance(exchange.answer, AMA) and exchange.answer.result_code == 2001
    await client.wait_closed()  # then DPR, and the server closed


async def test_relaxed_mode_cdrs_wait_for_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await started(tmp_path, relaxed_sync_ms=0)
    cdr_dir = tmp_path / "data" / "cdr"
    gate = threading.Event()
    gate.set()
    try:
        admin_client = await connect_admin(app.server.port)
        await create_account(admin_client, "acct-1", 10_000_000)
        await admin_client.close()
        async with asyncio.timeout(5):
            while app.commit.syncs == 0:
                await asyncio.sleep(0.01)
        gate = gate_fsync(monkeypatch)
        client = await connect_cc(app.server.port, "pgw.test.local")
        for kind, number, used in (
            (CCRequestType.INITIAL, 0, None),
            (CCRequestType.TERMINATION, 1, 2),
        ):
            answer = await client.request(
                sms_ccr(
                    "pgw.test.local",
                    "pgw.test.local;1",
                    kind,
                    number,
                    account_id="acct-1",
                    used=used,
                ),
                end_to_end=next_e2e(),
            )
            assert answer.result_code == 2001  # relaxed: answered once written
        await asyncio.sleep(1.5)  # timers ran: still no fsync, so still no CDR
        assert app.store.journal.durable_lsn < app.store.journal.written_lsn
        assert read_sequence_numbers(cdr_dir) == []
        gate.set()
        async with asyncio.timeout(5):
            while read_sequence_numbers(cdr_dir) != [1]:
                await asyncio.sleep(0.05)
        await client.close()
    finally:
        gate.set()
        await app.stop()
        await app.close()


async def test_only_open_sessions_keep_a_route(strict_app: Node) -> None:
    """Routes for RAR/ASR: one per open session, the connection its own peer last used."""
    app = strict_app
    admin_client = await connect_admin(app.server.port)
    await create_account(admin_client, "acct-1", 10_000_000)
    await admin_client.close()
    client = await connect_cc(app.server.port, "smsc.test.local")
    for i in range(5):
        event = CCR(
            origin_host="smsc.test.local",
            origin_realm="test.local",
            destination_realm="test.local",
            auth_application_id=4,
            session_id=f"smsc.test.local;event;{i}",
            service_context_id=SMS_CONTEXT,
            cc_request_type=CCRequestType.EVENT,
            cc_request_number=0,
            requested_action=RequestedAction.DIRECT_DEBITING,
            subscription_id=(
                SubscriptionId(
                    subscription_id_type=SubscriptionIdType.END_USER_E164,
                    subscription_id_data=msisdn("acct-1"),
                ),
            ),
            multiple_services_credit_control=(
                MsccRequest(
                    rating_group=SMS_RG,
                    requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                ),
            ),
        )
        answer = await client.request(event, end_to_end=next_e2e())
        assert isinstance(answer, CCA) and answer.result_code == 2001
    unknown = sms_ccr(
        "smsc.test.local", "smsc.test.local;nobody", CCRequestType.INITIAL, 0, account_id="x9"
    )
    assert (await client.request(unknown, end_to_end=next_e2e())).result_code == 5030
    assert app.routes == {}  # nothing to route to: no entry per event
    opened = sms_ccr(
        "smsc.test.local", "smsc.test.local;s", CCRequestType.INITIAL, 0, account_id="acct-1"
    )
    assert (await client.request(opened, end_to_end=next_e2e())).result_code == 2001
    assert set(app.routes) == {"smsc.test.local;s"}
    route = app.routes["smsc.test.local;s"]
    # another peer naming the session is refused and does not become its route (WIRE.md 5.3)
    intruder = await connect_cc(app.server.port, "intruder.test.local")
    for kind in (CCRequestType.UPDATE, CCRequestType.TERMINATION):
        theirs = sms_ccr("intruder.test.local", "smsc.test.local;s", kind, 1, used=1)
        assert (await intruder.request(theirs, end_to_end=next_e2e())).result_code == 5002
    assert app.routes == {"smsc.test.local;s": route}
    await intruder.close()
    closing = sms_ccr("smsc.test.local", "smsc.test.local;s", CCRequestType.TERMINATION, 1, used=1)
    assert (await client.request(closing, end_to_end=next_e2e())).result_code == 2001
    assert app.routes == {}
    await client.close()


async def test_rar_waits_until_the_input_that_caused_it_is_durable(
    strict_app: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top-up re-authorises a session refused for lack of credit (WIRE.md section 7); the RAR
    leaves only once the CREDIT that caused it is durable: a crash before that would replay no
    top-up, and the network element would have acted on a credit that never was."""
    app = strict_app
    admin_client = await connect_admin(app.server.port)
    await create_account(admin_client, "acct-1", 0)
    rars: asyncio.Queue[RAR] = asyncio.Queue()

    def on_request(header: Header, message: Request) -> Answer:
        assert isinstance(message, RAR)
        rars.put_nowait(message)
        return RAA(
            result_code=2001,
            origin_host="pgw.test.local",
            origin_realm="test.local",
            session_id=message.session_id,
        )

    client = await Client.connect(
        port=app.server.port, origin_host="pgw.test.local", on_request=on_request
    )
    refused = await client.request(
        CCR(
            session_id="pgw.test.local;rar;1",
            origin_host="pgw.test.local",
            origin_realm="test.local",
            destination_realm="test.local",
            auth_application_id=4,
            service_context_id="32251@3gpp.org",
            cc_request_type=CCRequestType.INITIAL,
            cc_request_number=0,
            subscription_id=(
                SubscriptionId(
                    subscription_id_type=SubscriptionIdType.END_USER_E164,
                    subscription_id_data=msisdn("acct-1"),
                ),
            ),
            multiple_services_credit_control=(
                MsccRequest(rating_group=10, requested_service_unit=ServiceUnit()),
            ),
        ),
        end_to_end=next_e2e(),
    )
    assert isinstance(refused, CCA)
    assert [m.result_code for m in refused.multiple_services_credit_control or ()] == [4012]
    gate = gate_fsync(monkeypatch)
    try:
        credit = admin_client.send(
            amr(
                admin_client, AccountOperation.CREDIT, "acct-1", amount=5_000_000, operation_id="t"
            ),
            end_to_end=next_e2e(),
        )
        async with asyncio.timeout(5):
            while app.stats["requests"] < 3:  # the CREDIT was applied; its fsync is held
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
        assert rars.empty() and not credit.done()
        gate.set()
        rar = await asyncio.wait_for(rars.get(), 5)
        assert rar.session_id == "pgw.test.local;rar;1" and rar.rating_group == (10,)
        assert (await asyncio.wait_for(credit, 5)).answer.result_code == 2001
    finally:
        gate.set()
        await client.close()
        await admin_client.close()


async def test_a_snapshot_waits_for_the_cdr_files_it_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint compacts away the journal records that are the only other source of the
    CDRs it counts: it is installed only once the CDR files hold them durably."""
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=1.0),
        NodeConfig(data_dir=tmp_path / "data", checkpoint_records=4, fork_checkpoints=False),
    )
    await app.start()
    journal_dir = tmp_path / "data" / "journal"
    gate = threading.Event()
    entered = threading.Event()
    real_commit = CdrWriter.commit

    def gated_commit(writer: CdrWriter) -> None:
        entered.set()
        assert gate.wait(10)
        real_commit(writer)

    monkeypatch.setattr(CdrWriter, "commit", gated_commit)
    try:
        admin_client = await connect_admin(app.server.port)
        await create_account(admin_client, "acct-1", 10_000_000)
        await admin_client.close()
        client = await connect_cc(app.server.port, "smsc.test.local")
        for number, (kind, used) in enumerate(
            ((CCRequestType.INITIAL, None), (CCRequestType.TERMINATION, 1))
        ):
            answer = await client.request(
                sms_ccr(
                    "smsc.test.local",
                    "smsc.test.local;snap",
                    kind,
                    number,
                    account_id="acct-1",
                    used=used,
                ),
                end_to_end=next_e2e(),
            )
            assert answer.result_code == 2001
        await client.close()
        assert await asyncio.to_thread(entered.wait, 10)  # the checkpoint waits for the CDRs
        await asyncio.sleep(0.5)
        assert list(journal_dir.glob("*.snap")) == []
        gate.set()
        async with asyncio.timeout(10):
            while not list(journal_dir.glob("*.snap")):
                await asyncio.sleep(0.05)
    finally:
        gate.set()
        await app.stop()
        await app.close()
