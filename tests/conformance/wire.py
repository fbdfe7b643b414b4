"""A wire-level client written from WIRE.md alone, for black-box conformance tests.

It deliberately uses none of the server's message model or codec: frames are packed with
`struct`, bodies are plain dicts keyed by AVP name encoded with msgspec's untyped MessagePack
encoder (version 0x4D) or, for a peer speaking standard Diameter (version 0x01, WIRE.md 1.1),
as RFC 6733 section 4 AVPs written here with `struct` from the name/code/vendor/type table of
`protocol/dictionary.py` (the one piece of the server it reads: data, not code). Every answer
the server sends is checked against the rules every answer must follow (WIRE.md sections 1 and
3) before a test sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import random
import re
import struct
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import pytest

from protocol.dictionary import BY_CODE, BY_NAME, AvpType

# --- constants, from WIRE.md ----------------------------------------------------------------

VERSION: Final = 0x4D
VERSION_BINARY: Final = 0x01  # standard Diameter bodies (WIRE.md 1.1)
MSGPACK: Final = "msgpack"
BINARY: Final = "binary"
ENCODINGS: Final = (MSGPACK, BINARY)
# a test (or one case of it) that sends MessagePack on purpose: raw bytes, or a value with no
# standard Diameter form (conftest.py runs it for MSGPACK only)
MSGPACK_ONLY: Final = pytest.mark.msgpack_only
BINARY_ONLY: Final = pytest.mark.binary_only  # raw binary bodies: the counterparts of those
VERSION_OF: Final = {MSGPACK: VERSION, BINARY: VERSION_BINARY}
HEADER_LEN: Final = 20
MAX_LENGTH: Final = 65_536  # the default receive limit (section 1)

FLAG_R: Final = 0x80
FLAG_P: Final = 0x40
FLAG_E: Final = 0x20
FLAG_T: Final = 0x10
RESERVED_BITS: Final = 0x0F

CER: Final = 257
RAR: Final = 258
CCR: Final = 272
ASR: Final = 274
DWR: Final = 280
DPR: Final = 282
AMR: Final = 9001

APP_BASE: Final = 0
APP_CC: Final = 4
APP_ADMIN: Final = 0x4F435341  # "OCSA"
APP_RELAY: Final = 0xFFFFFFFF

# result codes
SUCCESS: Final = 2001
COMMAND_UNSUPPORTED: Final = 3001
TOO_BUSY: Final = 3004
APPLICATION_UNSUPPORTED: Final = 3007
INVALID_HDR_BITS: Final = 3008
INVALID_AVP_BITS: Final = 3009
UNKNOWN_PEER: Final = 3010
END_USER_SERVICE_DENIED: Final = 4010
CREDIT_CONTROL_NOT_APPLICABLE: Final = 4011
CREDIT_LIMIT_REACHED: Final = 4012
UNKNOWN_SESSION_ID: Final = 5002
INVALID_AVP_VALUE: Final = 5004
MISSING_AVP: Final = 5005
NO_COMMON_APPLICATION: Final = 5010
UNABLE_TO_COMPLY: Final = 5012
INVALID_MESSAGE_LENGTH: Final = 5015
USER_UNKNOWN: Final = 5030
RATING_FAILED: Final = 5031

# CC-Request-Type
INITIAL: Final = 1
UPDATE: Final = 2
TERMINATION: Final = 3
EVENT: Final = 4

# Requested-Action
DIRECT_DEBITING: Final = 0
REFUND_ACCOUNT: Final = 1
CHECK_BALANCE: Final = 2
PRICE_ENQUIRY: Final = 3

# Reporting-Reason
THRESHOLD: Final = 0
QHT: Final = 1
FINAL: Final = 2
QUOTA_EXHAUSTED: Final = 3
VALIDITY_TIME: Final = 4
FORCED_REAUTHORISATION: Final = 7
LINKED_USAGE: Final = 100

# Account-Operation / Account-Status
CREATE: Final = 1
GET: Final = 2
CREDIT: Final = 3
DEBIT: Final = 4
SET_STATUS: Final = 5
ACTIVE: Final = 0
SUSPENDED: Final = 1
BARRED: Final = 2

# Service-Context-Id of the demo catalog (docs/catalog.md)
DATA: Final = "32251@3gpp.org"
SMS: Final = "32274@3gpp.org"
VOICE: Final = "32260@3gpp.org"

REALM: Final = "conformance.test.local"
MICRO: Final = 1_000_000  # micro-units per currency unit (section 8)

# what a 3xxx answer may carry (section 3)
ERROR_ANSWER_KEYS: Final = frozenset(
    {"Session-Id", "Origin-Host", "Origin-Realm", "Result-Code", "Error-Message", "Failed-AVP"}
)

_HEADER: Final = struct.Struct(">IIIII")
_ENCODER: Final = msgspec.msgpack.Encoder()

# End-to-End-Ids: unique for the whole test run, so never a false duplicate (section 6)
_E2E: Final = itertools.count(random.randrange(1 << 24, 1 << 30))
_HBH: Final = itertools.count(random.randrange(1 << 24, 1 << 30))
_MSISDN: Final = itertools.count(random.randrange(10**9, 9 * 10**9, 1000))


def next_e2e() -> int:
    return next(_E2E) & 0xFFFFFFFF


def uid() -> str:
    return uuid.uuid4().hex[:12]


def new_msisdn() -> str:
    return f"49{next(_MSISDN)}"


def new_host(prefix: str = "peer") -> str:
    return f"{prefix}-{uid()}.{REALM}"


# --- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    length: int
    flags: int
    code: int
    app: int
    hbh: int
    e2e: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_R)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_E)


def parse_header(data: bytes | bytearray) -> Header:
    w0, w1, app, hbh, e2e = _HEADER.unpack_from(data, 0)
    return Header(
        version=w0 >> 24,
        length=w0 & 0xFFFFFF,
        flags=w1 >> 24,
        code=w1 & 0xFFFFFF,
        app=app,
        hbh=hbh,
        e2e=e2e,
    )


def encode(body: dict[str, Any], version: int = VERSION) -> bytes:
    if version == VERSION_BINARY:
        return encode_avps(body)
    return _ENCODER.encode(body)


# --- standard Diameter bodies (RFC 6733 section 4), for peers of encoding BINARY -------------

NTP_TO_UNIX_S: Final = 2_208_988_800  # RFC 6733 4.3.1 Time: seconds since 1900 (NTP)
AVP_FLAG_V: Final = 0x80
AVP_FLAG_M: Final = 0x40

# WIRE.md arrays (`*[AVP]`): a binary body repeats the AVP, and one occurrence is still an array
_ARRAYS: Final = frozenset(
    {
        "Subscription-Id",
        "Multiple-Services-Credit-Control",
        "Used-Service-Unit",
        "Filter-Id",
        "Linked-Rating-Group",
        "Proxy-Info",
    }
)
_TOP_ARRAYS: Final = {  # arrays at the top of one command's body only
    257: frozenset(
        {
            "Auth-Application-Id",
            "Host-IP-Address",
            "Vendor-Specific-Application-Id",
            "Supported-Vendor-Id",
            "Acct-Application-Id",
        }
    ),
    258: frozenset({"Rating-Group"}),  # RAR's list; one Rating-Group per MSCC elsewhere
}
_INT_FORMAT: Final = {
    AvpType.UNSIGNED32: ">I",
    AvpType.INTEGER32: ">i",
    AvpType.ENUMERATED: ">i",
    AvpType.UNSIGNED64: ">Q",
    AvpType.INTEGER64: ">q",
    AvpType.TIME: ">I",
}
_TEXT_TYPES: Final = frozenset(
    {AvpType.UTF8_STRING, AvpType.DIAMETER_IDENTITY, AvpType.DIAMETER_URI}
)


class NotInBinary(Exception):
    """A MessagePack body that has no standard Diameter form (a key no AVP has, a value of the
    wrong type): tests that send one on purpose are MessagePack-only."""


def avp_bytes(code: int, value: bytes, *, vendor: int = 0, flags: int = AVP_FLAG_M) -> bytes:
    """One AVP with its padding (RFC 6733 4.1)."""
    flags = (flags | AVP_FLAG_V) if vendor else flags
    head = struct.pack(">II", code, (flags << 24) | ((12 if vendor else 8) + len(value)))
    if vendor:
        head += struct.pack(">I", vendor)
    return head + value + b"\0" * (-len(value) % 4)


def _avp_value(name: str, kind: AvpType, value: Any) -> bytes:
    if kind is AvpType.GROUPED and isinstance(value, dict):
        return encode_avps(value)
    if kind in _INT_FORMAT and isinstance(value, int):
        if kind is AvpType.TIME:  # RFC 6733 4.3.1: NTP seconds, the era after 2036 wraps
            if not 2**31 <= value + NTP_TO_UNIX_S < 2**32 + 2**31:
                raise NotInBinary(f"{name}: {value!r} is outside the Time of RFC 6733")
            value = (value + NTP_TO_UNIX_S) % 2**32
        try:
            return struct.pack(_INT_FORMAT[kind], value)
        except struct.error:
            raise NotInBinary(f"{name}: {value!r} does not fit {kind.value}") from None
    if kind in _TEXT_TYPES and isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError:
            raise NotInBinary(f"{name}: {value!r} is not UTF-8") from None
    if kind is AvpType.ADDRESS and isinstance(value, str):
        ip = ipaddress.ip_address(value)
        return (b"\0\x01" if ip.version == 4 else b"\0\x02") + ip.packed
    if kind is AvpType.OCTET_STRING and isinstance(value, bytes | str):
        return value if isinstance(value, bytes) else value.encode()
    raise NotInBinary(f"{name}: {value!r} has no {kind.value} form")


def raw_avp_name(code: int, vendor: int = 0) -> str:
    """The key of an AVP the dictionary does not know (sent without the M bit; the value is
    its bytes, or a str as UTF-8), as the answers name one."""
    return f"AVP-{vendor}-{code}"


def encode_avps(body: dict[str, Any]) -> bytes:
    """A body (or a group) keyed by AVP name as AVPs; a list is the AVP repeated."""
    out = bytearray()
    for name, value in body.items():
        avp = BY_NAME.get(name)
        raw = re.fullmatch(r"AVP-(\d+)-(\d+)", name)
        if avp is None and raw is not None:
            data = value if isinstance(value, bytes) else str(value).encode()
            vendor, code = int(raw.group(1)), int(raw.group(2))
            out += avp_bytes(code, data, vendor=vendor, flags=0)
            continue
        if avp is None:
            raise NotInBinary(f"no AVP is named {name!r}")
        flags = AVP_FLAG_M if avp.mandatory else 0
        for one in value if isinstance(value, list) else [value]:
            data = _avp_value(name, avp.type, one)
            out += avp_bytes(avp.code, data, vendor=avp.vendor_id, flags=flags)
    return bytes(out)


def decode_avps(data: bytes, command: int = 0, *, as_received: bool = False) -> dict[str, Any]:
    """Standard Diameter AVPs as a dict keyed by AVP name, as a MessagePack body would be:
    WIRE.md arrays as lists, Time as Unix seconds, Address as text, an AVP not in the
    dictionary as `AVP-<vendor>-<code>` with its bytes. `command` is the Command-Code of a
    whole body (0 for a group). Inside `Failed-AVP` (`as_received`) a value its type cannot
    hold is its bytes: RFC 6733 7.5 sends back the offending AVP as it was received."""
    top_arrays = _TOP_ARRAYS.get(command, frozenset())
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, f"RFC 6733 4.1: a truncated AVP header at {pos}"
        code, word = struct.unpack_from(">II", data, pos)
        flags, length = word >> 24, word & 0xFFFFFF
        head = 12 if flags & AVP_FLAG_V else 8
        vendor = struct.unpack_from(">I", data, pos + 8)[0] if head == 12 else 0
        assert flags & 0x1F == 0, f"RFC 6733 4.1: reserved AVP flag bits in AVP {code}"
        assert head <= length and pos + length <= len(data), f"AVP {code}: length {length}"
        raw = data[pos + head : pos + length]
        pos += (length + 3) & ~3
        avp = BY_CODE.get((code, vendor))
        value: Any
        if avp is None:
            name, value = f"AVP-{vendor}-{code}", raw
        else:
            name = avp.name
            value = _decode_value(avp.type, raw, as_received or name == "Failed-AVP")
        if name in out:
            held = out[name]
            out[name] = [*held, value] if isinstance(held, list) else [held, value]
        elif name in _ARRAYS or name in top_arrays:
            out[name] = [value]
        else:
            out[name] = value
    return out


def _decode_value(kind: AvpType, raw: bytes, as_received: bool) -> Any:
    try:
        return _value(kind, raw, as_received)
    except (AssertionError, ValueError, struct.error):  # UnicodeDecodeError is a ValueError
        if as_received:
            return raw
        raise


def _value(kind: AvpType, raw: bytes, as_received: bool) -> Any:
    if kind is AvpType.GROUPED:
        return decode_avps(raw, as_received=as_received)
    if kind in _INT_FORMAT:
        (value,) = struct.unpack(_INT_FORMAT[kind], raw)
        if kind is AvpType.TIME:
            value += (2**32 if value < 2**31 else 0) - NTP_TO_UNIX_S
        return value
    if kind in _TEXT_TYPES:
        return raw.decode()
    if kind is AvpType.ADDRESS:
        family = int.from_bytes(raw[:2], "big")
        return str(ipaddress.ip_address(raw[2:])) if family in (1, 2) else raw[2:].decode()
    return raw


def frame(
    code: int,
    app: int,
    body: dict[str, Any] | bytes,
    *,
    flags: int = FLAG_R,
    hbh: int = 0,
    e2e: int = 0,
    version: int = VERSION,
    length: int | None = None,
) -> bytes:
    """One whole message; `length`/`version` may be forced to wrong values."""
    data = body if isinstance(body, bytes) else encode(body, version)
    total = HEADER_LEN + len(data) if length is None else length
    head = _HEADER.pack((version << 24) | (total & 0xFFFFFF), (flags << 24) | code, app, hbh, e2e)
    return head + data


@dataclass(frozen=True, slots=True)
class Msg:
    """A message as received: header, decoded body, and the body bytes."""

    header: Header
    body: dict[str, Any]
    raw: bytes

    @property
    def result_code(self) -> int:
        rc = self.body["Result-Code"]
        assert isinstance(rc, int)
        return rc


def decode_body(version: int, raw: bytes, command: int) -> Any:
    if version == VERSION_BINARY:
        return decode_avps(raw, command)
    return msgspec.msgpack.decode(raw)


def _missing(failed: Any) -> Any:
    """RFC 6733 7.5: the Failed-AVP of a 5005 holds "an example of the missing AVP" (a zero or
    empty value, or its group down to the missing AVP): the missing AVP as WIRE.md writes it,
    `{name: nil}`."""
    if isinstance(failed, dict) and failed:
        return {name: _missing(value) for name, value in failed.items()}
    if isinstance(failed, list):
        items = [_missing(value) for value in failed]
        return None if all(item is None for item in items) else items
    return None


def decode_message(data: bytes) -> Msg:
    header = parse_header(data)
    raw = data[HEADER_LEN:]
    body = decode_body(header.version, raw, header.code)
    if header.version == VERSION_BINARY and "Session-Id" in body:
        first = struct.unpack_from(">I", raw)[0]
        assert first == 263, "RFC 6733 3.2, 8.8: < Session-Id > is the first AVP of the message"
    if header.version == VERSION_BINARY and body.get("Result-Code") == MISSING_AVP:
        failed = body.get("Failed-AVP")
        if isinstance(failed, dict):
            body["Failed-AVP"] = _missing(failed)
    assert isinstance(body, dict), f"WIRE.md §2: a body is one map, got {body!r}"
    return Msg(header, body, raw)


def check_answer(
    request: Header, request_body: Any, answer: Msg, *, error_keys: bool = True
) -> None:
    """WIRE.md §1 and §3: what every answer must satisfy, whatever the command
    (`error_keys=False` skips only the rule on which keys a 3xxx answer may carry)."""
    h, body = answer.header, answer.body
    assert h.version == request.version, "WIRE.md 1.1: an answer in the request's encoding"
    assert not h.flags & FLAG_R, "§3: an answer has R clear"
    assert h.flags & RESERVED_BITS == 0, "§1: reserved flag bits are zero"
    assert (h.code, h.app) == (request.code, request.app), "§3: Command-Code, Application-Id"
    assert h.hbh == request.hbh, "§1: Hop-by-Hop-Id copied into the answer"
    assert h.e2e == request.e2e, "§1: End-to-End-Id copied into the answer"
    assert h.flags & FLAG_P == request.flags & FLAG_P, "P bit copied (docs/protocol.md)"
    rc = body.get("Result-Code")
    assert isinstance(rc, int), f"§3: every answer carries Result-Code: {body!r}"
    assert isinstance(body.get("Origin-Host"), str), "§3: every answer carries Origin-Host"
    assert isinstance(body.get("Origin-Realm"), str), "§3: every answer carries Origin-Realm"
    protocol_error = 3000 <= rc < 4000
    assert bool(h.flags & FLAG_E) == protocol_error, f"§2/§3: E bit exactly for 3xxx ({rc})"
    if protocol_error and error_keys:
        assert set(body) <= ERROR_ANSWER_KEYS, f"§3: a 3xxx answer carries only ...: {body!r}"
    sid = request_body.get("Session-Id") if isinstance(request_body, dict) else None
    if request.app == APP_CC and isinstance(sid, str):
        if protocol_error:
            assert body.get("Session-Id", sid) == sid
        else:
            assert body.get("Session-Id") == sid, "§3: answers in application 4 echo Session-Id"


# --- a peer ---------------------------------------------------------------------------------


def cer_body(
    origin_host: str, apps: tuple[int, ...] = (APP_CC, APP_ADMIN), **extra: Any
) -> dict[str, Any]:
    return {
        "Origin-Host": origin_host,
        "Origin-Realm": REALM,
        "Host-IP-Address": ["127.0.0.1"],
        "Vendor-Id": 10415,
        "Product-Name": "conformance-suite",
        "Auth-Application-Id": list(apps),
        **extra,
    }


@dataclass(eq=False)
class Peer:
    """One TCP connection to the server, speaking raw frames.

    Answers are matched by Hop-by-Hop-Id and checked with `check_answer`. Requests from the
    server are kept in `inbox` (DWR and DPR are answered automatically unless turned off), and
    every request received is also recorded in `requests_seen`.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    origin_host: str
    encoding: str = MSGPACK  # of the requests this peer writes (and so of the RAR/ASR it gets)
    auto_dwa: bool = True
    auto_dpa: bool = True
    cea: Msg | None = None
    inbox: deque[Msg] = field(default_factory=deque)
    requests_seen: list[Msg] = field(default_factory=list)
    answers: dict[int, list[Msg]] = field(default_factory=dict)
    sent: dict[int, tuple[Header, Any]] = field(default_factory=dict)
    eof: bool = False
    _buf: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(cls, port: int, origin_host: str | None = None, **kw: Any) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, origin_host or new_host(), **kw)

    @classmethod
    async def connect(
        cls,
        port: int,
        origin_host: str | None = None,
        *,
        apps: tuple[int, ...] = (APP_CC, APP_ADMIN),
        **kw: Any,
    ) -> Peer:
        """Open and exchange capabilities (§4); fails unless the CEA says 2001."""
        peer = await cls.open(port, origin_host, **kw)
        cea = await peer.request(CER, APP_BASE, cer_body(peer.origin_host, apps), flags=FLAG_R)
        assert cea.result_code == SUCCESS, cea.body
        peer.cea = cea
        return peer

    # --- output ---------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_request(
        self,
        code: int,
        app: int,
        body: dict[str, Any] | bytes,
        *,
        flags: int | None = None,
        hbh: int | None = None,
        e2e: int | None = None,
    ) -> Header:
        """Send a request without waiting; returns its header (to match the answer)."""
        data = self.request_frame(code, app, body, flags=flags, hbh=hbh, e2e=e2e)
        await self.send(data)
        return parse_header(data)

    async def send_frame(self, data: bytes) -> Header:
        """Send a whole request frame as given (e.g. a spec vector), ready for `answer_to`."""
        header = parse_header(data)
        self.sent[header.hbh] = (header, data[HEADER_LEN:])
        await self.send(data)
        return header

    def request_frame(
        self,
        code: int,
        app: int,
        body: dict[str, Any] | bytes,
        *,
        flags: int | None = None,
        hbh: int | None = None,
        e2e: int | None = None,
    ) -> bytes:
        """The frame of a request, remembered so that its answer can be checked."""
        if flags is None:
            flags = FLAG_R | (FLAG_P if app == APP_CC else 0)
        hbh = next(_HBH) & 0xFFFFFFFF if hbh is None else hbh
        e2e = next_e2e() if e2e is None else e2e
        data = frame(code, app, body, flags=flags, hbh=hbh, e2e=e2e, version=self.version)
        self.sent[hbh] = (parse_header(data), body)
        return data

    async def request(
        self,
        code: int,
        app: int,
        body: dict[str, Any] | bytes,
        *,
        flags: int | None = None,
        hbh: int | None = None,
        e2e: int | None = None,
        timeout: float = 5.0,
        error_keys: bool = True,
    ) -> Msg:
        """Send a request and return its (checked) answer."""
        header = await self.send_request(code, app, body, flags=flags, hbh=hbh, e2e=e2e)
        return await self.answer_to(header.hbh, timeout, error_keys=error_keys)

    @property
    def version(self) -> int:
        return VERSION_OF[self.encoding]

    async def answer(self, request: Msg, body: dict[str, Any], *, error: bool = False) -> None:
        """Answer a request the server sent (in its encoding)."""
        h = request.header
        flags = (h.flags & FLAG_P) | (FLAG_E if error else 0)
        data = frame(h.code, h.app, body, flags=flags, hbh=h.hbh, e2e=h.e2e, version=h.version)
        await self.send(data)

    def base_answer(self, result_code: int = SUCCESS, **extra: Any) -> dict[str, Any]:
        return {
            "Result-Code": result_code,
            "Origin-Host": self.origin_host,
            "Origin-Realm": REALM,
            **extra,
        }

    # --- input ----------------------------------------------------------------------------

    async def read_message(self, timeout: float = 5.0) -> Msg:
        """The next whole message; EOFError when the server closed."""
        async with asyncio.timeout(timeout):
            while True:
                if len(self._buf) >= 4:
                    version = self._buf[0]
                    assert version in (VERSION, VERSION_BINARY), f"§1: version byte {version:#x}"
                    length = int.from_bytes(self._buf[1:4], "big")
                    assert HEADER_LEN <= length <= MAX_LENGTH, f"§1: bad length {length}"
                    if len(self._buf) >= length:
                        data = bytes(self._buf[:length])
                        del self._buf[:length]
                        return decode_message(data)
                chunk = await self.reader.read(65536)
                if not chunk:
                    self.eof = True
                    raise EOFError("closed by the server")
                self._buf += chunk

    async def _pump(self, timeout: float) -> None:
        msg = await self.read_message(timeout)
        h = msg.header
        if h.is_request:
            if self.cea is not None:
                assert h.version == self.version, "WIRE.md 1.1: requests in the CER's encoding"
            self.requests_seen.append(msg)
            automatic = (h.code == DWR and self.auto_dwa) or (h.code == DPR and self.auto_dpa)
            if automatic:
                await self.answer(msg, self.base_answer())
            else:
                self.inbox.append(msg)
            return
        self.answers.setdefault(h.hbh, []).append(msg)

    async def answer_to(self, hbh: int, timeout: float = 5.0, *, error_keys: bool = True) -> Msg:
        """The answer to the request sent with `hbh`, checked against §1/§3."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.answers.get(hbh):
            await self._pump(max(deadline - loop.time(), 0.001))
        msg = self.answers[hbh].pop(0)
        header, body = self.sent[hbh]
        request_body: Any = body
        if isinstance(body, bytes):
            with contextlib.suppress(Exception):
                request_body = decode_body(header.version, body, header.code)
        check_answer(header, request_body, msg, error_keys=error_keys)
        return msg

    async def expect_request(self, code: int, timeout: float = 5.0) -> Msg:
        """The next request with `code` the server sends (other requests stay in the inbox)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for msg in self.inbox:
                if msg.header.code == code:
                    self.inbox.remove(msg)
                    return msg
            await self._pump(max(deadline - loop.time(), 0.001))

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server closes (whatever it sends before is still dispatched)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                await self._pump(max(deadline - loop.time(), 0.001))
        except EOFError:
            return True
        except (TimeoutError, ConnectionError):
            return False

    async def is_open(self) -> bool:
        """Whether the connection still answers a DWR."""
        try:
            answer = await self.request(DWR, APP_BASE, self.dwr_body(), timeout=3.0)
        except (EOFError, ConnectionError, TimeoutError):
            return False
        return answer.result_code == SUCCESS

    def dwr_body(self) -> dict[str, Any]:
        return {"Origin-Host": self.origin_host, "Origin-Realm": REALM}

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


