"""Issue 16, parts 4 and 7, end to end: `ocs serve` refuses to start on a journal whose
acknowledged records are damaged, with exit status 1 and one `startup.failed` event naming the
record, and starts normally after a crash that only tore an unacknowledged write."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ocs.core.charging import Input, InputKind, decode_input, encode_input
from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.store import JournalReplayError, Store
from ocs.node import KIND_CORE, CoreComponent, NodeConfig, recover
from ocs.tools.spawn import ServerExited
from protocol.codec import encode_body
from protocol.codes import AccountOperation, CommandCode
from protocol.messages import AMR
from tests.durability.util import AppProcess, admin, connect_admin, create_account, get_account

T0 = 1_796_227_254_000


def _segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").glob("*.log"))


def _run_log(server: AppProcess, since: int) -> str:
    return server.log_text()[since:]


async def test_a_flipped_byte_in_the_last_acknowledged_credit_stops_the_start(
    tmp_path: Path,
) -> None:
    """The example of the issue: flip one byte of the journal's last record, an acknowledged
    CREDIT. Before: the server started normally without the CREDIT, logging nothing."""
    data_dir = tmp_path / "data"
    server = AppProcess(data_dir)
    try:
        server.start()
        client = await connect_admin(server.port)
        await create_account(client, "acct-1", 1_000_000)
        answer = await admin(
            client, AccountOperation.CREDIT, "acct-1", amount=250_000, operation_id="credit-1"
        )
        assert answer.result_code == 2001  # acknowledged: its record is durable
        await client.close()
        server.kill()  # a crash: no checkpoint, the CREDIT is the journal's last record

        segment = _segments(data_dir)[-1]
        raw = bytearray(segment.read_bytes())
        raw[-3] ^= 0x01  # one bit of the CREDIT's body
        segment.write_bytes(bytes(raw))
        before = segment.read_bytes()

        since = len(server.log_text())
        with pytest.raises(ServerExited) as exited:
            server.start()
        assert exited.value.returncode == 7  # ExitStatus.RECOVERY
        log = _run_log(server, since)
        failed = [e for e in server.events("startup.failed")]
        assert len(failed) == 1, log
        event = failed[0]
        assert event["segment"] == segment.name
        assert event["lsn"] == 3  # CATALOG, CREATE, CREDIT
        assert isinstance(event["offset"], int) and 0 < event["offset"] < len(raw)
        assert event["reason"]
        assert "kind" in event
        assert "Traceback" not in log  # (only with --debug)
        assert "recovery.done" not in log
        assert segment.read_bytes() == before  # recovery changed nothing

        debug = AppProcess(data_dir, "--debug", name="debug")
        with pytest.raises(ServerExited) as exited:
            debug.start()
        assert exited.value.returncode == 7  # ExitStatus.RECOVERY
        assert len(debug.events("startup.failed")) == 1
        assert "Traceback" in debug.log_text() and "JournalCorruptError" in debug.log_text()
        assert segment.read_bytes() == before
    finally:
        server.kill()


class _Inputs:
    """Stands in for the core while a journal is written by hand."""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass

    def replay(self, body: bytes, lsn: int) -> None:
        pass


def _journal(data_dir: Path, *payloads: bytes) -> None:
    create = Input(
        kind=InputKind.REQUEST,
        now_ms=T0 + 1,
        origin_host="admin.test.local",
        end_to_end=1,
        command=CommandCode.ACCOUNT_MANAGEMENT,
        body=encode_body(
            AMR(
                origin_host="admin.test.local",
                origin_realm="test.local",
                account_operation=AccountOperation.CREATE,
                account_id="acct-1",
                amount=5,
            )
        ),
    )
    catalog = Input(kind=InputKind.CATALOG, now_ms=T0, body=demo_catalog_text().encode())
    with Store.open(data_dir, components={KIND_CORE: _Inputs()}) as store:
        store.append(KIND_CORE, encode_input(catalog))
        store.append(KIND_CORE, encode_input(create))
        for payload in payloads:
            store.append(KIND_CORE, payload)
        store.commit()


def _recover(data_dir: Path) -> list[MutableMapping[str, Any]]:
    config = NodeConfig(data_dir=data_dir)
    with capture_logs() as events, pytest.raises(JournalReplayError):
        recover(config, origin_host="ocs.test.local", origin_realm="test.local")
    return [e for e in events if e["event"] == "startup.failed"]


def test_an_input_that_does_not_decode_stops_the_start_naming_it(tmp_path: Path) -> None:
    """Damage the checksums missed, or a record of another build."""
    _journal(tmp_path, b"\xc1 not an input")
    (failed,) = _recover(tmp_path)
    assert failed["lsn"] == 3
    assert failed["segment"] == f"{1:020d}.log"
    assert isinstance(failed["offset"], int) and failed["offset"] > 0
    assert failed["kind"] == "core (undecodable input)"
    assert "DecodeError" in str(failed["reason"])
    assert "exc_info" not in failed


def test_any_exception_from_replay_stops_the_start_naming_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug: whatever the core raises in replay is treated the same."""
    _journal(tmp_path)
    real = CoreComponent.replay

    def failing(self: CoreComponent, body: bytes, lsn: int | None = None) -> None:
        if decode_input(body).kind is InputKind.REQUEST:
            raise ZeroDivisionError("a bug in the core")
        real(self, body, lsn)

    monkeypatch.setattr(CoreComponent, "replay", failing)
    (failed,) = _recover(tmp_path)
    assert failed["lsn"] == 2
    assert failed["kind"] == "core REQUEST ACCOUNT_MANAGEMENT"
    assert failed["reason"] == "ZeroDivisionError: a bug in the core"
    monkeypatch.undo()
    recovered = recover(NodeConfig(data_dir=tmp_path), origin_host="o", origin_realm="r")
    try:  # the failed start released the directory and changed nothing
        assert recovered.core.ledger.account_count == 1
    finally:
        recovered.cdrs.close()
        recovered.store.close()


async def test_a_torn_unacknowledged_write_is_cut_and_logged(tmp_path: Path) -> None:
    """A crash in the middle of a write of records that were never acknowledged: the server
    starts, without them, and says what it cut."""
    data_dir = tmp_path / "data"
    server = AppProcess(data_dir)
    try:
        server.start()
        client = await connect_admin(server.port)
        await create_account(client, "acct-1", 1_000_000)
        await client.close()
        server.kill()
        segment = _segments(data_dir)[-1]
        size = segment.stat().st_size
        with segment.open("ab") as f:  # half a record, never fsynced, never answered
            f.write(bytes.fromhex("deadbeef2000000004000000000000") + bytes(7))
        since = len(server.log_text())
        server.start()
        torn = server.events("recovery.torn_tail")
        assert len(torn) == 1, _run_log(server, since)
        assert torn[0]["segment"] == segment.name
        assert torn[0]["offset"] == size
        assert segment.stat().st_size == size
        client = await connect_admin(server.port)
        assert (await get_account(client, "acct-1")).balance == 1_000_000
        await client.close()
        assert server.terminate() == 0
    finally:
        server.kill()
