"""Splitting a byte stream into messages (WIRE.md section 1).

Bytes may arrive split across any number of reads and one read may carry many messages. A bad
version byte is detected as soon as it arrives, a bad length as soon as the 4 bytes holding it
do; either is a `FramingError` and the stream is not read any further.
"""

from __future__ import annotations

from protocol.codes import FLAG_R, HEADER_LENGTH, VERSION, VERSION_DIAMETER, ResultCode
from protocol.errors import FramingError
from protocol.header import Header, unpack_header


class FramingFailure(FramingError):
    """A `FramingError` that keeps the header, when a whole one was read, for the answer."""

    def __init__(
        self, message: str, *, header: Header | None, answer_code: ResultCode | None
    ) -> None:
        super().__init__(message, answer_code=answer_code)
        self.header = header


class FrameBuffer:
    """Accumulates bytes; `next_frame` returns one whole message at a time."""

    __slots__ = ("_buf", "_failed", "_pos", "max_length")

    def __init__(self, max_length: int) -> None:
        if max_length < HEADER_LENGTH:
            raise ValueError("max_length must be at least the header length")
        self.max_length = max_length
        self._buf = bytearray()
        self._pos = 0
        self._failed = False

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            return
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> tuple[Header, bytes] | None:
        """The next whole message (header, body), or None until more bytes arrive."""
        if self._failed:
            return None
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail == 0:
            return None
        first = buf[pos]
        if first != VERSION and first != VERSION_DIAMETER:
            self._failed = True
            raise FramingFailure(
                f"bad version byte 0x{buf[pos]:02x}", header=None, answer_code=None
            )
        if avail < 4:
            return None
        length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
        if length < HEADER_LENGTH or length > self.max_length:
            self._failed = True
            header = unpack_header(buf, pos) if avail >= HEADER_LENGTH else None
            answerable = header is not None and bool(header.flags & FLAG_R)
            raise FramingFailure(
                f"bad message length {length} (limit {self.max_length})",
                header=header,
                answer_code=ResultCode.INVALID_MESSAGE_LENGTH if answerable else None,
            )
        if avail < length:
            return None
        header = unpack_header(buf, pos)
        body = bytes(buf[pos + HEADER_LENGTH : pos + length])
        pos += length
        if pos == len(buf):
            buf.clear()
            pos = 0
        elif pos > 65_536:  # compact now and then so the buffer does not grow without bound
            del buf[:pos]
            pos = 0
        self._pos = pos
        return header, body
