"""A MessagePack encoder for hostile bodies: anything the format can say, including what the
product's encoder never writes (keys that are not strings, repeated keys, extension types,
bytes that are not UTF-8 inside a str). The simulator builds requests as Python values, packs
them here and hands the bytes to the real codec, so that what the codec refuses is refused as
it would be on the wire."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Pairs:
    """A map given as its (key, value) pairs: keys may repeat and be of any type."""

    items: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes copied as they are (a malformed value, a str that is not UTF-8 ...)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ext:
    """A MessagePack extension value."""

    code: int
    data: bytes


def bad_str(data: bytes) -> Raw:
    """A MessagePack str whose bytes are `data` (not necessarily UTF-8)."""
    return Raw(_str_header(len(data)) + data)


def pack(value: Any) -> bytes:
    """Encode `value` (iteratively: maps and arrays nested thousands deep are fine)."""
    out = bytearray()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            _array_header(len(item), out)
            stack.extend(reversed(item))
        elif isinstance(item, dict | Pairs):
            items = item.items if isinstance(item, Pairs) else tuple(item.items())
            _map_header(len(items), out)
            for key, member in reversed(items):
                stack.append(member)
                stack.append(key)
        else:
            _pack_scalar(item, out)
    return bytes(out)


def _str_header(n: int) -> bytes:
    if n < 32:
        return bytes((0xA0 | n,))
    if n < 1 << 8:
        return b"\xd9" + struct.pack(">B", n)
    if n < 1 << 16:
        return b"\xda" + struct.pack(">H", n)
    return b"\xdb" + struct.pack(">I", n)


def _array_header(n: int, out: bytearray) -> None:
    if n < 16:
        out.append(0x90 | n)
    elif n < 1 << 16:
        out += b"\xdc" + struct.pack(">H", n)
    else:
        out += b"\xdd" + struct.pack(">I", n)


def _map_header(n: int, out: bytearray) -> None:
    if n < 16:
        out.append(0x80 | n)
    elif n < 1 << 16:
        out += b"\xde" + struct.pack(">H", n)
    else:
        out += b"\xdf" + struct.pack(">I", n)


def _pack_scalar(value: Any, out: bytearray) -> None:
    if value is None:
        out += b"\xc0"
    elif value is True:
        out += b"\xc3"
    elif value is False:
        out += b"\xc2"
    elif isinstance(value, int):
        _pack_int(value, out)
    elif isinstance(value, float):
        out += b"\xcb" + struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        out += _str_header(len(data)) + data
    elif isinstance(value, bytes):
        n = len(value)
        if n < 1 << 8:
            out += b"\xc4" + struct.pack(">B", n)
        elif n < 1 << 16:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += value
    elif isinstance(value, Raw):
        out += value.data
    elif isinstance(value, Ext):
        out += b"\xc7" + struct.pack(">Bb", len(value.data), value.code) + value.data
    else:
        raise TypeError(f"cannot pack {type(value).__name__}")


def _pack_int(value: int, out: bytearray) -> None:
    if 0 <= value < 128:
        out.append(value)
    elif -32 <= value < 0:
        out += struct.pack(">b", value)
    elif 0 <= value < 1 << 64:
        out += b"\xcf" + struct.pack(">Q", value)
    elif -(1 << 63) <= value < 0:
        out += b"\xd3" + struct.pack(">q", value)
    else:
        raise OverflowError(f"{value} does not fit a MessagePack int")
