"""`ocs serve` over TLS in a subprocess, as an operator runs it, with the tools that talk to it:
charging, a refused client certificate, a certificate for another name, plain TCP, and
`ocs account`, `ocs sim upf` and `ocs bench` over TLS (short runs)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ocs.cli.main import main
from ocs.edge.client import Client, ClientError
from ocs.edge.tls import TlsClientConfig, client_context
from ocs.tools.spawn import SpawnedServer, serve_argv
from protocol.codec import encode_frame
from protocol.codes import AccountOperation, ApplicationId, CCRequestType, CommandCode, Flag
from protocol.framing import FrameBuffer
from protocol.messages import AMA, CCA, CER, DWR
from tests.charging.conftest import amr, ccr, mscc, rsu, usu
from tests.tls.conftest import ADMIN, OTHER, PEER, SERVER_NAME, UPF_SIM, Pki

APPS = (ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION)
SUBSCRIBER = "491770000001"


def start_server(pki: Pki, workdir: Path, name: str, *, require: bool) -> SpawnedServer:
    server = SpawnedServer(
        serve_argv(
            "--log-json",
            data_dir=workdir / f"{name}-data",
            tls=pki.server_config(require=require, client_ca=require),
        ),
        workdir,
        name=name,
        ready_timeout=20.0,
        stop_grace=10.0,
    )
    return server.start()


@pytest.fixture(scope="module")
def tls_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpawnedServer]:
    """`ocs serve` with a server certificate that requires client certificates of our CA."""
    server = start_server(pki, tmp_path_factory.mktemp("serve-tls"), "ocs", require=True)
    try:
        yield server
        assert server.terminate() == 0, server.log_tail()
    finally:
        server.kill()


async def connect(port: int, tls: TlsClientConfig, origin_host: str) -> Client:
    return await Client.connect(
        port=port,
        origin_host=origin_host,
        applications=APPS,
        ssl=client_context(tls),
        server_hostname=tls.server_name,
        timeout=5.0,
    )


async def still_serving(port: int, pki: Pki) -> None:
    client = await connect(port, pki.client_config(PEER), PEER)
    answer = await client.request(DWR(origin_host=PEER, origin_realm="test.local"))
    assert answer.result_code == 2001
    await client.close()


async def test_charging_over_tls(tls_server: SpawnedServer, pki: Pki) -> None:
    client = await connect(tls_server.port, pki.client_config(PEER), PEER)
    assert client.peer is not None and client.peer.origin_host == SERVER_NAME
    created = await client.request(
        amr(
            AccountOperation.CREATE,
            "acct-tls",
            amount=5_000_000,
            subscriber=SUBSCRIBER,
            origin=PEER,
        )
    )
    assert created.result_code == 2001, created
    sid = f"{PEER};1;1"
    initial = await client.request(
        ccr(sid, CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUBSCRIBER, origin=PEER)
    )
    assert isinstance(initial, CCA) and initial.result_code == 2001, initial
    final = await client.request(
        ccr(sid, CCRequestType.TERMINATION, 1, mscc(10, used=(usu(octets=1 << 20),)), origin=PEER)
    )
    assert isinstance(final, CCA) and final.result_code == 2001, final
    got = await client.request(amr(AccountOperation.GET, "acct-tls", origin=PEER))
    assert isinstance(got, AMA) and got.account is not None
    assert got.account.reserved == 0 and 0 < got.account.balance < 5_000_000
    await client.close()


async def test_missing_client_certificate_is_refused(tls_server: SpawnedServer, pki: Pki) -> None:
    # TLS 1.3: the client may finish its side of the handshake before the server refuses
    with pytest.raises((OSError, ClientError)):
        await connect(tls_server.port, pki.client_config(None), PEER)
    rogue = TlsClientConfig(ca_file=pki.ca, cert_file=pki.rogue_cert, server_name=SERVER_NAME)
    with pytest.raises((OSError, ClientError)):
        await connect(tls_server.port, rogue, PEER)
    await still_serving(tls_server.port, pki)
    await asyncio.sleep(0.2)
    failures = _events(tls_server, "tls.handshake_failed")
    assert any("CERTIFICATE" in e["reason"].upper() for e in failures), failures


async def test_certificate_for_another_name_is_3010_and_close(
    tls_server: SpawnedServer, pki: Pki
) -> None:
    """A client certificate for OTHER, a CER for PEER: 3010 with the E bit, then closed."""
    tls = pki.client_config(OTHER)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_server.port, ssl=client_context(tls), server_hostname=SERVER_NAME
    )
    cer = CER(
        origin_host=PEER,
        origin_realm="test.local",
        host_ip_address=("127.0.0.1",),
        vendor_id=0,
        product_name="tls-test",
        auth_application_id=(4,),
    )
    command = int(CommandCode.CAPABILITIES_EXCHANGE)
    writer.write(
        encode_frame(
            cer,
            flags=int(Flag.REQUEST),
            command_code=command,
            application_id=0,
            hop_by_hop=7,
            end_to_end=7,
        )
    )
    frames = FrameBuffer(65_536)
    received = b""
    async with asyncio.timeout(5.0):
        while chunk := await reader.read(65_536):
            received += chunk
    writer.close()
    frames.feed(received)
    frame = frames.next_frame()
    assert frame is not None and frames.next_frame() is None  # the CEA, then the close
    header, body = frame[0], msgspec.msgpack.decode(frame[1])
    assert header.command_code == command and header.flags & Flag.ERROR
    assert body["Result-Code"] == 3010
    await still_serving(tls_server.port, pki)
    mismatch = _events(tls_server, "peer.certificate_mismatch")
    assert any(e["origin_host"] == PEER and e["certificate"] == [OTHER] for e in mismatch)


async def test_plain_tcp_is_closed_and_the_server_goes_on(
    tls_server: SpawnedServer, pki: Pki
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    dwr = DWR(origin_host=PEER, origin_realm="x")
    command = int(CommandCode.DEVICE_WATCHDOG)
    writer.write(
        encode_frame(
            dwr,
            flags=int(Flag.REQUEST),
            command_code=command,
            application_id=0,
            hop_by_hop=1,
            end_to_end=1,
        )
    )
    async with asyncio.timeout(5.0):
        while await reader.read(65_536):
            pass  # at most a TLS alert, never an answer
    writer.close()
    await still_serving(tls_server.port, pki)
    await asyncio.sleep(0.2)
    assert _events(tls_server, "tls.handshake_failed")


def test_ocs_account_over_tls(
    tls_server: SpawnedServer, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--server", f"127.0.0.1:{tls_server.port}", "--origin-host", ADMIN, "--json"]
    argv = ["account", "create", "acct-cli-tls", "--msisdn", "491770000002", "--balance", "3"]
    assert main([*argv, *server, *pki.client_args(ADMIN)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Result-Code"] == 2001 and out["Account"]["Balance"] == 3_000_000
    assert main(["account", "get", "acct-cli-tls", *server, *pki.client_args(ADMIN)]) == 0
    assert json.loads(capsys.readouterr().out)["Account"]["Account-Id"] == "acct-cli-tls"
    # without TLS, or without the client certificate: no answer
    assert main(["account", "get", "acct-cli-tls", *server, "--timeout", "3"]) == 2
    assert main(["account", "get", "acct-cli-tls", *server, *pki.client_args(None)]) == 2
    # a certificate for another name than --origin-host: refused
    assert main(["account", "get", "acct-cli-tls", *server, *pki.client_args(OTHER)]) == 2
    capsys.readouterr()
    missing = ["--tls-ca", str(pki.dir / "missing.pem")]
    assert main(["account", "get", "acct-cli-tls", *server, *missing]) == 2
    assert "missing.pem" in capsys.readouterr().err


def test_ocs_sim_upf_over_tls(
    tls_server: SpawnedServer, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "sim",
        "upf",
        "--server",
        f"127.0.0.1:{tls_server.port}",
        "--subscribers",
        "2",
        "--duration",
        "1",
        "--speed",
        "300",
        "--usage-log",
        str(tmp_path / "upf.jsonl"),
        "--connect-timeout",
        "5",
        *pki.client_args(UPF_SIM),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ocs sim upf: 2 subscribers" in out and "protocol errors 0" in out


def test_ocs_bench_over_tls(pki: Pki, tmp_path: Path) -> None:
    """The load harness's lean connections and its provisioning over TLS (server certificate
    only: the harness's peers are named per run)."""
    server = start_server(pki, tmp_path, "bench-ocs", require=False)
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ocs",
                "bench",
                "--json",
                "--quiet",
                "--server",
                f"127.0.0.1:{server.port}",
                "--mode",
                "open",
                "--rate",
                "100",
                "--duration",
                "1",
                "--warmup",
                "0.2",
                "--connections",
                "2",
                "--processes",
                "1",
                "--subscribers",
                "50",
                "--no-pin",
                *pki.client_args(None),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout)
        assert report["provisioned"] == {"2001": 50}
        assert report["errors"] == 0 and report["answers"] > 0
        assert server.terminate() == 0
    finally:
        server.kill()


def test_ocs_bench_refuses_tls_without_a_server(
    pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *pki.client_args(None)]) == 2
    assert "--server" in capsys.readouterr().err


def _events(server: SpawnedServer, name: str) -> list[dict[str, Any]]:
    events = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


def test_ocs_serve_refuses_a_tls_configuration_it_cannot_use(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    base = ["serve", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--log-json"]
    missing = str(pki.dir / "missing.pem")
    cert = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    for tls in (
        ["--tls-cert", missing],
        ["--tls-cert", str(pki.server_cert)],  # the key is elsewhere
        [*cert, "--tls-require-client-cert"],  # without --tls-client-ca
        ["--tls-client-ca", str(pki.ca)],  # without --tls-cert
    ):
        assert main([*base, *tls]) == 3, tls  # ExitStatus.CONFIG
        assert "startup.failed" in capsys.readouterr().err
    assert not data.exists()  # refused before the data directory is touched
