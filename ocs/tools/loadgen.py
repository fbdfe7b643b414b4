"""Load generator for the charging server (`ocs bench`).

What it does, in order:

1. Provisions accounts over AMR (`ocs.edge.client.Client`, pipelined), before anything is measured:
   most with a large balance, a share (`low_balance_share`) with a few cents, so that grants are
   cut (Final-Unit-Indication) and refused per MSCC (4012).
2. Starts `processes` worker processes (multiprocessing, spawn). Each opens its share of the
   `connections` with its own lean asyncio Protocol on uvloop: it does CER/CEA, then writes
   pre-built frames and matches answers by Hop-by-Hop-Id. It never goes through the full
   `Client`/`Connection` per request.
3. Runs a warm-up, then the measured window, then lets the flows in progress finish (bounded by
   `drain` seconds), and merges what the workers measured.

Traffic is made of *flows* (one credit-control session or one event): a data session (INITIAL
for rating groups 10 and 20, `updates` UPDATEs reporting usage on RG 10, TERMINATION reporting
both), a voice call (RG 40: INITIAL, UPDATE, TERMINATION), and an SMS, half of them as a session
(INITIAL reserving one message, TERMINATION debiting it) and half as an EVENT with
DIRECT_DEBITING. The mix gives the share of *requests* of each service: a flow kind is picked
with a probability proportional to its share divided by its number of requests.

Frames are pre-encoded: for every (flow kind, step) a body is encoded once per connection with
msgspec, with placeholders for the Session-Id and the Subscription-Id-Data; those have a fixed
length, so a request is the concatenation of constant byte strings, the 8 bytes of the ids, the
session id and the subscriber number. Answers are decoded with a lean msgspec type that keeps
only the Result-Codes (top level and per MSCC) and whether a grant carries Final-Unit-Indication.

Modes:

- closed loop: every connection keeps `concurrency` requests in flight; each answer sends the
  next request at once (the next step of its flow, or the first of a new flow). This measures
  the maximum throughput.
- open loop: requests are sent at a fixed aggregate `rate`, on a schedule fixed in advance
  (send i at t0 + i / rate, round robin over the connections). Latency is measured from the
  *scheduled* time, so a server (or client) that falls behind shows it in the latency instead of
  silently lowering the rate (no coordinated omission). Each scheduled send takes the next step
  of a flow whose previous answer arrived, or starts a new flow.

Latency percentiles use the nearest-rank definition (`percentile`). Throughput is the number of
answers received inside the window divided by its length. Errors are every answer with a
top-level Result-Code other than 2001 (3xxx included) and every protocol failure (an
undecodable answer, a lost connection, a request still unanswered after the drain), counted over
the whole run, warm-up and drain included.

CPU: the server's is read from /proc/<pid>/stat (utime + stime, all threads) at the start and
the end of the window, as a percentage of one core; the client's is each worker's
`time.process_time()` over the window, summed.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import functools
import math
import multiprocessing
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, Final, cast

import msgspec
import uvloop

from ocs.edge.client import Client
from protocol.codec import encode_frame
from protocol.codes import (
    HEADER_LENGTH,
    VERSION,
    AccountOperation,
    ApplicationId,
    CommandCode,
    Flag,
    SubscriptionIdType,
)
from protocol.messages import AMR, ASA, CER, DPA, DWA, RAA, Answer, SubscriptionId, avp_name

# --- constants ------------------------------------------------------------------------------

SUCCESS: Final = 2001
FUNDED_BALANCE: Final = 1_000_000_000  # 1,000 currency units: never runs out in a bench run
LOW_BALANCE: Final = 50_000  # 0.05 currency units: grants are cut (FUI), then refused (4012)
REALM: Final = "test.local"
SID_DIGITS: Final = 10
PACER_TICK_S: Final = 0.001  # open loop: the sender wakes at most once per tick

DATA_CONTEXT: Final = "32251@3gpp.org"
SMS_CONTEXT: Final = "32274@3gpp.org"
VOICE_CONTEXT: Final = "32260@3gpp.org"

#: Flow kinds. "sms" of the mix is split evenly between the session and the event form.
KINDS: Final = ("data", "voice", "sms-session", "sms-event")
SERVICES: Final = ("data", "sms", "voice")
DEFAULT_MIX: Final = (("data", 70.0), ("sms", 20.0), ("voice", 10.0))

_HEAD = struct.Struct(">III")  # version+length, flags+command, application
_IDS = struct.Struct(">II")  # hop-by-hop, end-to-end
_HEADER = struct.Struct(">IIIII")
_ENCODER: Final = msgspec.msgpack.Encoder()
_SID_MARK: Final = "\x01"
_SUB_MARK: Final = "\x02"
_CCR_FLAGS: Final = int(Flag.REQUEST | Flag.PROXIABLE)
_CC: Final = int(CommandCode.CREDIT_CONTROL)
_APP_CC: Final = int(ApplicationId.CREDIT_CONTROL)


class _LeanMscc(msgspec.Struct, rename=avp_name):
    result_code: int = 0
    final_unit_indication: dict[str, Any] | None = None


class _LeanAnswer(msgspec.Struct, rename=avp_name):
    """Only what the harness reads of an answer; msgspec skips the other keys."""

    result_code: int = 0
    multiple_services_credit_control: list[_LeanMscc] | None = None


class _LeanRequest(msgspec.Struct, rename=avp_name):
    session_id: str | None = None


_ANSWER_DECODER: Final = msgspec.msgpack.Decoder(_LeanAnswer)
_REQUEST_DECODER: Final = msgspec.msgpack.Decoder(_LeanRequest)


# --- small pure helpers ---------------------------------------------------------------------


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """`data=70,sms=20,voice=10` -> (("data", 70.0), ("sms", 20.0), ("voice", 10.0))."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SERVICES:
            raise ValueError(f"expected SERVICE=SHARE with SERVICE in {SERVICES}, got {part!r}")
        share = float(value)
        if share < 0:
            raise ValueError(f"negative share for {name}")
        out[name] = out.get(name, 0.0) + share
    if not out or sum(out.values()) <= 0:
        raise ValueError("the mix has no positive share")
    return tuple(out.items())


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending samples: the smallest sample such that at least
    `q` percent of the samples are <= it (q in (0, 100]). p50 of 1..1000 is 500, p99 is 990,
    p99.9 is 999, p100 is 1000."""
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    rank = -(-q * n // 100)  # ceil(q * n / 100) without float surprises for integer q
    k = min(max(int(rank), 1), n)
    return float(sorted_samples[k - 1])


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max/mean (ms) of unsorted samples; None everywhere if there are none."""
    keys = ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")
    if not samples_ms:
        return dict.fromkeys(keys)
    ordered = sorted(samples_ms)
    return {
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "p999_ms": percentile(ordered, 99.9),
        "max_ms": ordered[-1],
        "mean_ms": sum(ordered) / len(ordered),
    }


