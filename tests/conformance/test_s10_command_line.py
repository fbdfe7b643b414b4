"""WIRE.md §10 Server command line: `ocs serve [--listen HOST:PORT] [--data-dir DIR]
[--catalog FILE]`, its defaults, and SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    AMR,
    APP_ADMIN,
    APP_CC,
    CCR,
    CREDIT,
    DATA,
    DPR,
    EVENT,
    PRICE_ENQUIRY,
    SUCCESS,
    Msg,
    Peer,
    amr_body,
    balance_of,
    ccr_body,
    create_account,
    frame,
    new_msisdn,
    new_session_id,
    parse_header,
    units_sms,
)


async def _stream_credits(peer: Peer, account_id: str, frames: list[bytes]) -> None:
    """Send CREDITs (Amount 1, each its own Operation-Id) until the server says DPR."""
    i = 0
    with contextlib.suppress(ConnectionError, OSError):
        while not peer.eof and not any(m.header.code == DPR for m in peer.requests_seen):
            body = amr_body(peer, CREDIT, account_id, Amount=1, Operation_Id=f"s{i}")
            data = peer.request_frame(AMR, APP_ADMIN, body)
            frames.append(data)
            await peer.send(data)
            i += 1
            await asyncio.sleep(0.002)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_s10_signal_answers_what_was_read_and_exits_0(
    spawn: Spawn, connect: Connect, sig: signal.Signals
) -> None:
    """WIRE.md §10: SIGTERM or SIGINT: stop accepting, answer what was read, flush, exit 0.
    A client streams CREDITs while the signal arrives; at the server's DPR (docs/protocol.md:
    REBOOTING) it stops, waits for its outstanding answers, then answers DPA. After a restart,
    the balance counts the CREDITs the server applied: every one of them was answered, and
    new connections are refused once stopping."""
    srv = spawn()
    admin = await connect(srv.port)
    account = await create_account(admin, 0)
    await admin.close()
    peer = await connect(srv.port, auto_dpa=False)
    frames: list[bytes] = []
    sender = asyncio.create_task(_stream_credits(peer, account.account_id, frames))
    await asyncio.sleep(0.4)
    assert srv.proc is not None
    srv.proc.send_signal(sig)
    dpr = await peer.expect_request(DPR, timeout=5.0)
    assert dpr.body["Disconnect-Cause"] == 0
    await sender
    answers: dict[int, Msg] = {}
    with contextlib.suppress(TimeoutError):  # outstanding answers (the server waits 2 s)
        for data in frames:
            hbh = parse_header(data).hbh
            answers[hbh] = await peer.answer_to(hbh, timeout=1.5)
    await peer.answer(dpr, peer.base_answer())
    assert await peer.closed_by_server(timeout=5.0)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", srv.port)  # no longer accepting
    assert srv.proc.wait(10) == 0, "§10: exit 0"
    for data in frames:  # answers that came after the wait gave up
        hbh = parse_header(data).hbh
        late = peer.answers.get(hbh, [])
        assert len(late) + (hbh in answers) <= 1, "one answer per request"
        if late:
            answers[hbh] = await peer.answer_to(hbh)
    assert all(a.result_code == SUCCESS for a in answers.values())
    answered = len(answers)
    assert answered > 10, "the stream was served before the signal"

    srv = spawn()  # the same data directory: how many CREDITs were applied?
    admin = await connect(srv.port)
    applied, reserved = await balance_of(admin, account.account_id)
    assert reserved == 0
    assert applied == answered, f"§10: {applied} applied but {answered} answered"


async def test_s10_request_read_before_dpa_is_answered(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §10: "answer what was read": a request that reaches the stopping server just
    before the client's DPA (one write: CREDIT then DPA) is answered before the close."""
    srv = spawn()
    peer = await connect(srv.port, auto_dpa=False)
    account = await create_account(peer, 0)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    dpr = await peer.expect_request(DPR, timeout=5.0)
    body = amr_body(peer, CREDIT, account.account_id, Amount=5, Operation_Id="last")
    credit = peer.request_frame(AMR, APP_ADMIN, body)
    h = dpr.header
    dpa = frame(h.code, h.app, peer.base_answer(), flags=h.flags & 0x40, hbh=h.hbh, e2e=h.e2e)
    await peer.send(credit + dpa)
    assert await peer.closed_by_server(timeout=5.0)
    assert srv.proc.wait(10) == 0
    srv = spawn()
    admin = await connect(srv.port)
    applied, _ = await balance_of(admin, account.account_id)
    answers = peer.answers.get(parse_header(credit).hbh, [])
    assert [a.result_code for a in answers] == ([SUCCESS] if applied else [])
    assert applied == 5 and len(answers) == 1


