"""The simulator: one seed, one data directory, a number of steps; see docs/vopr.md.

Each step advances the simulated clock and does one thing: a request (normal traffic or, with
the hostile classes enabled, a hostile one) through `PeerHandle.data_received`, a tick, a
commit of the journal (answers, CDRs and RAR/ASR leave only then), a CDR fsync, a checkpoint, a
catalog reload, a clean restart, or a crash (what was not committed is dropped, the journal and
the current CDR file are cut at a random offset of their uncommitted tail) followed by a restart
that replays the journal and by the clients retransmitting what they had in flight.

After every step the invariants are checked (`Simulation.check_step`); any violation, and any
exception that escaped the node, is a `Finding`, which ends the run with the seed and the step
that reproduce it. A replica core fed the journaled records (what recovery replays,
`CoreComponent.replay`) gives the state expected after every record: live state equals it
after every step, and a restart must recover exactly the state of the record it stopped at.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec
import structlog

from ocs.core.charging import Action, ActionKind, ChargingCore, Input, InputKind, encode_input
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.cdr_files import read_lines
from ocs.edge.journal import RECORD_HEADER, write_snapshot_file
from ocs.edge.server import PeerHandle, RequestContext, ServerConfig
from ocs.node import CoreComponent, NodeConfig
from protocol.codec import decode_body, encode_frame, frame_body
from protocol.codes import FLAG_E, FLAG_R, FLAG_T, ApplicationId, CommandCode, ResultCode
from protocol.framing import FrameBuffer
from protocol.messages import CCA, CER, Answer, ErrorAnswer
from tests.vopr.harness import (
    SimClock,
    SimNode,
    SimTransport,
    connect,
    newest,
    open_node,
    run,
    sim_clock,
)
from tests.vopr.workload import (
    AMR_CMD,
    CCR_CMD,
    DUPLICATE_WINDOW_MS,
    REALM,
    REFUSALS,
    WINDOW_MARGIN_MS,
    Expect,
    Probe,
    Workload,
)

RAR_CMD: Final = int(CommandCode.RE_AUTH)
ASR_CMD: Final = int(CommandCode.ABORT_SESSION)
# Monday 2026-01-05 17:00 Paris (16:00 UTC): peak data prices end at 20:00
START_MS: Final = int(datetime(2026, 1, 5, 16, 0, tzinfo=UTC).timestamp()) * 1000
# the catalogs a run switches between: the demo's with low usage thresholds (RAR often), the
# same dearer, the demo's with small partial records; in all, video (RG 20) grants are valid for
# 10 min beside data's hour, so a session's longest Validity-Time is not always its last
_BASE: Final = demo_catalog_text().replace(
    'quantum = "50 MiB"\nvalidity_time = "1 h"', 'quantum = "50 MiB"\nvalidity_time = "10 min"'
)
CATALOGS: Final = (
    _BASE.replace('["5.00", "10.00", "20.00"]', '["0.50", "2.00", "20.00"]'),
    _BASE.replace('["5.00", "10.00", "20.00"]', '["0.50", "2.00", "20.00"]')
    .replace('price = "0.02"', 'price = "0.03"')
    .replace('price = "0.10"', 'price = "0.12"'),
    _BASE.replace('volume_limit = "100 MiB"', 'volume_limit = "20 MiB"'),
)
assert all('validity_time = "10 min"\nthreshold = "0.1"' in c for c in CATALOGS)
SERVER: Final = ServerConfig(
    origin_host="ocs.sim.test",
    origin_realm=REALM,
    cer_timeout_s=1e9,  # the connection timers run on the real clock: never let them fire
    watchdog_s=1e9,
)

# what a step does, by probability (the rest: a request)
P_CRASH: Final = 0.004
P_RESTART: Final = 0.002
P_CHECKPOINT: Final = 0.008
P_CATALOG: Final = 0.004
P_SYNC: Final = 0.05
P_TICK: Final = 0.12
P_COMMIT: Final = 0.35  # after the step's action, the journal is committed
P_HOSTILE: Final = 0.3  # of the requests, when hostile classes are enabled
P_RETRY: Final = 0.85  # a request in flight at a crash is sent again
LOG_FACTOR: Final = 8  # log bytes per byte received, at most (plus LOG_ALLOWANCE per step)
LOG_ALLOWANCE: Final = 4096
P_WATCH: Final = 0.25  # of the normal requests, whether a refusal changed the state is checked


class Finding(Exception):
    """An invariant or an expectation that did not hold: the run stops here."""

    def __init__(self, kind: str, message: str, probe: Probe | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.probe = probe
        self.step = -1


@dataclass(frozen=True, slots=True)
class Settings:
    seed: int
    steps: int
    hostile: frozenset[str] = frozenset()
    workdir: Path | None = None  # a temporary directory under it (default: /dev/shm or /tmp)
    trace: bool = False


@dataclass
class Summary:
    seed: int
    steps: int
    hostile: frozenset[str]
    counters: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    digest: str = ""
    finding: Finding | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.finding is None


class Processed(NamedTuple):
    """A request of a session the server processed (`Simulation.track_session`)."""

    lsn: int
    at_ms: int
    number: int
    validity_s: int


class Expected(NamedTuple):
    """The state after one journal record, as the replica computed it."""

    digest: bytes
    admin_net: int  # debits - credits of administration so far
    cdr_total: int  # sum of CDR charges so far
    cdr_seq: int


def state_digest(core: ChargingCore, ledger: Ledger) -> bytes:
    h = hashlib.blake2b(core.snapshot(), digest_size=16)
    h.update(ledger.snapshot())
    return h.digest()


def fingerprint(core: ChargingCore, now_ms: int) -> bytes:
    """The business state (no duplicate cache, sessions unpacked): what a refusal must not
    change. The debits a refund may draw on are taken as of `now_ms`: every input forgets
    those that left the refund window (WIRE.md 5.4), refused or not, which is the clock's doing,
    not the request's."""
    ledger = core.ledger
    state = STATE_DECODER.decode(core.snapshot(duplicates=False))
    horizon_ms = now_ms - state.refund_window_s * 1000
    refundable = [
        (account, rg, kept)
        for account, rg, entries in state.refundable
        if (kept := [e for e in entries if e.at_ms >= horizon_ms])
    ]
    state = msgspec.structs.replace(state, refundable=refundable)
    h = hashlib.blake2b(STATE_ENCODER.encode(state), digest_size=16)
    h.update(
        msgspec.msgpack.encode(
            [list(ledger.accounts()), list(ledger.reservations()), ledger.totals()]
        )
    )
    return h.digest()