def msisdn(run_id: int, index: int) -> str:
    """A fixed-length (15 digit) E.164 number, unique per run and subscriber."""
    return f"9{run_id % 1_000_000:06d}{index:08d}"


def account_id(run_id: int, index: int) -> str:
    return f"bench-{run_id % 1_000_000:06d}-{index:08d}"


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) in seconds, or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks[:8]) - idle, sum(ticks[:8])


def machine_busy_percent(interval: float = 0.5) -> float | None:
    """How busy the whole machine is (% of all CPUs) over `interval`: run before a load run,
    it shows whether other work shares the machine."""
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def flow_weights(mix: Sequence[tuple[str, float]], updates: int) -> tuple[list[float], list[int]]:
    """Cumulative probabilities of starting each flow kind (KINDS order) so that the share of
    requests per service follows the mix; and the number of requests per flow kind."""
    shares = dict(mix)
    lengths = [2 + updates, 3, 2, 1]
    per_kind = [
        shares.get("data", 0.0),
        shares.get("voice", 0.0),
        shares.get("sms", 0.0) / 2,
        shares.get("sms", 0.0) / 2,
    ]
    raw = [share / n for share, n in zip(per_kind, lengths, strict=True)]
    total = sum(raw)
    cumulative: list[float] = []
    acc = 0.0
    for w in raw:
        acc += w / total
        cumulative.append(acc)
    cumulative[-1] = 1.0
    return cumulative, lengths


# --- pre-encoded request templates ----------------------------------------------------------


class FrameTemplate:
    """A CCR frame encoded once, with holes for the Session-Id and the subscriber number
    (whose lengths are fixed); `render` fills them and the ids."""

    __slots__ = ("head", "pieces", "with_sub")

    def __init__(self, body: dict[str, Any], sid_len: int, sub_len: int) -> None:
        body = dict(body)
        body["Session-Id"] = _SID_MARK * sid_len
        if "Subscription-Id" in body:
            body["Subscription-Id"] = [
                {
                    "Subscription-Id-Type": int(SubscriptionIdType.END_USER_E164),
                    "Subscription-Id-Data": _SUB_MARK * sub_len,
                }
            ]
        raw = _ENCODER.encode(body)
        marks = [(raw.find(_SID_MARK.encode() * sid_len), sid_len)]
        self.with_sub = "Subscription-Id" in body
        if self.with_sub:
            marks.append((raw.find(_SUB_MARK.encode() * sub_len), sub_len))
        if any(at < 0 for at, _ in marks) or (self.with_sub and marks[1][0] < marks[0][0]):
            raise ValueError("placeholder not found where expected")
        pieces: list[bytes] = []
        prev = 0
        for at, n in marks:
            pieces.append(raw[prev:at])
            prev = at + n
        pieces.append(raw[prev:])
        self.pieces = tuple(pieces)
        length = HEADER_LENGTH + len(raw)
        self.head = _HEAD.pack((VERSION << 24) | length, (_CCR_FLAGS << 24) | _CC, _APP_CC)

    def render(self, hbh: int, sid: bytes, sub: bytes) -> bytes:
        p = self.pieces
        if self.with_sub:
            return b"".join((self.head, _IDS.pack(hbh, hbh), p[0], sid, p[1], sub, p[2]))
        return b"".join((self.head, _IDS.pack(hbh, hbh), p[0], sid, p[1]))


def flow_bodies(kind: str, origin_host: str, updates: int) -> list[dict[str, Any]]:
    """The CCR bodies of one flow of `kind`, in order (Session-Id and subscriber are filled
    in by the template)."""

    def ccr(context: str, req_type: int, number: int, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Session-Id": "",
            "Origin-Host": origin_host,
            "Origin-Realm": REALM,
            "Destination-Realm": REALM,
            "Auth-Application-Id": _APP_CC,
            "Service-Context-Id": context,
            "CC-Request-Type": req_type,
            "CC-Request-Number": number,
        }
        body.update(extra)
        return body

    sub = [{"Subscription-Id-Type": 0, "Subscription-Id-Data": ""}]
    mib = 1 << 20
    if kind == "data":
        out = [
            ccr(
                DATA_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 10, "Requested-Service-Unit": {}},
                        {"Rating-Group": 20, "Requested-Service-Unit": {}},
                    ],
                },
            )
        ]
        for n in range(1, updates + 1):
            usu = {
                "CC-Total-Octets": 2 * mib,
                "CC-Input-Octets": mib // 4,
                "CC-Output-Octets": 2 * mib - mib // 4,
                "Reporting-Reason": 0,
            }
            msccs = [{"Rating-Group": 10, "Requested-Service-Unit": {}, "Used-Service-Unit": [usu]}]
            out.append(ccr(DATA_CONTEXT, 2, n, **{"Multiple-Services-Credit-Control": msccs}))
        final = [
            {
                "Rating-Group": 10,
                "Used-Service-Unit": [{"CC-Total-Octets": mib, "Reporting-Reason": 2}],
            },
            {
                "Rating-Group": 20,
                "Used-Service-Unit": [{"CC-Total-Octets": 5 * mib, "Reporting-Reason": 2}],
            },
        ]
        out.append(
            ccr(
                DATA_CONTEXT,
                3,
                updates + 1,
                **{"Termination-Cause": 1, "Multiple-Services-Credit-Control": final},
            )
        )
        return out
    if kind == "voice":
        return [
            ccr(
                VOICE_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 40, "Requested-Service-Unit": {}}
                    ],
                },
            ),
            ccr(
                VOICE_CONTEXT,
                2,
                1,
                **{
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 40,
                            "Requested-Service-Unit": {},
                            "Used-Service-Unit": [{"CC-Time": 240, "Reporting-Reason": 0}],
                        }
                    ]
                },
            ),
            ccr(
                VOICE_CONTEXT,
                3,
                2,
                **{
                    "Termination-Cause": 1,
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 40,
                            "Used-Service-Unit": [{"CC-Time": 75, "Reporting-Reason": 2}],
                        }
                    ],
                },
            ),
        ]
    one_sms = {"CC-Service-Specific-Units": 1}
    if kind == "sms-session":
        return [
            ccr(
                SMS_CONTEXT,
                1,
                0,
                **{
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 30, "Requested-Service-Unit": one_sms}
                    ],
                },
            ),
            ccr(
                SMS_CONTEXT,
                3,
                1,
                **{
                    "Termination-Cause": 1,
                    "Multiple-Services-Credit-Control": [
                        {
                            "Rating-Group": 30,
                            "Used-Service-Unit": [{**one_sms, "Reporting-Reason": 2}],
                        }
                    ],
                },
            ),
        ]
    if kind == "sms-event":
        return [
            ccr(
                SMS_CONTEXT,
                4,
                0,
                **{
                    "Requested-Action": 0,
                    "Subscription-Id": sub,
                    "Multiple-Services-Credit-Control": [
                        {"Rating-Group": 30, "Requested-Service-Unit": one_sms}
                    ],
                },
            )
        ]
    raise ValueError(f"unknown flow kind {kind!r}")


