"""TLS on the peer port, in process (RFC 6733 section 13): the contexts, the handshake and its
failures, and the binding of a client certificate to the CER's Origin-Host."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvloop
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ocs.edge.client import Client, ClientError
from ocs.edge.server import Server, ServerConfig
from ocs.edge.tls import (
    LOG_BURST,
    Handshake,
    TlsClientConfig,
    TlsConfigError,
    TlsServerConfig,
    bind_certificate,
    certificate_names,
    client_context,
    server_context,
)
from protocol.codes import ResultCode
from protocol.connection import PeerDecision
from protocol.messages import CER, DWR
from tests.tls.conftest import OTHER, PEER, SERVER_NAME, Pki

ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[Server] = []

    async def make(tls: TlsServerConfig) -> Server:
        srv = Server(ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2, tls=tls))
        await srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()


async def connect(port: int, tls: TlsClientConfig | None, origin_host: str = PEER) -> Client:
    return await Client.connect(
        port=port,
        origin_host=origin_host,
        ssl=client_context(tls) if tls is not None else None,
        server_hostname=tls.server_name if tls is not None else None,
        timeout=3.0,
    )


async def dwr_ok(client: Client) -> bool:
    answer = await client.request(DWR(origin_host=client.identity.origin_host, origin_realm="x"))
    return answer.result_code == ResultCode.SUCCESS


async def plain_tcp_is_closed(port: int, data: bytes) -> bool:
    """Connect without TLS, send `data`; True once the server has closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(3.0):
            while await reader.read(65536):
                pass  # a TLS alert, perhaps
        return True
    except (ConnectionError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def handshake_failures(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "tls.handshake_failed"]


# --- names of a certificate ----------------------------------------------------------------


def test_certificate_names_are_the_dns_entries_else_the_common_name() -> None:
    subject = ((("countryName", "FR"),), (("commonName", "CN.Example"),))
    with_san = {"subject": subject, "subjectAltName": (("DNS", "A.test"), ("IP Address", "::1"))}
    assert certificate_names(with_san) == frozenset({"a.test"})
    ip_only = {"subject": subject, "subjectAltName": (("IP Address", "127.0.0.1"),)}
    assert certificate_names(ip_only) == frozenset({"cn.example"})
    assert certificate_names({"subject": subject}) == frozenset({"cn.example"})
    assert certificate_names({}) is None  # no verified certificate
    assert certificate_names(None) is None


_LABEL = st.text(alphabet="abcXYZ019-*", min_size=1, max_size=4)
_NAME = st.builds(".".join, st.lists(_LABEL, min_size=1, max_size=3))


@given(
    dns=st.lists(_NAME, max_size=3),
    ips=st.lists(st.just("127.0.0.1"), max_size=1),
    cns=st.lists(_NAME, max_size=2),
    origin_host=_NAME,
)
def test_a_certificate_admits_exactly_its_names(
    dns: list[str], ips: list[str], cns: list[str], origin_host: str
) -> None:
    """The CER is passed to the policy iff its Origin-Host is, without case, one of the DNS
    names (or, with none, one of the commonNames); a wildcard is a name like any other, so
    `*.x` admits only the literal `*.x`."""
    cert = {
        "subject": tuple((("commonName", cn),) for cn in cns),
        "subjectAltName": tuple([("DNS", d) for d in dns] + [("IP Address", i) for i in ips]),
    }
    names = certificate_names(cert)
    assert names == frozenset(n.lower() for n in (dns or cns))
    asked: list[str] = []

    def policy(cer: CER) -> PeerDecision:
        asked.append(cer.origin_host)
        return PeerDecision(result_code=ResultCode.SUCCESS, applications=frozenset({4}))

    cer = CER(
        origin_host=origin_host,
        origin_realm="r",
        host_ip_address=("127.0.0.1",),
        vendor_id=0,
        product_name="p",
        auth_application_id=(4,),
    )
    decision = bind_certificate(policy, names)(cer)
    admitted = origin_host.lower() in {n.lower() for n in (dns or cns)}
    assert (decision.result_code == ResultCode.SUCCESS) is admitted
    assert asked == ([origin_host] if admitted else [])
    if not admitted:
        assert decision.result_code == ResultCode.UNKNOWN_PEER
    assert bind_certificate(policy, None) is policy  # no certificate: the policy unchanged


# --- contexts --------------------------------------------------------------------------------


def test_contexts_are_tls_1_2_or_later_and_check_what_they_say(pki: Pki) -> None:
    ctx = server_context(pki.server_config(require=True))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert server_context(pki.server_config(require=False)).verify_mode is ssl.CERT_OPTIONAL
    assert server_context(pki.server_config(client_ca=False, require=False)).verify_mode is (
        ssl.CERT_NONE
    )
    client = client_context(pki.client_config())
    assert client.minimum_version is ssl.TLSVersion.TLSv1_2
    assert client.check_hostname and client.verify_mode is ssl.CERT_REQUIRED


def test_bad_configurations_are_refused_with_the_file_named(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="client CA"):
        TlsServerConfig(cert_file=pki.server_cert, require_client_cert=True)
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        server_context(TlsServerConfig(cert_file=missing))
    with pytest.raises(TlsConfigError, match=r"server\.pem"):  # the key is not in the cert file
        server_context(TlsServerConfig(cert_file=pki.server_cert))
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        client_context(TlsClientConfig(ca_file=missing))
    with pytest.raises(TlsConfigError, match="needs a client certificate"):
        TlsClientConfig(key_file=pki.server_key)
    # the server is built whole: a bad certificate fails its construction, not its start
    with pytest.raises(TlsConfigError):
        Server(ServerConfig(port=0, tls=TlsServerConfig(cert_file=missing)))


# --- over a socket ---------------------------------------------------------------------------


async def test_peer_with_its_certificate_is_served(pki: Pki, make_server: ServerFactory) -> None:
    srv = await make_server(pki.server_config())
    client = await connect(srv.port, pki.client_config(PEER))
    assert client.peer is not None and client.peer.origin_host == SERVER_NAME
    assert await dwr_ok(client)
    await client.close()


async def test_client_checks_the_server_name(pki: Pki, make_server: ServerFactory) -> None:
    srv = await make_server(pki.server_config(client_ca=False, require=False))
    wrong = TlsClientConfig(ca_file=pki.ca, server_name="not-the-server.test.local")
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(srv.port, wrong)
    untrusted = TlsClientConfig(ca_file=pki.rogue_cert, server_name=SERVER_NAME)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(srv.port, untrusted)
    # server certificate only: any peer may connect (the peer policy decides)
    client = await connect(srv.port, TlsClientConfig(ca_file=pki.ca, server_name=SERVER_NAME))
    assert await dwr_ok(client)
    await client.close()


async def test_certificate_for_another_name_is_3010_and_close(
    pki: Pki, make_server: ServerFactory
) -> None:
    srv = await make_server(pki.server_config())
    with capture_logs() as logs, pytest.raises(ClientError, match="3010"):
        await connect(srv.port, pki.client_config(OTHER), origin_host=PEER)
    mismatch = [e for e in logs if e["event"] == "peer.certificate_mismatch"]
    assert mismatch == [
        {
            "event": "peer.certificate_mismatch",
            "log_level": "info",
            "origin_host": PEER,
            "certificate": [OTHER],
        }
    ]
    # the names compare without case; the server still serves
    client = await connect(srv.port, pki.client_config(OTHER), origin_host=OTHER.upper())
    assert await dwr_ok(client)
    await client.close()


async def test_optional_client_certificate_still_binds_when_presented(
    pki: Pki, make_server: ServerFactory
) -> None:
    srv = await make_server(pki.server_config(require=False))
    with pytest.raises(ClientError, match="3010"):
        await connect(srv.port, pki.client_config(OTHER), origin_host=PEER)
    anonymous = await connect(srv.port, pki.client_config(None), origin_host=PEER)
    assert await dwr_ok(anonymous)
    await anonymous.close()


async def test_required_certificate_missing_or_untrusted_is_refused(
    pki: Pki, make_server: ServerFactory
) -> None:
    srv = await make_server(pki.server_config())
    rogue = TlsClientConfig(ca_file=pki.ca, cert_file=pki.rogue_cert, server_name=SERVER_NAME)
    with capture_logs() as logs:
        for tls in (pki.client_config(None), rogue):
            # TLS 1.3: the client's side of the handshake ends before the server has checked
            # its certificate, so the refusal may come as the CER goes out
            with pytest.raises((OSError, ClientError)):
                await connect(srv.port, tls)
        await asyncio.sleep(0.05)
    reasons = [e["reason"] for e in handshake_failures(logs)]
    assert len(reasons) == 2 and srv.tls_handshake_failures == 2
    assert "CERTIFICATE" in reasons[0].upper() and "CERTIFICATE" in reasons[1].upper()
    client = await connect(srv.port, pki.client_config(PEER))
    assert await dwr_ok(client)
    await client.close()


async def test_plain_tcp_is_closed_and_logged_once(pki: Pki, make_server: ServerFactory) -> None:
    srv = await make_server(pki.server_config())
    cer = bytes.fromhex(_cer_hex())
    with capture_logs() as logs:
        assert await plain_tcp_is_closed(srv.port, cer)
        await asyncio.sleep(0.05)
    failures = handshake_failures(logs)
    assert len(failures) == 1 and srv.tls_handshake_failures == 1
    assert failures[0]["remote"].startswith("127.0.0.1:") and failures[0]["reason"]
    client = await connect(srv.port, pki.client_config(PEER))
    assert await dwr_ok(client)
    await client.close()


async def test_handshake_failures_are_logged_at_a_bounded_rate(
    pki: Pki, make_server: ServerFactory
) -> None:
    srv = await make_server(pki.server_config())
    attempts = LOG_BURST + 15
    with capture_logs() as logs:
        results = await asyncio.gather(
            *(plain_tcp_is_closed(srv.port, b"\x00" * 64) for _ in range(attempts))
        )
        await asyncio.sleep(0.05)
    assert all(results)
    assert srv.tls_handshake_failures == attempts  # all counted
    lines = handshake_failures(logs)
    assert 1 <= len(lines) <= 2 * LOG_BURST  # the gather may straddle a second
    assert len(lines) < attempts


async def test_stalled_handshake_is_closed_after_its_timeout(
    pki: Pki, make_server: ServerFactory
) -> None:
    srv = await make_server(
        TlsServerConfig(cert_file=pki.server_cert, key_file=pki.server_key, handshake_timeout_s=0.3)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    with capture_logs() as logs:
        async with asyncio.timeout(3.0):
            assert await reader.read(100) == b""  # closed, without a byte from the client
        await asyncio.sleep(0.05)
    writer.close()
    assert len(handshake_failures(logs)) == 1 and srv.tls_handshake_failures == 1


async def test_stop_abandons_handshakes_in_progress(pki: Pki) -> None:
    srv = Server(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2, tls=pki.server_config())
    )
    await srv.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    await asyncio.sleep(0.05)
    async with asyncio.timeout(3.0):
        await srv.stop()
        assert await reader.read(100) == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):  # no longer listening
        await asyncio.open_connection("127.0.0.1", srv.port)


