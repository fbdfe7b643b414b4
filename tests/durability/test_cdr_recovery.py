"""CDR files after a crash: the CDRs the files lack (their write was lost with the process, or
the power) are rebuilt from the journal at the restart, byte for byte and with the same
numbers; CDRs on disk that replay does not reproduce are reported."""

from __future__ import annotations

from pathlib import Path

from protocol.codes import CCRequestType
from tests.durability.util import (
    AppProcess,
    connect_admin,
    connect_cc,
    create_account,
    next_e2e,
    sms_ccr,
)


async def _sessions(port: int, count: int, first: int = 0) -> None:
    client = await connect_cc(port, "pgw.test.local")
    for i in range(first, first + count):
        sid = f"pgw.test.local;{i}"
        initial = sms_ccr("pgw.test.local", sid, CCRequestType.INITIAL, 0, account_id="acct-1")
        assert (await client.request(initial, end_to_end=next_e2e())).result_code == 2001
        term = sms_ccr("pgw.test.local", sid, CCRequestType.TERMINATION, 1, used=i % 3)
        assert (await client.request(term, end_to_end=next_e2e())).result_code == 2001
    await client.close()


def _current(data_dir: Path) -> Path:
    (current,) = (data_dir / "cdr").glob("*.jsonl.current")
    return current


async def test_lost_cdrs_are_rebuilt_identical_and_changed_ones_reported(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    server = AppProcess(data_dir)
    try:
        server.start()
        admin = await connect_admin(server.port)
        await create_account(admin, "acct-1", 100_000_000)
        await admin.close()
        await _sessions(server.port, 5)
        server.kill()
        current = _current(data_dir)
        original = current.read_bytes()
        lines = original.splitlines(keepends=True)
        assert len(lines) == 5
        current.write_bytes(b"".join(lines[:3]))  # as if the last two writes were lost

        server.start()
        recovery = server.events("recovery.done")[-1]
        assert (recovery["cdr_sequence"], recovery["cdrs_rewritten"]) == (5, 2)
        assert _current(data_dir).read_bytes() == original
        assert server.events("recovery.cdr_mismatch") == []
        await _sessions(server.port, 1, first=5)
        server.kill()

        current = _current(data_dir)
        lines = current.read_bytes().splitlines(keepends=True)
        assert len(lines) == 6
        lines[1] = lines[1].replace(b'"accountId":"acct-1"', b'"accountId":"acct-X"')
        current.write_bytes(b"".join(lines))
        server.start()
        (mismatch,) = server.events("recovery.cdr_mismatch")
        assert (mismatch["first"], mismatch["count"]) == (2, 1)
        assert server.terminate() == 0
    finally:
        server.kill()