# --- configuration and results --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    """One load run against one server (picklable: it is sent to the worker processes)."""

    host: str = "127.0.0.1"
    port: int = 3868
    mode: str = "closed"  # "closed" | "open"
    duration: float = 10.0  # measured window, seconds
    warmup: float = 1.0
    drain: float = 5.0  # how long flows in progress may take to finish after the window
    rate: float = 1000.0  # open loop: requests/s, all connections together
    connections: int = 8
    concurrency: int = 32  # closed loop: requests in flight per connection
    processes: int = 1
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    subscribers: int = 10_000
    low_balance_share: float = 0.05
    updates: int = 2  # UPDATEs per data session
    run_id: int = 0
    seed: int = 1
    client_cpus: tuple[int, ...] | None = None  # pin the workers to these CPUs

    @property
    def funded(self) -> int:
        """Subscribers 0 .. funded-1 have a large balance, the rest a small one."""
        low = int(self.subscribers * self.low_balance_share)
        return max(1, self.subscribers - low)


@dataclass(slots=True)
class LoadResult:
    """What one load run measured (merged over the workers)."""

    mode: str
    duration_s: float
    answers: int  # answers received inside the window
    answers_total: int
    sent_total: int
    latencies_ms: list[float]
    errors: dict[str, int]
    mscc_results: dict[str, int]
    final_unit_indications: int
    server_requests: dict[str, int]
    requests_by_kind: dict[str, int]
    client_cpu_s: float
    server_cpu_s: float | None
    send_lag_max_ms: float
    send_lag_mean_ms: float
    processes: int
    connections: int
    concurrency: int
    rate: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answers_per_s(self) -> float:
        return self.answers / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        lat = latency_summary(self.latencies_ms)
        window = self.duration_s
        return {
            "mode": self.mode,
            "duration_s": round(window, 3),
            "answers": self.answers,
            "answers_per_s": round(self.answers_per_s, 1),
            **{k: None if v is None else round(v, 3) for k, v in lat.items()},
            "latency_samples": len(self.latencies_ms),
            "errors": self.error_count,
            "errors_by_code": dict(sorted(self.errors.items())),
            "mscc_results": dict(sorted(self.mscc_results.items())),
            "final_unit_indications": self.final_unit_indications,
            "server_requests": dict(sorted(self.server_requests.items())),
            "requests_by_kind": self.requests_by_kind,
            "requests_sent": self.sent_total,
            "server_cpu_percent": None
            if self.server_cpu_s is None
            else round(100.0 * self.server_cpu_s / window, 1),
            # what one fully available core would answer, if the server is CPU-bound: robust
            # against other work on the machine taking part of the server's CPU
            "answers_per_server_cpu_s": round(self.answers / self.server_cpu_s, 1)
            if self.server_cpu_s
            else None,
            "client_cpu_percent": round(100.0 * self.client_cpu_s / window, 1),
            "client_processes": self.processes,
            "connections": self.connections,
            "concurrency": self.concurrency if self.mode == "closed" else None,
            "rate": self.rate,
            "send_lag_max_ms": round(self.send_lag_max_ms, 3),
            "send_lag_mean_ms": round(self.send_lag_mean_ms, 3),
            **self.extra,
        }


# --- the worker: lean connections -----------------------------------------------------------


class _Flow:
    __slots__ = ("kind", "sid", "step", "steps", "sub", "t0")

    def __init__(self, kind: int, steps: tuple[FrameTemplate, ...], sid: bytes, sub: bytes):
        self.kind = kind
        self.steps = steps
        self.sid = sid
        self.sub = sub
        self.step = 0
        self.t0 = 0.0