# --- credit control and administration helpers ---------------------------------------------


def avp(name: str, value: Any) -> dict[str, Any]:
    """`{name: value}`, to pass an AVP whose name is not an identifier as a keyword."""
    return {name: value}


def subscription(msisdn: str) -> list[dict[str, Any]]:
    return [{"Subscription-Id-Type": 0, "Subscription-Id-Data": msisdn}]


def ccr_body(
    peer: Peer,
    session_id: str,
    request_type: int,
    number: int,
    *,
    service: str = SMS,
    msisdn: str | None = None,
    mscc: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Session-Id": session_id,
        "Origin-Host": peer.origin_host,
        "Origin-Realm": REALM,
        "Destination-Realm": "test.local",
        "Auth-Application-Id": 4,
        "Service-Context-Id": service,
        "CC-Request-Type": request_type,
        "CC-Request-Number": number,
    }
    if msisdn is not None:
        body["Subscription-Id"] = subscription(msisdn)
    if mscc is not None:
        body["Multiple-Services-Credit-Control"] = mscc
    body.update(extra)
    return body


def new_session_id(peer: Peer) -> str:
    return f"{peer.origin_host};{uid()};1"


def mscc_of(answer: Msg, rating_group: int) -> dict[str, Any]:
    """The answer's MSCC entry for `rating_group` (there must be exactly one)."""
    entries = answer.body.get("Multiple-Services-Credit-Control")
    assert isinstance(entries, list), f"§2: MSCC is an array: {answer.body!r}"
    found = [m for m in entries if m.get("Rating-Group") == rating_group]
    assert len(found) == 1, entries
    entry = found[0]
    assert isinstance(entry, dict)
    return entry


