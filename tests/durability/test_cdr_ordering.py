"""CDRs follow the journal (docs/architecture.md, "CDRs follow the journal"), in process with
strict group commit: when a batch becomes durable its CDRs go to the CDR files, and those of a
later batch, written to the journal but not yet fsynced, wait for their own fsync; and a
shutdown after the CDR files failed takes no snapshot, which would compact away the journal
records that are then the only source of the CDRs the files lack."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ocs import node as node_module
from ocs.edge import fileio
from ocs.edge import journal as journal_module
from ocs.edge.cdr_files import read_sequence_numbers
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import CCRequestType, RequestedAction, SubscriptionIdType
from protocol.messages import CCA, CCR, MsccRequest, ServiceUnit, SubscriptionId
from tests.durability.util import (
    REALM,
    SMS_CONTEXT,
    SMS_RG,
    connect_admin,
    connect_cc,
    create_account,
    msisdn,
    next_e2e,
)

SMSC = "smsc.test.local"


def sms_event(n: int) -> CCR:
    return CCR(
        origin_host=SMSC,
        origin_realm=REALM,
        destination_realm=REALM,
        auth_application_id=4,
        session_id=f"{SMSC};event;{n}",
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


def fsyncs_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> threading.Semaphore:
    """Each journal fsync waits for a permit of the returned semaphore."""
    permits = threading.Semaphore(0)
    real: Callable[[int], None] = fileio.fdatasync

    def gated(fd: int) -> None:
        assert permits.acquire(timeout=10)
        real(fd)

    monkeypatch.setattr(journal_module, "fdatasync", gated)
    return permits


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.002)


async def test_a_durable_batch_moves_its_own_cdrs_not_a_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=1.0),
        NodeConfig(data_dir=tmp_path / "data"),
    )
    await app.start()
    cdr_dir = tmp_path / "data" / "cdr"
    permits: threading.Semaphore | None = None
    try:
        admin = await connect_admin(app.server.port)
        await create_account(admin, "acct-1", 10_000_000)
        await admin.close()
        client = await connect_cc(app.server.port, SMSC)
        journal = app.store.journal
        permits = fsyncs_one_at_a_time(monkeypatch)
        handled = app.stats["requests"]

        first = client.send(sms_event(1), end_to_end=next_e2e())
        await until(lambda: app.stats["requests"] == handled + 1)
        await until(lambda: journal.written_lsn > journal.durable_lsn)  # its fsync waits
        first_lsn = journal.written_lsn
        second = client.send(sms_event(2), end_to_end=next_e2e())
        await until(lambda: journal.written_lsn > first_lsn)  # written behind that fsync

        permits.release()  # the first batch becomes durable, the second does not
        exchange = await asyncio.wait_for(first, 5)
        assert isinstance(exchange.answer, CCA) and exchange.answer.result_code == 2001
        assert journal.durable_lsn == first_lsn < journal.written_lsn
        await asyncio.sleep(0.05)  # whatever else the release would do, it has done
        assert read_sequence_numbers(cdr_dir) == [1]
        assert not second.done()

        permits.release()
        exchange = await asyncio.wait_for(second, 5)
        assert isinstance(exchange.answer, CCA) and exchange.answer.result_code == 2001
        await until(lambda: read_sequence_numbers(cdr_dir) == [1, 2])
        await client.close()
    finally:
        if permits is not None:
            for _ in range(16):  # let every fsync still to come through
                permits.release()
        await app.stop()
        await app.close()


async def test_shutdown_after_the_cdr_files_failed_keeps_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    exits: list[int] = []
    monkeypatch.setattr(node_module, "_exit_now", lambda: exits.append(1))  # stay in the test
    real_write: Callable[[int, bytes | memoryview], None] = fileio.write_all
    full = threading.Event()

    def write_all(fd: int, data: bytes | memoryview) -> None:
        if full.is_set() and "/cdr/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device (test)")
        real_write(fd, data)

    monkeypatch.setattr("ocs.edge.durable.write_all", write_all)  # what AppendFile writes with
    config = NodeConfig(data_dir=data_dir)
    server = ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=1.0)
    app = await Node.open(server, config)
    await app.start()
    try:
        admin = await connect_admin(app.server.port)
        await create_account(admin, "acct-1", 10_000_000)
        await admin.close()
        client = await connect_cc(app.server.port, SMSC)
        full.set()  # the CDR disk is full from now on
        exchange = await asyncio.wait_for(client.send(sms_event(1), end_to_end=next_e2e()), 5)
        assert isinstance(exchange.answer, CCA) and exchange.answer.result_code == 2001
        await until(lambda: bool(exits))  # the node gave up: the CDR could not be written
        await client.close()
    finally:
        await app.stop()
        await app.close()
    assert read_sequence_numbers(data_dir / "cdr") == []
    full.clear()  # space again: the restart writes the CDR from the journal
    app = await Node.open(server, config)
    try:
        assert read_sequence_numbers(data_dir / "cdr") == [1]
    finally:
        await app.close()
