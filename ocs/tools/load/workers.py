"""The load's workers: processes, their lean connections, the closed and open loop drivers.

`run_load` starts `LoadConfig.processes` worker processes (multiprocessing, spawn). Each opens its
share of the `connections` (over TLS with `LoadConfig.tls`) with its own lean asyncio Protocol
on uvloop: it does CER/CEA, then
writes pre-built frames (`traffic.FrameTemplate`) and matches answers by Hop-by-Hop-Id. It never
goes through the full `Client`/`Connection` per request. Answers are decoded with a lean msgspec
type that keeps only the Result-Codes (top level and per MSCC) and whether a grant carries
Final-Unit-Indication, and the Session-Id: an answer for another session than its request's
(another peer's cached answer) is an error, `wrong-session`, and ends the flow. A run is a
warm-up, then the measured window, then the flows in progress finish (bounded by `drain`
seconds); the parent merges what the workers measured (`measure.merge_results`).

Each connection is a peer of its own (`traffic.peer_origin_host`); its ids follow from the run
(`traffic.first_end_to_end`, `traffic.session_prefix`), and the workers publish every
connection's next End-to-End-Id and Session-Id counter in shared memory every 0.1 s
(`cursors`), which is what the hostile neighbour's `foreign-ids` aims with. With `hostile`
kinds, `run_load` starts that neighbour's process beside the workers
(`ocs.tools.load.hostile`), from the start of the warm-up to the end of the window.

Modes:

- closed loop: every connection keeps `concurrency` requests in flight; each answer sends the
  next request at once (the next step of its flow, or the first of a new flow). This measures
  the maximum throughput.
- open loop: requests are sent at a fixed aggregate `rate`, on a schedule fixed in advance
  (send i at t0 + i / rate, round robin over the connections). Latency is measured from the
  *scheduled* time, so a server (or client) that falls behind shows it in the latency instead of
  silently lowering the rate (no coordinated omission). Each scheduled send takes the next step
  of a flow whose previous answer arrived, or starts a new flow.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import functools
import multiprocessing
import os
import random
import signal
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final, cast

import msgspec
import uvloop

from ocs.edge.tls import client_context
from ocs.tools.load.config import KINDS, LoadConfig, ProgressFn
from ocs.tools.load.hostile import hostile_main
from ocs.tools.load.measure import (
    LoadResult,
    merge_results,
    proc_cpu_seconds,
    proc_fd_count,
    proc_rss_bytes,
)
from ocs.tools.load.traffic import (
    REALM,
    SID_DIGITS,
    FrameTemplate,
    first_end_to_end,
    flow_bodies,
    flow_weights,
    msisdn,
    peer_origin_host,
    session_prefix,
)
from protocol.avp import decode_avps, encode_frame_as
from protocol.codes import HEADER_LENGTH, VERSION, ApplicationId, CommandCode, Flag
from protocol.errors import ProtocolError
from protocol.messages import ASA, CER, DPA, DWA, RAA, Answer, avp_name

SUCCESS: Final = 2001
PACER_TICK_S: Final = 0.001  # open loop: the sender wakes at most once per tick
CURSOR_PERIOD_S: Final = 0.1  # how often the workers publish their connections' next ids
HOSTILE_RESULT_WAIT_S: Final = 30.0  # after the window, for the hostile neighbour's counters

_HEADER = struct.Struct(">IIIII")


class _LeanMscc(msgspec.Struct, rename=avp_name):
    result_code: int = 0
    final_unit_indication: dict[str, Any] | None = None
    load_band: str | None = None  # load-modulated prices (docs/protocol.md)


class _LeanAnswer(msgspec.Struct, rename=avp_name):
    """Only what the harness reads of an answer; msgspec skips the other keys."""

    result_code: int = 0
    session_id: str | None = None
    multiple_services_credit_control: list[_LeanMscc] | None = None


class _LeanRequest(msgspec.Struct, rename=avp_name):
    session_id: str | None = None


_ANSWER_DECODER: Final = msgspec.msgpack.Decoder(_LeanAnswer)
_REQUEST_DECODER: Final = msgspec.msgpack.Decoder(_LeanRequest)
_DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, ProtocolError)


def _decode_answer(version: int, code: int, body: bytes | bytearray) -> _LeanAnswer:
    """What the harness reads of an answer, in either encoding (WIRE.md 1.1)."""
    if version == VERSION:
        return _ANSWER_DECODER.decode(body)
    body = bytes(body)
    try:
        message = decode_avps(code, False, body)
    except ProtocolError:  # an error answer lacks what its command's answer needs
        return _LeanAnswer(result_code=_binary_result_code(body))
    return msgspec.convert(msgspec.to_builtins(message), _LeanAnswer)


def _binary_result_code(body: bytes) -> int:
    """The top-level Result-Code (268) of a binary body, 0 if it has none."""
    pos = 0
    while len(body) - pos >= 12:
        code, word = struct.unpack_from(">II", body, pos)
        length = word & 0xFFFFFF
        if length < 8:
            break
        if code == 268 and not word >> 31 and length == 12:
            return int(struct.unpack_from(">I", body, pos + 8)[0])
        pos += (length + 3) & ~3
    raise ProtocolError(5005, "an answer without Result-Code")


def _decode_session_id(version: int, code: int, body: bytes) -> str | None:
    if version == VERSION:
        return _REQUEST_DECODER.decode(body).session_id
    sid = getattr(decode_avps(code, True, body), "session_id", None)
    return sid if isinstance(sid, str) else None


# --- a worker's connections ----------------------------------------------------------------


class _Flow:
    __slots__ = ("kind", "sid", "sid_text", "step", "steps", "sub", "t0")

    def __init__(self, kind: int, steps: tuple[FrameTemplate, ...], sid: bytes, sub: bytes):
        self.kind = kind
        self.steps = steps
        self.sid = sid
        self.sid_text = sid.decode()
        self.sub = sub
        self.step = 0
        self.t0 = 0.0


class _LoadConnection(asyncio.Protocol):
    """One TCP connection of a worker: CER/CEA, then pre-built CCR frames."""

    def __init__(self, worker: _Worker, index: int) -> None:
        self.w = worker
        cfg = worker.cfg
        self.origin_host = peer_origin_host(cfg.run_id, index)
        self.sid_prefix = session_prefix(self.origin_host, cfg.epoch)
        sid_len = len(self.sid_prefix) + SID_DIGITS
        sub_len = len(msisdn(cfg.run_id, 0))
        self.templates: list[tuple[FrameTemplate, ...]] = [
            tuple(
                FrameTemplate(b, sid_len, sub_len, cfg.encoding)
                for b in flow_bodies(k, self.origin_host, cfg.updates)
            )
            for k in KINDS
        ]
        self.sid_counter = 0
        self.next_hbh = first_end_to_end(cfg.run_id, cfg.epoch, index)
        self.inflight: dict[int, _Flow] = {}
        self.ready: deque[_Flow] = deque()
        self.out: list[bytes] = []
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.cer_hbh = -1
        self.version = cfg.encoding

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
            auth_application_id=(int(ApplicationId.CREDIT_CONTROL),),
        )
        self._write(
            encode_frame_as(
                self.version,
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
            if w0 >> 24 != self.version or length < HEADER_LENGTH:
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
                answer = _decode_answer(self.version, w1 & 0xFFFFFF, body)
            except _DECODE_ERRORS:
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
            answer = _decode_answer(self.version, int(CommandCode.CAPABILITIES_EXCHANGE), body)
        except _DECODE_ERRORS:
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
            sid = _decode_session_id(self.version, code, body)
        except _DECODE_ERRORS:
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
            encode_frame_as(
                self.version,
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
        self.load_bands: dict[str, int] = {}  # answers' MSCCs by Load-Band
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
                    if m.load_band is not None:
                        self.load_bands[m.load_band] = self.load_bands.get(m.load_band, 0) + 1
        if self.win_start <= now < self.win_end:
            self.answers_window += 1
        elif now >= self.win_end and self.sending:
            self.sending = False
        code = answer.result_code
        flow.step += 1
        sid = answer.session_id
        if sid is not None and sid != flow.sid_text:
            # another session's answer (another peer's, from the duplicate cache): the flow
            # cannot go on
            self.errors["wrong-session"] = self.errors.get("wrong-session", 0) + 1
        elif code != SUCCESS:
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
        tls = self.cfg.tls
        context = client_context(tls) if tls is not None else None
        hostname = tls.hostname(self.cfg.host) if tls is not None else None
        for i in self.conn_ids:
            _, proto = await loop.create_connection(
                functools.partial(_LoadConnection, self, i),
                self.cfg.host,
                self.cfg.port,
                ssl=context,
                server_hostname=hostname,
            )
            assert isinstance(proto, _LoadConnection)
            await asyncio.wait_for(proto.opened, 10.0)
            self.conns.append(proto)

    def publish_cursors(self, cursors: Any) -> None:
        """Each connection's next End-to-End-Id and Session-Id counter, at its index."""
        for i, conn in zip(self.conn_ids, self.conns, strict=True):
            cursors[2 * i] = float(conn.next_hbh)
            cursors[2 * i + 1] = float(conn.sid_counter)

    async def _feed_cursors(self, cursors: Any) -> None:
        while True:
            self.publish_cursors(cursors)
            await asyncio.sleep(CURSOR_PERIOD_S)

    async def run(self, t0: float, counters: Any, cursors: Any) -> dict[str, Any]:
        cfg = self.cfg
        self.win_start = t0 + cfg.warmup
        self.win_end = self.win_start + cfg.duration
        monitor = asyncio.get_running_loop().create_task(self._monitor(counters))
        feed = asyncio.get_running_loop().create_task(self._feed_cursors(cursors))
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
        for task in (monitor, feed):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            "load_bands": self.load_bands,
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
    cfg: LoadConfig, index: int, conn_ids: list[int], counters: Any, cursors: Any, pipe: Pipe
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
        worker.publish_cursors(cursors)
        pipe.send(("ready", index))
        loop = asyncio.get_running_loop()
        message = await loop.run_in_executor(None, pipe.recv)
        if message[0] != "start":
            for conn in worker.conns:
                conn.close()
            return
        result = await worker.run(float(message[1]), counters, cursors)
        pipe.send(("result", result))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    pipe.close()


