"""The hostile neighbour of `ocs bench --hostile`: its pure parts, its aim at the normal peers'
ids (against a recording server in this process), and short runs of `ocs bench` against a real
server with each kind (structure and service only: timings belong to docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from ocs.tools.load.config import HOSTILE_KINDS, KINDS, LoadConfig, parse_hostile
from ocs.tools.load.hostile import (
    COUNTERS,
    HIJACK,
    POISON,
    SQUAT,
    STEAL,
    ForeignAim,
    hostile_origin_host,
    new_tally,
    peer_summary,
)
from ocs.tools.load.measure import LoadResult, combine_results
from ocs.tools.load.report import format_report
from ocs.tools.load.run import phase_order
from ocs.tools.load.traffic import first_end_to_end, peer_origin_host, session_prefix
from ocs.tools.load.workers import run_load

# --- pure parts -------------------------------------------------------------------------------


def test_parse_hostile_keeps_the_documented_order_and_knows_all() -> None:
    assert parse_hostile("flood") == ("flood",)
    assert parse_hostile(" churn, never-reads ,churn") == ("never-reads", "churn")
    assert parse_hostile("all") == HOSTILE_KINDS
    assert parse_hostile("foreign-ids,all") == HOSTILE_KINDS
    for bad in ("", ",", "slowloris", "flood,nope"):
        with pytest.raises(ValueError):
            parse_hostile(bad)


def test_phase_order_alternates_pairs() -> None:
    assert phase_order(1) == [False, True]
    assert phase_order(2) == [False, True, True, False]
    assert phase_order(3) == [False, True, True, False, False, True]
    for rounds in range(1, 6):
        order = phase_order(rounds)
        assert order.count(True) == order.count(False) == rounds


def _result(
    answers: int, latencies: list[float], *, rss: float | None, hostile: dict[str, Any] | None
) -> LoadResult:
    return LoadResult(
        mode="open",
        duration_s=2.0,
        answers=answers,
        answers_total=answers + 5,
        sent_total=answers + 5,
        latencies_ms=latencies,
        errors={"5002": 1} if hostile else {},
        mscc_results={"2001": answers},
        final_unit_indications=1,
        server_requests={},
        requests_by_kind=dict.fromkeys(KINDS, answers // 4),
        client_cpu_s=0.5,
        server_cpu_s=1.0,
        send_lag_max_ms=2.0 if hostile else 1.0,
        send_lag_mean_ms=0.5,
        processes=1,
        connections=2,
        concurrency=4,
        rate=100.0,
        extra={"stray_answers": 1, "server_rss_max_mb": rss, "server_fds_max": 20},
        hostile_peer=hostile,
    )


def test_combine_results_adds_counts_pools_samples_and_keeps_maxima() -> None:
    tally = new_tally()
    tally["requests_sent"] = 7
    tally["answers_by_code"] = {"3004": 2}
    a = _result(200, [1.0, 2.0], rss=40.0, hostile={"flood": tally})
    b = _result(100, [3.0], rss=None, hostile={"flood": tally})
    c = combine_results([a, b])
    assert c.duration_s == 4.0 and c.answers == 300 and c.answers_per_s == 75.0
    assert sorted(c.latencies_ms) == [1.0, 2.0, 3.0]
    assert c.errors == {"5002": 2} and c.mscc_results == {"2001": 300}
    assert c.server_cpu_s == 2.0 and c.client_cpu_s == 1.0 and c.send_lag_max_ms == 2.0
    assert c.extra == {"server_fds_max": 20, "server_rss_max_mb": 40.0, "stray_answers": 2}
    assert c.hostile_peer is not None
    assert c.hostile_peer["flood"]["requests_sent"] == 14
    assert c.hostile_peer["flood"]["answers_by_code"] == {"3004": 4}
    assert tally["requests_sent"] == 7  # the inputs are not changed
    assert combine_results([a]) is a
    with pytest.raises(ValueError):
        combine_results([])


def test_peer_summary_adds_the_kinds_up() -> None:
    churn = new_tally()
    churn.update(connections_opened=10, idle_closed_by_server=4, idle_lifetime_ms=2000)
    flood = new_tally()
    flood.update(connections_opened=1, requests_sent=50, answers_received=50)
    flood["answers_by_code"] = {"2001": 10, "3004": 40}
    foreign = new_tally()
    foreign["answers_by_code"] = {"5004": 3, "5002": 2}
    s = peer_summary({"foreign-ids": foreign, "churn": churn, "flood": flood})
    assert s["connections_opened"] == 11 and s["requests_sent"] == 50
    assert (s["answers_3004"], s["answers_5004"], s["answers_5002"]) == (40, 3, 2)
    assert s["answers_by_code"] == {"2001": 10, "3004": 40, "5002": 2, "5004": 3}
    assert s["idle_lifetime_mean_s"] == 0.5
    assert list(s["by_kind"]) == ["flood", "churn", "foreign-ids"]  # HOSTILE_KINDS order
    assert set(COUNTERS) - {"idle_lifetime_ms"} <= set(s)
    assert peer_summary({"flood": flood})["idle_lifetime_mean_s"] is None


def test_text_report_shows_both_runs_their_ratio_and_the_peer() -> None:
    base = _result(200, [1.0, 2.0], rss=40.0, hostile=None).summary()
    tally = new_tally()
    tally.update(connections_opened=3, requests_sent=9, bytes_sent=2_000_000)
    other = _result(180, [2.0, 4.0], rss=90.0, hostile=None).summary()
    report = {
        **base,
        "machine_busy_percent_before": 3.0,
        "warmup_s": 0.5,
        "mix": {"data": 70.0},
        "subscribers": 100,
        "low_balance_subscribers": 5,
        "server_cpus": [0],
        "client_cpus": [1],
        "hostile": {
            "kinds": ["flood"],
            "rounds": 1,
            "origin_host": "hostile-000001.bench.local",
            "with": other,
            "ratio": {"answers_per_s": 0.9, "p50_ms": 2.0, "p99_ms": 2.0, "p999_ms": 2.0},
            "peer": peer_summary({"flood": tally}),
            "phases": [{"hostile": False}, {"hostile": True}],
        },
    }
    text = format_report(report)
    assert "charging server" in text and "+ hostile peer" in text
    assert "with / without: answers/s 90.0%, p50 200.0%, p99 200.0%" in text
    assert "runs in order: without, with" in text
    assert "server memory max 40 MB without, 90 MB with" in text
    assert "connections 3 opened" in text and "requests 9 sent (2.0 MB)" in text
    assert "  flood: opened 3" in text


def test_the_normal_peers_ids_follow_from_the_run() -> None:
    a = first_end_to_end(123, 456, 0)
    assert a == first_end_to_end(123, 456, 0)  # the same in every process (SHA-512 seed)
    assert len({a, first_end_to_end(123, 457, 0), first_end_to_end(123, 456, 1)}) == 3
    assert 0 <= a < 2**32
    assert peer_origin_host(1_000_123, 7) == "lg000123-0007.bench.local"
    assert session_prefix("lg000123-0007.bench.local", 99) == b"lg000123-0007.bench.local;99;"
    assert hostile_origin_host(1_000_123) == "hostile-000123.bench.local"


def test_foreign_aim_takes_the_victims_ids() -> None:
    cfg = LoadConfig(run_id=42, epoch=7, connections=3, concurrency=4, subscribers=100)
    own = hostile_origin_host(42)
    cursors = [0.0] * 6
    aim = ForeignAim(cfg, own, cursors, random.Random(1))
    first = first_end_to_end(42, 7, 1)
    victim = peer_origin_host(42, 1)
    prefix = session_prefix(victim, 7).decode()
    # nothing published yet: a steal is a poison, a hijack a squat, both aimed from the start
    request, e2e, sid, body = aim.request(STEAL, 1, 555, now=0.0)
    assert request == POISON and 0 < (e2e - first) % 2**32 <= 64
    assert body["Origin-Host"] == victim and sid.startswith(victim + ";")
    assert body["Session-Id"] == sid and body["CC-Request-Type"] == 4
    request, e2e, sid, body = aim.request(HIJACK, 1, 556, now=0.0)
    assert request == SQUAT and e2e == 556 and body["Origin-Host"] == own
    assert sid.startswith(prefix) and body["CC-Request-Type"] == 1
    # published: 1,000 ids and 250 sessions in one second
    cursors[2], cursors[3] = float((first + 1000) % 2**32), 250.0
    aim.request(POISON, 1, 557, now=1.0)
    for n in range(40):
        request, e2e, sid, body = aim.request(n % 4, 1, 600 + n, now=1.0)
        assert request == n % 4
        if request in (POISON, STEAL):
            assert body["Origin-Host"] == victim
            offset = (e2e - (first + 1000)) % 2**32
            if request == POISON:  # ahead of the cursor: 0.3 to 0.8 s at ~1,000 ids/s
                assert 300 <= offset <= 800
            else:  # behind it, an id the victim used
                assert 2**32 - 512 <= offset < 2**32
        else:
            assert body["Origin-Host"] == own and e2e == 600 + n
            number = int(sid[len(prefix) :])
            assert sid.startswith(prefix)
            if request == HIJACK:  # one of its open sessions, in its own flow
                assert 250 - cfg.concurrency <= number <= 250
                assert body["CC-Request-Type"] in (2, 3)
            else:  # one it is about to open
                assert 250 + 75 <= number <= 250 + 200 and body["CC-Request-Type"] == 1


# --- the aim, end to end, against a server that records -----------------------------------------

_HEAD = struct.Struct(">IIIII")


@dataclass
class _Recorded:
    """What the recording server saw: per connection its CER's Origin-Host and its requests
    (body Origin-Host, End-to-End-Id, Session-Id, CC-Request-Type). With `lie`, it answers
    every CCR with another session's Session-Id."""

    connections: list[tuple[str, list[tuple[str, int, str, int]]]] = field(default_factory=list)
    lie: bool = False