def test_served_over_tls_on_uvloop(pki: Pki) -> None:
    """`ocs serve` runs on uvloop: the hand-over from the handshake to the peer works there."""

    async def main() -> None:
        srv = Server(
            ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2, tls=pki.server_config())
        )
        await srv.start()
        try:
            client = await connect(srv.port, pki.client_config(PEER))
            assert await dwr_ok(client)
            await client.close()
            with pytest.raises(ClientError, match="3010"):
                await connect(srv.port, pki.client_config(OTHER), origin_host=PEER)
            assert await plain_tcp_is_closed(srv.port, bytes.fromhex(_cer_hex()))
            assert srv.tls_handshake_failures == 1
        finally:
            await srv.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _cer_hex() -> str:
    from tests.conftest import VECTOR

    hex_: str = VECTOR["cer"]["hex"]
    return hex_


async def test_handshakes_in_progress_count_as_connections_without_cer(pki: Pki) -> None:
    """Connections that never start or finish their TLS handshake are bounded as connections
    that never send CER are (they were not counted at all: a flood of them held descriptors
    until each handshake timed out): at the limit the oldest is closed, and a peer that
    completes its handshake and its CER is still served."""
    srv = Server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            shutdown_grace_s=0.2,
            # no handshake ends by its timeout while the test runs, however slow the machine
            tls=dataclasses.replace(pki.server_config(), handshake_timeout_s=120.0),
            max_unopened_connections=2,
        )
    )
    await srv.start()
    try:
        stalled = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(2)]
        async with asyncio.timeout(3.0):
            while srv.tls_handshakes_in_progress < 2:
                await asyncio.sleep(0.01)
        stalled.append(await asyncio.open_connection("127.0.0.1", srv.port))
        async with asyncio.timeout(3.0):  # the oldest is closed, long before its timeout
            assert await stalled[0][0].read(100) == b""
        assert srv.stats["evicted_unopened"] == 1 and srv.tls_handshakes_in_progress == 2
        client = await connect(srv.port, pki.client_config(PEER))  # evicts the next oldest
        assert await dwr_ok(client)
        async with asyncio.timeout(3.0):
            assert await stalled[1][0].read(100) == b""
        assert srv.stats["evicted_unopened"] == 2 and srv.tls_handshakes_in_progress == 1
        await client.close()
    finally:
        for _, writer in stalled:
            writer.close()
        await srv.stop()


async def test_a_failing_admission_closes_that_connection_and_accepting_goes_on(
    pki: Pki, make_server: ServerFactory
) -> None:
    """An exception in the admission of one TLS connection (a log line that could not be
    written, once) closes that connection and is reported to the loop; it stopped the accept
    loop, so that no connection was accepted any more."""
    srv = await make_server(pki.server_config())
    listener = srv._tls
    assert listener is not None and listener.admit is not None
    admit = listener.admit
    calls = 0

    def failing_once(handshake: Handshake) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("I/O operation on closed file")
        return admit(handshake)

    listener.admit = failing_once
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    async with asyncio.timeout(3.0):
        assert await reader.read(100) == b""
    writer.close()
    client = await connect(srv.port, pki.client_config(PEER))
    assert await dwr_ok(client)
    await client.close()
    assert [type(ctx["exception"]) for ctx in reported] == [ValueError]
