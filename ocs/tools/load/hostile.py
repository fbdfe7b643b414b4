"""The hostile neighbour of `ocs bench --hostile`: one misbehaving peer beside the normal load.

`workers.run_load` starts it in a process of its own (`hostile_main`: niced by `NICE`, on the
client CPUs, so that it neither counts in nor starves the workers' CPU), from the start of the
warm-up to the end of the measured window; then it drops every connection and sends back its
counters. It is one peer: every CER it sends says `hostile_origin_host(run_id)`. Its requests
are read-only where it has the choice (EVENT CHECK_BALANCE and PRICE_ENQUIRY for the bench's
subscribers). The kinds, any of them together (`config.HOSTILE_KINDS`):

- `never-reads`: one connection; after the CEA it stops reading (`pause_reading`), so the
  server's answers pile up, and sends requests as fast as its socket takes them. When the server
  closes the connection it opens another.
- `flood`: one connection sending the same requests as fast as its socket takes them, never
  waiting for an answer (it has no outstanding limit of its own); it reads and counts the
  answers. When the server closes the connection it opens another.
- `churn`: opens up to `CHURN_PER_S` connections a second, in turn: one it holds open without
  ever sending CER (up to `CHURN_HELD` at once; when the server closes one, the next turn opens
  another), one it drops at once, one that sends CER and drops once the CEA comes, one that
  sends CER and drops at once, one that sends half a header and drops. It drops with a reset
  (SO_LINGER 0), so that no TIME_WAIT is left on the machine.
- `foreign-ids`: one connection, with its own CER, whose requests use what belongs to the
  normal peers (the load's connections): their Origin-Host with End-to-End-Ids they are about
  to use (to plant an answer they would get) and that they have used (to get their cached
  answers); UPDATE and TERMINATION of their open sessions; INITIAL of Session-Ids they are about
  to open. `FOREIGN_PER_S` requests a second, the four in turn, over the normal peers in turn.
  It aims as a well-informed attacker would: the workers publish each connection's next
  End-to-End-Id and Session-Id counter every 0.1 s (`cursors`), and it estimates their rates.

Its own writes are bounded (`WRITE_HIGH_WATER` bytes queued in its transport, then it waits),
so its memory is. What it counts, per kind (`new_tally`; all are sums, so rounds add up):

- `connections_opened`: TCP connections made (and, over TLS, handshaken);
- `connections_refused`: connections that could not be made (within `CONNECT_TIMEOUT_S`),
  whose CER was not answered 2001, or that the server closed before answering the CER;
- `cer_unanswered`: connections it dropped after waiting `CEA_TIMEOUT_S` for the CEA (a server
  too busy to answer, not a refusal);
- `connections_closed_by_server`: connections with a successful CEA that the server closed;
- `idle_closed_by_server`, `idle_lifetime_ms`: connections without CER that the server closed,
  and how long they had lived, in all;
- `requests_sent`, `bytes_sent`: requests written, and their bytes (what its transport still
  held when a connection ended is not counted);
- `answers_received`, `answers_by_code`: answers read (never-reads reads none), by Result-Code;
- `foreign_answers`: answers whose Session-Id is not the one the request carried (another
  peer's answer);
- `accepted_as_other_peer` (foreign-ids): requests in another peer's name answered 2001;
- `foreign_sessions_changed` (foreign-ids): UPDATE or TERMINATION of another peer's session
  answered 2001;
- `session_ids_taken` (foreign-ids): INITIAL of another peer's Session-Id answered 2001.

`peer_summary` adds the kinds up for the report. A server that defends itself (WIRE.md 1.1
sections 4, 5.3 and 6) answers the foreign-ids requests 5004 or 5002, so that the last four
counters stay at 0 and the normal peers see no `wrong-session` answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import signal
import socket
import struct
import time
from collections.abc import Coroutine, Sequence
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final, cast

import msgspec
import uvloop

from ocs.edge.tls import client_context
from ocs.tools.load.config import HOSTILE_KINDS, LoadConfig
from ocs.tools.load.traffic import (
    DATA_CONTEXT,
    REALM,
    SID_DIGITS,
    SMS_CONTEXT,
    FrameTemplate,
    first_end_to_end,
    msisdn,
    peer_origin_host,
    session_prefix,
)
from protocol.codec import encode_frame
from protocol.codes import HEADER_LENGTH, VERSION, ApplicationId, CommandCode, Flag
from protocol.messages import CER, avp_name

NICE: Final = 10  # below the workers, which share its CPUs
WRITE_HIGH_WATER: Final = 256 * 1024  # bytes queued in its own transport before it waits
STREAM_BATCH: Final = 32  # never-reads and flood write this many requests at a time
RECONNECT_PAUSE_S: Final = 0.1
CONNECT_TIMEOUT_S: Final = 2.0
CEA_TIMEOUT_S: Final = 2.0
CHURN_PER_S: Final = 200
CHURN_HELD: Final = 128
CHURN_CONCURRENT: Final = 64  # connections of churn's other turns alive at once
FOREIGN_PER_S: Final = 400
FOREIGN_TICK_S: Final = 0.01
STEAL_DEPTH: Final = 512  # foreign-ids takes ids up to this many behind a peer's next one
STOP_GRACE_S: Final = 2.0

SUCCESS: Final = 2001
CHECK_BALANCE: Final = 2
PRICE_ENQUIRY: Final = 3
MIB: Final = 1 << 20

#: The counters of one kind (every one a sum; `answers_by_code` a dict of sums).
COUNTERS: Final = (
    "connections_opened",
    "connections_refused",
    "cer_unanswered",
    "connections_closed_by_server",
    "idle_closed_by_server",
    "idle_lifetime_ms",
    "requests_sent",
    "bytes_sent",
    "answers_received",
    "foreign_answers",
    "accepted_as_other_peer",
    "foreign_sessions_changed",
    "session_ids_taken",
)

_HEADER = struct.Struct(">IIIII")
_CCR_FLAGS: Final = int(Flag.REQUEST | Flag.PROXIABLE)
_ENCODER: Final = msgspec.msgpack.Encoder()

#: foreign-ids' four requests (`ForeignAim.request`): in another peer's name with an
#: End-to-End-Id it is about to use, and with one it has used; UPDATE or TERMINATION of its
#: open session; INITIAL of a Session-Id it is about to open.
POISON, STEAL, HIJACK, SQUAT = range(4)
_CHURN_TURNS: Final = ("hold", "drop", "cer-drop", "cer-abandon", "partial")


class _LeanAnswer(msgspec.Struct, rename=avp_name):
    result_code: int = 0
    session_id: str | None = None


_DECODER: Final = msgspec.msgpack.Decoder(_LeanAnswer)


def hostile_origin_host(run_id: int) -> str:
    """The Origin-Host of the hostile neighbour's CERs."""
    return f"hostile-{run_id % 1_000_000:06d}.bench.local"


