"""The asyncio server: a thin adapter between sockets and `protocol.Connection`.

Everything protocol-shaped happens in the sans-IO connection, timers included (the 10 s CER
deadline, the watchdog Tw: the connection says when, `timer_at()`); this module owns what needs
a clock or a socket: accepting, one loop timer per connection at its `timer_at()`, the peer
policy (which needs the remote address), dispatching application requests to handlers, and
shutdown.
Handlers are synchronous and return the answer; a `ProtocolError` they raise is answered by the
connection (the one place errors become result codes). Answers go out through an `AnswerGate`
so that the journal can hold them until what they acknowledge is durable (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import structlog

from protocol.codes import ApplicationId, DisconnectCause, ResultCode
from protocol.connection import (
    AnswerDropped,
    AnswerReceived,
    Connection,
    ConnectionClosed,
    DisconnectRequested,
    LocalIdentity,
    PeerDecision,
    PeerOpened,
    RequestReceived,
    RequestRejected,
)
from protocol.errors import ProtocolError
from protocol.header import Header
from protocol.messages import CER, Answer, Request
from protocol.peer import PeerState, Role

log = structlog.get_logger("ocs.edge.server")

SERVED_APPLICATIONS = frozenset({ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION})


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEntry:
    """One Origin-Host of the peer list: the applications it may use and the networks it may
    connect from (empty: any address)."""

    applications: frozenset[int]
    networks: tuple[IPNetwork, ...] = ()

    def admits(self, remote_ip: str | None) -> bool:
        """Whether a connection from `remote_ip` may speak for this Origin-Host."""
        if not self.networks:
            return True
        ip = _ip(remote_ip) if remote_ip is not None else None
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 3868
    origin_host: str = "ocs.test.local"
    origin_realm: str = "test.local"
    product_name: str = "ocs"
    # Origin-Host -> what it may use and where it may connect from; None = the default policy
    # of WIRE.md section 4.
    peers: Mapping[str, PeerEntry] | None = None
    cer_timeout_s: float = 10.0
    watchdog_s: float = 30.0  # Tw
    max_pending_requests: int = 1024
    max_message_length: int = 65_536
    shutdown_grace_s: float = 2.0


class RequestContext(NamedTuple):
    """What a handler knows about a request besides its decoded message (a tuple: one is
    built per request, and a dataclass's `__init__` costs several times more)."""

    header: Header
    peer: PeerHandle
    body: bytes  # the body as received
    now_ms: int  # wall-clock ms since the Unix epoch, read once per batch at the edge


class Handler(Protocol):
    """Returns the answer, or its body already encoded."""

    def __call__(self, ctx: RequestContext, message: Any) -> Answer | bytes: ...


class AnswerGate(Protocol):
    """Holds answers back until what they acknowledge is durable (`GroupCommit` is one): the
    callback that sends an answer runs once everything journaled before it is durable."""

    def defer(self, callback: Callable[[], None]) -> None: ...


class ImmediateGate:
    """Sends answers at once: a server that journals nothing."""

    def defer(self, callback: Callable[[], None]) -> None:
        callback()


def default_peer_policy(
    peers: Mapping[str, PeerEntry] | None, remote_ip: str | None
) -> Callable[[CER], PeerDecision]:
    """WIRE.md section 4: with no peer list, loopback peers get credit control and
    administration and others are refused; with a list, only listed Origin-Hosts are served,
    and a name bound to addresses only from those (3010 from anywhere else)."""

    def decide(cer: CER) -> PeerDecision:
        if peers is not None:
            entry = peers.get(cer.origin_host)
            if entry is None or not entry.admits(remote_ip):
                return PeerDecision(result_code=ResultCode.UNKNOWN_PEER)
            return PeerDecision(result_code=ResultCode.SUCCESS, applications=entry.applications)
        if remote_ip is not None and _is_loopback(remote_ip):
            return PeerDecision(result_code=ResultCode.SUCCESS, applications=SERVED_APPLICATIONS)
        return PeerDecision(result_code=ResultCode.UNKNOWN_PEER)

    return decide


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a peer, an IPv4-mapped IPv6 address as the IPv4 address it maps (a
    dual-stack socket reports IPv4 peers so); None if it is not an IP address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_loopback(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback


class PeerHandle(asyncio.Protocol):
    """One accepted socket."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.remote: str = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # when `_timer` fires: the connection's timer_at()
        self._closed = False
        self._lost = False
        self._close_when_answered = False
        self._closed_event = asyncio.Event()
        self._answer_waiters: dict[int, asyncio.Future[Answer]] = {}

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername")
        remote_ip = peername[0] if isinstance(peername, tuple) else None
        self.remote = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "?"
        cfg = self.server.config
        self.conn = conn = Connection(
            role=Role.SERVER,
            identity=self.server.identity,
            peer_policy=self.server.policy_factory(cfg.peers, remote_ip),
            max_message_length=cfg.max_message_length,
            max_pending_requests=cfg.max_pending_requests,
            now=self.server.loop.time(),
            cer_timeout_s=cfg.cer_timeout_s,
            watchdog_s=cfg.watchdog_s,
        )
        self.server.connections.add(self)
        self._arm(conn.timer_at())
        log.debug("connection.open", remote=self.remote)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        events = conn.receive_data(data, self.server.loop.time())
        now_ms: int | None = None
        close_reason: str | None = None
        for event in events:
            if isinstance(event, RequestReceived):
                if now_ms is None:
                    now_ms = time.time_ns() // 1_000_000
                self._dispatch(event, now_ms)
            elif isinstance(event, AnswerReceived):
                self._answer(event)
            elif isinstance(event, RequestRejected):
                log.info(
                    "request.rejected",
                    remote=self.remote,
                    peer=conn.peer_origin_host,
                    command=event.header.command_code,
                    result_code=event.error.result_code,
                    error=event.error.message,
                )
            elif isinstance(event, PeerOpened):
                self._opened(event)
            elif isinstance(event, DisconnectRequested):
                log.info("peer.disconnect", peer=conn.peer_origin_host, cause=event.cause)
            elif isinstance(event, AnswerDropped):
                log.info("answer.dropped", peer=conn.peer_origin_host, reason=event.reason)
            elif isinstance(event, ConnectionClosed):
                close_reason = event.reason
        self._flush()
        if (at := conn.timer_at()) != self._timer_at:  # rarely: on open and on close
            self._arm(at)
        if close_reason is not None:
            log.info("connection.close", remote=self.remote, reason=close_reason)
            if conn.pending_requests and conn.state is PeerState.CLOSED and not self._lost:
                # requests read with the DPA are answered before the close
                self._close_when_answered = True
            else:
                self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = True
        self._closed_event.set()
        if self._timer is not None:
            self._timer.cancel()
        if self.conn is not None:
            self.conn.connection_lost()
        for fut in self._answer_waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self._answer_waiters.clear()
        self.server.connections.discard(self)
        log.debug("connection.lost", remote=self.remote, error=str(exc) if exc else None)

    # --- requests ------------------------------------------------------------------------------

    def _dispatch(self, event: RequestReceived, now_ms: int) -> None:
        header, message = event.header, event.message
        handler = self.server.handlers.get(header.command_code)
        try:
            if handler is None:
                raise ProtocolError(
                    ResultCode.UNABLE_TO_COMPLY,
                    "command not served",
                    session_id=getattr(message, "session_id", None),
                )
            answer = handler(
                RequestContext(header=header, peer=self, body=event.body, now_ms=now_ms), message
            )
        except ProtocolError as exc:
            self.server.gate.defer(partial(self._send_error, header, exc))
            return
        self.server.gate.defer(partial(self._send_answer, header, answer))

    def _send_answer(self, header: Header, answer: Answer | bytes) -> None:
        if self._closed or self.conn is None:
            return
        if isinstance(answer, bytes):
            self.conn.send_answer_body(header, answer)
        else:
            self.conn.send_answer(header, answer)
        self.server.flush_soon(self)

    def _send_error(self, header: Header, error: ProtocolError) -> None:
        if self._closed or self.conn is None:
            return
        self.conn.send_error(header, error)
        self.server.flush_soon(self)

    def _opened(self, event: PeerOpened) -> None:
        log.info(
            "peer.open",
            remote=self.remote,
            peer=event.peer.origin_host,
            applications=sorted(event.applications),
        )

    # --- server-initiated requests -------------------------------------------------------------

    def send_request(self, message: Request) -> asyncio.Future[Answer]:
        """Send RAR/ASR/DWR/DPR to this peer; the future gets its answer."""
        conn = self.conn
        assert conn is not None
        header = conn.send_request(message)
        fut: asyncio.Future[Answer] = self.server.loop.create_future()
        self._answer_waiters[header.hop_by_hop] = fut
        self._flush()
        if (at := conn.timer_at()) != self._timer_at:
            self._arm(at)
        return fut

    def _answer(self, event: AnswerReceived) -> None:
        fut = self._answer_waiters.pop(event.request.hop_by_hop, None)
        if fut is not None and not fut.done():
            fut.set_result(event.message)

    # --- timers --------------------------------------------------------------------------------

    def _arm(self, at: float | None) -> None:
        """One loop timer at the connection's `timer_at()`, re-armed only when that changed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and not self._closed:
            self._timer = self.server.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        """WIRE.md section 4: the CER deadline, the watchdog (DWR after Tw idle; close if no
        DWA within another Tw). The connection decides; this sends and closes."""
        at, self._timer, self._timer_at = self._timer_at, None, None
        conn = self.conn
        if self._closed or conn is None or at is None:
            return
        # A loop may run a timer up to its clock resolution early (uvloop: 1 ms): it is due.
        events = conn.handle_timer(max(self.server.loop.time(), at))
        for event in events:
            if isinstance(event, ConnectionClosed):
                log.info("connection.close", remote=self.remote, reason=event.reason)
                self.close()
                return
        self._flush()  # a DWR, if one was due
        self._arm(conn.timer_at())

    # --- output --------------------------------------------------------------------------------

    def flush(self) -> None:
        self._flush()
        if self._close_when_answered and self.conn is not None and not self.conn.pending_requests:
            self.close()

    def _flush(self) -> None:
        if self.conn is None or self.transport is None or self._closed:
            return
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()

    async def disconnect(self, cause: DisconnectCause, timeout: float) -> None:
        """DPR, wait for DPA (or `timeout`), close."""
        conn = self.conn
        if conn is not None and conn.state is PeerState.OPEN and not self._closed:
            fut = self.send_request(conn.dpr(cause))
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(fut, timeout)
            if self._close_when_answered:  # requests came with the DPA: answer them first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed_event.wait(), timeout)
        self.close()


@dataclass(eq=False)
class Server:
    """Owns the listening socket and the set of connections."""

    config: ServerConfig
    # the handler of each application command it serves (base protocol: the connection)
    handlers: Mapping[int, Handler] = field(default_factory=dict)
    gate: AnswerGate = field(default_factory=ImmediateGate)
    policy_factory: Callable[
        [Mapping[str, PeerEntry] | None, str | None], Callable[[CER], PeerDecision]
    ] = default_peer_policy

    def __post_init__(self) -> None:
        cfg = self.config
        self.identity = LocalIdentity(
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            host_ip_address=(cfg.host,) if cfg.host not in ("", "0.0.0.0", "::") else ("0.0.0.0",),
            product_name=cfg.product_name,
            origin_state_id=int(time.time()) & 0xFFFFFFFF,
        )
        self.connections: set[PeerHandle] = set()
        self._dirty: set[PeerHandle] = set()
        self._flush_held = 0
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def port(self) -> int:
        assert self._server is not None
        sock = self._server.sockets[0]
        port: int = sock.getsockname()[1]
        return port

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: PeerHandle(self), self.config.host, self.config.port, reuse_address=True
        )
        log.info("server.listening", host=self.config.host, port=self.port)

    def flush_soon(self, peer: PeerHandle) -> None:
        """Write `peer`'s queued answers at the end of this loop iteration (or when
        `release_flushes` ends a batch): answers released together (one group commit) leave in
        one write per connection."""
        if not self._dirty and not self._flush_held:
            self.loop.call_soon(self._flush_dirty)
        self._dirty.add(peer)

    def hold_flushes(self) -> None:
        """A batch of answers is being released: write them when it ends (`release_flushes`),
        not one loop iteration later."""
        self._flush_held += 1

    def release_flushes(self) -> None:
        self._flush_held -= 1
        if not self._flush_held and self._dirty:
            self._flush_dirty()

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for peer in dirty:
            peer.flush()

    def peers_of(self, origin_host: str) -> Iterable[PeerHandle]:
        for peer in self.connections:
            conn = peer.conn
            if (
                conn is not None
                and conn.state is PeerState.OPEN
                and conn.peer_origin_host == origin_host
            ):
                yield peer

    async def stop(self) -> None:
        """Stop accepting, let what was read be answered, say DPR, close."""
        if self._server is not None:
            self._server.close()
        await asyncio.sleep(0)  # let answers held by the gate go out
        grace = self.config.shutdown_grace_s
        peers = list(self.connections)
        if peers:
            await asyncio.gather(
                *(p.disconnect(DisconnectCause.REBOOTING, grace) for p in peers),
                return_exceptions=True,
            )
        if self._server is not None:
            await self._server.wait_closed()
        log.info("server.stopped")


class Service(Protocol):
    """What `serve_until_signalled` runs: a `Server`, or a node around one."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(
    server: Service,
    *,
    ready: Callable[[], None] | None = None,
    reload: Callable[[], object] | None = None,
) -> None:
    """Run `server` until SIGTERM or SIGINT, then stop it gracefully; SIGHUP calls `reload`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    await server.start()
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await server.stop()