def cdr_charge(line: bytes) -> int:
    record = json.loads(line)
    charge = record.get("charge")
    if type(charge) is not int:
        raise ValueError(f"charge {charge!r} is not an int")
    return charge


class Replica:
    """A second core fed the journaled records exactly as recovery replays them."""

    def __init__(self, core: ChargingCore, admin_net: int, cdr_total: int) -> None:
        self.core = core
        self.ledger = core.ledger
        self.component = CoreComponent(core)
        self.admin_net = admin_net
        self.cdr_total = cdr_total
        self.lines: list[tuple[int, bytes]] = []  # CDRs of the current step

    @classmethod
    def fresh(cls, catalog_text: str, config: NodeConfig) -> Replica:
        core = ChargingCore(
            Ledger(),
            catalog_text,
            origin_host=SERVER.origin_host,
            origin_realm=SERVER.origin_realm,
            min_tcc_s=config.min_tcc_s,
        )
        return cls(core, 0, 0)

    @classmethod
    def copy_of(cls, live: ChargingCore, config: NodeConfig, expected: Expected) -> Replica:
        replica = cls.fresh(live.catalog_text, config)
        replica.ledger.restore(live.ledger.snapshot())
        replica.core.restore(live.snapshot())
        replica.admin_net = expected.admin_net
        replica.cdr_total = expected.cdr_total
        return replica

    def apply(self, lsn: int, record: Input) -> Expected:
        before = self.ledger.totals()
        try:
            self.component.replay(encode_input(record))
        except Exception as exc:
            raise Finding(
                "replay", f"record {lsn} ({record.kind.name}) fails in replay: {_tb(exc)}"
            ) from exc
        after = self.ledger.totals()
        if record.kind is InputKind.REQUEST and record.command == AMR_CMD:
            self.admin_net += (after.debits - before.debits) - (after.credits - before.credits)
        for seq, line in self.core.take_cdrs():
            try:
                self.cdr_total += cdr_charge(line)
            except Exception as exc:
                raise Finding("cdr", f"CDR {seq} has no int charge: {exc}") from exc
            self.lines.append((seq, line))
        try:
            return self.expected()
        except Exception as exc:
            raise Finding(
                "snapshot", f"the state after record {lsn} cannot be snapshotted: {_tb(exc)}"
            ) from exc

    def expected(self) -> Expected:
        return Expected(
            state_digest(self.core, self.ledger), self.admin_net, self.cdr_total, self.core.cdr_seq
        )


@dataclass
class WirePeer:
    """A network element's connection: its CER's Origin-Host, its ids, what it waits for."""

    name: str
    port: int
    handle: PeerHandle | None = None
    transport: SimTransport | None = None
    frames: FrameBuffer = field(default_factory=lambda: FrameBuffer(1 << 24))
    hbh: int = 0
    e2e: int = 0
    pending: dict[int, Probe] = field(default_factory=dict)

    def next_hbh(self) -> int:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        return self.hbh

    def next_e2e(self) -> int:
        self.e2e = (self.e2e + 1) & 0xFFFFFFFF
        return self.e2e


def default_workdir() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir():
        try:
            with tempfile.TemporaryDirectory(dir=shm):
                return shm
        except OSError:
            pass
    return Path(tempfile.gettempdir())


