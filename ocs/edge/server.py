"""The asyncio server: a thin adapter between sockets and `protocol.Connection`.

Everything protocol-shaped happens in the sans-IO connection, timers included (the 10 s CER
deadline, the watchdog Tw: the connection says when, `timer_at()`); this module owns what needs
a clock or a socket: accepting (over TLS only when `ServerConfig.tls` is set: `ocs.edge.tls`),
one loop timer per connection at its `timer_at()`, the peer policy (which needs the remote
address, and with TLS the client certificate), dispatching application requests to handlers,
and shutdown; and the resource bounds (docs/operations.md, "Resource bounds"): connections in
total, per peer and before CER, each peer's outstanding requests (one `PendingBudget` shared by
its connections), and output flow control (a connection whose unsent output passes the
high-water mark is not read until it drains, and is closed if it has not drained within Tw).
Handlers are synchronous and return the answer; a `ProtocolError` they raise is answered by the
connection (the one place errors become result codes). Answers go out through an `AnswerGate`
so that the journal can hold them until what they acknowledge is durable (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import structlog

from ocs.edge.metrics import Metrics
from ocs.edge.tls import (
    Handshake,
    TlsListener,
    TlsServerConfig,
    bind_certificate,
    certificate_names,
    server_context,
)
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
    PendingBudget,
    RequestReceived,
    RequestRejected,
)
from protocol.errors import ProtocolError
from protocol.fairness import RoundRobin
from protocol.header import Header
from protocol.messages import CER, Answer, Request
from protocol.peer import PeerState, Role

log = structlog.get_logger("ocs.edge.server")

SERVED_APPLICATIONS = frozenset({ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION})

#: Descriptors kept free of connections (docs/operations.md, "Resource bounds"): stdio, the
#: event loop's own (epoll, io_uring, wake-up pipes, the accept-overflow spare), the listening
#: socket, the data directory lock, the journal (segment and directory, one more at a
#: rotation, a snapshot and its directory at a checkpoint), the CDR files (file and directory,
#: one more at a rotation), the catalog on reload, metrics, and the connections accepted in
#: one burst before they are refused.
DESCRIPTOR_RESERVE = 64
#: At most this many connections per peer by default, whatever the descriptor limit.
DEFAULT_MAX_CONNECTIONS_PER_PEER = 64
#: Unsent output above which a connection is no longer read (until it drains below a quarter).
DEFAULT_OUTPUT_HIGH_WATER_BYTES = 256 * 1024
#: At most one `connection.refused` log line per this many seconds (a flood logs a count).
REFUSAL_LOG_INTERVAL_S = 10.0
#: Requests served per loop iteration, taken one per peer in turn from the peers' queues
#: (`protocol.fairness.RoundRobin`; docs/operations.md, "Fairness between peers"): small, so
#: that a busy peer's backlog delays another peer's request by at most this many requests.
DEFAULT_SERVE_BATCH = 8
#: Bytes read from one connection given to its `Connection` at a time: a peer that sent more
#: (a read brings up to 256 KiB, ~500 requests) has the rest decoded slice by slice as its
#: queue empties, so that decoding a flood's read does not hold up the other peers either.
FEED_SLICE_BYTES = 16 * 1024


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
    max_pending_requests: int = 1024  # per peer: across all connections of one Origin-Host
    max_message_length: int = 65_536
    shutdown_grace_s: float = 2.0
    # TLS on the port (RFC 6733 section 13); None: plain TCP. With it, TCP without TLS fails.
    tls: TlsServerConfig | None = None
    # Connection bounds; None: derived from the descriptor limit at start (`ConnectionLimits`).
    max_connections: int | None = None  # in total
    max_connections_per_peer: int | None = None  # per Origin-Host, counted from its CER
    max_unopened_connections: int | None = None  # connections that have not sent a CER yet
    output_high_water_bytes: int = DEFAULT_OUTPUT_HIGH_WATER_BYTES
    serve_batch: int = DEFAULT_SERVE_BATCH  # requests served per loop iteration, peers in turn


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """The connection bounds in force: the configured ones, or defaults derived from the
    descriptor limit (`derive`)."""

    total: int
    per_peer: int
    unopened: int

    @classmethod
    def derive(cls, config: ServerConfig, descriptor_limit: int) -> ConnectionLimits:
        """`total`: the descriptor limit less `DESCRIPTOR_RESERVE`; `unopened`: a quarter of
        it; `per_peer`: a quarter of it, at most `DEFAULT_MAX_CONNECTIONS_PER_PEER`. Each at
        least 1; a configured value wins (capped by `total`)."""
        total = config.max_connections or max(1, descriptor_limit - DESCRIPTOR_RESERVE)
        quarter = max(1, total // 4)
        per_peer = config.max_connections_per_peer or min(quarter, DEFAULT_MAX_CONNECTIONS_PER_PEER)
        unopened = config.max_unopened_connections or quarter
        return cls(total=total, per_peer=min(per_peer, total), unopened=min(unopened, total))


def descriptor_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (what `os.open` and `accept` may reach)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class RequestContext(NamedTuple):
    """What a handler knows about a request besides its decoded message (a tuple: one is
    built per request, and a dataclass's `__init__` costs several times more)."""

    header: Header
    peer: PeerHandle
    body: bytes  # the body as received
    now_ms: int  # wall-clock ms since the Unix epoch, read once per batch at the edge


class Handler(Protocol):
    """Returns the answer, or its body already encoded, or a function that makes the answer
    when it is sent (after what the gate waits for: an action ordered with group commit)."""

    def __call__(
        self, ctx: RequestContext, message: Any
    ) -> Answer | bytes | Callable[[], Answer | bytes]: ...


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
        self.origin_host: str | None = None  # the peer, once its CER was accepted
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # when `_timer` fires: the connection's timer_at()
        self._closed = False
        self._lost = False
        self._refused = False  # closed at once by the connection limits: never a peer
        self._close_when_answered = False
        self._closed_event = asyncio.Event()
        self._answer_waiters: dict[int, asyncio.Future[Answer]] = {}
        self._drain_timer: asyncio.TimerHandle | None = None  # output above the high-water mark
        # not read while its unsent output is above the high-water mark, or while its peer has
        # as many requests outstanding as it may (what it sent meanwhile waits in the kernel)
        self._held_for_output = False
        self._held_for_budget = False
        # read but not yet given to the connection: decoded slice by slice (`FEED_SLICE_BYTES`)
        # as the peer's queue empties; not read meanwhile
        self._unfed: bytes | memoryview = b""

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peername = transport.get_extra_info("peername")
        remote_ip = peername[0] if isinstance(peername, tuple) else None
        self.remote = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else "?"
        if not self.server.admit(self):
            self._refused = self._closed = True
            self.transport.abort()  # closes the descriptor now, without a goodbye
            return
        cfg = self.server.config
        self.transport.set_write_buffer_limits(high=cfg.output_high_water_bytes)
        policy = self.server.policy_factory(cfg.peers, remote_ip)
        if self.server.ssl_context is not None:  # a verified client certificate binds the CER
            names = certificate_names(transport.get_extra_info("peercert"))
            policy = bind_certificate(policy, names)
        self.conn = conn = Connection(
            role=Role.SERVER,
            identity=self.server.identity,
            peer_policy=partial(self._decide, policy),
            max_message_length=cfg.max_message_length,
            max_pending_requests=cfg.max_pending_requests,
            peer_budget=self._join,
            now=self.server.loop.time(),
            cer_timeout_s=cfg.cer_timeout_s,
            watchdog_s=cfg.watchdog_s,
        )
        self._arm(conn.timer_at())
        log.debug("connection.open", remote=self.remote)

    def _decide(self, policy: Callable[[CER], PeerDecision], cer: CER) -> PeerDecision:
        """The peer policy, then the per-peer connection limit: a CER from a peer that has
        as many connections as it may is answered 3004 DIAMETER_TOO_BUSY (then closed)."""
        decision = policy(cer)
        if decision.result_code == ResultCode.SUCCESS and self.server.peer_full(cer.origin_host):
            self.server.note_refused("refused_per_peer", self.remote)
            return PeerDecision(result_code=ResultCode.TOO_BUSY)
        return decision

    def _join(self, origin_host: str) -> PendingBudget:
        """The CER was accepted: this connection is now one of `origin_host`'s, and shares
        its outstanding-request budget."""
        self.origin_host = origin_host
        return self.server.join(self, origin_host)

    def data_received(self, data: bytes) -> None:
        if self._unfed:  # read while reading was being paused: it waits behind the rest
            self._unfed = bytes(self._unfed) + data
            return
        self._feed(data)

    def _feed(self, data: bytes | memoryview) -> None:
        """Give the connection at most `FEED_SLICE_BYTES`; keep the rest (and stop reading)
        until the server asks for the next slice (`feed_more`)."""
        if len(data) > FEED_SLICE_BYTES:
            view = memoryview(data)
            data, self._unfed = view[:FEED_SLICE_BYTES], view[FEED_SLICE_BYTES:]
            if self.transport is not None and not self._closed:
                self.transport.pause_reading()
            self.server.feed_later(self)
        self._process(data)

    def feed_more(self) -> None:
        """The server's turn for the next slice of what was read (`Server._serve`)."""
        data, self._unfed = self._unfed, b""
        if not data or self._closed or self.conn is None:
            return
        self._feed(data)
        if not self._unfed:
            self._resume_reading()

    @property
    def feedable(self) -> bool:
        """Has read bytes left to decode and may be given them now (not held)."""
        return bool(self._unfed) and not (self._held_for_budget or self._held_for_output)

    def _resume_reading(self) -> None:
        if self._closed or self.transport is None:
            return
        if not (self._held_for_budget or self._held_for_output or self._unfed):
            self.transport.resume_reading()

    def _process(self, data: bytes | memoryview) -> None:
        conn = self.conn
        assert conn is not None
        received = self.server.loop.time()
        events = conn.receive_data(data, received)
        close_reason: str | None = None
        close_peer: str | None = None
        for event in events:
            if isinstance(event, RequestReceived):
                # served in turn with the other peers'
                self.server.enqueue(self, event, received)
            elif isinstance(event, AnswerReceived):
                self._answer(event)
            elif isinstance(event, RequestRejected):
                if (metrics := self.server.metrics) is not None:
                    metrics.rejected(event.header.command_code, event.error.result_code)
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
                close_peer = event.peer or conn.peer_origin_host  # a refused CER's, too
        if conn.budget_full and not self._held_for_budget:
            self._hold_for_budget()
        self._flush()
        if (at := conn.timer_at()) != self._timer_at:  # rarely: on open and on close
            self._arm(at)
        if close_reason is not None:
            log.info("connection.close", remote=self.remote, peer=close_peer, reason=close_reason)
            if conn.pending_requests and conn.state is PeerState.CLOSED and not self._lost:
                # requests read with the DPA are answered before the close
                self._close_when_answered = True
            else:
                self.close()

    def eof_received(self) -> bool | None:
        data, self._unfed = self._unfed, b""
        if data and self.conn is not None and not self._closed:
            self._process(data)  # what was read before the end is handled, whole
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = True
        self._closed_event.set()
        if self._refused:
            self.transport = None
            return
        if self._timer is not None:
            self._timer.cancel()
        self._cancel_drain_timer()
        if self.conn is not None:
            self.conn.connection_lost()  # its unanswered requests leave the peer's budget
        for fut in self._answer_waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self._answer_waiters.clear()
        self.server.forget(self)
        # What the connection held (buffers, the CER) goes now: a handle may outlive its
        # socket (a session's route to it, an answer waiting for group commit).
        self.conn = None
        self.transport = None
        log.debug("connection.lost", remote=self.remote, error=str(exc) if exc else None)

    # --- output flow control (the transport calls these around its high-water mark) ------------

    def pause_writing(self) -> None:
        """More unsent output than `output_high_water_bytes`: stop reading this peer (no more
        requests, hence no more answers) until it drains; if it has not within Tw, close."""
        transport = self.transport
        if self._closed or transport is None:
            return
        self._held_for_output = True
        transport.pause_reading()
        if self._drain_timer is None:
            self._drain_timer = self.server.loop.call_later(
                self.server.config.watchdog_s, self._drain_expired
            )

    def resume_writing(self) -> None:
        self._cancel_drain_timer()
        self._held_for_output = False
        self._resume_reading()
        if self._unfed:
            self.server.feed_later(self)

    # --- input flow control: the peer's outstanding-request budget -----------------------------

    def _hold_for_budget(self) -> None:
        """The peer has as many requests outstanding as it may: stop reading this connection
        until answers free its budget (`Server.release_budget_holds`). Reading on would only
        decode and refuse each further request (3004) and let one flooding peer take the
        server's time from the others; this way what it sends waits in its socket buffers."""
        if self._closed or self.transport is None:
            return
        self._held_for_budget = True
        self.transport.pause_reading()
        self.server.budget_held.add(self)

    def release_budget_hold(self) -> bool:
        """Read again once the peer has at most half its limit outstanding (True: no longer
        held; `PendingBudget.half_free`)."""
        conn = self.conn
        if conn is not None and not conn.budget_half_free and not self._closed:
            return False
        self._held_for_budget = False
        self._resume_reading()
        if self._unfed:
            self.server.feed_later(self)
        return True

    def _cancel_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_expired(self) -> None:
        """Tw since the output passed the high-water mark (or since a close that left output
        unsent), and it has not drained: close now, dropping it (what the peer would not
        read)."""
        self._drain_timer = None
        transport = self.transport
        if transport is None:
            return
        self.server.stats["undrained_closed"] += 1
        log.info(
            "connection.close",
            remote=self.remote,
            peer=self.origin_host,
            reason="output not drained within Tw",
            unsent_bytes=transport.get_write_buffer_size(),
        )
        self._closed = True
        self._closed_event.set()
        if self._timer is not None:
            self._timer.cancel()
        transport.abort()

    # --- requests ------------------------------------------------------------------------------

    def dispatch(self, event: RequestReceived, now_ms: int, received: float) -> None:
        """Hand a request read on this connection (at loop time `received`) to its handler
        (`Server._serve`, in turn)."""
        header, message = event.header, event.message
        handler = self.server.handlers.get(header.command_code)
        metrics = self.server.metrics
        if metrics is not None:  # a command the connection let through: a bounded set
            metrics.requests[header.command_code] += 1
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
            if metrics is not None:
                metrics.answers[header.command_code, exc.result_code] += 1
            self.server.gate.defer(partial(self._send_error, header, exc, received))
            return
        except Exception as exc:  # a bug in the handler: answered 5012, the connection stays
            conn = self.conn
            log.error(
                "handler.failed",
                remote=self.remote,
                peer=conn.peer_origin_host if conn is not None else None,
                command=header.command_code,
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
            )
            error = ProtocolError(
                ResultCode.UNABLE_TO_COMPLY,
                "the request could not be processed",
                session_id=getattr(message, "session_id", None),
            )
            if metrics is not None:
                metrics.answers[header.command_code, error.result_code] += 1
            self.server.gate.defer(partial(self._send_error, header, error, received))
            return
        # an encoded answer's Result-Code is counted by the handler that encoded it, a deferred
        # one's when it is made
        if metrics is not None and not isinstance(answer, bytes) and not callable(answer):
            metrics.answers[header.command_code, answer.result_code] += 1
        self.server.gate.defer(partial(self._send_answer, header, answer, received))

    def _send_answer(
        self,
        header: Header,
        answer: Answer | bytes | Callable[[], Answer | bytes],
        received: float,
    ) -> None:
        if callable(answer):  # made (and its action done) even if the peer has gone since
            answer = answer()
            if (made_metrics := self.server.metrics) is not None and not isinstance(answer, bytes):
                made_metrics.answers[header.command_code, answer.result_code] += 1
        if self._closed or self.conn is None:
            return
        if (metrics := self.server.metrics) is not None:
            metrics.latency_s.observe(self.server.loop.time() - received)
        if isinstance(answer, bytes):
            self.conn.send_answer_body(header, answer)
        else:
            self.conn.send_answer(header, answer)
        self.server.flush_soon(self)

    def _send_error(self, header: Header, error: ProtocolError, received: float) -> None:
        if self._closed or self.conn is None:
            return
        if (metrics := self.server.metrics) is not None:
            metrics.latency_s.observe(self.server.loop.time() - received)
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
        if conn is None:
            raise ConnectionError("connection lost")
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
        """Close once the unsent output is written; if it is not within Tw, abort."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        if self._timer is not None:
            self._timer.cancel()
        transport = self.transport
        if transport is not None:
            transport.close()
            if self._drain_timer is None and transport.get_write_buffer_size():
                self._drain_timer = self.server.loop.call_later(
                    self.server.config.watchdog_s, self._drain_expired
                )

    def evict(self) -> None:
        """Close at once a connection that has not sent its CER (to make room for a newer
        one, `Server.admit`)."""
        self._closed = True
        self._closed_event.set()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.abort()

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


@dataclass(eq=False, slots=True)
class PeerConnections:
    """The open connections of one peer (one Origin-Host) and their shared budget."""

    budget: PendingBudget
    handles: set[PeerHandle] = field(default_factory=set)


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
    # the counters of the request path (None: no metrics are kept)
    metrics: Metrics | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.identity = LocalIdentity(
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            host_ip_address=(cfg.host,) if cfg.host not in ("", "0.0.0.0", "::") else ("0.0.0.0",),
            product_name=cfg.product_name,
            origin_state_id=int(time.time()) & 0xFFFFFFFF,
        )
        self.limits = ConnectionLimits.derive(cfg, descriptor_limit())
        self.connections: set[PeerHandle] = set()
        # no CER yet, oldest first: connections, and TLS handshakes in progress
        self._unopened: dict[PeerHandle | Handshake, None] = {}
        self._handshakes: dict[str, Handshake] = {}  # TLS handshakes in progress, by remote
        self._peers: dict[str, PeerConnections] = {}
        #: refused_total, refused_per_peer, evicted_unopened, undrained_closed
        self.stats: dict[str, int] = dict.fromkeys(
            ("refused_total", "refused_per_peer", "evicted_unopened", "undrained_closed"), 0
        )
        self._refusal_logged_at: float | None = None
        self._dirty: set[PeerHandle] = set()
        # requests read and not yet handed to a handler, one queue per peer, served in turn
        self._queued: RoundRobin[str, tuple[PeerHandle, RequestReceived, float]] = RoundRobin()
        self._serve_scheduled = False
        self._unfed: dict[PeerHandle, None] = {}  # connections with read bytes left to decode
        self._stopped = False  # after `stop`: nothing more is handed to a handler
        # connections not read because their peer's outstanding budget is full
        self.budget_held: set[PeerHandle] = set()
        self._flush_held = 0
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # TLS: the context is made here, so that a bad certificate fails the construction
        self.ssl_context = server_context(cfg.tls) if cfg.tls is not None else None
        self._tls: TlsListener | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def port(self) -> int:
        if self._tls is not None:
            return self._tls.port
        assert self._server is not None
        sock = self._server.sockets[0]
        port: int = sock.getsockname()[1]
        return port

    @property
    def tls_handshakes_in_progress(self) -> int:
        """TLS connections accepted whose handshake has not ended (each counts as a connection
        without CER)."""
        return len(self._handshakes)

    @property
    def tls_handshake_failures(self) -> int:
        """TLS handshakes that failed since the start (0 without TLS)."""
        return self._tls.failures if self._tls is not None else 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.Protocol] = partial(PeerHandle, self)
        tls = self.config.tls
        if tls is not None and self.ssl_context is not None:
            # TLS only: the handshake first, then the PeerHandle gets the TLS transport
            self._tls = TlsListener(
                context=self.ssl_context,
                make_protocol=factory,
                handshake_timeout_s=tls.handshake_timeout_s,
                shutdown_timeout_s=tls.shutdown_timeout_s,
                admit=self.admit_handshake,
                done=self.handshake_done,
            )
            await self._tls.start(self.config.host, self.config.port)
        else:
            self._server = await self._loop.create_server(
                factory, self.config.host, self.config.port, reuse_address=True
            )
        limits = self.limits
        if limits.total > descriptor_limit() - DESCRIPTOR_RESERVE:
            log.warning(
                "server.descriptors",
                max_connections=limits.total,
                descriptor_limit=descriptor_limit(),
                reserve=DESCRIPTOR_RESERVE,
                note="connections can take the descriptors the journal and CDR files need",
            )
        log.info(
            "server.listening",
            host=self.config.host,
            port=self.port,
            tls=tls is not None,
            max_connections=limits.total,
            max_connections_per_peer=limits.per_peer,
            max_unopened_connections=limits.unopened,
        )

    # --- connection bounds ---------------------------------------------------------------------

    def admit(self, peer: PeerHandle) -> bool:
        """A connection was accepted: count it, or refuse it (False: close it at once).

        At the total limit it is refused, unless some connection has not sent its CER yet:
        then the oldest of those is closed instead, as it is at the limit of such
        connections. A flood of connections that never send CER thus cannot lock out a peer
        whose CER follows its connect within the time the flood needs to fill that limit.
        With TLS the connection was counted from its accept, as a handshake in progress
        (`admit_handshake`): it now counts as itself."""
        handshake = self._handshakes.pop(peer.remote, None)
        if handshake is not None:
            self._unopened.pop(handshake, None)
        elif not self._make_room(peer.remote):
            return False
        self.connections.add(peer)
        self._unopened[peer] = None
        return True

    def admit_handshake(self, handshake: Handshake) -> bool:
        """A TLS connection was accepted: its handshake counts as a connection without CER
        from now on (so a flood of handshakes that never end is bounded like connections that
        never send CER), or it is refused (False: closed at once)."""
        if not self._make_room(handshake.remote):
            return False
        self._handshakes[handshake.remote] = handshake
        self._unopened[handshake] = None
        return True

    def handshake_done(self, handshake: Handshake) -> None:
        """A TLS handshake ended: failed or abandoned, it no longer counts; succeeded, it
        counts as its connection already (`admit`)."""
        if self._handshakes.get(handshake.remote) is handshake:
            del self._handshakes[handshake.remote]
        self._unopened.pop(handshake, None)

    def _make_room(self, remote: str) -> bool:
        """Room for one more connection without CER (False: refused, counted): at the total
        limit, or at the limit of connections without CER, the oldest of those is evicted."""
        limits = self.limits
        total = len(self.connections) + len(self._handshakes)
        if total >= limits.total and not self._unopened:
            self.note_refused("refused_total", remote)
            return False
        if total >= limits.total or len(self._unopened) >= limits.unopened:
            oldest = next(iter(self._unopened))
            del self._unopened[oldest]
            if isinstance(oldest, Handshake):
                if self._handshakes.get(oldest.remote) is oldest:
                    del self._handshakes[oldest.remote]
            else:
                self.connections.discard(oldest)
            oldest.evict()
            self.note_refused("evicted_unopened", oldest.remote)
        return True

    def peer_full(self, origin_host: str) -> bool:
        """`origin_host` has as many connections as it may."""
        entry = self._peers.get(origin_host)
        return entry is not None and len(entry.handles) >= self.limits.per_peer

    def join(self, peer: PeerHandle, origin_host: str) -> PendingBudget:
        """`peer`'s CER was accepted: it counts as one of `origin_host`'s connections and
        shares its outstanding-request budget."""
        self._unopened.pop(peer, None)
        entry = self._peers.get(origin_host)
        if entry is None:
            entry = PeerConnections(budget=PendingBudget(self.config.max_pending_requests))
            self._peers[origin_host] = entry
        entry.handles.add(peer)
        return entry.budget

    def forget(self, peer: PeerHandle) -> None:
        """`peer`'s connection is gone."""
        self.connections.discard(peer)
        self._unopened.pop(peer, None)
        self._dirty.discard(peer)
        self.budget_held.discard(peer)
        self._unfed.pop(peer, None)
        host = peer.origin_host
        if host is not None:  # what it sent and was not served yet is never answered now
            self._queued.discard(host, lambda item: item[0] is peer)
        entry = self._peers.get(host) if host is not None else None
        if entry is not None:
            entry.handles.discard(peer)
            if not entry.handles:
                assert host is not None
                del self._peers[host]

    # --- fairness between peers ----------------------------------------------------------------

    def enqueue(self, peer: PeerHandle, event: RequestReceived, received: float) -> None:
        """A request was read on `peer` (at loop time `received`): queue it behind its peer's
        earlier ones; the queues are served at the next loop iteration, one request per peer in
        turn (`_serve`)."""
        assert peer.origin_host is not None  # requests come only after an accepted CER
        self._queued.push(peer.origin_host, (peer, event, received))
        self._serve_soon()

    def feed_later(self, peer: PeerHandle) -> None:
        """`peer` has read bytes left to decode: the next slice when its queue has room."""
        self._unfed[peer] = None
        self._serve_soon()

    def _serve_soon(self) -> None:
        if not self._serve_scheduled:
            self._serve_scheduled = True
            self.loop.call_soon(self._serve)

    def _serve(self) -> None:
        """Hand up to `serve_batch` queued requests to their handlers, one per peer in turn
        (docs/operations.md, "Fairness between peers"), with the time read once; if more wait,
        again at the next loop iteration, after the sockets were read (so a peer that was idle
        joins the turn at once) and the batch's answers were handed to group commit."""
        self._serve_scheduled = False
        if self._serve_once():
            self._serve_soon()

    def serve_queued(self) -> None:
        """Serve everything read so far, now, in turns (for a driver that feeds bytes and
        needs their answers before it goes on, such as the deterministic simulator,
        tests/vopr; the loop serves `serve_batch` per iteration otherwise)."""
        while self._serve_once():
            pass

    def _serve_once(self) -> bool:
        """One batch, and the next slices where there is room; True if more waits."""
        if self._stopped:
            return False
        serve_batch = self.config.serve_batch
        batch = self._queued.take(serve_batch)
        if batch:
            now_ms = time.time_ns() // 1_000_000
            for peer, event, received in batch:
                peer.dispatch(event, now_ms, received)
        if self._unfed:  # the next slice for connections whose peer's queue has room
            for peer in list(self._unfed):
                host = peer.origin_host
                if not peer.feedable:  # held: released by its answers or its output draining
                    del self._unfed[peer]
                elif host is None or self._queued.queued(host) < serve_batch:
                    del self._unfed[peer]
                    peer.feed_more()
        return bool(self._queued or self._unfed)

    @property
    def queued_requests(self) -> int:
        """Requests read and waiting for their turn."""
        return len(self._queued)

    def note_refused(self, what: str, remote: str) -> None:
        """Count a refused (or evicted) connection; log at most one line per
        `REFUSAL_LOG_INTERVAL_S` (with the counts so far), not one per connection."""
        self.stats[what] += 1
        now = self.loop.time()
        last = self._refusal_logged_at
        if last is None or now - last >= REFUSAL_LOG_INTERVAL_S:
            self._refusal_logged_at = now
            log.warning(
                "connection.refused",
                reason=what,
                remote=remote,
                connections=len(self.connections),
                unopened=len(self._unopened),
                **self.stats,
            )

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
        if self.budget_held:  # answers went out: budgets may have room again
            self.release_budget_holds()

    def release_budget_holds(self) -> None:
        self.budget_held = {peer for peer in self.budget_held if not peer.release_budget_hold()}

    def peer_connections(self) -> dict[str, int]:
        """Each peer (Origin-Host) with an open connection: how many it has."""
        return {host: len(entry.handles) for host, entry in self._peers.items()}

    def peers_of(self, origin_host: str) -> Iterable[PeerHandle]:
        entry = self._peers.get(origin_host)
        if entry is None:
            return
        for peer in list(entry.handles):
            conn = peer.conn
            if conn is not None and conn.state is PeerState.OPEN:
                yield peer

    async def stop(self) -> None:
        """Stop accepting, let what was read be answered, say DPR, close."""
        if self._server is not None:
            self._server.close()
        if self._tls is not None:
            self._tls.close()  # stop accepting; handshakes in progress are abandoned
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
        if self._tls is not None:
            await self._tls.wait_closed()
        # what is still queued came from peers that did not close within the grace: their
        # connections are closed, so it is never answered; it is not handled either (the node
        # closes its journal next)
        self._stopped = True
        self._queued = RoundRobin()
        self._unfed.clear()
        log.info("server.stopped", **self.stats)


class Service(Protocol):
    """What `serve_until_signalled` runs: a `Server`, or a node around one."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(
    server: Service,
    *,
    ready: Callable[[], None] | None = None,
    reload: Callable[[], object] | None = None,
    rotate: Callable[[], object] | None = None,
) -> None:
    """Run `server` until SIGTERM or SIGINT, then stop it gracefully; SIGHUP calls `reload`,
    SIGUSR1 `rotate` (the CDR file)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    if rotate is not None:
        loop.add_signal_handler(signal.SIGUSR1, rotate)
    await server.start()
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
        await server.stop()
