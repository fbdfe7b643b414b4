"""Issue 16, parts 4 and 7, end to end: `ocs serve` refuses to start on a journal whose
acknowledged records are damaged, with exit status 1 and one `startup.failed` event naming the
record, and starts normally after a crash that only tore an unacknowledged write."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocs.tools.spawn import ServerExited
from protocol.codes import AccountOperation
from tests.durability.util import AppProcess, admin, connect_admin, create_account, get_account


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
        assert exited.value.returncode == 1
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
    finally:
        server.kill()


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
