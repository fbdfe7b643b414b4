"""A bare server that only frames, decodes and answers: the ceiling of this stack.

`ocs bench --vs-echo` runs the same load against it as against the charging server. Per request
it does what any server on this stack must do and nothing more: uvloop reads the bytes,
`protocol.framing.FrameBuffer` cuts them into frames, `protocol.codec.decode_body` decodes and
validates the body into the message type (as the real server does), and a minimal answer is
encoded with msgspec and written (one write per read). No peer state machine, no journal, no
charging: every CER is accepted, every CCR answered 2001 with only the mandatory keys.

    python -m ocs.tools.echo --listen 127.0.0.1:0 --ready-file F

SIGTERM or SIGINT: close the listening socket and the connections, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import uvloop

from protocol.codec import ANSWER_TYPE_BY_CODE, answer_flags, decode_body, encode_frame
from protocol.codes import DEFAULT_MAX_MESSAGE_LENGTH, FLAG_R, CommandCode, ResultCode
from protocol.errors import ProtocolError
from protocol.framing import FrameBuffer, FramingFailure
from protocol.header import Header
from protocol.messages import CCA, CCR, CEA, CER, Answer, ErrorAnswer, Message

ORIGIN_HOST = "echo.test.local"
ORIGIN_REALM = "test.local"


def answer_for(header: Header, message: Message) -> Answer:
    """The minimal successful answer to a decoded request."""
    code = header.command_code
    if isinstance(message, CCR):
        return CCA(
            session_id=message.session_id,
            result_code=ResultCode.SUCCESS,
            origin_host=ORIGIN_HOST,
            origin_realm=ORIGIN_REALM,
            auth_application_id=4,
            cc_request_type=message.cc_request_type,
            cc_request_number=message.cc_request_number,
        )
    if isinstance(message, CER):
        return CEA(
            result_code=ResultCode.SUCCESS,
            origin_host=ORIGIN_HOST,
            origin_realm=ORIGIN_REALM,
            host_ip_address=("127.0.0.1",),
            vendor_id=0,
            product_name="ocs-echo",
            auth_application_id=message.auth_application_id,
        )
    answer_type = ANSWER_TYPE_BY_CODE[code]
    return answer_type(
        result_code=ResultCode.SUCCESS, origin_host=ORIGIN_HOST, origin_realm=ORIGIN_REALM
    )


class EchoProtocol(asyncio.Protocol):
    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.frames = FrameBuffer(DEFAULT_MAX_MESSAGE_LENGTH)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        frames = self.frames
        frames.feed(data)
        out: list[bytes] = []
        close = False
        while True:
            try:
                frame = frames.next_frame()
            except FramingFailure:
                close = True
                break
            if frame is None:
                break
            header, body = frame
            if not header.flags & FLAG_R:
                continue  # answers (to nothing we sent) are dropped
            out.append(self._answer(header, body))
            if header.command_code == CommandCode.DISCONNECT_PEER:
                close = True
                break
        transport = self.transport
        if transport is None:
            return
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()

    def _answer(self, header: Header, body: bytes) -> bytes:
        code = header.command_code
        try:
            if code not in ANSWER_TYPE_BY_CODE:
                raise ProtocolError(ResultCode.COMMAND_UNSUPPORTED, f"unknown command {code}")
            # invalid UTF-8 too is a ProtocolError (3009) from decode_body
            message = decode_body(code, True, body)
            answer: Answer = answer_for(header, message)
            error = False
        except ProtocolError as exc:
            answer = ErrorAnswer(
                session_id=exc.session_id,
                result_code=exc.result_code,
                origin_host=ORIGIN_HOST,
                origin_realm=ORIGIN_REALM,
                error_message=exc.message,
                failed_avp=exc.failed_avp,
            )
            error = exc.error_flag
        return encode_frame(
            answer,
            flags=answer_flags(header, error=error),
            command_code=code,
            application_id=header.application_id,
            hop_by_hop=header.hop_by_hop,
            end_to_end=header.end_to_end,
        )


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.connections: set[EchoProtocol] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: EchoProtocol(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()


def _parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ocs.tools.echo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--listen", type=_parse_listen, default=("127.0.0.1", 0))
    parser.add_argument("--ready-file", type=Path, help="write the listening port here when ready")
    args = parser.parse_args(argv)
    host, port = args.listen
    ready_file: Path | None = args.ready_file

    async def serve() -> None:
        server = EchoServer(host, port)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(str(server.port))
            os.replace(tmp, ready_file)
        try:
            await stop.wait()
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
