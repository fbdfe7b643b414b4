"""The MessagePack body codec (WIRE.md section 2) and whole-frame encoding.

`decode_body` turns a body into the message type of its command and raises `ProtocolError` with
the Result-Code and Failed-AVP that WIRE.md prescribes:

- not exactly one decodable MessagePack map (or a key that is not a string): 3009;
- a required key missing: 5005, Failed-AVP `{name: nil}`;
- a known key with a value of the wrong type or range: 5004, Failed-AVP `{name: value}`, for a
  key inside a group the path of maps (and arrays) leading to it.

The domains of request values (`protocol.limits`, WIRE.md 1.1 section 2 "Limits") are part of
the types (lengths, ranges) or checked here after decoding (Service-Information, unique
Rating-Groups, a Requested-Service-Unit's octets): outside them, 5004 with Failed-AVP. A body
nested deeper than `MAX_BODY_DEPTH` (`MAX_ANSWER_DEPTH` for an answer) is 3009 before it is
decoded at all: how deep msgspec can go depends on the caller's stack, and a body must decode
the same way live and in replay.

Validation is done by msgspec's typed decoder in one pass; only when it fails is the body
decoded again untyped, to recover the value as received for Failed-AVP.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from protocol.codes import (
    FLAG_E,
    FLAG_P,
    FLAG_R,
    HEADER_LENGTH,
    MAX_ENCODABLE_LENGTH,
    VERSION,
    CCRequestType,
    CommandCode,
)
from protocol.codes import ResultCode as RC
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.header import Header, pack_header
from protocol.limits import (
    MAX_ANSWER_DEPTH,
    MAX_BODY_DEPTH,
    MAX_OPAQUE_DEPTH,
    MAX_OPAQUE_ITEMS,
    MAX_OPAQUE_KEY_LENGTH,
    MAX_OPAQUE_VALUE_LENGTH,
    MAX_SESSION_ID_LENGTH,
    MAX_UNITS,
)
from protocol.messages import ANSWER_TYPES, CCR, REQUEST_TYPES, Answer, Message, Request

_ENCODER: Final = msgspec.msgpack.Encoder()
_UNTYPED: Final = msgspec.msgpack.Decoder()

REQUEST_TYPE_BY_CODE: Final[dict[int, type[Request]]] = {t.COMMAND: t for t in REQUEST_TYPES}
ANSWER_TYPE_BY_CODE: Final[dict[int, type[Answer]]] = {t.COMMAND: t for t in ANSWER_TYPES}
_DECODERS: Final[dict[tuple[int, bool], msgspec.msgpack.Decoder[Any]]] = {
    **{(code, True): msgspec.msgpack.Decoder(t) for code, t in REQUEST_TYPE_BY_CODE.items()},
    **{(code, False): msgspec.msgpack.Decoder(t) for code, t in ANSWER_TYPE_BY_CODE.items()},
}

_MISSING = re.compile(
    r"^Object missing required field `(?P<name>[^`]+)`(?: - at `(?P<at>[^`]+)`)?$"
)
_AT = re.compile(r" - at `(?P<at>[^`]+)`$")
_KEY_AT = re.compile(r" - at `key` in `(?P<at>[^`]+)`$")  # a map key of the wrong type
_PATH_PART = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def decode_body(command_code: int, is_request: bool, body: bytes | memoryview) -> Message:
    """Decode the body of a known command. Raises `ProtocolError` for an invalid body."""
    decoder = _DECODERS[(command_code, is_request)]
    limit = MAX_BODY_DEPTH if is_request else MAX_ANSWER_DEPTH
    if nesting_exceeds(body, limit):
        raise ProtocolError(
            RC.INVALID_AVP_BITS, f"body is not one MessagePack map: nested deeper than {limit}"
        )
    try:
        message: Message = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), body) from None
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: e.g. invalid UTF-8
        raise ProtocolError(
            RC.INVALID_AVP_BITS, f"body is not one MessagePack map: {exc}"
        ) from None
    if type(message) is CCR:
        _check_ccr(message)
    return message


def check_request(message: Message) -> None:
    """The checks a typed decode cannot make (WIRE.md 5.1, limits), for a body decoded by
    another codec than this one."""
    if type(message) is CCR:
        _check_ccr(message)


def _check_ccr(ccr: CCR) -> None:
    """Requirements the dictionary states per request type (WIRE.md 5.1)."""
    kind = ccr.cc_request_type
    if kind in (CCRequestType.INITIAL, CCRequestType.EVENT) and ccr.subscription_id is None:
        raise ProtocolError(
            RC.MISSING_AVP,
            "Subscription-Id is required in INITIAL and EVENT",
            failed_avp={"Subscription-Id": None},
            session_id=ccr.session_id,
        )
    if kind is CCRequestType.EVENT and ccr.requested_action is None:
        raise ProtocolError(
            RC.MISSING_AVP,
            "Requested-Action is required in EVENT",
            failed_avp={"Requested-Action": None},
            session_id=ccr.session_id,
        )
    seen: set[int] = set()
    for mscc in ccr.multiple_services_credit_control or ():
        rg = mscc.rating_group
        if rg in seen:
            raise ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"Rating-Group {rg} in more than one Multiple-Services-Credit-Control",
                failed_avp={"Multiple-Services-Credit-Control": [{"Rating-Group": rg}]},
                session_id=ccr.session_id,
            )
        seen.add(rg)
        asked = mscc.requested_service_unit
        if (
            asked is not None
            and asked.cc_total_octets is None
            and (asked.cc_input_octets or 0) + (asked.cc_output_octets or 0) > MAX_UNITS
        ):
            raise ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"Requested-Service-Unit asks for more than {MAX_UNITS} octets",
                failed_avp={
                    "Multiple-Services-Credit-Control": [
                        {"Requested-Service-Unit": msgspec.to_builtins(asked)}
                    ]
                },
                session_id=ccr.session_id,
            )
    if ccr.service_information is not None:
        problem = _opaque_problem(ccr.service_information, MAX_OPAQUE_DEPTH, [MAX_OPAQUE_ITEMS])
        if problem is not None:
            reason, leaf = problem
            raise ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"Service-Information: {reason}",
                failed_avp={"Service-Information": leaf},
                session_id=ccr.session_id,
            )


_OPAQUE_SCALARS: Final = (str, bytes, int, type(None))  # bool is an int


def _opaque_problem(value: Any, depth: int, budget: list[int]) -> tuple[str, Any] | None:
    """What is wrong with an opaque map (Service-Information), and the Failed-AVP value for it:
    the path of maps (and one-element arrays) to the first offending item, ending in the item
    as received when it is a scalar, else nil. `depth` counts the levels left, `budget` the
    items left. None when the value is in the domain: maps keyed by strings, arrays, and str,
    bin, int, bool or nil values, at most MAX_OPAQUE_DEPTH levels and MAX_OPAQUE_ITEMS items,
    keys of at most MAX_OPAQUE_KEY_LENGTH characters, values of at most
    MAX_OPAQUE_VALUE_LENGTH characters (or bytes)."""
    budget[0] -= 1
    if budget[0] < 0:
        return f"more than {MAX_OPAQUE_ITEMS} items", _leaf(value)
    if isinstance(value, dict | list):
        if depth <= 0:
            return f"nested deeper than {MAX_OPAQUE_DEPTH}", None
        if isinstance(value, list):
            for item in value:
                problem = _opaque_problem(item, depth - 1, budget)
                if problem is not None:
                    return problem[0], [problem[1]]
            return None
        for key, item in value.items():
            if not isinstance(key, str):
                return "a map key that is not a string", None
            if len(key) > MAX_OPAQUE_KEY_LENGTH:
                return f"a key longer than {MAX_OPAQUE_KEY_LENGTH}", None
            problem = _opaque_problem(item, depth - 1, budget)
            if problem is not None:
                return problem[0], {key: problem[1]}
        return None
    if not isinstance(value, _OPAQUE_SCALARS):
        return f"a value of type {type(value).__name__}", None
    if isinstance(value, str | bytes) and len(value) > MAX_OPAQUE_VALUE_LENGTH:
        return f"a value longer than {MAX_OPAQUE_VALUE_LENGTH}", value
    return None


def _leaf(value: Any) -> Any:
    return value if isinstance(value, _OPAQUE_SCALARS) else None


# MessagePack first bytes that open a map or an array: fixmap, fixarray, array16/32, map16/32
_CONTAINER_BYTES: Final = bytes(
    1 if 0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF else 0 for b in range(256)
)
# first byte -> bytes to skip after it for a scalar of fixed size, or the size of its length
# field (negative) for str/bin/ext with a length prefix; containers are handled apart
_FIXED: Final = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,
    0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
_PREFIXED: Final = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin, str
_EXT: Final = {0xC7: 1, 0xC8: 2, 0xC9: 4}  # ext: length, then a type byte


def nesting_exceeds(body: bytes | memoryview, limit: int) -> bool:
    """Whether the MessagePack value in `body` nests maps and arrays more than `limit` levels
    deep (the outermost map is level 1). Reads only headers; a malformed or truncated body is
    left to the decoder (False). Linear in the body's length, and skipped when the body holds
    too few bytes that could open a container to reach the limit."""
    data = bytes(body)
    if data.translate(_CONTAINER_BYTES).count(1) <= limit:
        return False
    size = len(data)
    pos = 0
    open_items: list[int] = []  # items left to read in each open container
    expected = 1  # values left at the top level
    while pos < size:
        while open_items and open_items[-1] == 0:
            open_items.pop()
        if open_items:
            open_items[-1] -= 1
        elif expected:
            expected -= 1
        else:
            return False  # bytes after the value: the decoder refuses them
        b = data[pos]
        pos += 1
        if b <= 0x7F or b >= 0xE0 or b in _FIXED:
            pos += _FIXED.get(b, 0)
            continue
        if 0xA0 <= b <= 0xBF:
            pos += b & 0x1F
            continue
        width = _PREFIXED.get(b) or _EXT.get(b)
        if width is not None:
            length = int.from_bytes(data[pos : pos + width], "big")
            pos += width + length + (1 if b in _EXT else 0)
            continue
        if 0x80 <= b <= 0x9F:
            count = b & 0x0F
            is_map = b <= 0x8F
        elif 0xDC <= b <= 0xDF:
            width = 2 if b in (0xDC, 0xDE) else 4
            count = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            is_map = b >= 0xDE
        else:
            return False  # 0xC1: never used; the decoder refuses it
        if len(open_items) + 1 > limit:
            return True
        open_items.append(2 * count if is_map else count)
    return False


def _validation_error(text: str, body: bytes | memoryview) -> ProtocolError:
    try:
        raw = _UNTYPED.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:
        # the typed pass stopped at a type error before reaching a malformed byte further on
        return ProtocolError(RC.INVALID_AVP_BITS, f"body is not one MessagePack map: {exc}")
    return validation_error(text, raw)


def validation_error(text: str, raw: Any) -> ProtocolError:
    """The `ProtocolError` for msgspec's validation message `text` about the untyped body
    `raw` (a map keyed by AVP name): 5005 or 5004 with Failed-AVP, else 3009. Shared with the
    binary codec (`protocol.avp`), which validates the same maps."""
    session_id = raw.get("Session-Id") if isinstance(raw, dict) else None
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID_LENGTH:
        session_id = None  # not a Session-Id the answer can echo (Failed-AVP may hold it)
    missing = _MISSING.match(text)
    if missing:
        path = _parse_path(missing.group("at") or "$")
        if path is not None:
            name = missing.group("name")
            return ProtocolError(
                RC.MISSING_AVP,
                f"missing AVP {name}",
                failed_avp=_failed_avp(raw, [*path, name], missing_leaf=True),
                session_id=session_id,
            )
    key_at = _KEY_AT.search(text)
    if key_at:
        path = _parse_path(key_at.group("at"))
        if path:  # a map inside the body (an opaque one): its key is not a string
            return ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"invalid AVP value: {text}",
                failed_avp=_failed_avp(raw, path, missing_leaf=True),
                session_id=session_id,
            )
    at = _AT.search(text)
    if at:
        path = _parse_path(at.group("at"))
        if path:  # a key of the body, or inside a group
            return ProtocolError(
                RC.INVALID_AVP_VALUE,
                f"invalid AVP value: {text}",
                failed_avp=_failed_avp(raw, path, missing_leaf=False),
                session_id=session_id,
            )
    # the body itself is not a map, or a key is not a string
    return ProtocolError(RC.INVALID_AVP_BITS, f"body is not a map keyed by AVP name: {text}")


def _parse_path(at: str) -> list[str | int] | None:
    """msgspec's location, e.g. `$.Multiple-Services-Credit-Control[0].Rating-Group`."""
    if not at.startswith("$"):
        return None
    parts: list[str | int] = []
    pos = 1
    while pos < len(at):
        m = _PATH_PART.match(at, pos)
        if m is None:
            return None
        parts.append(m.group("key") if m.group("key") is not None else int(m.group("index")))
        pos = m.end()
    return parts


