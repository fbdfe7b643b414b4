"""An asyncio Diameter client over `protocol.Connection`.

Connects, does CER/CEA, sends requests and awaits their answers (matched by Hop-by-Hop-Id, any
number in flight), answers DWR, and hands server-initiated requests (RAR, ASR) to a callback.
With `watchdog_s` it also runs the watchdog of WIRE.md section 4 (DWR after Tw with nothing
received, close without DWA within another Tw), which the connection keeps as data: one loop
timer at `conn.timer_at()`. With `ssl` (an `ssl.SSLContext`, e.g. from
`ocs.edge.tls.client_context`) it connects over TLS and checks the server's certificate against
`server_hostname` (default: the host). Used by the tests, the simulators and the load harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from protocol.codes import VERSION, ApplicationId, DisconnectCause, ResultCode
from protocol.connection import (
    AnswerReceived,
    Connection,
    ConnectionClosed,
    LocalIdentity,
    PeerOpened,
    RequestReceived,
)
from protocol.errors import ProtocolError
from protocol.header import Header
from protocol.messages import CEA, Answer, Request
from protocol.peer import PeerState, Role

RequestCallback = Callable[[Header, Request], Answer | Awaitable[Answer]]


class ClientError(Exception):
    """The connection failed or the peer refused it."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request's header and the answer with its header."""

    request: Header
    header: Header
    answer: Answer


def initial_end_to_end() -> int:
    """RFC 6733 section 3: high 12 bits from the clock, low 20 bits random."""
    return ((int(time.time()) & 0xFFF) << 20) | random.getrandbits(20)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass

    def data_received(self, data: bytes) -> None:
        self.client._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._connection_lost(exc)


