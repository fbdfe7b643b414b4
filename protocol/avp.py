"""The binary AVP body codec: standard Diameter bodies (version byte 0x01, WIRE.md 1.1 sections
1 and 2; RFC 6733 section 4), beside the MessagePack codec (`protocol.codec`).

Both codecs produce and consume the same typed messages (`protocol.messages`). A binary body is
read into the map keyed by AVP name that a MessagePack body would be (`protocol.dictionary`
names each AVP), and that map is validated by the same types, the same constraints and the same
checks (`msgspec.convert`, `codec.validation_error`, `codec.check_request`): a value outside
the domains of `protocol.limits` is refused exactly as over MessagePack.

Reading (RFC 6733 sections 4.1 and 7), raising `ProtocolError`:
- an AVP header whose length is shorter than the header or runs past its group or message, or
  a value of the wrong size for its type (Unsigned32 in 5 bytes): 5014
  DIAMETER_INVALID_AVP_LENGTH, `Failed-AVP` holding the AVP's header;
- reserved AVP flag bits set: 3009 DIAMETER_INVALID_AVP_BITS;
- an AVP the dictionary does not know, with the M bit: 5001 DIAMETER_AVP_UNSUPPORTED with the
  AVP in `Failed-AVP`; without the M bit it is ignored. So is a known AVP the message type does
  not hold (`*[AVP]` of the command's ABNF);
- an AVP a request must not carry (`Result-Code`, `Failed-AVP`, `Experimental-Result`,
  `Error-Reporting-Host`): 5008 DIAMETER_AVP_NOT_ALLOWED;
- a single-valued AVP given twice: 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES;
- invalid UTF-8 in a UTF8String, an Address of an unknown family or size: 5004; missing
  required AVPs, values of the wrong range or enumeration: 5005/5004 as for MessagePack;
- groups nested deeper than `MAX_BODY_DEPTH` (`MAX_ANSWER_DEPTH` for an answer): 3009.

`Service-Information` (and `Failed-AVP` in an answer) is opaque in the model: it is read into a
map keyed by AVP name, known AVPs by their type (Grouped as a map), and every AVP the
dictionary does not know, M bit or not, kept as `AVP-<vendor>-<code>` with its raw bytes
(OctetString), a form that encodes again as the same AVP. A name repeated in one group becomes
an array. The map is then held to the opaque limits like a MessagePack one.

Writing: every field of the message as the AVP of its name (`*[AVP]` fields as repeated AVPs),
the M and V bits from the dictionary, padding to 4 bytes. Time is seconds since 1900 on the
wire (RFC 6733 section 4.3.1; values before 1968-01-20 are in the era after 2036) and seconds
since 1970 in the model. Answer values wider than their wire type (a Volume-Quota-Threshold
above 2^32 - 1: the model holds Unsigned64, TS 32.299 Unsigned32) are capped at the wire
type's largest value. `Failed-AVP` and `Service-Information` are encoded leniently: an entry
that is not an AVP name or whose value does not fit its type is left out, never an error.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from protocol.codec import (
    ANSWER_TYPE_BY_CODE,
    REQUEST_TYPE_BY_CODE,
    check_request,
    decode_body,
    frame_body,
    validation_error,
)
from protocol.codes import FLAG_R, VERSION, VERSION_DIAMETER
from protocol.codes import ResultCode as RC
from protocol.dictionary import BY_CODE, BY_NAME, AvpDef, AvpType
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.limits import MAX_ANSWER_DEPTH, MAX_BODY_DEPTH, MAX_SESSION_ID_LENGTH
from protocol.messages import CER, ErrorAnswer, Message

FLAG_V: Final = 0x80
FLAG_M: Final = 0x40
FLAG_P_AVP: Final = 0x20
RESERVED_AVP_FLAGS: Final = 0x1F

#: seconds from 1900-01-01 (NTP, RFC 6733 Time) to 1970-01-01 (the model's Time)
NTP_TO_UNIX_S: Final = 2_208_988_800
_ERA_SPLIT: Final = 2**31  # RFC 5905 / RFC 6733 4.3.1: MSB clear = the era after 2036

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_HDR = struct.Struct(">II")
_HDR_V = struct.Struct(">III")

_NOT_IN_REQUEST: Final = frozenset(
    {"Result-Code", "Failed-AVP", "Experimental-Result", "Error-Reporting-Host"}
)
_RAW_NAME = re.compile(r"^AVP-(?P<vendor>\d{1,10})-(?P<code>\d{1,10})$")
_CAPPED: Final = frozenset({"Volume-Quota-Threshold", "Unit-Quota-Threshold"})


# --- the schema of each message type ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    attr: str  # the Struct attribute
    avp: AvpDef
    multi: bool  # *[AVP]: a tuple in the model, repeated AVPs on the wire
    group: type[msgspec.Struct] | None  # a grouped AVP the model types
    opaque: bool  # a grouped AVP the model keeps as a map
    # what writing it needs, worked out once: the header's flags word without the length, the
    # Vendor-Id bytes (empty without the V bit), the header's size, how to write the value
    flag_word: int
    vendor_bytes: bytes
    head: int
    tag: int
    fixed: struct.Struct | None
    capped: bool  # an Unsigned64 of the model that the wire holds in 32 bits


def _field(attr: str, avp: AvpDef, multi: bool, group: Any, opaque: bool) -> _Field:
    flags = (FLAG_M if avp.mandatory else 0) | (FLAG_V if avp.vendor_id else 0)
    tag, fixed = _READ[avp.name]
    return _Field(
        attr=attr,
        avp=avp,
        multi=multi,
        group=group,
        opaque=opaque,
        flag_word=flags << 24,
        vendor_bytes=_U32.pack(avp.vendor_id) if avp.vendor_id else b"",
        head=12 if avp.vendor_id else 8,
        tag=tag,
        fixed=fixed,
        capped=avp.name in _CAPPED,
    )


@dataclass(frozen=True, slots=True)
class _Schema:
    by_key: dict[tuple[int, int], _Field]  # (code, Vendor-Id) -> field
    order: tuple[_Field, ...]
    # required `*[AVP]` fields: absent on the wire means none (an answer's Account with no
    # Subscription-Id); a request still misses them (5005: `1*{Host-IP-Address}`)
    required_lists: tuple[str, ...]


_SCHEMAS: dict[type[msgspec.Struct], _Schema] = {}


def _schema(cls: type[msgspec.Struct]) -> _Schema:
    schema = _SCHEMAS.get(cls)
    if schema is not None:
        return schema
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    fields: list[_Field] = []
    required_lists: list[str] = []
    for f in info.fields:
        avp = BY_NAME.get(f.encode_name)
        if avp is None:
            raise LocalProtocolError(f"{f.encode_name} is not in the AVP dictionary")
        kind = f.type
        if isinstance(kind, msgspec.inspect.UnionType):  # X | None
            kinds = [k for k in kind.types if not isinstance(k, msgspec.inspect.NoneType)]
            kind = kinds[0]
        multi = isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType)
        if multi:
            assert isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType)
            kind = kind.item_type
        group = kind.cls if isinstance(kind, msgspec.inspect.StructType) else None
        opaque = isinstance(kind, msgspec.inspect.DictType)
        if (group is not None or opaque) != (avp.type is AvpType.GROUPED):
            raise LocalProtocolError(f"{avp.name}: the model and the dictionary disagree")
        fields.append(_field(f.name, avp, multi, group, opaque))
        if multi and f.required:
            required_lists.append(avp.name)
    # RFC 6733 3.2 and 8.8: `< Session-Id >` has a fixed position, the first AVP of a message
    # that carries it (a model's base class puts Origin-Host and Origin-Realm first)
    fields.sort(key=lambda f: f.avp.name != "Session-Id")
    schema = _Schema(
        {(f.avp.code, f.avp.vendor_id): f for f in fields}, tuple(fields), tuple(required_lists)
    )
    _SCHEMAS[cls] = schema
    return schema


# --- decoding --------------------------------------------------------------------------------


def decode_avps(command_code: int, is_request: bool, body: bytes | memoryview) -> Message:
    """Decode a binary body of a known command. Raises `ProtocolError` for an invalid body."""
    cls: type[Message] = (REQUEST_TYPE_BY_CODE if is_request else ANSWER_TYPE_BY_CODE)[command_code]
    data = bytes(body)
    reader = _Reader(data, is_request)
    try:
        raw = reader.group(0, len(data), _schema(cls), 1, top=True)
    except ProtocolError as exc:  # the answer echoes the Session-Id if it can be read
        if exc.session_id is None:
            exc.session_id = _find_session_id(data)
        raise
    if cls is CER:
        _lift_vendor_specific_applications(raw)
    try:
        message: Message = msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), raw) from None
    check_request(message)
    return message


def _lift_vendor_specific_applications(raw: dict[str, Any]) -> None:
    """A CER may offer credit control inside Vendor-Specific-Application-Id (RFC 6733 6.11):
    its Auth-Application-Ids count as offered."""
    vsai = raw.pop("Vendor-Specific-Application-Id", None)
    if not vsai:
        return
    ids = raw.setdefault("Auth-Application-Id", [])
    for entry in vsai:
        if isinstance(entry, dict):
            value = entry.get("Auth-Application-Id")
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, int) and item not in ids:
                    ids.append(item)


class _Reader:
    __slots__ = ("data", "is_request", "max_depth")

    def __init__(self, data: bytes, is_request: bool) -> None:
        self.data = data
        self.is_request = is_request
        self.max_depth = MAX_BODY_DEPTH if is_request else MAX_ANSWER_DEPTH

    def _avps(self, start: int, end: int) -> list[tuple[int, int, int, int, int]]:
        """The AVPs of [start, end): (code, flags, vendor, value start, value end)."""
        data = self.data
        pos = start
        found: list[tuple[int, int, int, int, int]] = []
        while pos < end:
            if end - pos < 8:
                raise ProtocolError(
                    RC.INVALID_AVP_LENGTH,
                    f"{end - pos} bytes left where an AVP header needs 8",
                    failed_avp={},
                )
            code, word = _HDR.unpack_from(data, pos)
            flags = word >> 24
            length = word & 0xFFFFFF
            vendor = 0
            head = 8
            if flags & FLAG_V:
                if end - pos < 12:
                    raise ProtocolError(
                        RC.INVALID_AVP_LENGTH,
                        f"AVP {code}: V bit set and no room for its Vendor-Id",
                        failed_avp=_raw_failed(code, 0, b""),
                    )
                vendor = _U32.unpack_from(data, pos + 8)[0]
                head = 12
            if length < head or pos + length > end:
                raise ProtocolError(
                    RC.INVALID_AVP_LENGTH,
                    f"AVP {code} (vendor {vendor}): length {length} does not fit",
                    failed_avp=_raw_failed(code, vendor, b""),
                )
            if flags & RESERVED_AVP_FLAGS:
                raise ProtocolError(
                    RC.INVALID_AVP_BITS,
                    f"AVP {code} (vendor {vendor}): reserved flag bits set",
                    failed_avp=_raw_failed(code, vendor, data[pos + head : pos + length]),
                )
            found.append((code, flags, vendor, pos + head, pos + length))
            pos += (length + 3) & ~3  # padding: a last AVP may end at the message's end
        return found

    def group(
        self, start: int, end: int, schema: _Schema, depth: int, *, top: bool = False
    ) -> dict[str, Any]:
        """The AVPs of [start, end) as a map for the type of `schema`."""
        if depth > self.max_depth:
            raise ProtocolError(RC.INVALID_AVP_BITS, f"groups nested deeper than {self.max_depth}")
        out: dict[str, Any] = {}
        data = self.data
        by_key = schema.by_key
        for code, flags, vendor, vstart, vend in self._avps(start, end):
            field = by_key.get((code, vendor))
            if field is None:
                self._other(code, flags, vendor, vstart, vend, depth, out, top)
                continue
            avp = field.avp
            name = avp.name
            fixed = field.fixed
            if fixed is not None:  # the common case, inline: a fixed-size number
                if vend - vstart != fixed.size:
                    _scalar(avp, data, vstart, vend)  # raises 5014
                value: Any = fixed.unpack_from(data, vstart)[0]
                if field.tag == _TIME:
                    value += (2**32 if value < _ERA_SPLIT else 0) - NTP_TO_UNIX_S
            elif field.group is not None:
                value = self.group(vstart, vend, _schema(field.group), depth + 1)
            elif field.opaque:
                value = self.opaque_value(avp, vstart, vend, depth + 1)
            else:
                value = _scalar(avp, data, vstart, vend)
            if field.multi:
                out.setdefault(name, []).append(value)
            elif name in out:
                raise ProtocolError(
                    RC.AVP_OCCURS_TOO_MANY_TIMES,
                    f"{name} occurs more than once",
                    failed_avp={name: value},
                    session_id=_session_id(out),
                )
            else:
                out[name] = value
        if not self.is_request:
            for name in schema.required_lists:
                out.setdefault(name, [])
        return out

    def _other(
        self,
        code: int,
        flags: int,
        vendor: int,
        vstart: int,
        vend: int,
        depth: int,
        out: dict[str, Any],
        top: bool,
    ) -> None:
        """An AVP the group's type does not hold: refused (5001 unknown with the M bit, 5008
        answer AVPs in a request), kept (a CER's Vendor-Specific-Application-Id) or
        ignored."""
        avp = BY_CODE.get((code, vendor))
        if avp is None:
            if flags & FLAG_M:
                raise ProtocolError(
                    RC.AVP_UNSUPPORTED,
                    f"AVP {code} (vendor {vendor}) is not supported",
                    failed_avp=_raw_failed(code, vendor, self.data[vstart:vend]),
                    session_id=_session_id(out),
                )
            return
        name = avp.name
        if top and self.is_request and name in _NOT_IN_REQUEST:
            raise ProtocolError(
                RC.AVP_NOT_ALLOWED,
                f"{name} is not allowed in a request",
                failed_avp={name: self.opaque_value(avp, vstart, vend, depth + 1)},
                session_id=_session_id(out),
            )
        if name == "Vendor-Specific-Application-Id" and top:  # for CER
            out.setdefault(name, []).append(self.opaque_value(avp, vstart, vend, depth + 1))

    def opaque_value(self, avp: AvpDef, start: int, end: int, depth: int) -> Any:
        if avp.type is not AvpType.GROUPED:
            return _scalar(avp, self.data, start, end)
        if depth > self.max_depth:
            raise ProtocolError(RC.INVALID_AVP_BITS, f"groups nested deeper than {self.max_depth}")
        out: dict[str, Any] = {}
        data = self.data
        for code, _flags, vendor, vstart, vend in self._avps(start, end):
            inner = BY_CODE.get((code, vendor))
            if inner is None:  # kept, whatever its M bit: the server stores, never acts on it
                name = f"AVP-{vendor}-{code}"
                value: Any = data[vstart:vend]
            else:
                name = inner.name
                value = self.opaque_value(inner, vstart, vend, depth + 1)
            if name in out:
                held = out[name]
                if isinstance(held, list) and held and held[0] is _MANY:
                    held.append(value)
                else:
                    out[name] = [_MANY, held, value]
            else:
                out[name] = value
        for name, held in out.items():
            if isinstance(held, list) and held and held[0] is _MANY:
                out[name] = held[1:]
        return out


_MANY: Final = object()  # marks the arrays `opaque_value` builds from repeated AVPs


def _session_id(out: dict[str, Any]) -> str | None:
    sid = out.get("Session-Id")
    return sid if isinstance(sid, str) and 0 < len(sid) <= MAX_SESSION_ID_LENGTH else None


def _find_session_id(data: bytes) -> str | None:
    """The Session-Id among the top-level AVPs, as far as they can be read."""
    pos = 0
    while len(data) - pos >= 8:
        code, word = _HDR.unpack_from(data, pos)
        length = word & 0xFFFFFF
        if length < 8 or pos + length > len(data):
            return None
        if code == 263 and not word >> 24 & FLAG_V:
            try:
                return _session_id({"Session-Id": data[pos + 8 : pos + length].decode()})
            except UnicodeDecodeError:
                return None
        pos += (length + 3) & ~3
    return None


def _raw_failed(code: int, vendor: int, value: bytes) -> dict[str, Any]:
    return {f"AVP-{vendor}-{code}": value}


_FIXED, _TIME, _TEXT, _ADDRESS, _RAW = range(5)
_STRUCT_OF: Final = {
    AvpType.UNSIGNED32: _U32,
    AvpType.INTEGER32: _I32,
    AvpType.ENUMERATED: _I32,
    AvpType.UNSIGNED64: _U64,
    AvpType.INTEGER64: _I64,
    AvpType.TIME: _U32,
    AvpType.FLOAT32: struct.Struct(">f"),
    AvpType.FLOAT64: struct.Struct(">d"),
}
_TAG_OF: Final = {
    AvpType.TIME: _TIME,
    AvpType.UTF8_STRING: _TEXT,
    AvpType.DIAMETER_IDENTITY: _TEXT,
    AvpType.DIAMETER_URI: _TEXT,
    AvpType.ADDRESS: _ADDRESS,
}
# AVP name -> (how to read its value, its fixed-size struct or None): one lookup per AVP
_READ: Final[dict[str, tuple[int, struct.Struct | None]]] = {
    name: (
        _TAG_OF.get(avp.type, _FIXED if avp.type in _STRUCT_OF else _RAW),
        _STRUCT_OF.get(avp.type),
    )
    for name, avp in BY_NAME.items()
}


def _scalar(avp: AvpDef, data: bytes, start: int, end: int) -> Any:
    tag, fixed = _READ[avp.name]
    if fixed is not None:
        if end - start != fixed.size:
            raise ProtocolError(
                RC.INVALID_AVP_LENGTH,
                f"{avp.name}: {end - start} bytes for a {avp.type.value}",
                failed_avp={avp.name: data[start:end]},
            )
        value = fixed.unpack_from(data, start)[0]
        if tag == _TIME:
            return value - NTP_TO_UNIX_S + (2**32 if value < _ERA_SPLIT else 0)
        return value
    raw = data[start:end]
    if tag == _TEXT:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"{avp.name}: not UTF-8",
                failed_avp={avp.name: raw},
            ) from None
    if tag == _ADDRESS:
        return _address(avp, raw)
    return raw  # OctetString (and no model field is a float)


def _address(avp: AvpDef, value: bytes) -> str:
    """RFC 6733 4.3.1 Address: 2-byte family (IANA address family numbers), then the address.
    IPv4 (1) and IPv6 (2) as text; E.164 (8) as its ASCII digits."""
    family = int.from_bytes(value[:2], "big") if len(value) >= 2 else -1
    rest = value[2:]
    if family == 1 and len(rest) == 4:
        return str(ipaddress.IPv4Address(rest))
    if family == 2 and len(rest) == 16:
        return str(ipaddress.IPv6Address(rest))
    if family == 8 and rest.isascii() and rest.isdigit():
        return rest.decode("ascii")
    raise ProtocolError(
        RC.INVALID_AVP_VALUE,
        f"{avp.name}: not an IPv4, IPv6 or E.164 address",
        failed_avp={avp.name: value},
    )


# --- encoding --------------------------------------------------------------------------------


def encode_avps(message: msgspec.Struct) -> bytes:
    """The binary body of a message (or the AVPs of a grouped value)."""
    out = bytearray()
    _encode_struct(message, out)
    return bytes(out)


def _encode_struct(value: msgspec.Struct, out: bytearray) -> None:
    for field in _schema(type(value)).order:
        item = getattr(value, field.attr)
        if item is None:
            continue
        if field.multi:
            for one in item:
                _encode_field(field, one, out)
        else:
            _encode_field(field, item, out)


def _encode_field(field: _Field, value: Any, out: bytearray) -> None:
    data: Any
    if field.group is not None:
        data = bytearray()
        _encode_struct(value, data)
    elif field.opaque:
        data = bytearray()
        _encode_opaque(value, data, 0)
    else:
        tag = field.tag
        try:
            if tag == _FIXED:
                if field.capped and value > 0xFFFF_FFFF:
                    value = 0xFFFF_FFFF
                data = field.fixed.pack(value)  # type: ignore[union-attr]
            elif tag == _TEXT:
                data = value.encode()
            elif tag == _TIME:
                data = _U32.pack((value + NTP_TO_UNIX_S) % 2**32)
            elif tag == _ADDRESS:
                data = _encode_address(value)
            else:
                data = value
        except (struct.error, UnicodeEncodeError, AttributeError, TypeError):
            data = None
        if not isinstance(data, bytes):
            raise LocalProtocolError(
                f"{field.avp.name}: {value!r} does not fit {field.avp.type.value}"
            )
    length = field.head + len(data)
    if length > 0xFFFFFF:
        raise LocalProtocolError(f"{field.avp.name} of {length} bytes")
    out += _HDR.pack(field.avp.code, field.flag_word | length)
    if field.vendor_bytes:
        out += field.vendor_bytes
    out += data
    pad = -length % 4
    if pad:
        out += _PADDING[pad]


_PADDING: Final = (b"", b"\0", b"\0\0", b"\0\0\0")


def _put(code: int, vendor: int, mandatory: bool, data: bytes, out: bytearray) -> None:
    flags = (FLAG_M if mandatory else 0) | (FLAG_V if vendor else 0)
    length = (12 if vendor else 8) + len(data)
    if length > 0xFFFFFF:
        raise LocalProtocolError(f"AVP {code} of {length} bytes")
    out += _HDR.pack(code, (flags << 24) | length)
    if vendor:
        out += _U32.pack(vendor)
    out += data
    out += b"\0" * (-length % 4)


def _encode_opaque(value: Any, out: bytearray, depth: int) -> None:
    """A map keyed by AVP name (Service-Information, Failed-AVP) as AVPs, leniently."""
    if not isinstance(value, dict) or depth > MAX_ANSWER_DEPTH:
        return
    for name, item in value.items():
        if not isinstance(name, str):
            continue
        for one in item if isinstance(item, list) else [item]:
            raw = _RAW_NAME.match(name)
            if raw is not None:
                code, vendor = int(raw.group("code")), int(raw.group("vendor"))
                if isinstance(one, bytes) and code <= 0xFFFF_FFFF and vendor <= 0xFFFF_FFFF:
                    _put(code, vendor, False, one, out)
                continue
            avp = BY_NAME.get(name)
            if avp is None:
                continue
            if avp.type is AvpType.GROUPED:
                if one is None or isinstance(one, dict):
                    data = bytearray()
                    _encode_opaque(one, data, depth + 1)
                    _put(avp.code, avp.vendor_id, avp.mandatory, bytes(data), out)
                continue
            encoded = _example(avp) if one is None else _encode_scalar(avp, one)
            if encoded is not None:
                _put(avp.code, avp.vendor_id, avp.mandatory, encoded, out)


def _example(avp: AvpDef) -> bytes:
    """The value of a missing AVP in Failed-AVP (RFC 6733 7.5: "an example of the missing
    AVP"): zeros of its size, or empty."""
    if avp.type is AvpType.ADDRESS:
        return b"\0\x01\0\0\0\0"
    fixed = _STRUCT_OF.get(avp.type)
    return b"\0" * (fixed.size if fixed is not None else 0)


def _encode_scalar(avp: AvpDef, value: Any) -> bytes | None:
    """The value's bytes, or None if it does not fit the AVP's type."""
    kind = avp.type
    if isinstance(value, bool):
        value = int(value)
    try:
        if kind is AvpType.UNSIGNED32 and isinstance(value, int):
            return _U32.pack(value)
        if (kind is AvpType.INTEGER32 or kind is AvpType.ENUMERATED) and isinstance(value, int):
            return _I32.pack(value)
        if kind is AvpType.UNSIGNED64 and isinstance(value, int):
            return _U64.pack(value)
        if kind is AvpType.INTEGER64 and isinstance(value, int):
            return _I64.pack(value)
        if kind is AvpType.TIME and isinstance(value, int):
            return _U32.pack((value + NTP_TO_UNIX_S) % 2**32)
    except struct.error:
        return None
    if kind in (AvpType.UTF8_STRING, AvpType.DIAMETER_IDENTITY, AvpType.DIAMETER_URI):
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate
                return None
        return value if isinstance(value, bytes) else None
    if kind is AvpType.ADDRESS:
        return _encode_address(value)
    if kind is AvpType.OCTET_STRING:
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError:
                return None
        return value if isinstance(value, bytes) else None
    return None


def _encode_address(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        if value.isascii() and value.isdigit():
            return b"\0\x08" + value.encode("ascii")
        return None
    return (b"\0\x01" if ip.version == 4 else b"\0\x02") + ip.packed


# --- frames ----------------------------------------------------------------------------------


def decode_any(version: int, command_code: int, is_request: bool, body: bytes) -> Message:
    """Decode a body in the encoding its version byte names."""
    if version == VERSION_DIAMETER:
        return decode_avps(command_code, is_request, body)
    return decode_body(command_code, is_request, body)


def encode_frame_as(
    version: int,
    message: Message,
    *,
    flags: int,
    command_code: int,
    application_id: int,
    hop_by_hop: int,
    end_to_end: int,
) -> bytes:
    """Header + body in the encoding `version` names (0x4D MessagePack, 0x01 binary AVPs)."""
    if bool(flags & FLAG_R) != message.IS_REQUEST:
        raise LocalProtocolError(f"R flag does not match {type(message).__name__}")
    if version == VERSION:
        body = msgspec.msgpack.encode(message)
    elif version == VERSION_DIAMETER:
        body = encode_avps(message)
    else:
        raise LocalProtocolError(f"no encoding with version byte {version:#x}")
    return frame_body(
        body,
        version=version,
        flags=flags,
        command_code=command_code,
        application_id=application_id,
        hop_by_hop=hop_by_hop,
        end_to_end=end_to_end,
    )


def transcode_answer(command_code: int, body: bytes) -> bytes:
    """A MessagePack answer body (as the charging core encodes and caches it) as binary AVPs."""
    try:
        message = decode_body(command_code, False, body)
    except ProtocolError:  # an error answer of a command whose answer type wants more
        message = msgspec.msgpack.decode(body, type=ErrorAnswer)
    return encode_avps(message)


__all__ = [
    "NTP_TO_UNIX_S",
    "decode_any",
    "decode_avps",
    "encode_avps",
    "encode_frame_as",
    "transcode_answer",
]
