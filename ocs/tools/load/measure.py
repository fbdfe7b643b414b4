"""What a run measures, and how: latency, throughput, errors, CPU.

Latency percentiles use the nearest-rank definition (`percentile`). Throughput is the number of
answers received inside the window divided by its length. Errors are every answer with a
top-level Result-Code other than 2001 (3xxx included) and every protocol failure (an
undecodable answer, a lost connection, a request still unanswered after the drain), counted over
the whole run, warm-up and drain included.

CPU: the server's is read from /proc/<pid>/stat (utime + stime, all threads) at the start and
the end of the window, as a percentage of one core (`proc_cpu_seconds`); the client's is each
worker's `time.process_time()` over the window, summed (`merge_results`). The server's resident
memory and open descriptors are sampled about once a second from the start of the warm-up to
the end of the window; the maxima are reported (`proc_rss_bytes`, `proc_fd_count`).

Runs of the same load (the rounds of `ocs bench --hostile`) are combined by `combine_results`:
counts and CPU add up, the window is the sum of the windows, latency samples are pooled (the
percentiles are those of all samples), maxima are maxima.
"""

from __future__ import annotations

import array
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ocs.tools.load.config import KINDS, LoadConfig


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


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) in seconds, or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (VmRSS of /proc/<pid>/status), or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def proc_fd_count(pid: int) -> int | None:
    """Open descriptors of a process (entries of /proc/<pid>/fd), or None if unreadable."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


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
    # the hostile neighbour's counters (`hostile.merge_counters` adds them up), if one ran
    hostile_peer: dict[str, Any] | None = None

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


def merge_results(
    cfg: LoadConfig, results: list[dict[str, Any]], server_cpu: float | None
) -> LoadResult:
    """One `LoadResult` from what each worker process sent back (`workers.worker_main`)."""
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
        extra={
            "stray_answers": sum(r["stray"] for r in results),
            # MSCCs answered in the window, by Load-Band (load-modulated prices)
            "load_bands": _summed(r.get("load_bands", {}) for r in results),
        },
    )


def _summed(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for more in counts:
        _add_counts(total, more)
    return dict(sorted(total.items()))


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


#: Keys of `LoadResult.extra` that are maxima (the others are counts).
EXTRA_MAXIMA: Final = frozenset({"server_rss_max_mb", "server_fds_max"})


def add_nested(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Adds counters that may nest (dicts of ints and of such dicts) into `into`."""
    for k, v in more.items():
        if isinstance(v, dict):
            add_nested(into.setdefault(k, {}), v)
        else:
            into[k] = into.get(k, 0) + v


def combine_results(results: Sequence[LoadResult]) -> LoadResult:
    """One `LoadResult` for several runs of the same load (the rounds of `ocs bench
    --hostile`): counts, windows and CPU add up, latency samples are pooled, maxima are maxima;
    the server's CPU only if every run measured it."""
    if not results:
        raise ValueError("no results")
    if len(results) == 1:
        return results[0]
    first = results[0]
    errors: dict[str, int] = {}
    mscc: dict[str, int] = {}
    server_requests: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    latencies: list[float] = []
    for r in results:
        _add_counts(errors, r.errors)
        _add_counts(mscc, r.mscc_results)
        _add_counts(server_requests, r.server_requests)
        _add_counts(by_kind, r.requests_by_kind)
        latencies.extend(r.latencies_ms)
    cpus = [r.server_cpu_s for r in results]
    extra: dict[str, Any] = {}
    for key in sorted({k for r in results for k in r.extra}):
        values = [v for v in (r.extra.get(key) for r in results) if v is not None]
        if key in EXTRA_MAXIMA:
            extra[key] = max(values) if values else None
        else:
            extra[key] = sum(values)
    peers = [r.hostile_peer for r in results if r.hostile_peer is not None]
    hostile_peer: dict[str, Any] | None = None
    for counters in peers:
        hostile_peer = hostile_peer or {}
        add_nested(hostile_peer, counters)
    return LoadResult(
        mode=first.mode,
        duration_s=sum(r.duration_s for r in results),
        answers=sum(r.answers for r in results),
        answers_total=sum(r.answers_total for r in results),
        sent_total=sum(r.sent_total for r in results),
        latencies_ms=latencies,
        errors=errors,
        mscc_results=mscc,
        final_unit_indications=sum(r.final_unit_indications for r in results),
        server_requests=server_requests,
        requests_by_kind=by_kind,
        client_cpu_s=sum(r.client_cpu_s for r in results),
        server_cpu_s=None if any(c is None for c in cpus) else sum(c for c in cpus if c),
        send_lag_max_ms=max(r.send_lag_max_ms for r in results),
        send_lag_mean_ms=sum(r.send_lag_mean_ms for r in results) / len(results),
        processes=first.processes,
        connections=first.connections,
        concurrency=first.concurrency,
        rate=first.rate,
        extra=extra,
        hostile_peer=hostile_peer,
    )