class _LoadConnection(asyncio.Protocol):
    """One TCP connection of a worker: CER/CEA, then pre-built CCR frames."""

    def __init__(self, worker: _Worker, index: int) -> None:
        self.w = worker
        cfg = worker.cfg
        self.origin_host = f"lg{cfg.run_id % 1_000_000:06d}-{index:04d}.bench.local"
        self.boot = f"{int(time.time()) & 0xFFFFFFFF}"
        self.sid_prefix = f"{self.origin_host};{self.boot};".encode()
        sid_len = len(self.sid_prefix) + SID_DIGITS
        sub_len = len(msisdn(cfg.run_id, 0))
        self.templates: list[tuple[FrameTemplate, ...]] = [
            tuple(
                FrameTemplate(b, sid_len, sub_len)
                for b in flow_bodies(k, self.origin_host, cfg.updates)
            )
            for k in KINDS
        ]
        self.sid_counter = 0
        self.next_hbh = random.getrandbits(32)
        self.inflight: dict[int, _Flow] = {}
        self.ready: deque[_Flow] = deque()
        self.out: list[bytes] = []
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.cer_hbh = -1

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        hbh = self._hbh()
        self.cer_hbh = hbh
        cer = CER(
            origin_host=self.origin_host,
            origin_realm=REALM,
            host_ip_address=("127.0.0.1",),
            vendor_id=0,
            product_name="ocs-bench",
            auth_application_id=(_APP_CC,),
        )
        self._write(
            encode_frame(
                cer,
                flags=int(Flag.REQUEST),
                command_code=int(CommandCode.CAPABILITIES_EXCHANGE),
                application_id=0,
                hop_by_hop=hbh,
                end_to_end=hbh,
            )
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.inflight and not self.w.stopping:
            self.w.error("connection-lost", len(self.inflight))
        elif self.inflight:
            self.w.error("unanswered", len(self.inflight))
        self.inflight.clear()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during CER: {exc}"))
        self.w.connection_gone()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        now = time.monotonic()
        w = self.w
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_LENGTH:
            w0, w1, app, hbh, e2e = _HEADER.unpack_from(buf, pos)
            length = w0 & 0xFFFFFF
            if w0 >> 24 != VERSION or length < HEADER_LENGTH:
                w.error("framing", 1)
                self._abort()
                return
            if n - pos < length:
                break
            body = buf[pos + HEADER_LENGTH : pos + length]
            pos += length
            flags = w1 >> 24
            if flags & Flag.REQUEST:
                self._server_request(flags, w1 & 0xFFFFFF, app, hbh, e2e, bytes(body))
                continue
            flow = self.inflight.pop(hbh, None)
            if flow is None:
                if hbh == self.cer_hbh:
                    self._cea(bytes(body))
                else:
                    w.stray += 1
                continue
            try:
                answer = _ANSWER_DECODER.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                w.error("undecodable-answer", 1)
                continue
            w.answered(self, flow, answer, now)
        del buf[:pos]
        self.flush()

    # --- sending ---

    def _hbh(self) -> int:
        hbh = self.next_hbh
        self.next_hbh = (hbh + 1) & 0xFFFFFFFF
        return hbh

    def new_flow(self) -> _Flow:
        w = self.w
        kind = bisect.bisect_left(w.cumulative, w.rng.random())
        if kind == 3:  # events are debited at once: only funded accounts (no top-level 4012)
            sub = w.subs[w.rng.randrange(w.cfg.funded)]
        else:
            sub = w.subs[w.rng.randrange(len(w.subs))]
        self.sid_counter += 1
        sid = self.sid_prefix + b"%010d" % self.sid_counter
        return _Flow(kind, self.templates[kind], sid, sub)

    def send(self, flow: _Flow, t0: float) -> None:
        hbh = self._hbh()
        flow.t0 = t0
        self.inflight[hbh] = flow
        self.out.append(flow.steps[flow.step].render(hbh, flow.sid, flow.sub))
        self.w.sent(flow)

    def send_scheduled(self, t0: float) -> None:
        """Open loop: the next step of a ready flow, else a new flow."""
        flow = self.ready.popleft() if self.ready else self.new_flow()
        self.send(flow, t0)

    def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # --- what the server sends ---

    def _cea(self, body: bytes) -> None:
        try:
            answer = _ANSWER_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            answer = _LeanAnswer(result_code=0)
        if self.opened.done():
            return
        if answer.result_code == SUCCESS:
            self.opened.set_result(None)
        else:
            self.opened.set_exception(ConnectionError(f"CER refused: {answer.result_code}"))

    def _server_request(
        self, flags: int, code: int, app: int, hbh: int, e2e: int, body: bytes
    ) -> None:
        """RAR/ASR/DWR/DPR: answered 2001 at once (a RAR is not followed by an UPDATE)."""
        w = self.w
        try:
            sid = _REQUEST_DECODER.decode(body).session_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            sid = None
        host = self.origin_host
        answer: Answer
        if code == CommandCode.RE_AUTH:
            name = "RAR"
            answer = RAA(result_code=SUCCESS, origin_host=host, origin_realm=REALM, session_id=sid)
        elif code == CommandCode.ABORT_SESSION:
            name = "ASR"
            answer = ASA(result_code=SUCCESS, origin_host=host, origin_realm=REALM, session_id=sid)
        elif code == CommandCode.DEVICE_WATCHDOG:
            name = "DWR"
            answer = DWA(result_code=SUCCESS, origin_host=host, origin_realm=REALM)
        elif code == CommandCode.DISCONNECT_PEER:
            name = "DPR"
            answer = DPA(result_code=SUCCESS, origin_host=host, origin_realm=REALM)
        else:
            w.server_requests[f"command-{code}"] = w.server_requests.get(f"command-{code}", 0) + 1
            return
        w.server_requests[name] = w.server_requests.get(name, 0) + 1
        self.out.append(
            encode_frame(
                answer,
                flags=flags & Flag.PROXIABLE,
                command_code=code,
                application_id=app,
                hop_by_hop=hbh,
                end_to_end=e2e,
            )
        )


class _Worker:
    """One worker process: its connections, its share of the load, its measurements."""

    def __init__(self, cfg: LoadConfig, index: int, conn_ids: Sequence[int]) -> None:
        self.cfg = cfg
        self.index = index
        self.conn_ids = list(conn_ids)
        self.rng = random.Random(cfg.seed * 1_000_003 + index)
        self.cumulative, _ = flow_weights(cfg.mix, cfg.updates)
        self.subs = [msisdn(cfg.run_id, i).encode() for i in range(cfg.subscribers)]
        self.conns: list[_LoadConnection] = []
        self.closed_loop = cfg.mode == "closed"
        self.sending = False  # new flows may start
        self.chain = self.closed_loop  # an answer sends the next step of its flow at once
        self.stopping = False
        self.win_start = float("inf")
        self.win_end = float("inf")
        self.latencies = array.array("d")
        self.answers_window = 0
        self.answers_total = 0
        self.sent_total = 0
        self.errors: dict[str, int] = {}
        self.mscc: dict[str, int] = {}
        self.fui = 0
        self.stray = 0
        self.server_requests: dict[str, int] = {}
        self.sent_by_kind = [0] * len(KINDS)
        self.send_lag_max = 0.0
        self.send_lag_sum = 0.0
        self.scheduled_sends = 0
        self.cpu_start = 0.0
        self.cpu_end: float | None = None
        self.inflight_total = 0
        self._idle: asyncio.Event | None = None

    # --- callbacks from the connections ---

    def error(self, key: str, count: int) -> None:
        self.errors[key] = self.errors.get(key, 0) + count

    def sent(self, flow: _Flow) -> None:
        self.sent_total += 1
        self.sent_by_kind[flow.kind] += 1

    def connection_gone(self) -> None:
        if self._idle is not None and all(c.closed or not c.inflight for c in self.conns):
            self._idle.set()

    def answered(self, conn: _LoadConnection, flow: _Flow, answer: _LeanAnswer, now: float) -> None:
        self.answers_total += 1
        t0 = flow.t0
        if self.win_start <= t0 < self.win_end:
            self.latencies.append((now - t0) * 1000.0)
            msccs = answer.multiple_services_credit_control
            if msccs:
                for m in msccs:
                    key = str(m.result_code)
                    self.mscc[key] = self.mscc.get(key, 0) + 1
                    if m.final_unit_indication is not None:
                        self.fui += 1
        if self.win_start <= now < self.win_end:
            self.answers_window += 1
        elif now >= self.win_end and self.sending:
            self.sending = False
        code = answer.result_code
        flow.step += 1
        if code != SUCCESS:
            key = str(code)
            self.errors[key] = self.errors.get(key, 0) + 1
        elif flow.step < len(flow.steps):
            if self.chain:
                conn.send(flow, now)
            else:
                conn.ready.append(flow)
            return
        # the flow is over
        if self.closed_loop and self.sending:
            conn.send(conn.new_flow(), now)
        elif self.stopping and self._idle is not None and not conn.inflight:
            self.connection_gone()

    # --- the run ---

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for i in self.conn_ids:
            _, proto = await loop.create_connection(
                functools.partial(_LoadConnection, self, i),
                self.cfg.host,
                self.cfg.port,
            )
            assert isinstance(proto, _LoadConnection)
            await asyncio.wait_for(proto.opened, 10.0)
            self.conns.append(proto)

    async def run(self, t0: float, counters: Any) -> dict[str, Any]:
        cfg = self.cfg
        self.win_start = t0 + cfg.warmup
        self.win_end = self.win_start + cfg.duration
        monitor = asyncio.get_running_loop().create_task(self._monitor(counters))
        await _sleep_until(t0)
        self.sending = True
        if self.closed_loop:
            now = time.monotonic()
            for conn in self.conns:
                for _ in range(cfg.concurrency):
                    conn.send(conn.new_flow(), now)
                conn.flush()
            await _sleep_until(self.win_end)
        else:
            await self._pace(t0, cfg.rate / cfg.processes)
        self.sending = False
        self.chain = True
        self.stopping = True
        # let flows in progress finish (open loop: the ready ones go out now)
        now = time.monotonic()
        for conn in self.conns:
            while conn.ready:
                conn.send(conn.ready.popleft(), now)
            conn.flush()
        self._idle = asyncio.Event()
        self.connection_gone()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), cfg.drain)
        for conn in self.conns:
            if conn.inflight:
                self.error("unanswered", len(conn.inflight))
                conn.inflight.clear()
            conn.close()
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        self._publish(counters)
        cpu_end = self.cpu_end if self.cpu_end is not None else time.process_time()
        return {
            "answers_window": self.answers_window,
            "answers_total": self.answers_total,
            "sent_total": self.sent_total,
            "latencies": self.latencies.tobytes(),
            "errors": self.errors,
            "mscc": self.mscc,
            "fui": self.fui,
            "stray": self.stray,
            "server_requests": self.server_requests,
            "sent_by_kind": dict(zip(KINDS, self.sent_by_kind, strict=True)),
            "cpu_s": cpu_end - self.cpu_start,
            "send_lag_max_ms": self.send_lag_max * 1000.0,
            "send_lag_sum_ms": self.send_lag_sum * 1000.0,
            "scheduled_sends": self.scheduled_sends,
        }

    async def _pace(self, t0: float, rate: float) -> None:
        """Open loop: send i goes out at t0 + i / rate, round robin over the connections."""
        conns = self.conns
        nconn = len(conns)
        end = self.win_end
        i = 0
        while True:
            now = time.monotonic()
            if now >= end:
                return
            due = int((now - t0) * rate) + 1
            while i < due:
                scheduled = t0 + i / rate
                if scheduled >= end:
                    break
                conns[i % nconn].send_scheduled(scheduled)
                self.scheduled_sends += 1
                lag = now - scheduled
                self.send_lag_sum += lag
                if lag > self.send_lag_max:
                    self.send_lag_max = lag
                i += 1
            for conn in conns:
                conn.flush()
            # uvloop's timers have 1 ms resolution: a shorter sleep would spin. Sends due
            # within the tick go out together, up to ~1 ms late; the lag is measured and
            # reported, and counts in the latency (measured from the scheduled time).
            delay = t0 + i / rate - time.monotonic()
            await asyncio.sleep(max(delay, PACER_TICK_S))

    async def _monitor(self, counters: Any) -> None:
        await _sleep_until(self.win_start)
        self.cpu_start = time.process_time()
        while time.monotonic() < self.win_end:
            self._publish(counters)
            await asyncio.sleep(min(0.25, max(0.0, self.win_end - time.monotonic())))
        self.cpu_end = time.process_time()
        while True:
            self._publish(counters)
            await asyncio.sleep(0.25)

    def _publish(self, counters: Any) -> None:
        base = self.index * 3
        counters[base] = float(self.answers_total)
        counters[base + 1] = float(sum(self.errors.values()))
        counters[base + 2] = float(sum(len(c.inflight) for c in self.conns))


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def worker_main(
    cfg: LoadConfig, index: int, conn_ids: list[int], counters: Any, pipe: Pipe
) -> None:
    """Entry point of a worker process: connect, say ready, wait for the start time, run,
    send the result back."""
    if cfg.client_cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cfg.client_cpus)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop

    async def main() -> None:
        worker = _Worker(cfg, index, conn_ids)
        try:
            await worker.connect()
        except (OSError, TimeoutError, ConnectionError) as exc:
            pipe.send(("error", f"worker {index}: {exc!r}"))
            return
        pipe.send(("ready", index))
        loop = asyncio.get_running_loop()
        message = await loop.run_in_executor(None, pipe.recv)
        if message[0] != "start":
            for conn in worker.conns:
                conn.close()
            return
        result = await worker.run(float(message[1]), counters)
        pipe.send(("result", result))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    pipe.close()


