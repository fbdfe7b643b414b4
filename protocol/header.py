"""The 20-byte message header (WIRE.md section 1)."""

from __future__ import annotations

import struct

import msgspec

from protocol.codes import FLAG_E, FLAG_P, FLAG_R, FLAG_T, HEADER_LENGTH, VERSION

_HEADER = struct.Struct(">IIIII")


class Header(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A decoded header. `length` is the whole message length, header included.

    A msgspec Struct rather than a frozen dataclass: one is built per message, and its
    constructor is an order of magnitude cheaper."""

    flags: int
    command_code: int
    application_id: int
    hop_by_hop: int
    end_to_end: int
    length: int = 0
    version: int = VERSION  # the body's encoding (WIRE.md section 1): 0x4D or 0x01
    # a received request's Proxy-Info, to echo in its answer (`protocol.proxy_info`)
    proxy_info: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_R)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_E)

    @property
    def is_retransmit(self) -> bool:
        return bool(self.flags & FLAG_T)

    @property
    def is_proxiable(self) -> bool:
        return bool(self.flags & FLAG_P)


def unpack_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """Decode 20 header bytes at `offset`; the caller has checked version and length."""
    w0, w1, app, hbh, e2e = _HEADER.unpack_from(buf, offset)
    return Header(
        flags=w1 >> 24,
        command_code=w1 & 0xFFFFFF,
        application_id=app,
        hop_by_hop=hbh,
        end_to_end=e2e,
        length=w0 & 0xFFFFFF,
        version=w0 >> 24,
    )


def pack_header(
    *,
    version: int = VERSION,
    length: int,
    flags: int,
    command_code: int,
    application_id: int,
    hop_by_hop: int,
    end_to_end: int,
) -> bytes:
    return _HEADER.pack(
        (version << 24) | length,
        (flags << 24) | command_code,
        application_id,
        hop_by_hop,
        end_to_end,
    )


__all__ = ["HEADER_LENGTH", "Header", "pack_header", "unpack_header"]
