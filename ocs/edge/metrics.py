"""Metrics: plain counters kept by the request path, read by the exposition at scrape time.

The request path (the server, group commit, the node) only increments ints in a `Metrics`
(dicts of ints, `Histogram`s of fixed bucket counts): no locks, no label lookups, no
prometheus-client objects. Everything else, the state of the core (sessions, reservations,
money reserved, accounts), of the journal, the CDR files and the peers, is read when a scrape
comes, from a `Figures` the node builds then. `MetricsCollector` turns both into metric
families for prometheus-client's exposition (`exposition`), on a private registry: a scrape
runs on the event loop, between two batches of requests, and costs the loop what it takes to
format (about a millisecond; docs/operations.md, *Metrics*).

Every counter is touched only on the event loop (the fsync thread hands its duration back to
the loop with the outcome of the fsync), so a scrape reads a consistent set.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from protocol.codes import CommandCode, ResultCode

__all__ = [
    "CONTENT_TYPE_LATEST",
    "FSYNC_BUCKETS_S",
    "LATENCY_BUCKETS_S",
    "RECORDS_BUCKETS",
    "Checkpoints",
    "Figures",
    "Histogram",
    "Metrics",
    "MetricsCollector",
    "command_label",
    "exposition",
    "result_label",
]

#: Request latency (read to answer handed to the socket, group commit included), seconds.
LATENCY_BUCKETS_S: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: One journal fsync (fdatasync), seconds.
FSYNC_BUCKETS_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
#: Journal records made durable by one fsync (a group-commit batch).
RECORDS_BUCKETS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)

#: Command codes counted under their own label; any other (a rejected request of an unknown
#: command) is counted as 0, "other": a peer cannot grow the label set.
_COMMANDS: Final = frozenset(int(c) for c in CommandCode)


class Histogram:
    """Fixed bucket counts: `observe` adds one to the first bucket whose upper bound is at
    least the value (the last bucket is +Inf) and the value to the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be increasing")
        self.bounds: Final = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus wants them: (upper bound, observations <= it)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(_bound, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def _bound(value: float) -> str:
    return repr(float(value))


def command_label(code: int) -> str:
    """A command code as a label: its name (CREDIT_CONTROL), or "other"."""
    try:
        return CommandCode(code).name
    except ValueError:
        return "other"


def result_label(code: int) -> str:
    """A result code's name (DIAMETER_SUCCESS is SUCCESS), or "" for one without a name."""
    try:
        return ResultCode(code).name
    except ValueError:
        return ""


class Metrics:
    """The counters the request path increments (on the event loop only)."""

    __slots__ = ("answers", "batch_records", "fsync_s", "latency_s", "requests")

    def __init__(self) -> None:
        #: application requests read, by command code (0: another command, rejected)
        self.requests: defaultdict[int, int] = defaultdict(int)
        #: answers, by (command code, Result-Code), counted when decided
        self.answers: defaultdict[tuple[int, int], int] = defaultdict(int)
        self.latency_s = Histogram(LATENCY_BUCKETS_S)
        self.fsync_s = Histogram(FSYNC_BUCKETS_S)
        self.batch_records = Histogram(RECORDS_BUCKETS)

    def rejected(self, command: int, result_code: int) -> None:
        """A request the connection answered with an error itself."""
        key = command if command in _COMMANDS else 0
        self.requests[key] += 1
        self.answers[key, result_code] += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoints:
    """Checkpoints since the start: how many, and the last one."""

    written: int = 0
    failed: int = 0
    skipped: int = 0
    last_lsn: int | None = None  # the last snapshot's LSN (this run's, or the recovered one)
    last_at_s: float | None = None  # when it was written (None: before this run)


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """What a scrape reads from the running node (built by the node, on the loop, per scrape)."""

    ready: bool
    started_at_s: float  # wall clock
    uptime_s: float
    origin_host: str
    listen: str  # HOST:PORT of the peer port ("" before it listens)
    catalog_name: str
    catalog_version: int
    catalog_sha256: str
    sessions: int
    reservations: int
    reserved_micros: int  # money held by open reservations, micro-units of the currency
    currency: str
    accounts: int
    journal_last_lsn: int
    journal_written_lsn: int
    journal_durable_lsn: int
    records_since_checkpoint: int
    group_commit_batches: int
    fsyncs: int
    checkpoints: Checkpoints
    cdr_sequence: int  # the last CDR numbered by the core
    cdr_written_sequence: int
    cdr_durable_sequence: int
    cdrs_written: int  # records written to the CDR files since the start
    cdr_file: str | None  # the file being written (None: none open)
    inputs_failed: int
    server_requests: Mapping[str, int]  # RAR, ASR sent
    connections: int  # every open connection, CER or not
    peers: Mapping[str, int]  # Origin-Host -> open connections
    refusals: Mapping[str, int]  # cause -> connections refused or closed
    tls_handshake_failures: int
    load_band: str | None = None  # load-modulated prices: the band in force (None: no bands)

    def as_json(self) -> dict[str, object]:
        """The figures as JSON-able values (the `/status` document)."""
        out: dict[str, object] = {
            name: getattr(self, name) for name in self.__slots__ if name != "checkpoints"
        }
        cp = self.checkpoints
        out["checkpoints"] = {
            "written": cp.written,
            "failed": cp.failed,
            "skipped": cp.skipped,
            "last_lsn": cp.last_lsn,
            "last_at_s": cp.last_at_s,
        }
        for key in ("server_requests", "peers", "refusals"):
            out[key] = dict(getattr(self, key))
        return out


class MetricsCollector(Collector):
    """The prometheus-client collector: the counters of `metrics` and the figures `figures()`
    returns, as metric families, when a scrape asks."""

    def __init__(self, metrics: Metrics, figures: Callable[[], Figures]) -> None:
        self.metrics = metrics
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        m, f = self.metrics, self.figures()
        requests = CounterMetricFamily(
            "ocs_requests", "Application requests read (CCR, AMR), by command", labels=["command"]
        )
        for code, n in sorted(m.requests.items()):
            requests.add_metric([command_label(code)], n)
        yield requests
        answers = CounterMetricFamily(
            "ocs_answers",
            "Answers to application requests, by command and Result-Code (decided, sent once "
            "durable)",
            labels=["command", "result_code", "result"],
        )
        for (code, rc), n in sorted(m.answers.items()):
            answers.add_metric([command_label(code), str(rc), result_label(rc)], n)
        yield answers
        yield _histogram(
            "ocs_request_latency_seconds",
            "From the read of a request to its answer handed to the socket (group commit included)",
            m.latency_s,
        )
        yield _histogram(
            "ocs_journal_fsync_seconds", "Duration of one journal fsync (fdatasync)", m.fsync_s
        )
        yield _histogram(
            "ocs_group_commit_batch_records",
            "Journal records made durable by one fsync (group-commit batch size)",
            m.batch_records,
        )
        yield _gauge("ocs_up", "1 while the process serves (ready) and 0 otherwise", f.ready)
        yield _gauge("ocs_start_time_seconds", "Start of the process, Unix time", f.started_at_s)
        info = GaugeMetricFamily(
            "ocs_catalog_info",
            "The catalog in force (value 1)",
            labels=["name", "version", "sha256", "currency"],
        )
        info.add_metric([f.catalog_name, str(f.catalog_version), f.catalog_sha256, f.currency], 1)
        yield info
        yield _gauge("ocs_sessions", "Open charging sessions", f.sessions)
        yield _gauge("ocs_reservations", "Open reservations of the ledger", f.reservations)
        yield _gauge(
            "ocs_reserved_micros",
            "Money held by open reservations, micro-units of the catalog's currency",
            f.reserved_micros,
        )
        yield _gauge("ocs_accounts", "Accounts in the ledger", f.accounts)
        yield _gauge("ocs_journal_last_lsn", "LSN of the last journal record", f.journal_last_lsn)
        yield _gauge(
            "ocs_journal_written_lsn", "Journal written (write(2)) up to", f.journal_written_lsn
        )
        yield _gauge(
            "ocs_journal_durable_lsn", "Journal fsynced up to this LSN", f.journal_durable_lsn
        )
        yield _gauge(
            "ocs_journal_records_since_checkpoint",
            "Journal records a restart would replay",
            f.records_since_checkpoint,
        )
        yield _counter("ocs_group_commit_batches", "Group-commit batches", f.group_commit_batches)
        yield _counter("ocs_journal_fsyncs", "Journal fsyncs started", f.fsyncs)
        cp = f.checkpoints
        checkpoints = CounterMetricFamily(
            "ocs_checkpoints", "Checkpoints attempted, by outcome", labels=["outcome"]
        )
        for outcome, n in (("written", cp.written), ("failed", cp.failed), ("skipped", cp.skipped)):
            checkpoints.add_metric([outcome], n)
        yield checkpoints
        if cp.last_lsn is not None:
            yield _gauge("ocs_checkpoint_lsn", "LSN of the latest snapshot", cp.last_lsn)
        if cp.last_at_s is not None:
            yield _gauge(
                "ocs_checkpoint_time_seconds", "When the last checkpoint was written", cp.last_at_s
            )
        yield _counter(
            "ocs_cdrs_written", "CDRs written to the CDR files since the start", f.cdrs_written
        )
        cdr = GaugeMetricFamily(
            "ocs_cdr_sequence", "CDR sequence numbers: numbered, written, fsynced", labels=["state"]
        )
        cdr.add_metric(["numbered"], f.cdr_sequence)
        cdr.add_metric(["written"], f.cdr_written_sequence)
        cdr.add_metric(["durable"], f.cdr_durable_sequence)
        yield cdr
        yield _counter(
            "ocs_inputs_failed", "Inputs the core failed on (rolled back)", f.inputs_failed
        )
        sent = CounterMetricFamily(
            "ocs_server_requests", "Requests sent to peers (RAR, ASR)", labels=["command"]
        )
        for name, n in sorted(f.server_requests.items()):
            sent.add_metric([name], n)
        yield sent
        yield _gauge("ocs_connections", "Open connections (with or without CER)", f.connections)
        yield _gauge("ocs_peers", "Peers (Origin-Hosts) with an open connection", len(f.peers))
        per_peer = GaugeMetricFamily(
            "ocs_peer_connections", "Open connections of each peer", labels=["peer"]
        )
        for peer, n in sorted(f.peers.items()):
            per_peer.add_metric([peer], n)
        yield per_peer
        refused = CounterMetricFamily(
            "ocs_connections_refused",
            "Connections refused or closed by the server's bounds, by cause",
            labels=["cause"],
        )
        for cause, n in sorted(f.refusals.items()):
            refused.add_metric([cause], n)
        yield refused
        yield _counter(
            "ocs_tls_handshake_failures", "TLS handshakes that failed", f.tls_handshake_failures
        )
        if f.load_band is not None:  # load-modulated prices (docs/charging.md)
            band = GaugeMetricFamily(
                "ocs_load_band_info", "The load band in force (value 1)", labels=["band"]
            )
            band.add_metric([f.load_band], 1)
            yield band


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total
    )


def exposition(collector: MetricsCollector) -> bytes:
    """The Prometheus text exposition of `collector` (prometheus-client's `generate_latest` on
    a registry of its own: nothing of the process-wide default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