# --- provisioning ---------------------------------------------------------------------------


async def provision(
    host: str, port: int, cfg: LoadConfig, *, window: int = 256, timeout: float = 120.0
) -> dict[str, int]:
    """Create the subscribers' accounts over AMR; returns Result-Code counts."""
    origin = f"lgadmin{cfg.run_id % 1_000_000:06d}.bench.local"
    client = await Client.connect(
        host,
        port,
        origin_host=origin,
        origin_realm=REALM,
        applications=(int(ApplicationId.ADMINISTRATION),),
        product_name="ocs-bench",
    )
    codes: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        pending: set[asyncio.Future[Any]] = set()
        for i in range(cfg.subscribers):
            amount = FUNDED_BALANCE if i < cfg.funded else LOW_BALANCE
            amr = AMR(
                origin_host=origin,
                origin_realm=REALM,
                account_operation=AccountOperation.CREATE,
                account_id=account_id(cfg.run_id, i),
                amount=amount,
                subscription_id=(
                    SubscriptionId(
                        subscription_id_type=SubscriptionIdType.END_USER_E164,
                        subscription_id_data=msisdn(cfg.run_id, i),
                    ),
                ),
            )
            pending.add(client.send(amr))
            if len(pending) >= window:
                done, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, deadline - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    raise TimeoutError("provisioning timed out")
                _count_ama(done, codes)
        if pending:
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, deadline - time.monotonic())
            )
            _count_ama(done, codes)
            if pending:
                raise TimeoutError("provisioning timed out")
    finally:
        await client.close()
    return codes