class _Recorder(asyncio.Protocol):
    def __init__(self, seen: _Recorded) -> None:
        self.seen = seen
        self.buf = bytearray()
        self.requests: list[tuple[str, int, str, int]] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while len(self.buf) >= 20:
            w0, w1, app, hbh, e2e = _HEAD.unpack_from(self.buf)
            length = w0 & 0xFFFFFF
            if len(self.buf) < length:
                break
            body: dict[str, Any] = msgspec.msgpack.decode(bytes(self.buf[20:length]))
            del self.buf[:length]
            if not (w1 >> 24) & 0x80:
                continue
            code = w1 & 0xFFFFFF
            if code == 257:
                self.seen.connections.append((body["Origin-Host"], self.requests))
                answer: dict[str, Any] = {"Result-Code": 2001}
            else:
                self.requests.append(
                    (body["Origin-Host"], e2e, body["Session-Id"], body["CC-Request-Type"])
                )
                sid = "someone.else;1;0000000001" if self.seen.lie else body["Session-Id"]
                answer = {"Result-Code": 2001, "Session-Id": sid}
            raw = msgspec.msgpack.encode({**answer, "Origin-Host": "r", "Origin-Realm": "r"})
            out.append(_HEAD.pack((0x4D << 24) | (20 + len(raw)), code, app, hbh, e2e) + raw)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


