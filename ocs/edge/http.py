"""A minimal HTTP/1.1 listener on the event loop, for the metrics, readiness and status
(`--metrics HOST:PORT`; docs/operations.md, *Metrics and status*).

It serves GET (and HEAD) of a fixed set of paths, one request per connection (`Connection:
close`), and nothing else: no keep-alive, no request body, no chunking. Its boundary is as
hostile as the peer port's: the request head is read within `HEAD_TIMEOUT_S` and
`MAX_HEAD_BYTES`, at most `max_connections` are open at once (a further one is closed at
once), and a route that raises is a 500 logged once, never a crash. Each route is a function
called on the loop that returns the status, content type and body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

import structlog

log = structlog.get_logger("ocs.edge.http")

MAX_HEAD_BYTES: Final = 8192
HEAD_TIMEOUT_S: Final = 5.0
WRITE_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 16

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Response]


def text(status: int, body: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", body.encode())


class HttpListener:
    """Serves `routes` (path -> function) on HOST:PORT until `stop`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.routes = dict(routes)
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: requests answered and connections refused (over `max_connections`)
        self.served = 0
        self.refused = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.requested_port, reuse_address=True
        )
        log.info("metrics.listening", host=self.host, port=self.port)

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES)
        return asyncio.StreamReaderProtocol(reader, self._accepted)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.max_connections:
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return  # closed, too long or too slow: no answer
            method, response = self._respond(head)
            writer.write(_encode(response, head_only=method == "HEAD"))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
            self.served += 1
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    def _respond(self, head: bytes) -> tuple[str, Response]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "", text(400, "bad request\n")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return method, text(405, "only GET\n")
        route = self.routes.get(target.split("?", 1)[0])
        if route is None:
            return method, text(404, "not found; paths: " + " ".join(sorted(self.routes)) + "\n")
        try:
            return method, route()
        except Exception as exc:
            log.error("metrics.failed", path=target[:100], error=f"{type(exc).__name__}: {exc}")
            return method, text(500, "internal error\n")

    async def stop(self) -> None:
        """Stop listening; connections still open are closed."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()


def _encode(response: Response, *, head_only: bool) -> bytes:
    status, content_type, body = response
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body