def _count_ama(done: set[asyncio.Future[Any]], codes: dict[str, int]) -> None:
    for fut in done:
        code = str(fut.result().answer.result_code)
        codes[code] = codes.get(code, 0) + 1


# --- servers started by the harness ---------------------------------------------------------


class ManagedServer:
    """A server subprocess on 127.0.0.1 (port chosen by the OS), always stopped."""

    def __init__(
        self, argv: list[str], workdir: Path, *, name: str, cpus: tuple[int, ...] | None = None
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.ready_file = workdir / f"{name}.port"
        self.log_path = workdir / f"{name}.log"
        self.argv = [*argv, "--ready-file", str(self.ready_file)]
        self.cpus = cpus
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ManagedServer:
        self.ready_file.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a Ctrl-C of the harness does not hit the server
            )
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, self.cpus)
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name} did not become ready: {self.log_tail()}")
            time.sleep(0.02)
        self.port = int(self.ready_file.read_text())
        return self

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM, wait (the charging server checkpoints on the way out), else SIGKILL."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def charging_server_argv(
    data_dir: Path, profile: Path | None = None, prefix: Sequence[str] | None = None
) -> list[str]:
    """`ocs serve` on 127.0.0.1:0 in `data_dir`; under cProfile if `profile` is given; `prefix`
    replaces the interpreter (e.g. a sampling profiler that runs `-m ocs.cli`)."""
    argv = [sys.executable] if prefix is None else list(prefix)
    if profile is not None:
        argv += ["-m", "cProfile", "-o", str(profile)]
    return [
        *argv,
        "-m",
        "ocs",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]


def echo_server_argv() -> list[str]:
    return [sys.executable, "-m", "ocs.tools.echo", "--listen", "127.0.0.1:0"]