class Simulation:
    """One seed's run in `directory` (`simulate` makes a temporary one)."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.clock = SimClock(START_MS + self.rng.randrange(7 * 86400) * 1000)
        self.workload = Workload(self.rng, settings.hostile, lambda: self.clock.now_ms)
        self.workload.server_number = self.server_number
        self.workload.refundable_units = self.refundable_units
        self.dir = directory
        self.catalog_file = directory / "catalog.toml"
        self.catalog_file.write_text(CATALOGS[0])
        self.config = NodeConfig(
            data_dir=directory / "data",
            catalog=self.catalog_file,
            cdr_rotate_bytes=64 << 10,
            cdr_rotate_seconds=1e9,  # rotation by age reads the real clock
            fork_checkpoints=False,
        )
        self.loop = asyncio.new_event_loop()
        self.summary = Summary(settings.seed, settings.steps, settings.hostile)
        self.counters = self.summary.counters
        self.trace = hashlib.blake2b(digest_size=16)
        self.peers: dict[str, WirePeer] = {}
        self.step = -1
        self.current: Probe | None = None  # the request being handled
        # what the simulator knows of the node
        self._node: SimNode | None = None
        self.replica = Replica.fresh(CATALOGS[0], self.config)
        self.expected: dict[int, Expected] = {0: self.replica.expected()}
        self.cdr_lines: dict[int, bytes] = {}
        self.cdr_total = 0
        self.last_seq = 0
        self.acked_lsn = 0
        self.unacked: list[Probe] = []  # handled by the node, answer not released yet
        self.in_flight: list[Probe] = []  # unanswered when the node went down
        # (served subscriber, rating group) -> [debited, refunded] by events in micro-units,
        # then [debited, refunded] in units
        self.refund_books: dict[tuple[str, int], list[int]] = {}
        self.supervised: dict[str, list[Processed]] = {}  # open sessions' processed requests
        self.session_answers: dict[str, set[bytes]] = {}  # digests of every 2001 a sid had
        self.node_answer: bytes | None = None  # what the node answered the current request
        self.logs: list[MutableMapping[str, Any]] = []
        self.received = 0  # bytes the server received in this step
        self.last_probe: Probe | None = None
        self.deferred: Finding | None = None  # raised in a hook, perhaps caught by the node

    @property
    def node(self) -> SimNode:
        node = self._node
        assert node is not None
        return node

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.perf_counter()
        try:
            with sim_clock(self.clock), structlog.testing.capture_logs() as logs:
                self.logs = logs
                try:
                    self.start()
                    for step in range(self.settings.steps):
                        self.step = step
                        self.one_step()
                        self.check_logs()
                        self.check_step()
                    self.step = self.settings.steps
                    self.finish()
                    self.check_logs()
                except Finding as found:
                    found.step = self.step
                    last = self.last_probe
                    if found.probe is None and last is not None and last.step == self.step:
                        found.probe = last  # (a check after the step: the step's request)
                    self.summary.finding = found
                except Exception as exc:  # a bug of the simulator itself
                    bug = Finding("simulator", _tb(exc), self.current)
                    bug.step = self.step
                    self.summary.finding = bug
                finally:
                    self.shutdown()
        finally:
            self.loop.close()
            self.summary.seconds = time.perf_counter() - started
            self.summary.digest = self.trace.hexdigest()
        return self.summary

    def note(self, *parts: object) -> None:
        """Add to the trace digest (what a run did, to compare runs of one seed)."""
        for part in parts:
            self.trace.update(part if isinstance(part, bytes) else repr(part).encode())
            self.trace.update(b"\x00")
        if self.settings.trace:
            print(
                f"  [{self.step}]",
                *(p if not isinstance(p, bytes) else f"<{len(p)} B>" for p in parts),
            )

    def start(self) -> None:
        self.open()

    def shutdown(self) -> None:
        """Leave the data directory (the run is over, or a finding stopped it)."""
        node = self._node
        self._node = None
        if node is None:
            return
        with contextlib.suppress(Exception):
            node.cdrs.close()
        with contextlib.suppress(Exception):
            node.store.close()

    def one_step(self) -> None:
        rng = self.rng
        self.advance_time()
        roll = rng.random()
        if roll < P_CRASH:
            self.crash()
        elif (roll := roll - P_CRASH) < P_RESTART:
            self.restart_clean()
        elif (roll := roll - P_RESTART) < P_CHECKPOINT:
            self.checkpoint()
        elif (roll := roll - P_CHECKPOINT) < P_CATALOG:
            self.reload_catalog()
        elif (roll := roll - P_CATALOG) < P_SYNC:
            self.sync_cdrs()
        elif (roll := roll - P_SYNC) < P_TICK:
            self.tick()
        else:
            probe = None
            if self.workload.hostile and rng.random() < P_HOSTILE:
                probe = self.workload.hostile_probe()
            if probe is None:
                probe = self.workload.normal()
            if probe is not None:
                self.send(probe)
        if rng.random() < P_COMMIT:
            self.release()

    def advance_time(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.9:
            dt = rng.randint(0, 1500)
        elif roll < 0.98:
            dt = rng.randint(2_000, 300_000)
        elif roll < 0.995:
            dt = rng.randint(300_000, 3_600_000)
        else:
            dt = rng.randint(3_600_000, 4 * 3_600_000)
        self.clock.now_ms += dt

    # --- requests ------------------------------------------------------------------------------

    def peer(self, name: str) -> WirePeer | None:
        """The peer's open connection (connected and CER sent on first use); None if the
        server refused its CER."""
        peer = self.peers.get(name)
        if peer is None:
            peer = self.peers[name] = WirePeer(name=name, port=40_000 + len(self.peers))
        if peer.handle is not None:
            return peer
        handle, transport = connect(self.node, peer.port)
        peer.handle, peer.transport = handle, transport
        peer.frames = FrameBuffer(1 << 24)
        cer = CER(
            origin_host=name,
            origin_realm=REALM,
            host_ip_address=("127.0.0.1",),
            vendor_id=0,
            product_name="vopr",
            auth_application_id=(
                int(ApplicationId.CREDIT_CONTROL),
                int(ApplicationId.ADMINISTRATION),
            ),
        )
        frame = encode_frame(
            cer,
            flags=FLAG_R,
            command_code=CommandCode.CAPABILITIES_EXCHANGE,
            application_id=0,
            hop_by_hop=peer.next_hbh(),
            end_to_end=peer.next_e2e(),
        )
        self.received += len(frame)
        try:
            handle.data_received(frame)
            self.node.server.serve_queued()
        except Exception as exc:
            raise Finding("exception", f"CER of {name[:80]!r}: {_tb(exc)}") from exc
        cea = transport.take()
        buffer = FrameBuffer(1 << 24)
        buffer.feed(cea)
        got = buffer.next_frame()
        if got is None:
            raise Finding("answer", f"no CEA for the CER of {name[:80]!r}")
        answer = decode_body(CommandCode.CAPABILITIES_EXCHANGE, False, got[1])
        assert isinstance(answer, Answer)
        self.note("cea", name, answer.result_code)
        if answer.result_code != ResultCode.SUCCESS or transport.closing:
            self.disconnect(peer)
            return None
        return peer

    def disconnect(self, peer: WirePeer) -> None:
        """The connection is gone: what it waited for is in flight (sent again later)."""
        handle = peer.handle
        peer.handle = peer.transport = None
        if handle is not None:
            handle.connection_lost(None)
        for probe in peer.pending.values():
            if probe.handled and probe.answer is None and probe not in self.in_flight:
                self.in_flight.append(probe)
        peer.pending.clear()

    def send(self, probe: Probe, *, again: bool = False) -> None:
        peer = self.peer(probe.peer)
        if peer is None:
            self.counters["refused-peer"] += 1
            self.abandon(probe)
            return
        node = self.node
        handle, transport = peer.handle, peer.transport
        assert handle is not None and transport is not None
        if probe.e2e is None:
            probe.e2e = peer.next_e2e()
        probe.hbh = peer.next_hbh()
        probe.step = self.step
        if not again:
            probe.sent_ms = self.clock.now_ms
        probe.answer = None
        probe.result_code = None
        app = (
            ApplicationId.CREDIT_CONTROL
            if probe.command != AMR_CMD
            else ApplicationId.ADMINISTRATION
        )
        frame = frame_body(
            probe.body,
            flags=FLAG_R | (FLAG_T if probe.retransmit else 0) | probe.header_flags,
            command_code=probe.command,
            application_id=int(app) if probe.app is None else probe.app,
            hop_by_hop=probe.hbh,
            end_to_end=probe.e2e,
        )
        self.counters["requests"] += 1
        self.counters[f"requests:{probe.cls}"] += 1
        self.received += len(frame)
        self.last_probe = probe
        self.note("send", probe.label, probe.peer, probe.e2e, probe.body)
        core = node.core
        # whether a refusal changed the state: for every hostile request and every one that
        # expects something, and a sample of the rest (the fingerprint costs a snapshot)
        watched = probe.cls != "normal" or probe.expect is not None or self.rng.random() < P_WATCH
        before = fingerprint(core, self.clock.now_ms) if watched else b""
        last_lsn = node.store.journal.last_lsn
        probe.handled = False
        probe.lsn = None
        self.node_answer = None
        self.current = probe
        peer.pending[probe.hbh] = probe
        try:
            handle.data_received(frame)
            node.server.serve_queued()  # requests wait for their turn; served now, in order
        except Finding:
            raise
        except Exception as exc:
            raise Finding("exception", f"escaped the node: {_tb(exc)}", probe) from exc
        finally:
            self.current = None
        self.raise_deferred()
        probe.changed = fingerprint(core, self.clock.now_ms) != before if watched else None
        if probe.lsn is not None and self.node_answer is not None:
            self.track_session(probe, self.node_answer)
        if node.store.journal.last_lsn > last_lsn:
            self.counters["journaled"] += 1
        if probe.handled:
            if probe.lsn is None:
                self.counters["duplicates"] += 1
            self.unacked.append(probe)
        else:
            self.counters["refused-by-edge"] += 1
            if probe.changed:
                raise Finding("refusal", "a request the edge refused changed the state", probe)
        self.read(peer, immediate=True)
        if transport.closing:
            self.counters["connections-closed"] += 1
            self.disconnect(peer)

    def abandon(self, probe: Probe) -> None:
        """A request that will never be answered: its session is given up (the server's
        supervision closes it)."""
        value = probe.value
        sid = value.get("Session-Id") if isinstance(value, dict) else None
        if isinstance(sid, str):
            s = self.workload.sessions.get(sid)
            if s is not None and s.last is probe:
                del self.workload.sessions[sid]

    def read(self, peer: WirePeer, *, immediate: bool = False) -> None:
        transport = peer.transport
        if transport is None:
            return
        peer.frames.feed(transport.take())
        while (frame := peer.frames.next_frame()) is not None:
            header, body = frame
            if header.flags & FLAG_R:
                continue  # (RAR/ASR are not sent: `SimNode._send_actions`)
            probe = peer.pending.pop(header.hop_by_hop, None)
            if probe is None:
                raise Finding("answer", f"{peer.name[:80]!r} got an answer that matches no request")
            if immediate and probe.handled:
                raise Finding(
                    "durability", "an answer left before its journal record was committed", probe
                )
            self.answered(probe, header.flags, header.end_to_end, body)

    def answered(self, probe: Probe, flags: int, e2e: int, body: bytes) -> None:
        if e2e != probe.e2e:
            raise Finding("answer", f"End-to-End-Id {e2e} answers {probe.e2e}", probe)
        try:
            if probe.command in (CCR_CMD, AMR_CMD, RAR_CMD, ASR_CMD):
                answer = decode_body(probe.command, False, body)
            else:  # an unknown command: answered with the error AVPs only
                answer = msgspec.msgpack.decode(body, type=ErrorAnswer)
        except Exception as exc:
            raise Finding("answer", f"the answer does not decode: {exc}", probe) from exc
        assert isinstance(answer, Answer)
        code = answer.result_code
        probe.answer = body
        probe.answer_flags = flags
        probe.result_code = code
        self.summary.codes[code] += 1
        self.note("answer", probe.label, code, body)
        if bool(flags & FLAG_E) != (3000 <= code < 4000):
            raise Finding("answer", f"E flag {bool(flags & FLAG_E)} on Result-Code {code}", probe)
        try:
            ResultCode(code)
        except ValueError:
            raise Finding("answer", f"unknown Result-Code {code}", probe) from None
        if code == ResultCode.UNABLE_TO_COMPLY and probe.command in (CCR_CMD, AMR_CMD):
            raise Finding(
                "unable-to-comply", "answered 5012: the core failed on an accepted input", probe
            )
        value = probe.value
        if (
            probe.lsn is not None  # processed (not a duplicate answered from the cache)
            and isinstance(answer, CCA)
            and isinstance(value, dict)
            and answer.session_id != value.get("Session-Id")
        ):
            raise Finding("answer", "the CCA does not echo the Session-Id", probe)
        if probe.changed and code in REFUSALS:
            raise Finding("refusal", f"answered {code} but changed the state", probe)
        if probe.expect is not None:
            self.check_expect(probe, probe.expect, answer, body)
        if probe.handled and probe.lsn is not None:
            self.workload.history.append(probe)
        if probe.on_answer is not None:
            probe.on_answer(probe, answer)

    def track_session(self, probe: Probe, body: bytes) -> None:
        """What supervision may do to a session (WIRE.md 5.3: closed after Tcc = 2 x its
        longest Validity-Time without a request): when the server processed its requests and
        the Validity-Times it granted. Judged when the request is processed: it counts if it
        was journaled and answered 2001 with an answer the session id never had before. A
        repeat (WIRE.md 6: the last (Session-Id, CC-Request-Number) again, of an open or a
        recently closed session) is answered with earlier bytes; a fresh request whose answer
        happens to equal an earlier one is not counted either, which only weakens the check.
        A TERMINATION answered 2001 leaves no session, a new INITIAL starts afresh. A crash
        forgets what it lost (`built`)."""
        try:
            answer = decode_body(CCR_CMD, False, body)
        except Exception:
            return  # (the release reports it)
        if not isinstance(answer, CCA) or answer.result_code != ResultCode.SUCCESS:
            return
        sid, kind, number = answer.session_id, answer.cc_request_type, answer.cc_request_number
        if sid is None or kind is None or number is None or int(kind) == 4:
            return
        if int(kind) == 3:  # closed now, or closed already (a repeat): no session either way
            self.supervised.pop(sid, None)
            return
        answers = self.session_answers.setdefault(sid, set())
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if digest in answers:
            return
        answers.add(digest)
        validity = max(
            (m.validity_time or 0 for m in answer.multiple_services_credit_control or ()),
            default=0,
        )
        assert probe.lsn is not None
        processed = Processed(probe.lsn, self.clock.now_ms, number, validity)
        if int(kind) == 1:  # a new session: nothing of an earlier one with that id is left
            self.supervised[sid] = [processed]
        else:
            self.supervised.setdefault(sid, []).append(processed)

    def check_expect(self, probe: Probe, expect: Expect, answer: Answer, body: bytes) -> None:
        code = answer.result_code
        self.counters[f"expected:{expect.finding}"] += 1
        if expect.codes is not None and code not in expect.codes:
            raise Finding(
                expect.finding,
                f"answered {code}, expected {sorted(expect.codes)}"
                f" ({answer.failed_avp!r} {getattr(answer, 'error_message', None)!r})",
                probe,
            )
        if expect.failed_avp is not None and not _names(answer.failed_avp, expect.failed_avp):
            raise Finding(
                expect.finding,
                f"Failed-AVP {answer.failed_avp!r} does not name {expect.failed_avp}",
                probe,
            )
        if expect.same_as is not None and body != expect.same_as:
            first = decode_body(probe.command, False, expect.same_as)
            raise Finding(
                expect.finding,
                f"answered {_short(answer)} where the first answer was {_short(first)}",
                probe,
            )
        if expect.unchanged and probe.changed:
            raise Finding(expect.finding, f"answered {code} and changed the state", probe)

    # --- node hooks (tests.vopr.harness.Hooks) -------------------------------------------------

    def journaled(self, lsn: int, record: Input) -> None:
        if record.kind is InputKind.REQUEST and self.current is not None:
            self.current.lsn = lsn
        try:
            self.expected[lsn] = self.replica.apply(lsn, record)
        except Finding as finding:
            finding.probe = self.current
            raise

    def produced(self, cdrs: list[tuple[int, int, bytes]]) -> None:
        for _, seq, line in cdrs:
            if seq != self.last_seq + 1:
                raise Finding("cdr", f"CDR {seq} follows {self.last_seq}", self.current)
            self.last_seq = seq
            try:
                record = json.loads(line)
                charge = cdr_charge(line)
            except Exception as exc:
                raise Finding(
                    "cdr", f"CDR {seq} is not a JSON record with an int charge: {exc}", self.current
                ) from exc
            if record.get("recordSequenceNumber") != seq:
                raise Finding(
                    "cdr",
                    f"CDR {seq} says recordSequenceNumber {record.get('recordSequenceNumber')}",
                    self.current,
                )
            self.cdr_total += charge
            self.cdr_lines[seq] = line
            self.book(record)
            self.count_paths(record)
            if record.get("causeForRecordClosing") == "abnormalRelease":
                self.check_supervision(str(record.get("sessionId")))

    def check_supervision(self, sid: str) -> None:
        """A session closed by supervision was silent for at least 2 x the longest
        Validity-Time it was granted (to the second: deadlines are kept in seconds)."""
        track = self.supervised.pop(sid, None)
        if not track:
            return
        last_ms = max(p.at_ms for p in track)
        longest_s = max(p.validity_s for p in track)
        silent_ms = self.clock.now_ms - last_ms
        if silent_ms < 2 * longest_s * 1000 - 1000:
            raise Finding(
                "supervision",
                f"{sid[:60]!r} closed by supervision after {silent_ms} ms of silence; its "
                f"longest Validity-Time is {longest_s} s (Tcc {2 * longest_s} s)",
            )

    def count_paths(self, record: dict[str, Any]) -> None:
        """Which money paths the CDRs show were taken (the summary's `paths`)."""
        counters = self.counters
        counters[f"cdr:{record.get('causeForRecordClosing')}"] += 1
        action = record.get("requestedAction")
        if action is not None:
            counters[f"cdr:{action}"] += 1
        for usage in record.get("listOfMultipleUnitUsage", ()):
            for c in usage.get("usedUnitContainers", ()):
                if c.get("beyondGrant"):
                    counters["cdr:beyond-grant"] += 1
                if c.get("setupFee"):
                    counters["cdr:setup-fee"] += 1
                if c.get("tariffChangeUsage") is not None:
                    counters["cdr:tariff-change"] += 1
                if "LINKED_USAGE" in c.get("triggers", ()):
                    counters["cdr:linked-usage"] += 1

    def book(self, record: dict[str, Any]) -> None:
        """Refunds never give back more than DIRECT_DEBITING took (WIRE.md 5.4), per served
        subscriber and rating group, over the whole run; and the units the CDRs say were
        debited and not refunded bound what a refund may ask (`refundable_units`)."""
        action = record.get("requestedAction")
        if action not in ("DIRECT_DEBITING", "REFUND_ACCOUNT"):
            return
        for usage in record.get("listOfMultipleUnitUsage", ()):
            key = (str(record.get("servedSubscriber")), int(usage["ratingGroup"]))
            books = self.refund_books.setdefault(key, [0, 0, 0, 0])
            containers = usage.get("usedUnitContainers", ())
            charge = sum(int(c.get("charge", 0)) for c in containers)
            units = sum(
                int(c.get("time", 0) or c.get("totalVolume", 0) or c.get("serviceSpecificUnits", 0))
                for c in containers
            )
            if action == "DIRECT_DEBITING":
                books[0] += charge
                books[2] += units
            else:
                books[1] -= charge
                books[3] += units
                if "refunds" in self.settings.hostile and books[1] > books[0]:
                    raise Finding(
                        "refunds",
                        f"refunds of {books[1]} to {key[0][:40]!r} for rating group {key[1]} "
                        f"exceed the {books[0]} DIRECT_DEBITING took",
                        self.current,
                    )

    def actions(self, actions: list[Action], durable_lsn: int, last_lsn: int) -> None:
        if durable_lsn < last_lsn:
            raise Finding(
                "durability",
                f"RAR/ASR sent with the journal durable to {durable_lsn} of {last_lsn}",
            )
        for action in actions:
            kind = "rar" if action.kind is ActionKind.RAR else "asr"
            self.counters[kind] += 1
            self.workload.server_request(kind, action.session_id)

    def answered_by_node(self, ctx: RequestContext, answer: Answer | bytes) -> None:
        probe = self.current
        if probe is not None:
            probe.handled = True
            if probe.command == CCR_CMD and isinstance(answer, bytes):
                self.node_answer = answer

    def fatal(self, event: str, exc: BaseException) -> None:
        raise Finding("fatal", f"the node would stop ({event}): {exc!r}", self.current)

    def built(self, node: SimNode) -> None:
        """Recovery is done (the catalog is not yet put in force): it must have recovered the
        state of the record it stopped at, which holds every acknowledged answer, and the CDR
        files must hold every CDR of that state, gap-free, as the core wrote them."""
        self._node = node
        core = node.core
        last = node.store.journal.last_lsn
        if last < self.acked_lsn:
            raise Finding(
                "recovery", f"recovered to record {last}, but {self.acked_lsn} was acknowledged"
            )
        expected = self.expected.get(last)
        if expected is None:
            raise Finding(
                "recovery",
                f"recovered to record {last}, outside {min(self.expected)}..{max(self.expected)}",
            )
        if state_digest(core, core.ledger) != expected.digest:
            raise Finding(
                "recovery",
                f"the state recovered at record {last} is not the state the replica had there",
            )
        if core.cdr_seq != expected.cdr_seq:
            raise Finding(
                "recovery", f"CDR sequence {core.cdr_seq} recovered, {expected.cdr_seq} expected"
            )
        seqs = []
        for seq, line in read_lines(self.config.data_dir / "cdr", 1):
            seqs.append(seq)
            known = self.cdr_lines.get(seq)
            if known is not None and known != line and seq <= expected.cdr_seq:
                raise Finding("cdr", f"CDR {seq} on disk differs from the one the core wrote")
        if seqs != list(range(1, core.cdr_seq + 1)):
            gaps = sorted(set(range(1, core.cdr_seq + 1)) - set(seqs))[:5]
            raise Finding(
                "cdr", f"CDR files hold {len(seqs)} records of 1..{core.cdr_seq} (missing {gaps})"
            )
        # what was lost with the crash
        for lsn in [k for k in self.expected if k > last]:
            del self.expected[lsn]
        for seq in [s for s in self.cdr_lines if s > core.cdr_seq]:
            del self.cdr_lines[seq]
        self.last_seq = core.cdr_seq
        self.cdr_total = expected.cdr_total
        self.rebuild_books()
        for sid, track in list(self.supervised.items()):
            kept = [p for p in track if p.lsn <= last]
            if kept:
                self.supervised[sid] = kept
            else:
                del self.supervised[sid]
        for probe in [*self.unacked, *self.in_flight]:
            if probe.lsn is not None and probe.lsn > last:
                probe.lost = True
                probe.lsn = None
        self.replica = Replica.copy_of(core, self.config, expected)
        if self.replica.expected().digest != expected.digest:
            raise Finding("recovery", "a core restored from the recovered snapshot differs from it")
        self.expected = {last: expected}

    def rebuild_books(self) -> None:
        self.refund_books = {}
        for seq in sorted(self.cdr_lines):
            self.book(json.loads(self.cdr_lines[seq]))

    def refundable_units(self, subscriber: str, rg: int) -> int:
        """The units of `rg` DIRECT_DEBITING took from `subscriber` and refunds did not give
        back, as the CDRs of the live core say: at least what the server may still refund (its
        refund window only forgets more)."""
        books = self.refund_books.get((subscriber, rg))
        return 0 if books is None else books[2] - books[3]

    def server_number(self, sid: str) -> int | None:
        node = self._node
        if node is None or not node.core.has_session(sid):
            return None
        return node.core.sessions[sid].number

    # --- the node's life -----------------------------------------------------------------------

    def open(self) -> None:
        try:
            node = open_node(self.loop, _Hooks(self), SERVER, self.config)
        except Finding:
            raise
        except Exception as exc:
            raise Finding("recovery", f"the node does not start: {_tb(exc)}") from exc
        self._node = node
        self.release()
        if node.core.catalog_text != self.catalog_file.read_text():
            raise Finding("recovery", "the node started without the configured catalog in force")
        self.check_step()

    def release(self) -> None:
        """Group commit: the journal is made durable, then the answers, CDRs and RAR/ASR that
        waited for it leave."""
        node = self.node
        try:
            node.gate.release()
        except Finding:
            raise
        except Exception as exc:
            raise Finding("exception", f"releasing a batch: {_tb(exc)}") from exc
        journal = node.store.journal
        self.acked_lsn = max(self.acked_lsn, journal.durable_lsn)
        self.unacked.clear()
        for lsn in [k for k in self.expected if k < journal.durable_lsn]:
            del self.expected[lsn]
        for peer in list(self.peers.values()):
            self.read(peer)
        self.workload.resync()
        self.counters["commits"] += 1

    def tick(self) -> None:
        try:
            if self.node.tick(self.clock.now_ms):
                self.counters["ticks"] += 1
                self.note("tick", self.clock.now_ms)
        except Finding:
            raise
        except Exception as exc:
            raise Finding("exception", f"tick: {_tb(exc)}") from exc

    def sync_cdrs(self) -> None:
        cdrs = self.node.cdrs
        if self.rng.random() < 0.1:
            cdrs.maybe_rotate()
        cdrs.sync()

    def reload_catalog(self) -> None:
        current = self.catalog_file.read_text()
        text = self.workload.pick([c for c in CATALOGS if c != current])
        self.catalog_file.write_text(text)
        self.counters["catalogs"] += 1
        self.note("catalog", CATALOGS.index(text))
        try:
            self.node.reload_catalog()
        except Finding:
            raise
        except Exception as exc:
            raise Finding("exception", f"catalog reload: {_tb(exc)}") from exc

    def checkpoint(self) -> None:
        node = self.node
        if self.rng.random() < 0.15:  # the checkpoint process dies halfway: a stray file
            journal = node.store.journal
            path = journal.snapshot_tmp_path(journal.last_lsn, ".77")
            write_snapshot_file(path, journal.last_lsn, b"partial")
            path.write_bytes(path.read_bytes()[: self.rng.randrange(1, 40)])
            self.crash()
            return
        try:
            run(self.loop, node._checkpoint())
        except Finding:
            raise
        except Exception as exc:
            raise Finding("checkpoint", f"the checkpoint failed: {_tb(exc)}") from exc
        self.counters["checkpoints"] += 1
        self.note("checkpoint", node.store.journal.snapshot_lsn)
        self.acked_lsn = max(self.acked_lsn, node.store.journal.durable_lsn)
        self.unacked.clear()
        for peer in list(self.peers.values()):
            self.read(peer)
        if self.rng.random() < 0.2:  # killed right after: the snapshot must not need lost CDRs
            self.crash()

    def crash(self) -> None:
        """SIGKILL: answers, CDRs and RAR/ASR not released are gone; what the journal had
        not committed reached the disk only partly (a cut at a random offset of it, perhaps
        inside a record); the same for the current CDR file after its last fsync."""
        rng = self.rng
        node = self.node
        journal = node.store.journal
        journal.flush()  # (the OS has what was written: a cut below decides what survives)
        seg = newest(self.config.data_dir / "journal", "*.log")
        cut_journal: tuple[Path, int] | None = None
        if seg is not None:
            low = _journal_durable_offset(seg, journal.durable_lsn)
            cut_journal = (seg, self.cut(low, seg.stat().st_size))
        cdr_path = node.cdrs.current_path
        cut_cdrs: tuple[Path, int] | None = None
        if cdr_path is not None:
            low = _cdr_durable_offset(cdr_path, node.cdrs.durable_sequence)
            cut_cdrs = (cdr_path, self.cut(low, cdr_path.stat().st_size))
        # the durability mark as the crash left it (closing the store below syncs, and
        # would move the mark past records the cut then removes: a loss no crash can cause)
        mark = self.config.data_dir / "journal" / "durable.mark"
        mark_at_crash = mark.read_bytes() if mark.exists() else None
        node.gate.drop()
        self._node = None
        node.cdrs.close()
        node.store.close()
        if mark_at_crash is None:
            mark.unlink(missing_ok=True)
        else:
            mark.write_bytes(mark_at_crash)
        for path, cut in [c for c in (cut_journal, cut_cdrs) if c is not None]:
            if path.exists():
                with path.open("r+b") as f:
                    f.truncate(cut)
        self.counters["crashes"] += 1
        self.note(
            "crash", cut_journal[1] if cut_journal else None, cut_cdrs[1] if cut_cdrs else None
        )
        self.down()
        if rng.random() < 0.2:  # the operator changed the catalog meanwhile
            self.catalog_file.write_text(self.workload.pick(CATALOGS))
        self.open()
        self.retry_in_flight()

    def cut(self, low: int, size: int) -> int:
        roll = self.rng.random()
        if roll < 0.3 or size <= low:
            return low
        if roll < 0.6:
            return size
        return self.rng.randint(low, size)

    def down(self) -> None:
        for peer in self.peers.values():
            if peer.handle is not None:
                peer.handle = peer.transport = None
            for probe in peer.pending.values():
                if probe.answer is None and probe not in self.in_flight:
                    self.in_flight.append(probe)
            peer.pending.clear()
        self.unacked.clear()

    def restart_clean(self) -> None:
        """SIGTERM: `Node.close` (answers out, CDRs written, a checkpoint), then start again."""
        node = self.node
        self.release()
        try:
            run(self.loop, node.close())
        except Finding:
            raise
        except Exception as exc:
            raise Finding("exception", f"close: {_tb(exc)}") from exc
        self._node = None
        self.acked_lsn = max(self.acked_lsn, node.store.journal.durable_lsn)
        self.counters["restarts"] += 1
        self.note("restart")
        self.down()
        self.open()
        self.retry_in_flight()

    def retry_in_flight(self) -> None:
        """The clients send again, T flag, same End-to-End-Id, what had no answer. A request
        whose record survived gets the answer it had before (its duplicate)."""
        pending, self.in_flight = self.in_flight, []
        for probe in pending:
            if self.rng.random() >= P_RETRY:
                self.abandon(probe)
                continue
            if (
                probe.handled
                and probe.lsn is not None
                and not probe.lost
                and self.clock.now_ms - probe.sent_ms < DUPLICATE_WINDOW_MS - WINDOW_MARGIN_MS
            ):
                # processed before the crash, its record survived: a duplicate, no change
                probe.expect = Expect(finding="recovery", unchanged=True)
            else:
                probe.expect = None
                probe.lost = False
            probe.retransmit = True
            self.counters["retried"] += 1
            self.send(probe, again=probe.expect is not None)

    def finish(self) -> None:
        """The end of a run: a clean restart, then everything checked once more."""
        self.restart_clean()
        self.release()
        self.check_step()
        node = self.node
        run(self.loop, node.close())
        self._node = None

    # --- invariants ----------------------------------------------------------------------------

    def check_logs(self) -> None:
        """No error is logged, and the log grows by at most a small multiple of what the
        peers sent (`LOG_FACTOR`): a hostile peer cannot flood it."""
        self.raise_deferred()
        logs = self.logs
        size = 0
        for entry in logs:
            self.counters["log-events"] += 1
            size += len(repr(entry))
            if entry.get("log_level") in ("error", "critical"):
                detail = {k: v for k, v in entry.items() if k not in ("log_level",)}
                raise Finding("log", f"{entry.get('log_level')}: {str(detail)[:500]}", self.current)
        received, self.received = self.received, 0
        if size > LOG_FACTOR * received + LOG_ALLOWANCE:
            events = ", ".join(sorted({str(e.get("event")) for e in logs}))
            raise Finding(
                "log",
                f"{size} bytes of log ({events}) for {received} bytes received in one step",
                self.last_probe,
            )
        logs.clear()

    def raise_deferred(self) -> None:
        """A finding a hook raised inside the node, which the node may have caught."""
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            raise deferred

    def check_step(self) -> None:
        node = self._node
        self.raise_deferred()
        if node is None:
            return
        core = node.core
        ledger = core.ledger
        try:
            ledger.check_invariants()
        except Exception as exc:
            raise Finding("money", f"the ledger's invariants: {exc}") from exc
        # the money identity: what charging took (ledger) is in the CDRs or held by sessions
        totals = ledger.totals()
        charged = (totals.debits - totals.credits) - self.replica.admin_net
        held = 0
        grants: dict[str, int] = {}
        for session in core.sessions.values():
            held += sum(c.charge for c in session.containers)
            for grant in session.grants.values():
                grants[session.account_id] = grants.get(session.account_id, 0) + grant.amount
                reservation = ledger.reservation(grant.reservation_id)
                if reservation is None or reservation.amount != grant.amount:
                    raise Finding(
                        "money",
                        f"grant {grant.reservation_id} of {session.session_id[:60]!r} is not "
                        f"its reservation {reservation}",
                    )
        if charged != self.cdr_total + held:
            raise Finding(
                "money",
                f"charging took {charged} (debits {totals.debits} - credits {totals.credits} - "
                f"administration {self.replica.admin_net}) but the CDRs hold {self.cdr_total} and "
                f"open sessions {held}",
            )
        for view in ledger.accounts():
            if view.reserved != grants.get(view.account_id, 0):
                raise Finding(
                    "money",
                    f"{view.account_id[:60]!r} reserves {view.reserved}, its grants hold "
                    f"{grants.get(view.account_id, 0)}",
                )
        # replay equals live
        last = node.store.journal.last_lsn
        expected = self.expected.get(last)
        if expected is None or state_digest(core, ledger) != expected.digest:
            raise Finding(
                "replay",
                f"the live state after record {last} is not what replaying the journal gives",
            )
        for seq, line in self.replica.lines:
            if self.cdr_lines.get(seq) != line:
                raise Finding("replay", f"CDR {seq} replays differently")
        self.replica.lines.clear()
        if self.cdr_total != self.replica.cdr_total or self.last_seq != core.cdr_seq:
            raise Finding("replay", "the CDRs of the live core are not those of the replica")


class _Hooks:
    """`tests.vopr.harness.Hooks` of a simulation. A `Finding` raised in a hook is also kept
    (`Simulation.deferred`): the node catches what its handlers raise (it answers 5012 and logs
    it), so the simulator raises it again once the node returns."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        try:
            yield
        except Finding as finding:
            if self.sim.deferred is None:
                self.sim.deferred = finding
            raise

    def journaled(self, lsn: int, record: Input) -> None:
        with self.keeping():
            self.sim.journaled(lsn, record)

    def produced(self, cdrs: list[tuple[int, int, bytes]]) -> None:
        with self.keeping():
            self.sim.produced(cdrs)

    def actions(self, actions: list[Action], durable_lsn: int, last_lsn: int) -> None:
        with self.keeping():
            self.sim.actions(actions, durable_lsn, last_lsn)

    def answered(self, ctx: RequestContext, answer: Answer | bytes) -> None:
        with self.keeping():
            self.sim.answered_by_node(ctx, answer)

    def fatal(self, event: str, exc: BaseException) -> None:
        with self.keeping():
            self.sim.fatal(event, exc)

    def built(self, node: SimNode) -> None:
        with self.keeping():
            self.sim.built(node)


def _journal_durable_offset(segment: Path, durable_lsn: int) -> int:
    """Where the records of `segment` up to `durable_lsn` end (the record layout of
    `ocs.edge.journal`: CRC u32, length u32, LSN u64, payload)."""
    data = segment.read_bytes()
    offset = end = 0
    while offset + RECORD_HEADER.size <= len(data):
        _, length, lsn = RECORD_HEADER.unpack_from(data, offset)
        if lsn > durable_lsn:
            break
        offset += RECORD_HEADER.size + length
        end = offset
    return min(end, len(data))


def _cdr_durable_offset(path: Path, durable_sequence: int) -> int:
    """Where the lines of the CDR file up to `durable_sequence` end."""
    end = 0
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                seq = json.loads(line)["recordSequenceNumber"]
            except (ValueError, KeyError, TypeError):
                break
            if seq > durable_sequence:
                break
            end += len(line)
    return end


def _names(failed_avp: object, name: str) -> bool:
    """Whether Failed-AVP names `name`, at the top or inside a group (WIRE.md 2: the path of
    maps to a key inside a group)."""
    stack = [failed_avp]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if name in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


def _tb(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(exc).__name__}: {str(exc)[:300]} (at {where})"


def _short(answer: object) -> str:
    text = repr(answer)
    return text if len(text) < 400 else text[:400] + "..."


def simulate(settings: Settings) -> Summary:
    """Run one seed in a fresh temporary data directory."""
    base = settings.workdir or default_workdir()
    with tempfile.TemporaryDirectory(dir=base, prefix="vopr-") as directory:
        return Simulation(settings, Path(directory)).run()
