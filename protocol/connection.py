"""A sans-IO Diameter connection: bytes in, events out; messages in, bytes out.

One `Connection` per transport. It frames the stream, checks headers, decodes bodies, runs the
peer state machine, answers the peer procedures itself (CER with the help of a policy callback,
DWR, DPR), holds every later request to the Origin-Host of the capabilities exchange (a peer is
that identity, WIRE.md section 4) and answers every malformed request with the code WIRE.md
prescribes. What is left
for its user are the events: application requests to answer, answers to match, and when to
close. It never reads a clock, but it holds the peer timers as data, the way aioquic does: the
caller passes `now` (seconds from any monotonic origin) to the constructor and to
`receive_data`, asks `timer_at()` when to wake it, and calls `handle_timer(now)` then, which
closes the connection (the CER deadline, the watchdog without DWA) or queues a DWR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from protocol.avp import decode_any, decode_avps, encode_frame_as, transcode_answer
from protocol.codec import (
    ANSWER_TYPE_BY_CODE,
    REQUEST_TYPE_BY_CODE,
    answer_flags,
    decode_body,
    encode_body,
    frame_body,
)
from protocol.codes import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    FLAG_P,
    FLAG_R,
    FLAG_T,
    HEADER_LENGTH,
    RELAY_APPLICATION_ID,
    RESERVED_FLAG_BITS,
    VERSION,
    VERSION_DIAMETER,
    ApplicationId,
    CommandCode,
    DisconnectCause,
    ResultCode,
)
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.framing import FrameBuffer, FramingFailure
from protocol.header import Header
from protocol.messages import (
    CEA,
    CER,
    DPA,
    DPR,
    DWA,
    DWR,
    Answer,
    ErrorAnswer,
    Request,
)
from protocol.peer import ACTIVE_STATES, PeerInput, PeerState, PeerStateMachine, Role
from protocol.proxy_info import proxy_info_of, with_proxy_info

# The Application-Id each command travels under (WIRE.md section 3).
COMMAND_APPLICATION: Final[dict[int, int]] = {
    CommandCode.CAPABILITIES_EXCHANGE: int(ApplicationId.BASE),
    CommandCode.DEVICE_WATCHDOG: int(ApplicationId.BASE),
    CommandCode.DISCONNECT_PEER: int(ApplicationId.BASE),
    CommandCode.CREDIT_CONTROL: int(ApplicationId.CREDIT_CONTROL),
    CommandCode.RE_AUTH: int(ApplicationId.CREDIT_CONTROL),
    CommandCode.ABORT_SESSION: int(ApplicationId.CREDIT_CONTROL),
    CommandCode.ACCOUNT_MANAGEMENT: int(ApplicationId.ADMINISTRATION),
}
_BASE_COMMANDS: Final = frozenset(
    {
        CommandCode.CAPABILITIES_EXCHANGE,
        CommandCode.DEVICE_WATCHDOG,
        CommandCode.DISCONNECT_PEER,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalIdentity:
    """Who this side is, for CER/CEA and the Origin-* of every message it sends."""

    origin_host: str
    origin_realm: str
    host_ip_address: tuple[str, ...] = ("127.0.0.1",)
    vendor_id: int = 0
    product_name: str = "ocs"
    firmware_revision: int | None = None
    origin_state_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDecision:
    """A server's answer to a CER: 2001 with the applications this peer may use, or a refusal
    (3010 DIAMETER_UNKNOWN_PEER)."""

    result_code: int
    applications: frozenset[int] = frozenset()


PeerPolicy = Callable[[CER], PeerDecision]


class PendingBudget:
    """The outstanding-request limit of one peer (WIRE.md section 4): requests received and
    not yet answered, counted across every connection that shares this budget. A connection
    has a budget of its own; a server gives all the connections of one Origin-Host the same
    one (`Connection(peer_budget=...)`)."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    @property
    def full(self) -> bool:
        """As many requests outstanding as the limit allows."""
        return self.count >= self.limit

    @property
    def half_free(self) -> bool:
        """At most half the limit outstanding: a server that stopped reading a peer at its
        limit reads it again from here, not at the first answer, so that one read brings a
        batch of requests rather than one accepted and the rest of the read refused (3004)."""
        return self.count <= self.limit // 2