@dataclass(eq=False)
class CcSession:
    """A credit-control session driven by hand, numbering its requests (§5.1)."""

    peer: Peer
    msisdn: str
    service: str = SMS
    session_id: str = ""
    number: int = -1

    def __post_init__(self) -> None:
        if not self.session_id:
            self.session_id = new_session_id(self.peer)

    def body(self, request_type: int, number: int, **kw: Any) -> dict[str, Any]:
        return ccr_body(
            self.peer, self.session_id, request_type, number, service=self.service, **kw
        )

    async def initial(self, mscc: list[dict[str, Any]] | None = None, **kw: Any) -> Msg:
        self.number = 0
        body = self.body(INITIAL, 0, msisdn=self.msisdn, mscc=mscc, **kw)
        return await self.peer.request(CCR, APP_CC, body)

    async def update(self, mscc: list[dict[str, Any]] | None = None, **kw: Any) -> Msg:
        self.number += 1
        return await self.peer.request(CCR, APP_CC, self.body(UPDATE, self.number, mscc=mscc, **kw))

    async def terminate(self, mscc: list[dict[str, Any]] | None = None, **kw: Any) -> Msg:
        self.number += 1
        body = self.body(TERMINATION, self.number, mscc=mscc, **kw)
        return await self.peer.request(CCR, APP_CC, body)


