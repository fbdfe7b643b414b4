"""Metrics, readiness and status of a running node, over HTTP on 127.0.0.1: the exposition is
scraped over a real socket and parsed with prometheus-client's own parser, and its figures are
checked against what the server says over Diameter (the account's reservation) and what it
wrote (the CDR files)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocs.cli.main import main as ocs_main
from ocs.edge.cdr_files import read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.metrics import Histogram, Metrics
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import AccountOperation, ApplicationId, CCRequestType
from protocol.messages import AMA, CCA
from tests.charging.conftest import MiB, amr, ccr, mscc, rsu, sid, usu
from tests.server.process import ServerProcess

APPS = (ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION)
UPF = "upf1.test.local"
ASK = mscc(10, ask=rsu(octets=MiB))


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[Node]:
    node = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=data_dir, metrics_listen=("127.0.0.1", 0)),
    )
    try:
        await node.start()
        yield node
    finally:
        await node.stop()
        await node.close()


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


async def get(port: int, path: str) -> tuple[int, str, bytes]:
    """GET over a real socket (urllib, in a thread: the server runs on this loop)."""
    return await asyncio.to_thread(_get, port, path)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus-client's parser: sample (name, labels) -> value."""
    status, content_type, body = await get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def http_port(node: Node) -> int:
    assert node.http is not None
    return node.http.port