def test_s10_help_documents_the_options() -> None:
    """WIRE.md §10: `ocs serve` takes --listen HOST:PORT, --data-dir DIR, --catalog FILE."""
    out = subprocess.run(
        [sys.executable, "-m", "ocs", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for option in ("--listen", "--data-dir", "--catalog"):
        assert option in out


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_s10_defaults(tmp_path: Path, connect: Connect) -> None:
    """WIRE.md §10: by default `ocs serve` listens on 127.0.0.1:3868, keeps a data directory
    in the working directory, and uses the built-in demo catalog (SMS 0.10 EUR, data 0.02 EUR
    per MiB at peak)."""
    if not _port_free(3868):
        pytest.skip("port 3868 is in use on this machine")
    work = tmp_path / "cwd"
    work.mkdir()
    ready = tmp_path / "ready"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocs", "serve", "--ready-file", str(ready)],
        cwd=work,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            if proc.poll() is not None:
                text = (tmp_path / "serve.log").read_text()
                if "in use" in text:  # someone took 3868 since the check above
                    pytest.skip("port 3868 is in use on this machine")
                raise AssertionError(text)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert int(ready.read_text()) == 3868
        peer = await connect(3868)
        assert peer.writer.get_extra_info("peername")[0] == "127.0.0.1"
        prices = []
        for service, mscc, at in (
            ("32274@3gpp.org", {"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}, None),
            (
                DATA,
                {"Rating-Group": 10, "Requested-Service-Unit": {"CC-Total-Octets": 10 << 20}},
                1767618000,  # Monday 2026-01-05 14:00 Paris: peak
            ),
        ):
            extra = {"Requested-Action": PRICE_ENQUIRY}
            if at is not None:
                extra["Event-Timestamp"] = at
            body = ccr_body(
                peer,
                new_session_id(peer),
                EVENT,
                0,
                service=service,
                msisdn=new_msisdn(),
                mscc=[mscc],
                **extra,
            )
            answer = await peer.request(CCR, APP_CC, body)
            cost = answer.body["Cost-Information"]
            prices.append(
                (cost["Unit-Value"]["Value-Digits"], cost["Unit-Value"].get("Exponent", 0))
            )
        assert [d * 10.0**e for d, e in prices] == pytest.approx([0.10, 0.20])
        await peer.close()
        created = [p for p in work.iterdir() if p.is_dir()]
        assert len(created) == 1, "§10: a data directory in the working directory"
        assert any(created[0].iterdir())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()
    assert code == 0


async def test_s10_listen_data_dir_and_catalog_flags(
    tmp_path: Path, spawn: Spawn, connect: Connect
) -> None:
    """WIRE.md §10: --listen 127.0.0.1:0 (any free port) and --data-dir DIR: the state lives
    there (an account survives a restart on the same directory, and is unknown on another).
    --catalog FILE is exercised by test_s5_catalog.py."""
    srv = spawn(name="one")
    admin = await connect(srv.port)
    account = await create_account(admin, 42)
    await admin.close()
    assert srv.terminate() == 0
    assert (tmp_path / "one").is_dir() and any((tmp_path / "one").iterdir())
    srv = spawn(name="one")
    admin = await connect(srv.port)
    assert await balance_of(admin, account.account_id) == (42, 0)
    other = spawn(name="two")
    admin2 = await connect(other.port)
    answer = await admin2.request(AMR, APP_ADMIN, amr_body(admin2, 2, account.account_id))
    assert answer.result_code == 5030