#: Origin-Host of a peer whose CER was accepted -> the budget its connections share.
BudgetOf = Callable[[str], PendingBudget]

# --- events -----------------------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True, gc=False):
    """Something that happened on the connection (msgspec Structs: cheap to build)."""


class PeerOpened(Event, frozen=True, gc=False):
    """Capabilities exchanged. `peer` is the other side's CER (server) or CEA (client)."""

    peer: CER | CEA
    applications: frozenset[int]


class RequestReceived(Event, frozen=True, gc=False):
    """A valid application request the user must answer with `send_answer`/`send_error`."""

    header: Header
    message: Request
    # as received, for a journal of inputs: a MessagePack body, or for a binary one (version
    # 0x01) the MessagePack encoding of `message` (what replay decodes to the same message)
    body: bytes


class AnswerReceived(Event, frozen=True, gc=False):
    """An answer that matched an outstanding request; `request` is that request's header."""

    header: Header
    message: Answer
    request: Header


class WatchdogReceived(Event, frozen=True, gc=False):
    """A DWR, already answered."""

    header: Header


class DisconnectRequested(Event, frozen=True, gc=False):
    """A DPR, already answered with DPA 2001; the peer closes the transport next."""

    header: Header
    cause: int


class RequestRejected(Event, frozen=True, gc=False):
    """A request the connection answered itself with an error."""

    header: Header
    error: ProtocolError


class AnswerDropped(Event, frozen=True, gc=False):
    """An answer that matched nothing, or could not be decoded: dropped (WIRE.md section 3)."""

    header: Header
    reason: str


class ConnectionClosed(Event, frozen=True, gc=False):
    """The connection is over: send what `data_to_send` holds, then close the transport.
    `peer`: the Origin-Host of a CER that was refused (the peer never opened)."""

    reason: str
    peer: str | None = None


@dataclass(slots=True)
class _Outstanding:
    header: Header
    message: Request = field(repr=False)