class Client:
    def __init__(
        self,
        *,
        identity: LocalIdentity,
        on_request: RequestCallback | None = None,
        max_message_length: int = 65_536,
        watchdog_s: float | None = None,
        encoding: int = VERSION,
    ) -> None:
        self.identity = identity
        self._loop = asyncio.get_running_loop()
        self.conn = Connection(
            role=Role.CLIENT,
            identity=identity,
            max_message_length=max_message_length,
            first_hop_by_hop=random.getrandbits(32),
            first_end_to_end=initial_end_to_end(),
            now=self._loop.time(),
            watchdog_s=watchdog_s,
            encoding=encoding,
        )
        self.on_request = on_request
        self.peer: CEA | None = None
        self._transport: asyncio.Transport | None = None
        self._waiters: dict[int, asyncio.Future[Exchange]] = {}
        self._opened: asyncio.Future[CEA] | None = None
        self._closed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # when `_timer` fires: the connection's timer_at()

    @classmethod
    async def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 3868,
        *,
        origin_host: str,
        origin_realm: str = "test.local",
        applications: tuple[int, ...] = (ApplicationId.CREDIT_CONTROL,),
        on_request: RequestCallback | None = None,
        timeout: float = 5.0,
        product_name: str = "ocs-client",
        watchdog_s: float | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        encoding: int = VERSION,
        max_message_length: int = 65_536,
    ) -> Client:
        """Connect (over TLS with `ssl`, the server's certificate checked for
        `server_hostname`, default `host`), then CER/CEA; all within `timeout`. `encoding`:
        the version byte of the bodies sent (0x4D MessagePack, 0x01 binary AVPs).
        `max_message_length`: the longest message accepted from the server."""
        client = cls(
            identity=LocalIdentity(
                origin_host=origin_host,
                origin_realm=origin_realm,
                product_name=product_name,
            ),
            on_request=on_request,
            max_message_length=max_message_length,
            watchdog_s=watchdog_s,
            encoding=encoding,
        )
        await asyncio.wait_for(
            client._open(host, port, applications, ssl, server_hostname), timeout
        )
        return client

    async def _open(
        self,
        host: str,
        port: int,
        applications: tuple[int, ...],
        ssl: ssl_module.SSLContext | None,
        server_hostname: str | None,
    ) -> None:
        if ssl is None:
            await self._loop.create_connection(lambda: _ClientProtocol(self), host, port)
        else:
            await self._loop.create_connection(
                lambda: _ClientProtocol(self),
                host,
                port,
                ssl=ssl,
                server_hostname=server_hostname or host,
            )
        self._opened = self._loop.create_future()
        self.conn.send_request(self.conn.cer(applications))
        self._flush()
        self.peer = await self._opened

    @property
    def is_open(self) -> bool:
        return self.conn.state is PeerState.OPEN and not self._closed.is_set()

    async def exchange(
        self,
        message: Request,
        *,
        timeout: float = 5.0,
        end_to_end: int | None = None,
        retransmit: bool = False,
    ) -> Exchange:
        fut = self.send(message, end_to_end=end_to_end, retransmit=retransmit)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            for hbh, waiter in list(self._waiters.items()):
                if waiter is fut:
                    del self._waiters[hbh]
                    self.conn.forget_request(hbh)
            raise

    async def request(
        self,
        message: Request,
        *,
        timeout: float = 5.0,
        end_to_end: int | None = None,
        retransmit: bool = False,
    ) -> Answer:
        exchange = await self.exchange(
            message, timeout=timeout, end_to_end=end_to_end, retransmit=retransmit
        )
        return exchange.answer

    def send(
        self, message: Request, *, end_to_end: int | None = None, retransmit: bool = False
    ) -> asyncio.Future[Exchange]:
        """Queue a request without waiting; the future gets the exchange."""
        if self._closed.is_set():
            raise ClientError("connection is closed")
        header = self.conn.send_request(message, end_to_end=end_to_end, retransmit=retransmit)
        fut: asyncio.Future[Exchange] = self._loop.create_future()
        self._waiters[header.hop_by_hop] = fut
        self._flush()
        return fut

    async def close(self, *, dpr: bool = True, timeout: float = 2.0) -> None:
        if dpr and self.conn.state is PeerState.OPEN and not self._closed.is_set():
            with contextlib.suppress(TimeoutError, ClientError, ConnectionError):
                await self.request(
                    self.conn.dpr(DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU), timeout=timeout
                )
        if self._transport is not None:
            self._transport.close()
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --- protocol callbacks --------------------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data, self._loop.time()):
            if isinstance(event, AnswerReceived):
                fut = self._waiters.pop(event.request.hop_by_hop, None)
                if fut is not None and not fut.done():
                    fut.set_result(Exchange(event.request, event.header, event.message))
                if (
                    isinstance(event.message, CEA)
                    and event.message.result_code != ResultCode.SUCCESS
                ):
                    self._fail_open(
                        ClientError(f"CER refused: Result-Code {event.message.result_code}")
                    )
            elif isinstance(event, PeerOpened):
                if self._opened is not None and not self._opened.done():
                    assert isinstance(event.peer, CEA)
                    self._opened.set_result(event.peer)
            elif isinstance(event, RequestReceived):
                self._loop.create_task(self._serve_request(event.header, event.message))
            elif isinstance(event, ConnectionClosed) and self._transport is not None:
                self._flush()
                self._transport.close()
        self._flush()
        if (at := self.conn.timer_at()) != self._timer_at:  # only on open and on close
            self._arm(at)

    def _arm(self, at: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and not self._closed.is_set():
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        at, self._timer, self._timer_at = self._timer_at, None, None
        if at is None or self._closed.is_set():
            return
        # A loop may run a timer up to its clock resolution early (uvloop: 1 ms): it is due.
        events = self.conn.handle_timer(max(self._loop.time(), at))
        if any(isinstance(event, ConnectionClosed) for event in events):
            if self._transport is not None:
                self._transport.close()
            return
        self._flush()  # a DWR, if one was due
        self._arm(self.conn.timer_at())

    async def _serve_request(self, header: Header, message: Request) -> None:
        if self.on_request is None:
            self.conn.send_error(
                header, ProtocolError(ResultCode.UNABLE_TO_COMPLY, "client serves no requests")
            )
        else:
            try:
                result = self.on_request(header, message)
                answer = await result if inspect.isawaitable(result) else result
            except ProtocolError as exc:
                self.conn.send_error(header, exc)
            else:
                assert isinstance(answer, Answer)
                self.conn.send_answer(header, answer)
        self._flush()

    def _fail_open(self, exc: Exception) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(exc)

    def _connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost()
        self._arm(None)
        self._fail_open(ClientError(f"connection closed during CER: {exc}"))
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(ClientError("connection closed"))
        self._waiters.clear()
        self._closed.set()

    def _flush(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        data = self.conn.data_to_send()
        if data:
            self._transport.write(data)
