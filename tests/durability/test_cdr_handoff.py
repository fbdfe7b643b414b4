"""CDR hand-off (docs/cdr-files.md, "Rotation on demand"): a running server closes its current
CDR file on SIGUSR1, on the administrative CDR_ROTATE (`ocs cdr rotate`) and when it stops
cleanly, so that mediation, which collects only complete ``*.jsonl`` files, gets every record
without waiting for the size or age limits. Against a server subprocess, over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.cli.main import main
from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from protocol.codes import AccountOperation, CCRequestType
from tests.durability.util import (
    SMS_PRICE,
    AppProcess,
    admin,
    connect_admin,
    connect_cc,
    create_account,
    next_e2e,
    sms_ccr,
)

NODE = "ne-handoff.test.local"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path / "data")
    try:
        yield process.start()
    finally:
        process.kill()


def names(cdr_dir: Path) -> list[str]:
    return sorted(p.name for p in cdr_dir.iterdir() if p.name.startswith("cdr-"))


async def sms(port: int, account_id: str, count: int, first: int = 0) -> None:
    """``count`` SMS sessions of ``account_id`` (one CDR each), every one answered."""
    client = await connect_cc(port, NODE)
    try:
        for i in range(first, first + count):
            sid = f"{NODE};{account_id};{i}"
            for kind, number, used in (
                (CCRequestType.INITIAL, 0, None),
                (CCRequestType.TERMINATION, 1, 1),
            ):
                answer = await client.request(
                    sms_ccr(NODE, sid, kind, number, account_id=account_id, used=used),
                    end_to_end=next_e2e(),
                )
                assert answer.result_code == 2001, answer
    finally:
        await client.close()


async def accounts(port: int, *account_ids: str) -> None:
    client = await connect_admin(port)
    try:
        for account_id in account_ids:
            await create_account(client, account_id, 10_000_000)
    finally:
        await client.close()


async def wait_for_event(process: AppProcess, event: str, count: int) -> list[dict[str, object]]:
    """The server's log events named ``event`` once there are ``count`` of them."""
    for _ in range(400):
        found = process.events(event)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {count} {event} events: {process.log_tail()}")


async def test_sigusr1_completes_the_current_file_with_every_answered_cdr(
    server: AppProcess,
) -> None:
    await accounts(server.port, "acct-h1")
    await sms(server.port, "acct-h1", 3)
    cdr_dir = server.data_dir / "cdr"
    assert names(cdr_dir) == ["cdr-000000000001.jsonl.current"]  # before: nothing to collect

    os.kill(server.pid, signal.SIGUSR1)
    (event,) = await wait_for_event(server, "cdr.rotated", 1)
    assert event["reason"] == "signal"
    assert event["file"] == "cdr-000000000001-000000000003.jsonl"
    assert names(cdr_dir) == [
        "cdr-000000000001-000000000003.jsonl",
        "cdr-000000000004.jsonl.current",
    ]
    complete = cdr_dir / "cdr-000000000001-000000000003.jsonl"
    lines = complete.read_bytes().splitlines()
    assert [json.loads(line)["recordSequenceNumber"] for line in lines] == [1, 2, 3]
    assert (cdr_dir / "cdr-000000000004.jsonl.current").stat().st_size == 0

    os.kill(server.pid, signal.SIGUSR1)  # an empty current file is never rotated
    (skipped,) = await wait_for_event(server, "cdr.rotate_skipped", 1)
    assert skipped["reason"] == "signal"
    assert server.terminate() == 0