class Connection:
    """One side of a Diameter connection (WIRE.md sections 1-4)."""

    def __init__(
        self,
        *,
        role: Role,
        identity: LocalIdentity,
        peer_policy: PeerPolicy | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        max_pending_requests: int = 1024,
        first_hop_by_hop: int = 1,
        first_end_to_end: int = 1,
        peer_budget: BudgetOf | None = None,
        now: float,
        cer_timeout_s: float | None = 10.0,
        watchdog_s: float | None = 30.0,
        encoding: int = VERSION,
    ) -> None:
        """`now` is the caller's monotonic clock in seconds (any origin; the same clock for
        every later `now`). `cer_timeout_s`: a server connection without a CER by `now` +
        this is closed (None: never). `watchdog_s`: Tw, once the peer is open, a DWR after Tw
        with nothing received and a close after another Tw without DWA (None: no watchdog).
        `peer_budget` (a server's): called once, when a CER is accepted, with its Origin-Host;
        the budget it returns bounds the requests outstanding across that peer's connections
        (its `limit` replaces `max_pending_requests`). Without it the limit is per connection.
        `encoding`: the version byte of the requests this side sends (WIRE.md section 1,
        0x4D MessagePack or 0x01 binary AVPs); a server sends in the encoding of the peer's
        CER once it has one. Answers always take their request's encoding.
        """
        if encoding not in (VERSION, VERSION_DIAMETER):
            raise ValueError(f"no encoding with version byte {encoding:#x}")
        if role is Role.SERVER and peer_policy is None:
            raise ValueError("a server connection needs a peer policy")
        self.role = role
        self.encoding = encoding
        self.identity = identity
        self._policy = peer_policy
        self._machine = PeerStateMachine(role)
        self._frames = FrameBuffer(max_message_length)
        self._out: list[bytes] = []
        self._outstanding: dict[int, _Outstanding] = {}
        self._pending_in = 0  # this connection's share of `_budget.count`
        self._budget = PendingBudget(max_pending_requests)
        self._peer_budget = peer_budget
        self._next_hbh = first_hop_by_hop & 0xFFFFFFFF
        self._next_e2e = first_end_to_end & 0xFFFFFFFF
        self.peer: CER | CEA | None = None
        self.applications: frozenset[int] = frozenset()
        self._allowed: frozenset[int] = frozenset()
        # Timers (WIRE.md section 4). `_timer_at` is the next wake-up: the CER deadline, then a
        # watchdog check. Received bytes only move `_last_rx`; a check that finds traffic since
        # moves the wake-up to `_last_rx` + Tw, so a read never changes `timer_at()`.
        self._watchdog_s = watchdog_s
        self._last_rx = now
        self._dwr_outstanding = False
        self._timer_at: float | None = (
            now + cer_timeout_s if role is Role.SERVER and cer_timeout_s is not None else None
        )

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> PeerState:
        return self._machine.state

    @property
    def peer_origin_host(self) -> str | None:
        return self.peer.origin_host if self.peer is not None else None

    @property
    def pending_requests(self) -> int:
        """Requests received and handed out but not yet answered."""
        return self._pending_in

    @property
    def max_pending_requests(self) -> int:
        """The outstanding-request limit (of the peer, once its budget is shared)."""
        return self._budget.limit

    @property
    def budget_full(self) -> bool:
        """The peer has as many requests outstanding as it may (across its connections): any
        more read now could only be refused (3004), so a server stops reading until answers
        free the budget (`ocs.edge.server.PeerHandle`)."""
        return self._budget.full

    @property
    def budget_half_free(self) -> bool:
        """The peer has at most half its limit outstanding (`PendingBudget.half_free`)."""
        return self._budget.half_free

    @property
    def outstanding_requests(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._outstanding)

    # --- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Feed bytes read from the transport at `now`; returns what happened, in order."""
        events: list[Event] = []
        if self.state is PeerState.CLOSED:
            return events
        self._last_rx = now
        frames = self._frames
        frames.feed(data)
        while self._machine.state is not PeerState.CLOSED:
            try:
                frame = frames.next_frame()
            except FramingFailure as exc:
                if exc.header is not None and exc.answer_code is not None:
                    self._answer_error(
                        exc.header, ProtocolError(exc.answer_code, str(exc)), count=False
                    )
                self._close(events, f"framing error: {exc}")
                break
            if frame is None:
                break
            header, body = frame
            if header.flags & FLAG_R:
                self._receive_request(header, body, events)
            else:
                self._receive_answer(header, body, events)
        return events

    def connection_lost(self) -> list[Event]:
        """The transport is gone (EOF or error). The requests it had not answered no longer
        count against the peer's budget (they cannot be answered any more)."""
        self._budget.count -= self._pending_in
        self._pending_in = 0
        self._budget = PendingBudget(self._budget.limit)
        if self.state is PeerState.CLOSED:
            return []
        events: list[Event] = []
        self._close(events, "connection lost")
        return events

    # --- timers --------------------------------------------------------------------------------

    def timer_at(self) -> float | None:
        """When the caller must call `handle_timer` (None: no timer). It changes only on
        capabilities exchange, in `handle_timer` and on close, never on an ordinary read; it
        may come before the real deadline (traffic since), then `handle_timer` moves it."""
        if self._machine.state is PeerState.CLOSED:
            return None
        return self._timer_at

    def handle_timer(self, now: float) -> list[Event]:
        """Do what is due at `now`: close (no CER within the deadline, no DWA within Tw of the
        DWR) or queue a DWR (Tw with nothing received) in `data_to_send()`."""
        at = self._timer_at
        state = self._machine.state
        if at is None or now < at or state is PeerState.CLOSED:
            return []
        events: list[Event] = []
        if state is PeerState.WAIT_CER:
            self._close(events, "no CER within deadline")
            return events
        tw = self._watchdog_s
        if tw is None or state not in ACTIVE_STATES:
            self._timer_at = None
            return events
        if now < self._last_rx + tw:  # something arrived since: not idle for Tw yet
            self._timer_at = self._last_rx + tw
            return events
        if self._dwr_outstanding:
            self._close(events, "watchdog: no DWA")
            return events
        if state is PeerState.OPEN:
            self.send_request(self.dwr())
            self._dwr_outstanding = True
            self._last_rx = now  # the next Tw is counted from the DWR
        self._timer_at = now + tw
        return events

    def _open_timers(self) -> None:
        """Capabilities exchanged (at `_last_rx`): the CER deadline gives way to the watchdog."""
        tw = self._watchdog_s
        self._timer_at = self._last_rx + tw if tw is not None else None

    # --- requests ------------------------------------------------------------------------------

    def _receive_request(self, header: Header, body: bytes, events: list[Event]) -> None:
        code = header.command_code
        state = self.state
        if state is PeerState.WAIT_CER and code != CommandCode.CAPABILITIES_EXCHANGE:
            self._reject(
                header,
                ProtocolError(ResultCode.UNKNOWN_PEER, "CER must be the first message"),
                events,
            )
            self._machine.process(PeerInput.RECV_REQUEST_BEFORE_CER)
            events.append(ConnectionClosed("request before capabilities exchange"))
            return
        if header.flags & RESERVED_FLAG_BITS:
            self._reject(
                header,
                ProtocolError(ResultCode.INVALID_HDR_BITS, "reserved flag bits set"),
                events,
            )
            return
        request_type = REQUEST_TYPE_BY_CODE.get(code)
        if request_type is None:
            self._reject(
                header,
                ProtocolError(ResultCode.COMMAND_UNSUPPORTED, f"unknown command code {code}"),
                events,
            )
            return
        if header.application_id != COMMAND_APPLICATION[code] or (
            code not in _BASE_COMMANDS and header.application_id not in self._allowed
        ):
            self._reject(
                header,
                ProtocolError(
                    ResultCode.APPLICATION_UNSUPPORTED,
                    f"application {header.application_id} not served for command {code}",
                ),
                events,
            )
            return
        if code == CommandCode.CAPABILITIES_EXCHANGE:
            self._receive_cer(header, body, events)
            return
        if state not in ACTIVE_STATES:
            self._reject(
                header,
                ProtocolError(ResultCode.UNKNOWN_PEER, f"no open connection ({state.value})"),
                events,
            )
            return
        if code not in _BASE_COMMANDS and self._budget.count >= self._budget.limit:
            self._reject(
                header,
                ProtocolError(ResultCode.TOO_BUSY, "too many outstanding requests"),
                events,
            )
            return
        try:
            if header.version == VERSION:
                message = decode_body(code, True, body)
                proxy_info = proxy_info_of(VERSION, body)
            else:
                message = decode_avps(code, True, body)
                proxy_info = proxy_info_of(header.version, body)
                body = encode_body(message)
            if proxy_info:  # RFC 6733 6.2: echoed in the answer
                header = msgspec.structs.replace(header, proxy_info=proxy_info)
        except ProtocolError as exc:
            self._reject(header, exc, events)
            return
        assert isinstance(message, Request)
        peer = self.peer
        if peer is not None and message.origin_host != peer.origin_host:
            # A peer is the Origin-Host of its CER (WIRE.md section 4): a request that names
            # another is refused here, before anyone acts on it or journals it.
            self._reject(
                header,
                ProtocolError(
                    ResultCode.INVALID_AVP_VALUE,
                    "Origin-Host differs from the capabilities exchange",
                    failed_avp={"Origin-Host": message.origin_host},
                    session_id=getattr(message, "session_id", None),
                ),
                events,
            )
            return
        if code == CommandCode.DEVICE_WATCHDOG:
            self._send_answer_now(header, self._base_answer(DWA))
            events.append(WatchdogReceived(header))
        elif code == CommandCode.DISCONNECT_PEER:
            assert isinstance(message, DPR)
            self._send_answer_now(header, self._base_answer(DPA))
            self._machine.process(PeerInput.RECV_DPR)
            events.append(DisconnectRequested(header, int(message.disconnect_cause)))
        else:
            self._pending_in += 1
            self._budget.count += 1
            events.append(RequestReceived(header, message, body))

    def _receive_cer(self, header: Header, body: bytes, events: list[Event]) -> None:
        if self.role is not Role.SERVER or self.state is not PeerState.WAIT_CER:
            self._reject(
                header,
                ProtocolError(ResultCode.UNABLE_TO_COMPLY, "capabilities already exchanged"),
                events,
            )
            return
        try:
            cer = decode_any(header.version, header.command_code, True, body)
        except ProtocolError as exc:
            self._reject(header, exc, events)
            self._machine.process(PeerInput.RECV_CER_REFUSED)
            events.append(ConnectionClosed(f"invalid CER: {exc.message}"))
            return
        assert isinstance(cer, CER) and self._policy is not None
        decision = self._policy(cer)
        if decision.result_code != ResultCode.SUCCESS:
            self._refuse_cer(
                header, decision.result_code, "peer refused by policy", events, cer.origin_host
            )
            return
        offered = frozenset(cer.auth_application_id)
        shared = (
            decision.applications
            if RELAY_APPLICATION_ID in offered
            else decision.applications & offered
        )
        if not shared:
            self._refuse_cer(
                header,
                ResultCode.NO_COMMON_APPLICATION,
                "no common application",
                events,
                cer.origin_host,
            )
            return
        self._send_answer_now(
            header,
            self._cea(ResultCode.SUCCESS, tuple(sorted(shared))),
        )
        self._machine.process(PeerInput.RECV_CER_ACCEPTED)
        self._open_timers()
        self.encoding = header.version  # RAR and ASR go in the encoding of the peer's CER
        self.peer = cer
        self.applications = shared
        if self._peer_budget is not None:
            self._budget = self._peer_budget(cer.origin_host)
        # Requests are served for every application the policy allows this peer, whether or
        # not its CER listed it (docs/protocol.md, "Applications").
        self._allowed = decision.applications
        events.append(PeerOpened(cer, shared))

    def _refuse_cer(
        self, header: Header, code: int, reason: str, events: list[Event], peer: str
    ) -> None:
        error = ProtocolError(code, reason)
        if error.error_flag:  # a 3xxx answer carries only the error keys (WIRE.md section 3)
            self._send_answer_now(header, self.error_answer(header, error), error=True)
        else:
            self._send_answer_now(header, self._cea(code, None, error_message=reason))
        self._machine.process(PeerInput.RECV_CER_REFUSED)
        events.append(ConnectionClosed(f"CER refused: {code} {reason}", peer=peer))

    def _cea(
        self, code: int, applications: tuple[int, ...] | None, *, error_message: str | None = None
    ) -> CEA:
        ident = self.identity
        return CEA(
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            result_code=code,
            host_ip_address=ident.host_ip_address,
            vendor_id=ident.vendor_id,
            product_name=ident.product_name,
            auth_application_id=applications,
            origin_state_id=ident.origin_state_id,
            firmware_revision=ident.firmware_revision,
            error_message=error_message,
        )

    def _receive_answer(self, header: Header, body: bytes, events: list[Event]) -> None:
        sent = self._outstanding.get(header.hop_by_hop)
        if sent is None or sent.header.command_code != header.command_code:
            events.append(AnswerDropped(header, "matches no outstanding request"))
            return
        del self._outstanding[header.hop_by_hop]
        answer_type = ANSWER_TYPE_BY_CODE[header.command_code]
        try:
            message = decode_any(header.version, header.command_code, False, body)
        except ProtocolError as exc:
            events.append(AnswerDropped(header, f"undecodable {answer_type.__name__}: {exc}"))
            return
        assert isinstance(message, Answer)
        code = header.command_code
        if code == CommandCode.CAPABILITIES_EXCHANGE:
            assert isinstance(message, CEA)
            if message.result_code == ResultCode.SUCCESS:
                self._machine.process(PeerInput.RECV_CEA_SUCCESS)
                self._open_timers()
                self.peer = message
                self.applications = frozenset(message.auth_application_id or ())
                self._allowed = self.applications
                events.append(AnswerReceived(header, message, sent.header))
                events.append(PeerOpened(message, self.applications))
            else:
                self._machine.process(PeerInput.RECV_CEA_FAILURE)
                events.append(AnswerReceived(header, message, sent.header))
                events.append(ConnectionClosed(f"CER refused: {message.result_code}"))
            return
        if code == CommandCode.DEVICE_WATCHDOG:
            self._dwr_outstanding = False
        events.append(AnswerReceived(header, message, sent.header))
        if code == CommandCode.DISCONNECT_PEER and self._machine.allows(PeerInput.RECV_DPA):
            self._machine.process(PeerInput.RECV_DPA)
            events.append(ConnectionClosed("disconnected by DPR/DPA"))

    # --- output --------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the transport since the last call."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def send_request(
        self,
        message: Request,
        *,
        end_to_end: int | None = None,
        retransmit: bool = False,
    ) -> Header:
        """Queue a request; returns its header (Hop-by-Hop-Id, End-to-End-Id) for matching."""
        code = message.COMMAND
        state = self.state
        if code == CommandCode.CAPABILITIES_EXCHANGE:
            self._machine.process(PeerInput.SEND_CER)
        elif code == CommandCode.DISCONNECT_PEER:
            self._machine.process(PeerInput.SEND_DPR)
        elif state is not PeerState.OPEN and not (
            state is PeerState.CLOSING and code == CommandCode.DEVICE_WATCHDOG
        ):
            raise LocalProtocolError(f"cannot send {type(message).__name__} in {state.value}")
        hbh = self._next_hbh
        self._next_hbh = (hbh + 1) & 0xFFFFFFFF
        if end_to_end is None:
            end_to_end = self._next_e2e
            self._next_e2e = (end_to_end + 1) & 0xFFFFFFFF
        flags = FLAG_R | (FLAG_T if retransmit else 0)
        if code in (CommandCode.CREDIT_CONTROL, CommandCode.RE_AUTH, CommandCode.ABORT_SESSION):
            flags |= FLAG_P
        header = Header(
            flags=flags,
            command_code=int(code),
            application_id=COMMAND_APPLICATION[code],
            hop_by_hop=hbh,
            end_to_end=end_to_end,
            version=self.encoding,
        )
        self._out.append(
            encode_frame_as(
                self.encoding,
                message,
                flags=header.flags,
                command_code=header.command_code,
                application_id=header.application_id,
                hop_by_hop=hbh,
                end_to_end=end_to_end,
            )
        )
        self._outstanding[hbh] = _Outstanding(header, message)
        return header

    def forget_request(self, hop_by_hop: int) -> None:
        """Stop waiting for an answer (the adapter's timer gave up on it)."""
        self._outstanding.pop(hop_by_hop, None)

    def send_answer(self, request: Header, message: Answer) -> None:
        """Answer a `RequestReceived`."""
        self._answered()
        self._send_answer_now(request, message, error=False)

    def send_answer_body(self, request: Header, body: bytes) -> None:
        """Answer a `RequestReceived` with an answer body encoded earlier (by the
        application, which also keeps it for duplicates): MessagePack, as binary AVPs if
        the request was."""
        self._answered()
        if request.version != VERSION:
            body = transcode_answer(request.command_code, body)
        if request.proxy_info:
            body = with_proxy_info(request.version, body, request.proxy_info)
        self._out.append(
            frame_body(
                body,
                version=request.version,
                flags=answer_flags(request, error=False),
                command_code=request.command_code,
                application_id=request.application_id,
                hop_by_hop=request.hop_by_hop,
                end_to_end=request.end_to_end,
            )
        )

    def send_error(self, request: Header, error: ProtocolError) -> None:
        """Answer a `RequestReceived` with the error the application found."""
        self._answered()
        self._answer_error(request, error, count=False)

    def encode_answer(self, request: Header, message: Answer, *, error: bool = False) -> bytes:
        """The frame answering `request`, without sending it (for caching), in the request's
        encoding. It echoes the request's Proxy-Info, but in a 3xxx (WIRE.md section 3 lists
        what one carries)."""
        data = encode_frame_as(
            request.version,
            message,
            flags=answer_flags(request, error=error),
            command_code=request.command_code,
            application_id=request.application_id,
            hop_by_hop=request.hop_by_hop,
            end_to_end=request.end_to_end,
        )
        if not request.proxy_info or error:
            return data
        return frame_body(
            with_proxy_info(request.version, data[HEADER_LENGTH:], request.proxy_info),
            version=request.version,
            flags=answer_flags(request, error=error),
            command_code=request.command_code,
            application_id=request.application_id,
            hop_by_hop=request.hop_by_hop,
            end_to_end=request.end_to_end,
        )

    def error_answer(self, request: Header, error: ProtocolError) -> ErrorAnswer:
        ident = self.identity
        return ErrorAnswer(
            session_id=error.session_id,
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            result_code=error.result_code,
            error_message=error.message,
            failed_avp=error.failed_avp,
        )

    def _answered(self) -> None:
        if self._pending_in <= 0:
            raise LocalProtocolError("no request is waiting for an answer")
        self._pending_in -= 1
        self._budget.count -= 1

    def _send_answer_now(self, request: Header, message: Answer, *, error: bool = False) -> None:
        self._out.append(self.encode_answer(request, message, error=error))

    def _answer_error(self, request: Header, error: ProtocolError, *, count: bool) -> None:
        if count:
            self._answered()
        self._send_answer_now(request, self.error_answer(request, error), error=error.error_flag)

    def _reject(self, header: Header, error: ProtocolError, events: list[Event]) -> None:
        self._answer_error(header, error, count=False)
        events.append(RequestRejected(header, error))

    def _base_answer(self, answer_type: type[DWA] | type[DPA]) -> DWA | DPA:
        ident = self.identity
        return answer_type(
            result_code=ResultCode.SUCCESS,
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
        )

    def _close(self, events: list[Event], reason: str) -> None:
        self._machine.process(PeerInput.CONNECTION_LOST)
        self._outstanding.clear()
        events.append(ConnectionClosed(reason))

    # --- conveniences for both roles -----------------------------------------------------------

    def cer(self, applications: tuple[int, ...]) -> CER:
        ident = self.identity
        return CER(
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            host_ip_address=ident.host_ip_address,
            vendor_id=ident.vendor_id,
            product_name=ident.product_name,
            auth_application_id=applications,
            origin_state_id=ident.origin_state_id,
            firmware_revision=ident.firmware_revision,
        )

    def dwr(self) -> DWR:
        return DWR(origin_host=self.identity.origin_host, origin_realm=self.identity.origin_realm)

    def dpr(self, cause: int) -> DPR:
        return DPR(
            origin_host=self.identity.origin_host,
            origin_realm=self.identity.origin_realm,
            disconnect_cause=DisconnectCause(cause),
        )