def cpu_plan(pin: bool) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """(server CPUs, client CPUs): with pinning and at least 2 CPUs, the server gets the first
    one and the clients the others; else no pinning."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if not pin or len(cpus) < 2:
        return None, None
    return (cpus[0],), tuple(cpus[1:])


# --- one load run ---------------------------------------------------------------------------

ProgressFn = Callable[[str], None]


def run_load(
    cfg: LoadConfig,
    *,
    server_pid: int | None = None,
    progress: ProgressFn | None = None,
    label: str = "",
) -> LoadResult:
    """Run the load of `cfg` with `cfg.processes` worker processes; blocks until done."""
    ctx = multiprocessing.get_context("spawn")
    nproc = max(1, min(cfg.processes, cfg.connections))
    cfg = replace(cfg, processes=nproc)
    counters = ctx.Array("d", nproc * 3, lock=False)
    conn_ids = [list(range(cfg.connections))[p::nproc] for p in range(nproc)]
    pipes: list[Pipe] = []
    procs: list[Any] = []
    results: list[dict[str, Any]] = []
    server_cpu: float | None = None
    try:
        for p in range(nproc):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(cfg, p, conn_ids[p], counters, child_end),
                daemon=True,
                name=f"ocs-bench-worker-{p}",
            )
            proc.start()
            child_end.close()
            pipes.append(parent_end)
            procs.append(proc)
        for p, pipe in enumerate(pipes):
            if not pipe.poll(60.0):
                raise RuntimeError(f"worker {p} did not connect within 60 s")
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(str(message[1]))
        t0 = time.monotonic() + 0.2
        for pipe in pipes:
            pipe.send(("start", t0))
        win_start = t0 + cfg.warmup
        win_end = win_start + cfg.duration
        cpu0: float | None = None
        cpu1: float | None = None
        last_t, last_answers = t0, 0.0
        next_tick = t0 + 1.0
        while True:
            now = time.monotonic()
            if cpu0 is None and now >= win_start:
                cpu0 = proc_cpu_seconds(server_pid) if server_pid else None
            if cpu1 is None and now >= win_end:
                cpu1 = proc_cpu_seconds(server_pid) if server_pid else None
                break
            if now >= next_tick:
                answers = sum(counters[i * 3] for i in range(nproc))
                errors = sum(counters[i * 3 + 1] for i in range(nproc))
                inflight = sum(counters[i * 3 + 2] for i in range(nproc))
                rate = (answers - last_answers) / (now - last_t) if now > last_t else 0.0
                last_t, last_answers = now, answers
                phase = "warm-up" if now < win_start else "measuring"
                if progress is not None:
                    progress(
                        f"{label}{cfg.mode} t={now - t0:5.1f}s {phase:9} "
                        f"answers/s={rate:9,.0f} errors={int(errors)} in-flight={int(inflight)}"
                    )
                next_tick += 1.0
            wake = min(x for x in (win_start, win_end, next_tick) if x > now)
            time.sleep(max(0.0, min(wake - time.monotonic(), 0.25)))
        if cpu0 is not None and cpu1 is not None:
            server_cpu = cpu1 - cpu0
        for p, pipe in enumerate(pipes):
            if not pipe.poll(cfg.drain + 60.0):
                raise RuntimeError(f"worker {p} sent no result")
            message = pipe.recv()
            if message[0] != "result":
                raise RuntimeError(str(message[1]))
            results.append(message[1])
        for proc in procs:
            proc.join(10.0)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
        for pipe in pipes:
            pipe.close()
    return _merge(cfg, results, server_cpu)


def _merge(cfg: LoadConfig, results: list[dict[str, Any]], server_cpu: float | None) -> LoadResult:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    mscc: dict[str, int] = {}
    server_requests: dict[str, int] = {}
    by_kind = dict.fromkeys(KINDS, 0)
    for r in results:
        lat = array.array("d")
        lat.frombytes(r["latencies"])
        latencies.extend(lat)
        for src, dst in ((r["errors"], errors), (r["mscc"], mscc)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        for k, v in r["server_requests"].items():
            server_requests[k] = server_requests.get(k, 0) + v
        for k, v in r["sent_by_kind"].items():
            by_kind[k] += v
    return LoadResult(
        mode=cfg.mode,
        duration_s=cfg.duration,
        answers=sum(r["answers_window"] for r in results),
        answers_total=sum(r["answers_total"] for r in results),
        sent_total=sum(r["sent_total"] for r in results),
        latencies_ms=latencies,
        errors=errors,
        mscc_results=mscc,
        final_unit_indications=sum(r["fui"] for r in results),
        server_requests=server_requests,
        requests_by_kind=by_kind,
        client_cpu_s=sum(r["cpu_s"] for r in results),
        server_cpu_s=server_cpu,
        send_lag_max_ms=max((r["send_lag_max_ms"] for r in results), default=0.0),
        send_lag_mean_ms=sum(r["send_lag_sum_ms"] for r in results)
        / max(1, sum(r["scheduled_sends"] for r in results)),
        processes=cfg.processes,
        connections=cfg.connections,
        concurrency=cfg.concurrency,
        rate=cfg.rate if cfg.mode == "open" else None,
        extra={"stray_answers": sum(r["stray"] for r in results)},
    )


# --- the whole benchmark (what `ocs bench` runs) --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchOptions:
    server: tuple[str, int] | None = None  # None: start our own on 127.0.0.1
    server_pid: int | None = None  # for the CPU figure of an external server
    load: LoadConfig = field(default_factory=LoadConfig)
    processes: int = 0  # 0: one per client CPU (at least 1, at most one per connection)
    vs_echo: bool = False
    provision: bool = True
    pin: bool = True
    profile_server: Path | None = None
    server_prefix: tuple[str, ...] | None = None  # see `charging_server_argv`
    histogram: Path | None = None
    data_base: Path | None = None  # parent of the self-started server's temporary data dir


def run_bench(opts: BenchOptions, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Provision, load the charging server, optionally the echo server, and report."""
    server_cpus, client_cpus = cpu_plan(opts.pin and opts.server is None)
    processes = opts.processes or max(1, len(client_cpus) if client_cpus else 1)
    cfg = replace(
        opts.load,
        processes=processes,
        client_cpus=client_cpus,
        run_id=opts.load.run_id or random.randrange(1, 1_000_000),
    )
    report: dict[str, Any] = {"machine_busy_percent_before": machine_busy_percent()}
    with tempfile.TemporaryDirectory(prefix="ocs-bench-", dir=opts.data_base) as tmp:
        work = Path(tmp)
        if opts.server is not None:
            host, port = opts.server
            result, provisioned = _bench_target(
                replace(cfg, host=host, port=port), opts.server_pid, opts, progress, "ocs "
            )
            report["server"] = f"{host}:{port}"
        else:
            data_dir = work / "data"
            server = ManagedServer(
                charging_server_argv(data_dir, opts.profile_server, opts.server_prefix),
                work,
                name="ocs-serve",
                cpus=server_cpus,
            )
            try:
                server.start()
                result, provisioned = _bench_target(
                    replace(cfg, port=server.port), server.pid, opts, progress, "ocs "
                )
            finally:
                code = server.stop()
            if code != 0:
                raise RuntimeError(f"the server exited with {code}: {server.log_tail()}")
            report["server"] = "self-started on 127.0.0.1"
            report["data_dir"] = str(data_dir.parent)
        report.update(result.summary())
        report["provisioned"] = provisioned
        report["echo_answers_per_s"] = None
        report["echo_ratio"] = None
        report["echo_ratio_per_cpu"] = None
        if opts.vs_echo:
            echo = ManagedServer(echo_server_argv(), work, name="ocs-echo", cpus=server_cpus)
            try:
                echo.start()
                echo_result = run_load(
                    replace(cfg, port=echo.port),
                    server_pid=echo.pid,
                    progress=progress,
                    label="echo ",
                )
            finally:
                echo.stop()
            es = echo_result.summary()
            report["echo_answers_per_s"] = es["answers_per_s"]
            report["echo_ratio"] = (
                round(result.answers_per_s / echo_result.answers_per_s, 3)
                if echo_result.answers_per_s
                else None
            )
            a, b = report["answers_per_server_cpu_s"], es["answers_per_server_cpu_s"]
            report["echo_ratio_per_cpu"] = round(a / b, 3) if a and b else None
            report["echo"] = {
                k: es[k]
                for k in (
                    "answers_per_s",
                    "answers_per_server_cpu_s",
                    "p50_ms",
                    "p99_ms",
                    "p999_ms",
                    "errors",
                    "errors_by_code",
                    "server_cpu_percent",
                    "client_cpu_percent",
                )
            }
    report["server_cpus"] = list(server_cpus) if server_cpus else None
    report["client_cpus"] = list(client_cpus) if client_cpus else None
    report["mix"] = dict(cfg.mix)
    report["subscribers"] = cfg.subscribers
    report["low_balance_subscribers"] = cfg.subscribers - cfg.funded
    report["warmup_s"] = cfg.warmup
    if opts.histogram is not None:
        write_histogram_png(opts.histogram, result.latencies_ms)
        report["histogram"] = str(opts.histogram)
    return report


def _bench_target(
    cfg: LoadConfig,
    pid: int | None,
    opts: BenchOptions,
    progress: ProgressFn | None,
    label: str,
) -> tuple[LoadResult, dict[str, int] | None]:
    provisioned = None
    if opts.provision:
        started = time.monotonic()
        provisioned = asyncio.run(provision(cfg.host, cfg.port, cfg))
        if progress is not None:
            progress(
                f"{label}provisioned {cfg.subscribers:,} accounts in "
                f"{time.monotonic() - started:.1f}s: {provisioned}"
            )
    return run_load(cfg, server_pid=pid, progress=progress, label=label), provisioned


