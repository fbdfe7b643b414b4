"""The cost of metrics on throughput: `ocs bench` against a server without `--metrics` and one
with it, scraped every `SCRAPE_S` seconds meanwhile, in alternating rounds (off, on, on, off,
...), each round on a fresh server and data directory, the server pinned to the first CPU.

    python -m bench.metrics [--rounds N] [--duration S] [--scrape-s S] [--json]

It prints, per round and as the ratio of the sums (on / off): answers per second, answers per
second of server CPU (less sensitive to the other processes of a shared machine) and the
median latency. On a shared machine those ratios move by +-15 % from one run to the next, more
than the cost being measured; so it also times, in this process, what the request path does
per answer with metrics on (`request_path_ns`: the counter increments and the latency
observation, less the same loop without them) and gives it as a share of the server's CPU per
answer measured by the rounds without metrics (`request_path_share`). docs/benchmarks.md,
"Metrics", has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
from pathlib import Path
from typing import Any

from ocs.edge.metrics import Metrics
from ocs.tools.spawn import SpawnedServer, serve_argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Scraper(threading.Thread):
    """GET /metrics every `interval_s` until stopped; counts scrapes and their bytes."""

    def __init__(self, port: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval_s = interval_s
        self.halt = threading.Event()
        self.scrapes = 0
        self.bytes = 0
        self.seconds = 0.0

    def run(self) -> None:
        while not self.halt.wait(self.interval_s):
            started = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as r:
                self.bytes += len(r.read())
            self.seconds += time.perf_counter() - started
            self.scrapes += 1


def request_path_ns(repeat: int = 7, number: int = 200_000) -> float:
    """Nanoseconds per answer that the metrics add to the request path: what `PeerHandle`
    and the node do with a `Metrics` (a request counted, its answer counted by command and
    Result-Code, the latency observed with one more clock read; one batch size per fsync is
    amortised over the batch and left out), the best of `repeat` runs, less the same loop
    without them."""
    metrics = Metrics()
    clock = time.monotonic
    received = clock()

    def with_metrics() -> None:
        m = metrics
        if m is not None:
            m.requests[272] += 1
        if m is not None:
            m.answers[272, 2001] += 1
        if m is not None:
            m.latency_s.observe(clock() - received)

    def without() -> None:
        m = None
        if m is not None:
            m.requests[272] += 1

    on = min(timeit.repeat(with_metrics, repeat=repeat, number=number))
    off = min(timeit.repeat(without, repeat=repeat, number=number))
    return (on - off) / number * 1e9


def idle_scrape_ms(port: int, count: int = 21) -> float:
    """Median wall time of one GET /metrics (connect, exposition, read) on the idle server,
    after the load: its accounts are still there."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            r.read()
        times.append(time.perf_counter() - started)
    return round(1000 * sorted(times)[count // 2], 2)


def one_round(on: bool, duration_s: float, scrape_s: float, work: Path) -> dict[str, Any]:
    extra = ["--log-level", "warning"]
    metrics_port = free_port()
    if on:
        extra += ["--metrics", f"127.0.0.1:{metrics_port}"]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    argv = serve_argv(*extra, data_dir=work / "data")
    with SpawnedServer(argv, work, cpus=cpus[:1] if len(cpus) > 1 else None) as server:
        scraper = Scraper(metrics_port, scrape_s) if on and scrape_s > 0 else None
        if scraper is not None:
            scraper.start()
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ocs",
                    "bench",
                    "--server",
                    f"127.0.0.1:{server.port}",
                    "--server-pid",
                    str(server.pid),
                    "--duration",
                    str(duration_s),
                    "--json",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        finally:
            if scraper is not None:
                scraper.halt.set()
                scraper.join()
        idle_ms = idle_scrape_ms(metrics_port) if on else None
    report = json.loads(done.stdout)
    return {
        "metrics": on,
        "answers_per_s": report["answers_per_s"],
        "answers_per_server_cpu_s": report["answers_per_server_cpu_s"],
        "p50_ms": report.get("p50_ms"),
        "errors": report.get("errors"),
        "scrapes": scraper.scrapes if scraper else 0,
        "scrape_bytes": scraper.bytes // max(1, scraper.scrapes) if scraper else 0,
        "scrape_ms": round(1000 * scraper.seconds / max(1, scraper.scrapes), 2) if scraper else 0,
        "idle_scrape_ms": idle_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="pairs of rounds")
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument(
        "--scrape-s", type=float, default=1.0, metavar="SECONDS", help="0: never scraped"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    order: list[bool] = []
    for r in range(max(1, args.rounds)):
        order += [False, True] if r % 2 == 0 else [True, False]
    rounds = []
    for i, on in enumerate(order):
        with tempfile.TemporaryDirectory(prefix="ocs-bench-metrics-") as tmp:
            rounds.append(one_round(on, args.duration, args.scrape_s, Path(tmp)))
        if not args.json:
            print(f"round {i + 1}: {json.dumps(rounds[-1])}", flush=True)

    def total(key: str, on: bool) -> float:
        return sum(r[key] or 0 for r in rounds if r["metrics"] is on)

    added_ns = request_path_ns()
    off_cpu = total("answers_per_server_cpu_s", False) / order.count(False)
    summary = {
        "rounds": rounds,
        "request_path_ns": round(added_ns, 1),
        "server_cpu_ns_per_answer": round(1e9 / off_cpu, 1),
        "request_path_share": round(added_ns * off_cpu / 1e9, 4),
        "duration_s": args.duration,
        "scrape_s": args.scrape_s,
        "ratio_answers_per_s": round(
            total("answers_per_s", True) / total("answers_per_s", False), 3
        ),
        "ratio_answers_per_server_cpu_s": round(
            total("answers_per_server_cpu_s", True) / total("answers_per_server_cpu_s", False), 3
        ),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"metrics on / off: answers/s {summary['ratio_answers_per_s']}, "
            f"answers per server CPU s {summary['ratio_answers_per_server_cpu_s']}"
        )
        print(
            f"request path: {summary['request_path_ns']} ns per answer added to "
            f"{summary['server_cpu_ns_per_answer']} ns of server CPU per answer "
            f"({100 * summary['request_path_share']:.2f} %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
