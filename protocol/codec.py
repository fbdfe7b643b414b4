"""The MessagePack body codec (WIRE.md section 2) and whole-frame encoding.

`decode_body` turns a body into the message type of its command and raises `ProtocolError` with
the Result-Code and Failed-AVP that WIRE.md prescribes:

- not exactly one decodable MessagePack map (or a key that is not a string): 3009;
- a required key missing: 5005, Failed-AVP `{name: nil}`;
- a known key with a value of the wrong type or range: 5004, Failed-AVP `{name: value}`, for a
  key inside a group the path of maps (and arrays) leading to it.

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
    CCRequestType,
    CommandCode,
)
from protocol.codes import ResultCode as RC
from protocol.errors import LocalProtocolError, ProtocolError
from protocol.header import Header, pack_header
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
_PATH_PART = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def decode_body(command_code: int, is_request: bool, body: bytes | memoryview) -> Message:
    """Decode the body of a known command. Raises `ProtocolError` for an invalid body."""
    decoder = _DECODERS[(command_code, is_request)]
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


def _validation_error(text: str, body: bytes | memoryview) -> ProtocolError:
    try:
        raw = _UNTYPED.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:
        # the typed pass stopped at a type error before reaching a malformed byte further on
        return ProtocolError(RC.INVALID_AVP_BITS, f"body is not one MessagePack map: {exc}")
    session_id = raw.get("Session-Id") if isinstance(raw, dict) else None
    if not isinstance(session_id, str):
        session_id = None
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
    "decode_body",
    "encode_body",
    "encode_frame",
]