def new_tally() -> dict[str, Any]:
    """One kind's counters, all zero."""
    tally: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    tally["answers_by_code"] = {}
    return tally


def peer_summary(by_kind: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The kinds' counters added up, the Result-Codes the defences answer with picked out, and
    the counters of each kind under `by_kind`."""
    total = new_tally()
    for tally in by_kind.values():
        for key in COUNTERS:
            total[key] += tally.get(key, 0)
        for code, n in tally.get("answers_by_code", {}).items():
            total["answers_by_code"][code] = total["answers_by_code"].get(code, 0) + n
    codes = total["answers_by_code"]
    idle = total.pop("idle_lifetime_ms")
    return {
        **total,
        "answers_by_code": dict(sorted(codes.items())),
        "answers_5004": codes.get("5004", 0),
        "answers_5002": codes.get("5002", 0),
        "answers_3004": codes.get("3004", 0),
        "idle_lifetime_mean_s": round(idle / total["idle_closed_by_server"] / 1000.0, 3)
        if total["idle_closed_by_server"]
        else None,
        "by_kind": {k: by_kind[k] for k in HOSTILE_KINDS if k in by_kind},
    }


def _frame(body: dict[str, Any], hbh: int, e2e: int) -> bytes:
    raw = _ENCODER.encode(body)
    return (
        _HEADER.pack(
            (VERSION << 24) | (HEADER_LENGTH + len(raw)),
            (_CCR_FLAGS << 24) | int(CommandCode.CREDIT_CONTROL),
            int(ApplicationId.CREDIT_CONTROL),
            hbh,
            e2e,
        )
        + raw
    )


def _ccr(
    origin_host: str, session_id: str, context: str, req_type: int, number: int
) -> dict[str, Any]:
    return {
        "Session-Id": session_id,
        "Origin-Host": origin_host,
        "Origin-Realm": REALM,
        "Destination-Realm": REALM,
        "Auth-Application-Id": int(ApplicationId.CREDIT_CONTROL),
        "Service-Context-Id": context,
        "CC-Request-Type": req_type,
        "CC-Request-Number": number,
    }


def _event(origin_host: str, session_id: str, action: int, subscriber: str) -> dict[str, Any]:
    body = _ccr(origin_host, session_id, SMS_CONTEXT, 4, 0)
    body["Requested-Action"] = action
    body["Subscription-Id"] = [{"Subscription-Id-Type": 0, "Subscription-Id-Data": subscriber}]
    body["Multiple-Services-Credit-Control"] = [
        {"Rating-Group": 30, "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
    ]
    return body


class _HostileConnection(asyncio.Protocol):
    """One connection of the hostile peer: CER or none, reading or not, counting what happens."""

    def __init__(self, peer: _Peer, kind: str, *, cer: bool, reads: bool) -> None:
        self.peer = peer
        self.kind = kind
        self.tally = peer.tally[kind]
        self.sends_cer = cer
        self.reads = reads
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.next_hbh = peer.rng.getrandbits(32)
        self.cer_hbh = -1
        self.sent: dict[int, tuple[int, str]] = {}  # foreign-ids: hbh -> (request, Session-Id)
        self.written = 0
        self.bytes_counted = False
        self.end_counted = False
        self.we_closed = False
        self.opened_at = time.monotonic()
        self.cea: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = asyncio.Event()

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.opened_at = time.monotonic()
        self.tally["connections_opened"] += 1
        self.peer.conns.add(self)
        if self.sends_cer:
            self.write(self.cer_frame())

    def connection_lost(self, exc: Exception | None) -> None:
        self._count_bytes()
        if not self.we_closed and not self.end_counted:
            self.end_counted = True
            if not self.sends_cer:
                self.tally["idle_closed_by_server"] += 1
                self.tally["idle_lifetime_ms"] += round(
                    (time.monotonic() - self.opened_at) * 1000.0
                )
            elif not self.cea.done():
                self.tally["connections_refused"] += 1
            else:
                self.tally["connections_closed_by_server"] += 1
        if not self.cea.done():
            self.cea.set_result(False)
        self.lost.set()
        self.writable.set()
        self.peer.conns.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if not self.reads and self.cea.done():
            return  # never-reads: nothing after the CEA is read
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_LENGTH:
            w0, w1, _, hbh, _ = _HEADER.unpack_from(buf, pos)
            length = w0 & 0xFFFFFF
            if w0 >> 24 != VERSION or length < HEADER_LENGTH:
                self.drop()
                return
            if n - pos < length:
                break
            body = bytes(buf[pos + HEADER_LENGTH : pos + length])
            pos += length
            if (w1 >> 24) & Flag.REQUEST:
                continue  # DWR, RAR, ASR, DPR: a hostile peer does not answer
            if hbh == self.cer_hbh and not self.cea.done():
                self._cea(body)
                if not self.reads:
                    break
                continue
            self._answer(hbh, body)
        del buf[:pos]

    # --- what it counts ---

    def _cea(self, body: bytes) -> None:
        try:
            code = _DECODER.decode(body).result_code
        except (msgspec.DecodeError, msgspec.ValidationError):
            code = 0
        if code == SUCCESS:
            self.cea.set_result(True)
            if not self.reads and self.transport is not None:
                self.transport.pause_reading()
            return
        self.tally["connections_refused"] += 1
        self.end_counted = True
        self.cea.set_result(False)
        self.drop()

    def _answer(self, hbh: int, body: bytes) -> None:
        tally = self.tally
        tally["answers_received"] += 1
        try:
            answer = _DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            answer = _LeanAnswer(result_code=0)
        codes = tally["answers_by_code"]
        key = str(answer.result_code)
        codes[key] = codes.get(key, 0) + 1
        sent = self.sent.pop(hbh, None)
        sid = answer.session_id
        if sent is None:  # never-reads, flood: their own Session-Ids only
            if sid is not None and not sid.startswith(self.peer.origin_host):
                tally["foreign_answers"] += 1
            return
        request, sent_sid = sent
        if sid is not None and sid != sent_sid:
            tally["foreign_answers"] += 1
        elif answer.result_code == SUCCESS:
            if request in (POISON, STEAL):
                tally["accepted_as_other_peer"] += 1
            elif request == HIJACK:
                tally["foreign_sessions_changed"] += 1
            else:
                tally["session_ids_taken"] += 1

    def _count_bytes(self) -> None:
        if self.bytes_counted:
            return
        self.bytes_counted = True
        unsent = 0
        if self.transport is not None:
            with contextlib.suppress(Exception):
                unsent = self.transport.get_write_buffer_size()
        self.tally["bytes_sent"] += max(0, self.written - unsent)

    # --- sending ---

    def hbh(self) -> int:
        hbh = self.next_hbh
        self.next_hbh = (hbh + 1) & 0xFFFFFFFF
        return hbh

    def cer_frame(self) -> bytes:
        hbh = self.hbh()
        self.cer_hbh = hbh
        cer = CER(
            origin_host=self.peer.origin_host,
            origin_realm=REALM,
            host_ip_address=("127.0.0.1",),
            vendor_id=0,
            product_name="ocs-bench-hostile",
            auth_application_id=(int(ApplicationId.CREDIT_CONTROL),),
        )
        return encode_frame(
            cer,
            flags=int(Flag.REQUEST),
            command_code=int(CommandCode.CAPABILITIES_EXCHANGE),
            application_id=0,
            hop_by_hop=hbh,
            end_to_end=hbh,
        )

    def write(self, data: bytes, requests: int = 0) -> None:
        if self.transport is None or self.lost.is_set() or self.we_closed:
            return
        self.transport.write(data)
        self.written += len(data)
        self.tally["requests_sent"] += requests

    def drop(self) -> None:
        """Close with a reset: nothing flushed, no TIME_WAIT left behind."""
        if self.transport is None or self.lost.is_set() or self.we_closed:
            return
        self._count_bytes()
        self.we_closed = True
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class _Victim:
    """What foreign-ids knows of one normal peer: its names, its first id, its rates."""

    __slots__ = ("first_e2e", "index", "origin_host", "prefix", "rate_e2e", "rate_sid", "seen")

    def __init__(self, cfg: LoadConfig, index: int) -> None:
        self.index = index
        self.origin_host = peer_origin_host(cfg.run_id, index)
        self.prefix = session_prefix(self.origin_host, cfg.epoch).decode()
        self.first_e2e = first_end_to_end(cfg.run_id, cfg.epoch, index)
        self.rate_e2e = 0.0  # ids a second
        self.rate_sid = 0.0  # sessions a second
        self.seen: tuple[float, int, int] | None = None


class ForeignAim:
    """What foreign-ids sends to take what is the normal peers': `request` builds one of the
    four requests (`POISON`, `STEAL`, `HIJACK`, `SQUAT`) against one of them, aimed with what
    the workers publish in `cursors` (per connection: the next End-to-End-Id, the last
    Session-Id counter; both 0 before the first publication) and the rates it estimates from
    them (over at least `RATE_WINDOW_S`)."""

    RATE_WINDOW_S: Final = 0.5

    def __init__(
        self, cfg: LoadConfig, origin_host: str, cursors: Sequence[float], rng: random.Random
    ) -> None:
        self.cfg = cfg
        self.origin_host = origin_host
        self.cursors = cursors
        self.rng = rng
        self.victims = [_Victim(cfg, i) for i in range(cfg.connections)]
        self.counter = 0

    def _aim(self, v: _Victim, now: float) -> tuple[int, int]:
        e2e_next = int(self.cursors[2 * v.index])
        sid_last = int(self.cursors[2 * v.index + 1])
        if e2e_next == 0 and sid_last == 0:
            e2e_next = v.first_e2e
        if v.seen is None:
            v.seen = (now, e2e_next, sid_last)
        elif now - v.seen[0] >= self.RATE_WINDOW_S:
            t, e, n = v.seen
            v.rate_e2e = ((e2e_next - e) & 0xFFFFFFFF) / (now - t)
            v.rate_sid = max(0, sid_last - n) / (now - t)
            v.seen = (now, e2e_next, sid_last)
        return e2e_next, sid_last

    def request(
        self, request: int, victim: int, hbh: int, now: float
    ) -> tuple[int, int, str, dict[str, Any]]:
        """(the request made, its End-to-End-Id, its Session-Id, its body) for `request`
        against normal peer `victim`; `hbh` is the hostile connection's next Hop-by-Hop-Id, the
        End-to-End-Id of the requests in its own name. A STEAL before the victim has used an id
        is a POISON; a HIJACK before it has opened a session is a SQUAT."""
        rng = self.rng
        v = self.victims[victim]
        e2e_next, sid_last = self._aim(v, now)
        used = (e2e_next - v.first_e2e) & 0xFFFFFFFF  # ids the victim has taken
        if request == STEAL and used == 0:
            request = POISON
        if request == HIJACK and sid_last == 0:
            request = SQUAT
        subscriber = msisdn(self.cfg.run_id, 0)
        if request in (POISON, STEAL):
            if request == POISON:
                lo = max(4, int(v.rate_e2e * 0.3))
                ahead = rng.randint(lo, max(lo + 4, int(v.rate_e2e * 0.8)))
                e2e = (e2e_next + ahead) & 0xFFFFFFFF
            else:
                e2e = (e2e_next - rng.randint(1, min(used, STEAL_DEPTH))) & 0xFFFFFFFF
            # in the victim's name, with a Session-Id that begins with it: only the binding of
            # the Origin-Host to the CER tells it apart
            self.counter += 1
            sid = f"{v.origin_host};h{self.cfg.epoch};{self.counter:0{SID_DIGITS}d}"
            return request, e2e, sid, _event(v.origin_host, sid, CHECK_BALANCE, subscriber)
        if request == HIJACK:
            number = sid_last - rng.randint(0, min(sid_last - 1, self.cfg.concurrency))
            sid = f"{v.prefix}{number:0{SID_DIGITS}d}"
            if rng.random() < 0.5:
                body = _ccr(self.origin_host, sid, DATA_CONTEXT, 2, 1)
                usu = {"CC-Total-Octets": 100 * MIB, "Reporting-Reason": 0}
                body["Multiple-Services-Credit-Control"] = [
                    {"Rating-Group": 10, "Requested-Service-Unit": {}, "Used-Service-Unit": [usu]}
                ]
            else:
                body = _ccr(self.origin_host, sid, DATA_CONTEXT, 3, rng.randint(1, 2))
                body["Termination-Cause"] = 1
            return request, hbh, sid, body
        lo = max(2, int(v.rate_sid * 0.3))
        number = sid_last + rng.randint(lo, max(lo + 2, int(v.rate_sid * 0.8)))
        sid = f"{v.prefix}{number:0{SID_DIGITS}d}"
        body = _ccr(self.origin_host, sid, DATA_CONTEXT, 1, 0)
        poor = msisdn(self.cfg.run_id, self.cfg.subscribers - 1)  # charged instead
        body["Subscription-Id"] = [{"Subscription-Id-Type": 0, "Subscription-Id-Data": poor}]
        body["Multiple-Services-Credit-Control"] = [
            {"Rating-Group": 10, "Requested-Service-Unit": {}}
        ]
        return request, hbh, sid, body


class _Peer:
    """The hostile peer: its connections, its counters, what it does."""

    def __init__(self, cfg: LoadConfig, kinds: Sequence[str], cursors: Any) -> None:
        self.cfg = cfg
        self.kinds = tuple(kinds)
        self.cursors = cursors
        self.origin_host = hostile_origin_host(cfg.run_id)
        self.sid_prefix = session_prefix(self.origin_host, cfg.epoch)
        self.sid_counter = 0
        self.rng = random.Random(f"ocs-bench-hostile/{cfg.run_id}/{cfg.epoch}")
        self.tally: dict[str, dict[str, Any]] = {k: new_tally() for k in kinds}
        self.conns: set[_HostileConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.ssl = client_context(cfg.tls) if cfg.tls is not None else None
        self.server_hostname = cfg.tls.hostname(cfg.host) if cfg.tls is not None else None
        sid_len = len(self.sid_prefix) + SID_DIGITS
        self.subs = [msisdn(cfg.run_id, i).encode() for i in range(min(16, cfg.funded))]
        self.templates = [
            FrameTemplate(_event(self.origin_host, "", action, ""), sid_len, len(self.subs[0]))
            for action in (CHECK_BALANCE, PRICE_ENQUIRY)
        ]
        self.aim = ForeignAim(cfg, self.origin_host, cursors, self.rng)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open(self, kind: str, *, cer: bool, reads: bool = True) -> _HostileConnection | None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _HostileConnection(self, kind, cer=cer, reads=reads),
                    self.cfg.host,
                    self.cfg.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname,
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError):
            self.tally[kind]["connections_refused"] += 1
            return None
        return proto

    async def open_peer(self, kind: str, *, reads: bool) -> _HostileConnection | None:
        """A connection with a successful CER, or None."""
        conn = await self.open(kind, cer=True, reads=reads)
        if conn is None:
            return None
        try:
            ok = await asyncio.wait_for(asyncio.shield(conn.cea), CEA_TIMEOUT_S)
        except TimeoutError:
            conn.tally["cer_unanswered"] += 1
            conn.end_counted = True
            conn.drop()
            return None
        return conn if ok else None

    def next_sid(self) -> bytes:
        self.sid_counter += 1
        return self.sid_prefix + b"%010d" % self.sid_counter

    # --- never-reads and flood ---

    async def stream(self, kind: str, reads: bool) -> None:
        """Requests as fast as the socket takes them, never waiting for answers; another
        connection whenever the server closes this one."""
        while not self.stopping:
            conn = await self.open_peer(kind, reads=reads)
            if conn is not None:
                subs = self.subs
                templates = self.templates
                while not conn.lost.is_set():
                    if not conn.writable.is_set():
                        await conn.writable.wait()
                        continue
                    frames = []
                    for i in range(STREAM_BATCH):
                        sid = self.next_sid()
                        frames.append(
                            templates[i & 1].render(
                                conn.hbh(), sid, subs[self.sid_counter % len(subs)]
                            )
                        )
                    conn.write(b"".join(frames), STREAM_BATCH)
                    await asyncio.sleep(0)
            await asyncio.sleep(RECONNECT_PAUSE_S)

    # --- churn ---

    async def churn(self) -> None:
        held = [0]  # connections held (or being opened to be held)
        busy = asyncio.Semaphore(CHURN_CONCURRENT)
        turn = 0
        next_at = time.monotonic()
        while not self.stopping:
            what = _CHURN_TURNS[turn % len(_CHURN_TURNS)]
            turn += 1
            if what == "hold":
                if held[0] < CHURN_HELD:
                    held[0] += 1
                    self.spawn(self._hold(held))
            elif not busy.locked():
                self.spawn(self._churn_once(what, busy))
            next_at += 1.0 / CHURN_PER_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _hold(self, held: list[int]) -> None:
        try:
            conn = await self.open("churn", cer=False)
            if conn is not None:
                await conn.lost.wait()
        finally:
            held[0] -= 1

    async def _churn_once(self, what: str, busy: asyncio.Semaphore) -> None:
        async with busy:
            if what == "cer-drop":
                conn = await self.open_peer("churn", reads=True)
                if conn is not None:
                    conn.drop()
                return
            conn = await self.open("churn", cer=what == "cer-abandon")
            if conn is None:
                return
            if what == "partial":
                conn.write(conn.cer_frame()[: HEADER_LENGTH // 2])
            conn.end_counted = True  # it drops them itself, at once
            conn.drop()

    # --- foreign-ids ---

    async def foreign_ids(self) -> None:
        conn: _HostileConnection | None = None
        per_tick = max(1, round(FOREIGN_PER_S * FOREIGN_TICK_S))
        turn = 0
        victims = max(1, self.cfg.connections)
        next_at = time.monotonic()
        while not self.stopping:
            if conn is None or conn.lost.is_set():
                conn = await self.open_peer("foreign-ids", reads=True)
                if conn is None:
                    await asyncio.sleep(RECONNECT_PAUSE_S)
                    continue
            frames = []
            now = time.monotonic()
            for _ in range(per_tick):
                hbh = conn.hbh()
                request, e2e, sid, body = self.aim.request(
                    turn % 4, (turn // 4) % victims, hbh, now
                )
                conn.sent[hbh] = (request, sid)
                frames.append(_frame(body, hbh, e2e))
                turn += 1
            conn.write(b"".join(frames), len(frames))
            next_at += FOREIGN_TICK_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # --- the run ---

    async def run(self, t0: float, stop_at: float) -> dict[str, dict[str, Any]]:
        await _sleep_until(t0)
        for kind in self.kinds:
            if kind == "never-reads":
                self.spawn(self.stream(kind, reads=False))
            elif kind == "flood":
                self.spawn(self.stream(kind, reads=True))
            elif kind == "churn":
                self.spawn(self.churn())
            elif kind == "foreign-ids":
                self.spawn(self.foreign_ids())
            else:
                raise ValueError(f"unknown hostile kind {kind!r}")
        await _sleep_until(stop_at)
        self.stopping = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for conn in list(self.conns):
            conn.end_counted = True
            conn.drop()
        await asyncio.sleep(0.05)  # connection_lost of the dropped ones
        return self.tally


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def hostile_main(cfg: LoadConfig, kinds: tuple[str, ...], cursors: Any, pipe: Pipe) -> None:
    """Entry point of the hostile neighbour's process: say ready, wait for (start, t0,
    stop_at), misbehave until stop_at, send the counters back."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    if cfg.client_cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cfg.client_cpus)
    with contextlib.suppress(OSError, ValueError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        pipe.send(("ready",))
        message = pipe.recv()
        if message[0] != "start":
            return
        t0, stop_at = float(message[1]), float(message[2])
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            tally = runner.run(_Peer(cfg, kinds, cursors).run(t0, stop_at))
        pipe.send(("result", tally))
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        pipe.close()