async def test_cdr_rotate_command_names_the_complete_file(
    server: AppProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    await accounts(server.port, "acct-h2")
    await sms(server.port, "acct-h2", 2)
    argv = ["cdr", "rotate", "--server", f"127.0.0.1:{server.port}"]
    argv += ["--origin-host", "admin.test.local"]
    capsys.readouterr()
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert out == "cdr rotate: completed cdr-000000000001-000000000002.jsonl\n"
    cdr_dir = server.data_dir / "cdr"
    assert names(cdr_dir) == [
        "cdr-000000000001-000000000002.jsonl",
        "cdr-000000000003.jsonl.current",
    ]

    assert await asyncio.to_thread(main, [*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "Account-Operation": "CDR_ROTATE",
        "Result-Code": 2001,
        "Cdr-File": None,
    }
    (event,) = await wait_for_event(server, "cdr.rotated", 1)
    assert event["reason"] == "request" and event["peer"] == "admin.test.local"

    await sms(server.port, "acct-h2", 1, first=2)
    client = await connect_admin(server.port)
    try:
        answer = await admin(client, AccountOperation.CDR_ROTATE, "anything")
    finally:
        await client.close()
    assert (answer.result_code, answer.cdr_file) == (2001, "cdr-000000000003-000000000003.jsonl")
    assert server.terminate() == 0


async def test_clean_stop_rotates_and_the_restart_goes_on_numbering(server: AppProcess) -> None:
    await accounts(server.port, "acct-h3")
    await sms(server.port, "acct-h3", 2)
    assert server.terminate() == 0
    cdr_dir = server.data_dir / "cdr"
    assert names(cdr_dir) == [
        "cdr-000000000001-000000000002.jsonl",
        "cdr-000000000003.jsonl.current",
    ]
    (event,) = server.events("cdr.rotated")
    assert event["reason"] == "shutdown"

    # mediation collects the complete file; the restart numbers on from the current file's name
    (cdr_dir / "cdr-000000000001-000000000002.jsonl").unlink()
    server.start()
    await sms(server.port, "acct-h3", 1, first=2)
    assert server.terminate() == 0
    assert names(cdr_dir) == [
        "cdr-000000000003-000000000003.jsonl",
        "cdr-000000000004.jsonl.current",
    ]
    assert read_sequence_numbers(cdr_dir) == [3]
    assert [r["charge"] for r in iter_records(cdr_dir)] == [SMS_PRICE]
    # a stop with nothing new to hand off leaves the empty current file as it is
    server.start()
    assert server.terminate() == 0
    assert names(cdr_dir) == [
        "cdr-000000000003-000000000003.jsonl",
        "cdr-000000000004.jsonl.current",
    ]


async def test_relaxed_mode_rotation_holds_every_answered_cdr(tmp_path: Path) -> None:
    """In relaxed mode answers leave after write(2) and CDRs move only once the journal is
    fsynced (at most every 60 s here): a rotation on demand fsyncs the journal first, so the
    file it completes still holds the CDR of every request answered before."""
    process = AppProcess(tmp_path / "data", "--sync-interval-ms", "60000")
    try:
        process.start()
        await accounts(process.port, "acct-h4")
        await sms(process.port, "acct-h4", 3)
        client = await connect_admin(process.port)
        try:
            answer = await admin(client, AccountOperation.CDR_ROTATE, "cdr")
        finally:
            await client.close()
        assert (answer.result_code, answer.cdr_file) == (
            2001,
            "cdr-000000000001-000000000003.jsonl",
        )
        cdr_dir = process.data_dir / "cdr"
        assert read_sequence_numbers(cdr_dir) == [1, 2, 3]
        assert process.terminate() == 0
    finally:
        process.kill()


async def test_cdr_rotate_reads_the_server_address_from_the_environment(
    server: AppProcess,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`ocs cdr rotate` is a client command like `ocs account`: OCS_SERVER names the server
    (regression: it read only --server and asked the default port)."""
    monkeypatch.delenv("OCS_CLIENT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("OCS_SERVER", f"127.0.0.1:{server.port}")
    monkeypatch.setenv("OCS_ORIGIN_HOST", "admin.test.local")
    await accounts(server.port, "acct-h9")
    await sms(server.port, "acct-h9", 1)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["cdr", "rotate", "--timeout", "5"]) == 0
    assert capsys.readouterr().out.startswith("cdr rotate: completed cdr-")
    assert server.terminate() == 0