def format_report(report: dict[str, Any]) -> str:
    """The human-readable report of `run_bench`."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}%"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    mode = report["mode"]
    shape = (
        f"{report['connections']} connections x {report['concurrency']} in flight"
        if mode == "closed"
        else f"{report['rate']:,.0f} requests/s over {report['connections']} connections"
    )
    lines = [
        f"ocs bench: {mode} loop, {shape}, {report['client_processes']} client process(es), "
        f"{report['duration_s']:g} s measured after {report['warmup_s']:g} s warm-up",
        f"mix {report['mix']} by requests; {report['subscribers']:,} subscribers "
        f"({report['low_balance_subscribers']:,} with a low balance); "
        f"server CPUs {report['server_cpus']}, client CPUs {report['client_cpus']}; "
        f"machine busy before the run: {report['machine_busy_percent_before']}% of all CPUs",
        "",
        f"{'target':<16}{'answers/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
        f"{'server CPU':>12}{'per CPU-s':>11}{'client CPU':>12}{'errors':>8}",
        f"{'charging server':<16}{report['answers_per_s']:>11,.0f}{ms(report['p50_ms']):>9}"
        f"{ms(report['p99_ms']):>9}{ms(report['p999_ms']):>10}"
        f"{pct(report['server_cpu_percent']):>12}{num(report['answers_per_server_cpu_s']):>11}"
        f"{pct(report['client_cpu_percent']):>12}{report['errors']:>8}",
    ]
    echo = report.get("echo")
    if echo:
        lines.append(
            f"{'echo server':<16}{echo['answers_per_s']:>11,.0f}{ms(echo['p50_ms']):>9}"
            f"{ms(echo['p99_ms']):>9}{ms(echo['p999_ms']):>10}"
            f"{pct(echo['server_cpu_percent']):>12}{num(echo['answers_per_server_cpu_s']):>11}"
            f"{pct(echo['client_cpu_percent']):>12}{echo['errors']:>8}"
        )
        per_cpu = report.get("echo_ratio_per_cpu")
        lines.append(
            f"charging / echo: {report['echo_ratio']:.1%} of answers/s"
            + (f", {per_cpu:.1%} per server CPU-second" if per_cpu is not None else "")
        )
    lines.append("")
    errs = report["errors_by_code"]
    lines.append("errors: " + (", ".join(f"{k}: {v}" for k, v in errs.items()) if errs else "none"))
    lines.append(
        f"requests sent by kind: {report['requests_by_kind']}; "
        f"MSCC results: {report['mscc_results']}; "
        f"Final-Unit-Indication: {report['final_unit_indications']}; "
        f"server requests: {report['server_requests'] or 'none'}"
    )
    if mode == "open":
        lines.append(
            f"send lag behind schedule: mean {report['send_lag_mean_ms']:.3f} ms, "
            f"max {report['send_lag_max_ms']:.1f} ms"
        )
    if report.get("histogram"):
        lines.append(f"latency histogram: {report['histogram']}")
    return "\n".join(lines)


# --- latency histogram as a PNG (no plotting library needed) --------------------------------

_GLYPHS: Final = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "m": "000000110111101",
    "s": "000011010001110",
    "p": "000111101111100",
    " ": "000000000000000",
}


def write_histogram_png(path: Path, latencies_ms: Sequence[float]) -> None:
    """A log-scale latency histogram (ms; the decades cover the samples) with p50 (blue), p99
    (orange) and p99.9 (red) marked, as an RGB PNG."""
    positive = [v for v in latencies_ms if v > 0]
    lo_exp = math.floor(math.log10(min(positive))) if positive else -2
    hi_exp = math.ceil(math.log10(max(positive))) if positive else 3
    lo_exp = max(lo_exp, -3)
    hi_exp = max(hi_exp, lo_exp + 1)
    lo_exp = max(lo_exp, hi_exp - 8)
    decades = hi_exp - lo_exp
    per_decade = 200 // decades
    nbins = decades * per_decade
    bar_w, margin_l, margin_b, margin_t, height = 4, 20, 30, 30, 300
    width = margin_l * 2 + nbins * bar_w
    counts = [0] * nbins
    for v in latencies_ms:
        pos = (_log10(max(v, 1e-9)) - lo_exp) * per_decade
        counts[min(max(int(pos), 0), nbins - 1)] += 1
    top = max(counts) if counts and max(counts) > 0 else 1
    px = [[(255, 255, 255)] * width for _ in range(height)]
    plot_h = height - margin_b - margin_t
    base_y = height - margin_b
    for i, c in enumerate(counts):
        h = round(plot_h * c / top)
        for y in range(base_y - h, base_y):
            for x in range(margin_l + i * bar_w, margin_l + i * bar_w + bar_w - 1):
                px[y][x] = (90, 90, 90)
    for x in range(margin_l, width - margin_l):
        px[base_y][x] = (0, 0, 0)

    def x_of(ms: float) -> int:
        pos = (_log10(max(ms, 1e-9)) - lo_exp) * per_decade * bar_w
        return margin_l + min(max(int(pos), 0), nbins * bar_w - 1)

    def text(s: str, x: int, y: int, color: tuple[int, int, int]) -> None:
        for ch in s:
            glyph = _GLYPHS.get(ch, _GLYPHS[" "])
            for gy in range(5):
                for gx in range(3):
                    if glyph[gy * 3 + gx] == "1":
                        for dy in range(2):
                            for dx in range(2):
                                yy, xx = y + gy * 2 + dy, x + gx * 2 + dx
                                if 0 <= yy < height and 0 <= xx < width:
                                    px[yy][xx] = color
            x += 8

    for d in range(decades + 1):
        value = 10.0 ** (lo_exp + d)
        x = margin_l + d * per_decade * bar_w
        x = min(x, width - margin_l - 1)
        for y in range(base_y, base_y + 5):
            px[y][x] = (0, 0, 0)
        label = f"{value:g}"
        text(label, max(0, x - 4 * len(label)), base_y + 8, (0, 0, 0))
    if latencies_ms:
        ordered = sorted(latencies_ms)
        marks = (
            ("p50", 50.0, (30, 90, 220)),
            ("p99", 99.0, (240, 140, 0)),
            ("p99.9", 99.9, (220, 30, 30)),
        )
        for n, (name, q, color) in enumerate(marks):
            x = x_of(percentile(ordered, q))
            for y in range(margin_t, base_y):
                px[y][x] = color
            text(name, margin_l + n * 60, 8, color)
        text("ms", margin_l + 3 * 60, 8, (0, 0, 0))
    raw = b"".join(b"\x00" + bytes(c for p in row for c in p) for row in px)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def _log10(v: float) -> float:
    return math.log10(v)