# --- one load run ---------------------------------------------------------------------------


def run_load(
    cfg: LoadConfig,
    *,
    server_pid: int | None = None,
    progress: ProgressFn | None = None,
    label: str = "",
    hostile: Sequence[str] = (),
) -> LoadResult:
    """Run the load of `cfg` with `cfg.processes` worker processes, and the hostile neighbour
    doing `hostile` (if any) in a process of its own; blocks until done."""
    ctx = multiprocessing.get_context("spawn")
    nproc = max(1, min(cfg.processes, cfg.connections))
    cfg = replace(cfg, processes=nproc)
    if cfg.epoch == 0:
        cfg = replace(cfg, epoch=int(time.time()) & 0xFFFFFFFF)
    counters = ctx.Array("d", nproc * 3, lock=False)
    cursors = ctx.Array("d", cfg.connections * 2, lock=False)
    conn_ids = [list(range(cfg.connections))[p::nproc] for p in range(nproc)]
    pipes: list[Pipe] = []
    procs: list[Any] = []
    results: list[dict[str, Any]] = []
    server_cpu: float | None = None
    hostile_pipe: Pipe | None = None
    hostile_counters: dict[str, Any] | None = None
    rss_max: int | None = None
    fds_max: int | None = None

    def sample_server() -> None:
        nonlocal rss_max, fds_max
        if server_pid is None:
            return
        rss, fds = proc_rss_bytes(server_pid), proc_fd_count(server_pid)
        if rss is not None:
            rss_max = max(rss_max or 0, rss)
        if fds is not None:
            fds_max = max(fds_max or 0, fds)

    try:
        for p in range(nproc):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(cfg, p, conn_ids[p], counters, cursors, child_end),
                daemon=True,
                name=f"ocs-bench-worker-{p}",
            )
            proc.start()
            child_end.close()
            pipes.append(parent_end)
            procs.append(proc)
        if hostile:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=hostile_main,
                args=(cfg, tuple(hostile), cursors, child_end),
                daemon=True,
                name="ocs-bench-hostile",
            )
            proc.start()
            child_end.close()
            hostile_pipe = parent_end
            procs.append(proc)
        for p, pipe in enumerate(pipes):
            if not pipe.poll(60.0):
                raise RuntimeError(f"worker {p} did not connect within 60 s")
            message = pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(str(message[1]))
        if hostile_pipe is not None:
            if not hostile_pipe.poll(60.0):
                raise RuntimeError("the hostile neighbour did not start within 60 s")
            message = hostile_pipe.recv()
            if message[0] != "ready":
                raise RuntimeError(str(message[1]))
        t0 = time.monotonic() + 0.2
        for pipe in pipes:
            pipe.send(("start", t0))
        win_start = t0 + cfg.warmup
        win_end = win_start + cfg.duration
        if hostile_pipe is not None:
            hostile_pipe.send(("start", t0, win_end))
        sample_server()
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
                sample_server()
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
        sample_server()
        if cpu0 is not None and cpu1 is not None:
            server_cpu = cpu1 - cpu0
        for p, pipe in enumerate(pipes):
            if not pipe.poll(cfg.drain + 60.0):
                raise RuntimeError(f"worker {p} sent no result")
            message = pipe.recv()
            if message[0] != "result":
                raise RuntimeError(str(message[1]))
            results.append(message[1])
        if hostile_pipe is not None:
            if not hostile_pipe.poll(HOSTILE_RESULT_WAIT_S):
                raise RuntimeError("the hostile neighbour sent no result")
            message = hostile_pipe.recv()
            if message[0] != "result":
                raise RuntimeError(str(message[1]))
            hostile_counters = message[1]
        for proc in procs:
            proc.join(10.0)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
        for pipe in pipes:
            pipe.close()
        if hostile_pipe is not None:
            hostile_pipe.close()
    result = merge_results(cfg, results, server_cpu)
    result.extra["server_rss_max_mb"] = None if rss_max is None else round(rss_max / 2**20, 1)
    result.extra["server_fds_max"] = fds_max
    result.hostile_peer = hostile_counters
    return result
