"""TLS on the peer port (RFC 6733 section 13): configurations, the contexts made from them, the
accepting side of the handshake, and the binding of a client certificate to the CER.

- `TlsServerConfig` -> `server_context`: the server's certificate and key, TLS 1.2 or later,
  optionally client certificates checked against a CA file (required or not).
- `TlsClientConfig` -> `client_context`: what a client trusts (a CA file, else the system's
  store), its own certificate if the server asks for one, and the name it expects in the
  server's certificate (`server_name`; default: the host it connects to). Plain values: the
  load harness sends them to its worker processes, each of which builds its context.
- `TlsListener`: a listening socket that speaks TLS only. Each accepted socket does its
  handshake (bounded in time) before the protocol the server serves it with (`make_protocol`)
  sees it, so that a failure is known and logged once, with its reason and the remote address
  (rate-limited, counted in `failures`). A connection that fails the handshake (plain TCP, a
  client certificate missing or not signed by the CA, a stalled client) is closed without ever
  reaching the Diameter layer.
- `certificate_names` and `bind_certificate`: with a verified client certificate, the CER's
  Origin-Host must be one of the certificate's names (subjectAltName DNS entries; the subject's
  commonName only when there is no DNS entry), compared without case and without wildcards;
  otherwise the peer policy answers 3010 DIAMETER_UNKNOWN_PEER and the connection closes.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from protocol.codes import ResultCode
from protocol.connection import PeerDecision
from protocol.messages import CER

log = structlog.get_logger("ocs.edge.tls")

MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
REASON_MAX_CHARS: Final = 200  # a logged handshake failure reason is cut to this
NAMES_LOGGED_MAX: Final = 8  # certificate names in a `peer.certificate_mismatch` line
LOG_BURST: Final = 10  # handshake failures logged per second at most; the rest are counted
ACCEPT_RETRY_S: Final = 1.0  # out of descriptors (or memory): accept again after this long
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class TlsConfigError(ValueError):
    """A TLS configuration that cannot be used (missing file, bad key, inconsistent options)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsServerConfig:
    """TLS on the server's peer port. With it, the port speaks TLS only."""

    cert_file: Path  # PEM: the server's certificate, then its chain
    key_file: Path | None = None  # PEM private key; None: it is in `cert_file`
    client_ca_file: Path | None = None  # PEM: CAs whose client certificates are accepted
    require_client_cert: bool = False  # refuse a handshake without a client certificate
    handshake_timeout_s: float = 10.0  # close a connection whose handshake takes longer
    shutdown_timeout_s: float = 2.0  # wait this long for the peer's close_notify at a close

    def __post_init__(self) -> None:
        if self.require_client_cert and self.client_ca_file is None:
            raise TlsConfigError("requiring client certificates needs a client CA file")
        if not self.handshake_timeout_s > 0 or not self.shutdown_timeout_s > 0:
            raise TlsConfigError("TLS timeouts must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsClientConfig:
    """TLS from a client to the server's peer port (plain values: picklable)."""

    ca_file: Path | None = None  # PEM: CAs trusted for the server's certificate; None: system
    cert_file: Path | None = None  # PEM: our certificate, for a server that asks for one
    key_file: Path | None = None  # PEM private key; None: it is in `cert_file`
    server_name: str | None = None  # expected in the server's certificate; None: the host

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise TlsConfigError("a client key needs a client certificate")

    def hostname(self, host: str) -> str:
        """The name checked against the server's certificate when connecting to `host`."""
        return self.server_name or host


def server_context(config: TlsServerConfig) -> ssl.SSLContext:
    """The server's context: TLS 1.2+, its certificate, and client certificates verified
    against `client_ca_file` only (never the system's store), required or optional."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    _load_chain(ctx, config.cert_file, config.key_file)
    if config.client_ca_file is not None:
        _load_ca(ctx, config.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if config.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(config: TlsClientConfig) -> ssl.SSLContext:
    """A client's context: TLS 1.2+, the server's certificate verified (chain and name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname, CERT_REQUIRED
    ctx.minimum_version = MINIMUM_VERSION
    if config.ca_file is not None:
        _load_ca(ctx, config.ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if config.cert_file is not None:
        _load_chain(ctx, config.cert_file, config.key_file)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert_file: Path, key_file: Path | None) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        key = f" and key {key_file}" if key_file is not None else ""
        raise TlsConfigError(f"cannot load certificate {cert_file}{key}: {_reason(exc)}") from exc


def _load_ca(ctx: ssl.SSLContext, ca_file: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load CA file {ca_file}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """A short, bounded reason: OpenSSL's reason code when there is one, else the message."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        text = f"{exc.reason}: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(exc.reason)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text[:REASON_MAX_CHARS]


# --- client certificate identity ---------------------------------------------------------------


def certificate_names(peercert: Any) -> frozenset[str] | None:
    """The names a verified peer certificate (`SSLObject.getpeercert()`) may use as
    Origin-Host, lower-cased: its subjectAltName DNS entries, or its subject's commonName if
    it has no DNS entry. None when there is no verified certificate."""
    if not isinstance(peercert, dict) or not peercert:
        return None
    dns = {
        value.lower()
        for kind, value in peercert.get("subjectAltName", ())
        if kind == "DNS" and isinstance(value, str)
    }
    if dns:
        return frozenset(dns)
    return frozenset(
        value.lower()
        for rdn in peercert.get("subject", ())
        for key, value in rdn
        if key == "commonName" and isinstance(value, str)
    )


def bind_certificate(
    policy: Callable[[CER], PeerDecision], names: frozenset[str] | None
) -> Callable[[CER], PeerDecision]:
    """The peer policy of a connection whose client presented a verified certificate naming
    `names`: a CER whose Origin-Host is not one of them is refused (3010) before `policy` is
    asked. Without a certificate (`names` None) the policy is unchanged. Wildcard names match
    nothing: a certificate binds named peers."""
    if names is None:
        return policy

    def decide(cer: CER) -> PeerDecision:
        if cer.origin_host.lower() not in names:
            log.info(
                "peer.certificate_mismatch",
                origin_host=cer.origin_host,
                certificate=sorted(names)[:NAMES_LOGGED_MAX],
            )
            return PeerDecision(result_code=ResultCode.UNKNOWN_PEER)
        return policy(cer)

    return decide


# --- accepting ---------------------------------------------------------------------------------


class Handshake:
    """An accepted connection doing its TLS handshake: what a server's connection limits count
    until the handshake ends (`TlsListener(admit=..., done=...)`); `evict` abandons it."""

    __slots__ = ("remote", "task")

    def __init__(self, remote: str) -> None:
        self.remote = remote  # "ip:port", as the connection's peername once it is made
        self.task: asyncio.Task[None] | None = None

    def evict(self) -> None:
        """Abandon the handshake now (its socket is closed)."""
        if self.task is not None:
            self.task.cancel()


class TlsListener:
    """A listening socket that speaks TLS only (the server's, when it has a TLS configuration).

    It accepts in a loop; each accepted socket does its handshake in a task
    (`loop.connect_accepted_socket`, at most `handshake_timeout_s`). On success the protocol
    `make_protocol` builds gets the TLS transport in `connection_made` (its `peercert` extra is
    the verified client certificate); on failure the socket is closed and the failure logged
    once (`tls.handshake_failed`: remote, reason; at most `LOG_BURST` lines a second, the rest
    counted in the next line's `suppressed`) and counted in `failures`. (asyncio's own TLS
    server says nothing of a failed handshake: hence this loop.) `close` stops accepting and
    abandons the handshakes in progress.

    `admit`, if given, is asked for each accepted connection before its handshake starts
    (False: it is closed at once) and may abandon it later (`Handshake.evict`); `done` is told
    when the handshake has ended, whether it succeeded (after the protocol's `connection_made`),
    failed or was abandoned. A server counts handshakes in progress against its limits so."""

    def __init__(
        self,
        *,
        context: ssl.SSLContext,
        make_protocol: Callable[[], asyncio.Protocol],
        handshake_timeout_s: float,
        shutdown_timeout_s: float,
        backlog: int = 100,
        admit: Callable[[Handshake], bool] | None = None,
        done: Callable[[Handshake], None] | None = None,
    ) -> None:
        self.context = context
        self.admit = admit
        self.done = done
        self.make_protocol = make_protocol
        self.handshake_timeout_s = handshake_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.backlog = backlog
        self.failures = 0  # handshakes that failed, all counted
        self.handshakes: set[asyncio.Task[None]] = set()
        self._port = 0
        self._accepting: asyncio.Task[None] | None = None
        self._log_window = -1
        self._logged_in_window = 0
        self._suppressed = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on the first address `host` resolves to (all interfaces for "")."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address, family=family, backlog=self.backlog)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        self._accepting = loop.create_task(self._accept(sock))

    @property
    def port(self) -> int:
        return self._port

    def close(self) -> None:
        """Stop accepting (the listening socket closes as the accept loop ends); handshakes in
        progress are abandoned (their sockets closed)."""
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self.handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        """Until the accept loop and the abandoned handshakes have ended."""
        tasks = [t for t in (self._accepting, *self.handshakes) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    conn, address = await loop.sock_accept(sock)
                except OSError as exc:
                    if exc.errno in _OUT_OF_RESOURCES:  # as asyncio does: wait, accept again
                        log.warning("server.accept_failed", error=_reason(exc))
                        await asyncio.sleep(ACCEPT_RETRY_S)
                    continue  # ECONNABORTED and the like: that one connection is gone
                conn.setblocking(False)
                remote = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"
                handshake = Handshake(remote)
                try:
                    admitted = self.admit is None or self.admit(handshake)
                except Exception as exc:  # never stop accepting for it (a log that failed)
                    admitted = False
                    loop.call_exception_handler(
                        {"message": "TLS connection admission failed", "exception": exc}
                    )
                if not admitted:
                    conn.close()  # refused by the connection limits, before any TLS
                    continue
                task = loop.create_task(self._handshake(conn, handshake))
                handshake.task = task
                self.handshakes.add(task)
                task.add_done_callback(self.handshakes.discard)
        finally:
            sock.close()

    async def _handshake(self, conn: socket.socket, handshake: Handshake) -> None:
        loop = asyncio.get_running_loop()
        remote = handshake.remote
        try:
            await loop.connect_accepted_socket(
                self.make_protocol,
                conn,
                ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout_s,
                ssl_shutdown_timeout=self.shutdown_timeout_s,
            )
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:  # any failure closes this socket only
            conn.close()
            self._failed(remote, exc, loop.time())
        finally:
            if self.done is not None:
                self.done(handshake)

    def _failed(self, remote: str, exc: BaseException, now: float) -> None:
        self.failures += 1
        window = int(now)
        if window != self._log_window:
            self._log_window, self._logged_in_window = window, 0
        if self._logged_in_window >= LOG_BURST:
            self._suppressed += 1
            return
        self._logged_in_window += 1
        suppressed, self._suppressed = self._suppressed, 0
        log.info(
            "tls.handshake_failed",
            remote=remote,
            reason=_reason(exc),
            error=type(exc).__name__,
            suppressed=suppressed,
        )


__all__ = [
    "Handshake",
    "TlsClientConfig",
    "TlsConfigError",
    "TlsListener",
    "TlsServerConfig",
    "bind_certificate",
    "certificate_names",
    "client_context",
    "server_context",
]