def _failed_avp(raw: Any, path: list[str | int], *, missing_leaf: bool) -> dict[str, Any]:
    """Rebuild the received value along `path` as nested maps (and one-element arrays)."""
    values: list[Any] = []
    node = raw
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
        values.append(node)
    leaf: Any = None if missing_leaf else values[-1]
    for step in reversed(path):
        leaf = {step: leaf} if isinstance(step, str) else [leaf]
    if not isinstance(leaf, dict):  # path began with an index: cannot happen for a map body
        raise LocalProtocolError(f"bad Failed-AVP path {path!r}")
    return leaf


def encode_body(message: Message) -> bytes:
    return _ENCODER.encode(message)


def encode_frame(
    message: Message,
    *,
    flags: int,
    command_code: int,
    application_id: int,
    hop_by_hop: int,
    end_to_end: int,
) -> bytes:
    """Header + MessagePack body. `flags` must agree with the message being a request."""
    if bool(flags & FLAG_R) != message.IS_REQUEST:
        raise LocalProtocolError(f"R flag does not match {type(message).__name__}")
    return frame_body(
        _ENCODER.encode(message),
        flags=flags,
        command_code=command_code,
        application_id=application_id,
        hop_by_hop=hop_by_hop,
        end_to_end=end_to_end,
    )


def frame_body(
    body: bytes,
    *,
    version: int = VERSION,
    flags: int,
    command_code: int,
    application_id: int,
    hop_by_hop: int,
    end_to_end: int,
) -> bytes:
    """Header + an already encoded body."""
    length = HEADER_LENGTH + len(body)
    if length > MAX_ENCODABLE_LENGTH:
        raise LocalProtocolError(f"message of {length} bytes does not fit the 24-bit length")
    return (
        pack_header(
            version=version,
            length=length,
            flags=flags,
            command_code=command_code,
            application_id=application_id,
            hop_by_hop=hop_by_hop,
            end_to_end=end_to_end,
        )
        + body
    )


def answer_flags(request: Header, *, error: bool) -> int:
    """An answer copies the request's P bit; E is set for 3xxx (RFC 6733 section 3)."""
    return (request.flags & FLAG_P) | (FLAG_E if error else 0)


__all__ = [
    "ANSWER_TYPE_BY_CODE",
    "REQUEST_TYPE_BY_CODE",
    "CommandCode",
    "answer_flags",
    "check_request",
    "decode_body",
    "encode_body",
    "encode_frame",
]