@pytest.fixture
def recording_server() -> Iterator[tuple[int, _Recorded]]:
    seen = _Recorded()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(lambda: _Recorder(seen), "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        server.close()
        loop.close()


def test_foreign_ids_hits_the_ids_the_normal_peers_use(
    recording_server: tuple[int, _Recorded],
) -> None:
    """Against a server that answers everything 2001, the neighbour's requests in the normal
    peers' names carry End-to-End-Ids they used, its UPDATE/TERMINATIONs name sessions they
    opened, and its INITIALs Session-Ids they opened after it: the aim works whatever the
    server under test defends."""
    port, seen = recording_server
    cfg = LoadConfig(
        port=port,
        mode="open",
        rate=400.0,
        duration=2.0,
        warmup=0.3,
        drain=2.0,
        connections=2,
        processes=1,
        subscribers=50,
        run_id=random.randrange(1, 1_000_000),
    )
    result = run_load(cfg, hostile=("foreign-ids",))
    assert result.errors == {} and result.answers > 0
    assert result.hostile_peer is not None
    tally = result.hostile_peer["foreign-ids"]
    assert tally["requests_sent"] > 100 and set(tally["answers_by_code"]) == {"2001"}
    assert tally["answers_received"] >= 0.9 * tally["requests_sent"]  # the last not awaited
    hostile = hostile_origin_host(cfg.run_id)
    by_peer = {origin: requests for origin, requests in seen.connections}
    attacks = by_peer.pop(hostile)
    assert set(by_peer) == {peer_origin_host(cfg.run_id, i) for i in range(2)}
    used = {(origin, e2e) for origin, requests in by_peer.items() for _, e2e, _, _ in requests}
    theirs = {sid for requests in by_peer.values() for _, _, sid, _ in requests}
    in_their_name = [(o, e2e) for o, e2e, _, _ in attacks if o != hostile]
    on_their_sessions = [sid for o, _, sid, kind in attacks if o == hostile and kind in (2, 3)]
    taking = [sid for o, _, sid, kind in attacks if o == hostile and kind == 1]
    assert in_their_name and on_their_sessions and taking
    hits = sum(pair in used for pair in in_their_name)
    assert hits >= len(in_their_name) // 4  # the steals at least (a quarter of the attacks)
    assert sum(sid in theirs for sid in on_their_sessions) == len(on_their_sessions)
    assert sum(sid in theirs for sid in taking) >= len(taking) // 4  # opened after it


def test_an_answer_for_another_session_is_an_error_and_ends_the_flow(
    recording_server: tuple[int, _Recorded],
) -> None:
    """What a normal peer sees when a server hands it another peer's cached answer: counted
    as `wrong-session` (not as a success), and the flow goes no further."""
    port, seen = recording_server
    seen.lie = True
    cfg = LoadConfig(
        port=port,
        mode="open",
        rate=200.0,
        duration=0.5,
        warmup=0.1,
        drain=2.0,
        connections=1,
        processes=1,
        subscribers=20,
        run_id=random.randrange(1, 1_000_000),
    )
    result = run_load(cfg)
    assert result.answers > 0
    assert result.errors == {"wrong-session": result.answers_total}
    (_, requests), *_ = seen.connections
    assert {kind for _, _, _, kind in requests} <= {1, 4}  # never an UPDATE or TERMINATION


# --- ocs bench --hostile against a real server ----------------------------------------------------


def run_bench(*args: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "ocs", "bench", "--json", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert out.returncode in (0, 3), out.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.stdout)
    return out.returncode, report


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_ocs_bench_runs_each_hostile_kind_beside_the_load(kind: str) -> None:
    code, report = run_bench(
        "--hostile",
        kind,
        "--mode",
        "open",
        "--rate",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--drain",
        "5",
        "--connections",
        "2",
        "--subscribers",
        "50",
    )
    hostile = report["hostile"]
    assert hostile["kinds"] == [kind] and hostile["rounds"] == 1
    assert [p["hostile"] for p in hostile["phases"]] == [False, True]
    with_ = hostile["with"]
    assert with_.keys() >= {"answers_per_s", "p50_ms", "p99_ms", "p999_ms", "errors"}
    assert set(hostile["ratio"]) == {"answers_per_s", "p50_ms", "p99_ms", "p999_ms"}
    assert hostile["ratio"]["answers_per_s"] == round(
        with_["answers_per_s"] / report["answers_per_s"], 3
    )
    assert code == (3 if report["errors"] or with_["errors"] else 0)
    # the normal peers were served, without the neighbour and with it (open loop: the window's
    # requests go out whatever the server does, and are answered by the end of the drain)
    assert report["errors"] == 0 and report["answers"] > 0
    assert with_["latency_samples"] > 0 and with_["requests_sent"] > 0
    assert not {"unanswered", "connection-lost"} & set(with_["errors_by_code"])
    assert report["server_rss_max_mb"] > 0 and with_["server_fds_max"] > 0
    peer = hostile["peer"]
    assert list(peer["by_kind"]) == [kind]
    assert peer["connections_opened"] > 0
    if kind == "churn":
        assert peer["requests_sent"] == 0 and peer["connections_opened"] >= 10
    else:
        assert peer["requests_sent"] > 0 and peer["bytes_sent"] > 0
    if kind == "never-reads":
        assert peer["answers_received"] == 0
    if kind in ("flood", "foreign-ids"):
        assert peer["answers_received"] > 0
    assert peer["answers_received"] == sum(peer["answers_by_code"].values())