async def test_a_scrape_over_http_parses_and_shows_what_the_server_did(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as node:
        port = http_port(node)
        client = await Client.connect(port=node.server.port, origin_host=UPF, applications=APPS)
        try:
            create = amr(
                AccountOperation.CREATE, "a1", amount=10_000_000, subscriber="4911", origin=UPF
            )
            assert (await client.request(create)).result_code == 2001
            initial = await client.request(
                ccr(
                    sid("s1"),
                    CCRequestType.INITIAL,
                    0,
                    mscc(10, ask=rsu(octets=MiB)),
                    subscriber="4911",
                )
            )
            assert isinstance(initial, CCA) and initial.result_code == 2001
            unknown = await client.request(
                ccr(
                    sid("s2"),
                    CCRequestType.INITIAL,
                    0,
                    mscc(10, ask=rsu(octets=MiB)),
                    subscriber="4999",
                )
            )
            assert isinstance(unknown, CCA) and unknown.result_code == 5030
            get_ = await client.request(amr(AccountOperation.GET, "a1", origin=UPF))
            assert isinstance(get_, AMA) and get_.account is not None
            reserved = get_.account.reserved
            assert reserved > 0

            m = await scrape(port)
            assert m["ocs_requests_total", (("command", "CREDIT_CONTROL"),)] == 2
            assert m["ocs_requests_total", (("command", "ACCOUNT_MANAGEMENT"),)] == 2
            cc = ("command", "CREDIT_CONTROL")
            assert m["ocs_answers_total", (cc, ("result", "SUCCESS"), ("result_code", "2001"))] == 1
            assert (
                m["ocs_answers_total", (cc, ("result", "USER_UNKNOWN"), ("result_code", "5030"))]
                == 1
            )
            assert m["ocs_request_latency_seconds_count", ()] == 4
            assert m["ocs_sessions", ()] == 1
            assert m["ocs_reservations", ()] == 1
            assert m["ocs_reserved_micros", ()] == reserved  # as the account says over Diameter
            assert m["ocs_accounts", ()] == 1
            assert m["ocs_peers", ()] == 1
            assert m["ocs_peer_connections", (("peer", UPF),)] == 1
            assert m["ocs_up", ()] == 1
            # every request was journaled (the catalog first) and answered once durable
            assert m["ocs_journal_last_lsn", ()] == 5
            assert m["ocs_journal_durable_lsn", ()] == 5
            assert m["ocs_journal_fsync_seconds_count", ()] >= 1
            # one batch size per fsync started; a batch holds one request or more
            fsyncs = m["ocs_journal_fsyncs_total", ()]
            assert m["ocs_group_commit_batch_records_count", ()] == fsyncs
            assert fsyncs <= m["ocs_group_commit_batch_records_sum", ()] <= 5
            assert m["ocs_journal_fsync_seconds_count", ()] == fsyncs
            assert m["ocs_cdrs_written_total", ()] == 0
            assert m["ocs_connections_refused_total", (("cause", "refused_total"),)] == 0
            info = [k for k in m if k[0] == "ocs_catalog_info"]
            assert dict(info[0][1])["name"] == "demo"

            term = await client.request(
                ccr(
                    sid("s1"),
                    CCRequestType.TERMINATION,
                    1,
                    mscc(10, used=(usu(octets=MiB // 2),)),
                    subscriber="4911",
                )
            )
            assert term.result_code == 2001
            await node.drain()
            await asyncio.sleep(0)  # the CDRs move to the files once their record is durable
            m = await scrape(port)
            assert m["ocs_sessions", ()] == 0
            assert m["ocs_reservations", ()] == 0
            assert m["ocs_reserved_micros", ()] == 0
            assert m["ocs_cdrs_written_total", ()] == 1
            assert m["ocs_cdr_sequence", (("state", "numbered"),)] == 1
        finally:
            await client.close()
    assert read_sequence_numbers(tmp_path / "data" / "cdr") == [1]


async def test_ready_until_stopping_and_the_listener_stops_with_the_node(tmp_path: Path) -> None:
    node = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=tmp_path / "data", metrics_listen=("127.0.0.1", 0)),
    )
    try:
        await node.start()
        port = http_port(node)
        assert await get(port, "/ready") == (200, "text/plain; charset=utf-8", b"ready\n")
        await node.stop()  # no longer serving peers: not ready, metrics still answer
        assert (await get(port, "/ready"))[0] == 503
        assert (await scrape(port))["ocs_up", ()] == 0
    finally:
        await node.close()
    with pytest.raises(urllib.error.URLError):
        await get(port, "/ready")


async def test_the_status_document_and_ocs_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path / "data") as node:
        port = http_port(node)
        client = await Client.connect(port=node.server.port, origin_host=UPF, applications=APPS)
        try:
            create = amr(
                AccountOperation.CREATE, "a1", amount=10_000_000, subscriber="4911", origin=UPF
            )
            assert (await client.request(create)).result_code == 2001
            status, content_type, body = await get(port, "/status")
            assert status == 200 and content_type == "application/json"
            doc: dict[str, Any] = json.loads(body)
            assert doc["ready"] is True and doc["accounts"] == 1 and doc["peers"] == {UPF: 1}
            assert doc["listen"] == f"127.0.0.1:{node.server.port}"
            assert doc["catalog_name"] == "demo" and doc["currency"] == "EUR"
            assert doc["cdr_file"].endswith(".current")
            assert doc["answers"] == {"ACCOUNT_MANAGEMENT": {"2001 SUCCESS": 1}}

            code = await asyncio.to_thread(ocs_main, ["status", "--metrics", f"127.0.0.1:{port}"])
            out = capsys.readouterr().out
            assert code == 0
            assert f"ocs ocs.test.local on 127.0.0.1:{node.server.port}" in out
            assert f"{UPF} (1)" in out and "1 account" in out and "demo version 1" in out
            assert "0.000000 EUR" in out and ".current" in out

            code = await asyncio.to_thread(
                ocs_main, ["status", "--metrics", f"127.0.0.1:{port}", "--json"]
            )
            assert code == 0 and json.loads(capsys.readouterr().out)["accounts"] == 1
        finally:
            await client.close()


def test_ocs_status_without_a_server_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert ocs_main(["status", "--metrics", str(port)]) == 1
    assert f"cannot get the status from 127.0.0.1:{port}" in capsys.readouterr().err


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_the_http_listener_answers_only_what_it_serves(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as node:
        port = http_port(node)
        assert (await get(port, "/nothing"))[0] == 404
        assert (await _raw(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
        assert (await _raw(port, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        head = await _raw(port, b"HEAD /ready HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        # a head beyond the limit is not answered: the connection is closed
        assert await _raw(port, b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n") == b""
        # and the listener still serves
        assert (await get(port, "/ready"))[0] == 200


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 3.0):
        h.observe(v)
    assert h.counts == [2, 2, 1]
    assert h.cumulative() == [("1.0", 2), ("2.0", 4), ("+Inf", 5)]
    assert h.count == 5 and h.total == 8.0
    with pytest.raises(ValueError):
        Histogram((2.0, 1.0))


def test_a_rejected_request_of_an_unknown_command_does_not_grow_the_labels() -> None:
    m = Metrics()
    for command in range(1000, 1100):  # a peer trying command codes
        m.rejected(command, 3001)
    m.rejected(272, 5004)
    assert dict(m.requests) == {0: 100, 272: 1}
    assert dict(m.answers) == {(0, 3001): 100, (272, 5004): 1}


async def test_ocs_serve_metrics_option_serves_until_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ServerProcess(tmp_path / "data", "--metrics", str(port)).start()  # bare port
    try:
        assert (await get(port, "/ready"))[0] == 200
        m = await scrape(port)
        assert m["ocs_up", ()] == 1 and m["ocs_accounts", ()] == 0
        assert server.terminate() == 0
    finally:
        server.kill()
    with pytest.raises(urllib.error.URLError):
        await get(port, "/ready")


async def test_checkpoints_are_counted_and_shown(tmp_path: Path) -> None:
    node = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(
            data_dir=tmp_path / "data", metrics_listen=("127.0.0.1", 0), checkpoint_records=1
        ),
    )
    try:
        await node.start()
        port = http_port(node)
        m = await scrape(port)
        assert ("ocs_checkpoint_lsn", ()) not in m  # a new data directory: no snapshot yet
        assert m["ocs_journal_records_since_checkpoint", ()] == 1  # the catalog
        async with asyncio.timeout(30):  # the timer checkpoints at its next tick (1 s)
            while m["ocs_checkpoints_total", (("outcome", "written"),)] == 0:
                await asyncio.sleep(0.1)
                m = await scrape(port)
        assert m["ocs_checkpoint_lsn", ()] == 1
        assert m["ocs_checkpoint_time_seconds", ()] >= m["ocs_start_time_seconds", ()]
        assert m["ocs_journal_records_since_checkpoint", ()] == 0
        doc = json.loads((await get(port, "/status"))[2])
        assert doc["checkpoints"]["written"] == 1 and doc["checkpoints"]["last_lsn"] == 1
    finally:
        await node.stop()
        await node.close()


async def test_a_deferred_answer_is_counted_when_it_is_made(tmp_path: Path) -> None:
    """CDR_ROTATE's answer is made only once what came before it is durable: with metrics on it
    is counted then (regression: counting it at once read a Result-Code off the function that
    makes it, and the request failed)."""
    async with running(tmp_path / "data") as node:
        port = http_port(node)
        client = await Client.connect(port=node.server.port, origin_host=UPF, applications=APPS)
        try:
            answer = await client.request(amr(AccountOperation.CDR_ROTATE, "cdr", origin=UPF))
            assert isinstance(answer, AMA) and answer.result_code == 2001
        finally:
            await client.close()
        m = await scrape(port)
        am = ("command", "ACCOUNT_MANAGEMENT")
        assert m["ocs_answers_total", (am, ("result", "SUCCESS"), ("result_code", "2001"))] == 1
