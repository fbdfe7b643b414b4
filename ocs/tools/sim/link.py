"""A connection to the server that survives the server going away.

`Link.call` sends a request and returns its answer, whatever happens in between: if the
connection drops (or an answer does not come within `answer_timeout`, which closes the
connection), it reconnects (CER/CEA again) and sends the request again on the new connection
with the T flag and the same End-to-End-Id (RFC 6733 section 5.5.4), so that the server can
recognise it (WIRE.md section 6) and never charge it twice. A request that was never written
to a connection goes out without the T flag. An answer 3004 DIAMETER_TOO_BUSY (not processed)
makes it try again shortly. It gives up only after `give_up` seconds.

End-to-End-Ids come from the link, not the connection: they stay unique across reconnections.
With `ssl` every connection is made over TLS (the server's certificate checked for
`server_hostname`, default the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from dataclasses import dataclass

import structlog

from ocs.edge.client import Client, ClientError, RequestCallback, initial_end_to_end
from protocol.codes import VERSION, Flag, ResultCode
from protocol.errors import LocalProtocolError
from protocol.header import Header
from protocol.messages import Answer, Request

log = structlog.get_logger("ocs.tools.sim.link")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of `Link.call`: the answer (None if it never came) and how it went."""

    answer: Answer | None
    header: Header | None
    sends: int  # how many times the request was written
    retransmitted: bool  # sent again with the T flag at least once

    @property
    def error_flag(self) -> bool:
        return self.header is not None and bool(self.header.flags & Flag.ERROR)


class Link:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        origin_host: str,
        origin_realm: str,
        applications: tuple[int, ...],
        on_request: RequestCallback | None = None,
        answer_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        product_name: str = "ocs-sim",
        max_outstanding: int = 256,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        encoding: int = VERSION,
    ) -> None:
        self.host = host
        self.encoding = encoding  # the version byte of the bodies sent (WIRE.md 1.1)
        self.port = port
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.applications = applications
        self.on_request = on_request
        self.answer_timeout = answer_timeout
        self.connect_timeout = connect_timeout
        self.product_name = product_name
        self.ssl = ssl
        self.server_hostname = server_hostname
        self.client: Client | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._e2e = initial_end_to_end()
        # stay well below the server's limit of outstanding requests per peer (WIRE.md 4)
        self._slots = asyncio.Semaphore(max_outstanding)
        self.connects = 0
        self.disconnects = 0
        self.retransmissions = 0
        self.timeouts = 0
        self.busy = 0  # 3004 DIAMETER_TOO_BUSY answers (the request is sent again)

    # --- connection ----------------------------------------------------------------------------

    async def _connect(self) -> Client:
        client = await Client.connect(
            self.host,
            self.port,
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            applications=self.applications,
            on_request=self.on_request,
            timeout=self.connect_timeout,
            product_name=self.product_name,
            ssl=self.ssl,
            server_hostname=self.server_hostname,
            encoding=self.encoding,
        )
        self.connects += 1
        return client

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (retrying until `timeout`), then keep reconnecting whenever it drops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            try:
                self.client = await self._connect()
                break
            except (OSError, ClientError, TimeoutError) as exc:
                if loop.time() + delay > deadline:
                    raise ClientError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._ready.set()
        self._supervisor = loop.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._closing:
            client = self.client
            assert client is not None
            await client.wait_closed()
            self._ready.clear()
            if self._closing:
                return
            self.disconnects += 1
            log.info("link.lost", host=self.host, port=self.port)
            delay = 0.05
            while not self._closing:
                try:
                    client = await self._connect()
                    break
                except (OSError, ClientError, TimeoutError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
            else:
                return
            log.info("link.reconnected", host=self.host, port=self.port)
            self.client = client
            self._ready.set()

    async def close(self) -> None:
        self._closing = True
        client = self.client
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if client is not None:
            with contextlib.suppress(ClientError, OSError):
                await client.close(dpr=client.is_open)

    # --- requests ------------------------------------------------------------------------------

    def next_end_to_end(self) -> int:
        e2e = self._e2e
        self._e2e = (e2e + 1) & 0xFFFFFFFF
        return e2e

    async def call(self, request: Request, *, give_up: float = 60.0) -> Delivery:
        async with self._slots:
            return await self._call(request, give_up)

    async def _call(self, request: Request, give_up: float) -> Delivery:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up
        e2e = self.next_end_to_end()
        sends = 0
        maybe_processed = False  # an earlier copy went out and its fate is unknown: T flag
        while True:
            left = deadline - loop.time()
            if left <= 0 or self._closing:
                return Delivery(None, None, sends, maybe_processed)
            client = self.client
            if client is None or not client.is_open or not self._ready.is_set():
                with contextlib.suppress(TimeoutError):
                    if client is not None and not client.is_open:
                        await asyncio.wait_for(client.wait_closed(), left)
                    await asyncio.wait_for(self._ready.wait(), max(deadline - loop.time(), 0))
                continue
            try:
                future = client.send(request, end_to_end=e2e, retransmit=maybe_processed)
            except (ClientError, LocalProtocolError):
                await asyncio.sleep(0.01)  # closing: wait for the supervisor to notice
                continue
            if maybe_processed:
                self.retransmissions += 1
            sends += 1
            try:
                exchange = await asyncio.wait_for(
                    asyncio.shield(future), min(self.answer_timeout, left)
                )
            except TimeoutError:
                future.cancel()
                self.timeouts += 1
                maybe_processed = True
                log.warning("link.timeout", end_to_end=e2e, sends=sends)
                # fail over: close this connection; the request goes again on the next one
                with contextlib.suppress(ClientError, OSError):
                    await client.close(dpr=False)
                continue
            except ClientError:
                maybe_processed = True
                continue  # connection lost: retransmit on the next one
            if exchange.answer.result_code == ResultCode.TOO_BUSY:
                self.busy += 1  # not processed: try again a little later
                await asyncio.sleep(0.05)
                continue
            return Delivery(exchange.answer, exchange.header, sends, maybe_processed)
