"""`Proxy-Info` (RFC 6733 sections 6.1.9, 6.2 and 6.7.2): what a request carries of it is
echoed, unchanged and in order, in its answer.

The message model does not hold `Proxy-Info` (the server acts on none of it, and a duplicate's
cached answer must not carry another request's): the connection takes it from the request's
body as received, keeps it on the request's `Header`, and adds it to the answer when it frames
it. In a binary body (0x01) it is the top-level `Proxy-Info` AVPs (code 284), their bytes as
received; in a MessagePack body (0x4D) the value of the `Proxy-Info` key, an array of maps with
`Proxy-Host` (str) and `Proxy-State` (bin), as received. Sans-IO: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, Final

import msgspec

from protocol.codes import VERSION, ResultCode
from protocol.errors import ProtocolError
from protocol.limits import MAX_IDENTITY_LENGTH, MAX_LIST_LENGTH

PROXY_INFO_CODE: Final = 284
_KEY: Final = b"\xaaProxy-Info"  # the key as MessagePack writes it (fixstr of 10 bytes)
_HDR: Final = struct.Struct(">II")
_FLAG_V: Final = 0x80


class ProxyInfo(msgspec.Struct, frozen=True):
    """One `Proxy-Info` entry of a MessagePack body (RFC 6733 6.7.2: { Proxy-Host }
    { Proxy-State } *[ AVP ]; other keys are kept as received)."""

    proxy_host: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_IDENTITY_LENGTH)] = (
        msgspec.field(name="Proxy-Host")
    )
    proxy_state: bytes = msgspec.field(name="Proxy-State")


class _Only(msgspec.Struct):
    proxy_info: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="Proxy-Info")


_ONLY: Final = msgspec.msgpack.Decoder(_Only)
_ENTRIES: Final = msgspec.msgpack.Decoder(
    Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_LIST_LENGTH)]
)


def proxy_info_of(version: int, body: bytes) -> bytes:
    """What of `body` (a request that decoded) is echoed in its answer: b"" if nothing.
    Raises `ProtocolError` 5004 for a MessagePack `Proxy-Info` that is not an array of at most
    `MAX_LIST_LENGTH` maps each with `Proxy-Host` and `Proxy-State`."""
    if version == VERSION:
        return _msgpack_proxy_info(body) if _KEY in body else b""
    if b"\x00\x00\x01\x1c" not in body:
        return b""
    out = bytearray()
    pos = 0
    end = len(body)
    while end - pos >= 8:
        code, word = _HDR.unpack_from(body, pos)
        length = word & 0xFFFFFF
        if length < 8 or pos + length > end:
            break  # (the codec refused such a body before)
        if code == PROXY_INFO_CODE and not word >> 24 & _FLAG_V:
            out += body[pos : pos + length] + b"\0" * (-length % 4)
        pos += (length + 3) & ~3
    return bytes(out)


def _msgpack_proxy_info(body: bytes) -> bytes:
    try:
        raw = _ONLY.decode(body).proxy_info
    except RecursionError:
        raise ProtocolError(ResultCode.INVALID_AVP_BITS, "Proxy-Info nested too deep") from None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return b""  # the codec decoded the body: Proxy-Info is not a top-level key
    data = bytes(raw)
    if not data:
        return b""
    try:
        entries = _ENTRIES.decode(data)
        for entry in entries:
            msgspec.convert(entry, ProxyInfo)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise ProtocolError(
            ResultCode.INVALID_AVP_VALUE,
            f"Proxy-Info: {exc}",
            failed_avp={"Proxy-Info": _as_received(data)},
        ) from None
    return data


def _as_received(data: bytes) -> Any:
    try:
        value = msgspec.msgpack.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if not isinstance(value, list | dict) or len(value) <= MAX_LIST_LENGTH else None


def with_proxy_info(version: int, body: bytes, proxy_info: bytes) -> bytes:
    """An answer body with the request's `Proxy-Info` added (last)."""
    if not proxy_info:
        return body
    if version != VERSION:
        return body + proxy_info
    first = body[0] if body else 0
    if 0x80 <= first < 0x8F:  # fixmap of fewer than 15 entries
        return bytes([first + 1]) + body[1:] + _KEY + proxy_info
    if first == 0xDE:  # map 16
        (count,) = struct.unpack_from(">H", body, 1)
        if count < 0xFFFF:
            return b"\xde" + struct.pack(">H", count + 1) + body[3:] + _KEY + proxy_info
    if first == 0x8F:
        return b"\xde\x00\x10" + body[1:] + _KEY + proxy_info
    return body


__all__ = ["PROXY_INFO_CODE", "ProxyInfo", "proxy_info_of", "with_proxy_info"]
