"""A bare-bytes peer for black-box tests: writes frames, reads whole frames back."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from protocol.framing import FrameBuffer
from protocol.header import Header
from tests.conftest import frame_of


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameBuffer(1 << 20)

    @classmethod
    async def connect(cls, port: int, *, cer: bool = True) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        if cer:
            await peer.send(frame_of("cer"))
            header, body = await peer.read()
            assert header.command_code == 257 and body["Result-Code"] == 2001
        return peer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 3.0) -> tuple[Header, dict[str, Any]]:
        """The next whole frame; raises EOFError if the server closed first."""
        async with asyncio.timeout(timeout):
            while True:
                frame = self.frames.next_frame()
                if frame is not None:
                    return frame[0], msgspec.msgpack.decode(frame[1])
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("closed by the server")
                self.frames.feed(data)

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True once the server closes (frames sent before the close are skipped)."""
        try:
            while True:
                await self.read(timeout)
        except EOFError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