def amr_body(peer: Peer, operation: int, account_id: str, **avps: Any) -> dict[str, Any]:
    return {
        "Origin-Host": peer.origin_host,
        "Origin-Realm": REALM,
        "Account-Operation": operation,
        "Account-Id": account_id,
        **{k.replace("_", "-"): v for k, v in avps.items()},
    }


async def amr(peer: Peer, operation: int, account_id: str, **avps: Any) -> Msg:
    """An Account-Management request; keyword names are AVP names with `_` for `-`."""
    return await peer.request(AMR, APP_ADMIN, amr_body(peer, operation, account_id, **avps))


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account_id: str
    msisdn: str


async def create_account(
    peer: Peer, balance: int, *, currency: int = 978, **avps: Any
) -> CreatedAccount:
    """CREATE an account with a fresh Account-Id and E.164 number (§8)."""
    account = CreatedAccount(f"acct-{uid()}", new_msisdn())
    answer = await amr(
        peer,
        CREATE,
        account.account_id,
        Subscription_Id=subscription(account.msisdn),
        Amount=balance,
        Currency_Code=currency,
        **avps,
    )
    assert answer.result_code == SUCCESS, answer.body
    return account


async def get_account(peer: Peer, account_id: str) -> dict[str, Any]:
    answer = await amr(peer, GET, account_id)
    assert answer.result_code == SUCCESS, answer.body
    account = answer.body["Account"]
    assert isinstance(account, dict)
    return account


async def balance_of(peer: Peer, account_id: str) -> tuple[int, int]:
    """(Balance, Reserved) of an account (§8)."""
    account = await get_account(peer, account_id)
    return account["Balance"], account["Reserved"]


def units_sms(n: int) -> dict[str, int]:
    return {"CC-Service-Specific-Units": n}


def unit_value(money: dict[str, Any]) -> tuple[int, int]:
    """A `Unit-Value` map as (Value-Digits, Exponent)."""
    digits = money["Value-Digits"]
    exponent = money.get("Exponent", 0)
    assert isinstance(digits, int) and isinstance(exponent, int)
    return digits, exponent


def micro_of(money: dict[str, Any]) -> int:
    """A `Unit-Value` in currency units, as exact micro-units."""
    digits, exponent = unit_value(money)
    scaled: int = digits * MICRO
    ten: int = 10 ** abs(exponent)
    if exponent >= 0:
        return scaled * ten
    q, r = divmod(scaled, ten)
    assert r == 0, f"not a whole number of micro-units: {money!r}"
    return q
