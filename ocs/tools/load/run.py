"""`ocs bench`: provision, load the charging server (started here or given), optionally the
echo server too, and gather one report (`run_bench`; `report.format_report` prints it).

A server started for the run is `ocs serve` on 127.0.0.1 in a temporary data directory, started
and stopped by `ocs.tools.spawn.SpawnedServer`; with pinning it gets the first CPU and the load
generator the others (`cpu_plan`).

With a hostile neighbour (`BenchOptions.hostile`) the same load runs against the same server
several times in one invocation, without and with the neighbour, in the order of `phase_order`
(without, with; then with, without; ...: a drift of the machine or of the server's growing
state weighs on both sides alike), `PHASE_GAP_S` apart, each run with its own ids
(`LoadConfig.epoch`). The top-level figures of the report are the runs without it, combined
(`measure.combine_results`); `report["hostile"]` holds the runs with it (`with`), the ratios
with / without, the neighbour's counters (`peer`, `hostile.peer_summary`) and every run in
order (`phases`).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from ocs.tools.load.config import BenchOptions, LoadConfig, ProgressFn
from ocs.tools.load.hostile import hostile_origin_host, peer_summary
from ocs.tools.load.measure import LoadResult, combine_results, machine_busy_percent
from ocs.tools.load.report import write_histogram_png
from ocs.tools.load.traffic import provision
from ocs.tools.load.workers import run_load
from ocs.tools.spawn import SpawnedServer, echo_argv, serve_argv

STOP_GRACE_S: Final = 120.0  # the charging server checkpoints on its way out
PHASE_GAP_S: Final = 1.0  # between the runs of one invocation (the hostile neighbour's go)
#: What each run of `report["hostile"]["phases"]` shows.
PHASE_KEYS: Final = (
    "answers_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "server_cpu_percent",
    "server_rss_max_mb",
    "server_fds_max",
)
RATIO_KEYS: Final = ("answers_per_s", "p50_ms", "p99_ms", "p999_ms")


def charging_server_argv(
    data_dir: Path, profile: Path | None = None, prefix: Sequence[str] | None = None
) -> list[str]:
    """`ocs serve` on 127.0.0.1:0 in `data_dir`; under cProfile if `profile` is given; `prefix`
    replaces the interpreter (e.g. a sampling profiler that runs `-m ocs`)."""
    python = [sys.executable] if prefix is None else list(prefix)
    if profile is not None:
        python += ["-m", "cProfile", "-o", str(profile)]
    return serve_argv("--log-level", "warning", data_dir=data_dir, python=python)


def phase_order(rounds: int) -> list[bool]:
    """Whether each run of an invocation has the hostile neighbour, in order: `rounds` pairs,
    without then with, then with then without, and so on (1: F T; 2: F T T F; 3: F T T F F T)."""
    order: list[bool] = []
    for r in range(max(1, rounds)):
        order += [False, True] if r % 2 == 0 else [True, False]
    return order


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


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
            result, provisioned, hostile = _bench_target(
                replace(cfg, host=host, port=port), opts.server_pid, opts, progress, "ocs "
            )
            report["server"] = f"{host}:{port}"
        else:
            data_dir = work / "data"
            server = SpawnedServer(
                charging_server_argv(data_dir, opts.profile_server, opts.server_prefix),
                work,
                name="ocs-serve",
                cpus=server_cpus,
                stop_grace=STOP_GRACE_S,
            )
            try:
                server.start()
                result, provisioned, hostile = _bench_target(
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
        report["hostile"] = hostile
        report["echo_answers_per_s"] = None
        report["echo_ratio"] = None
        report["echo_ratio_per_cpu"] = None
        if opts.vs_echo:
            echo = SpawnedServer(
                echo_argv(), work, name="ocs-echo", cpus=server_cpus, stop_grace=STOP_GRACE_S
            )
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
) -> tuple[LoadResult, dict[str, int] | None, dict[str, Any] | None]:
    """Provision, then one run; or, with a hostile neighbour, the runs of `phase_order`: the
    runs without it combined, what was provisioned, and the hostile section of the report."""
    provisioned = None
    if opts.provision:
        started = time.monotonic()
        provisioned = asyncio.run(provision(cfg.host, cfg.port, cfg))
        if progress is not None:
            progress(
                f"{label}provisioned {cfg.subscribers:,} accounts in "
                f"{time.monotonic() - started:.1f}s: {provisioned}"
            )
    if not opts.hostile:
        return run_load(cfg, server_pid=pid, progress=progress, label=label), provisioned, None
    epoch = int(time.time()) & 0xFFFFFFFF
    runs: dict[bool, list[LoadResult]] = {False: [], True: []}
    phases: list[dict[str, Any]] = []
    for n, with_hostile in enumerate(phase_order(opts.rounds)):
        if n:
            time.sleep(PHASE_GAP_S)
        result = run_load(
            replace(cfg, epoch=(epoch + n) & 0xFFFFFFFF),
            server_pid=pid,
            progress=progress,
            label=f"{label}{'+hostile ' if with_hostile else ''}",
            hostile=opts.hostile if with_hostile else (),
        )
        runs[with_hostile].append(result)
        summary = result.summary()
        phases.append({"hostile": with_hostile, **{k: summary.get(k) for k in PHASE_KEYS}})
    without, with_ = combine_results(runs[False]), combine_results(runs[True])
    base, other = without.summary(), with_.summary()
    section = {
        "kinds": list(opts.hostile),
        "rounds": max(1, opts.rounds),
        "origin_host": hostile_origin_host(cfg.run_id),
        "with": other,
        "ratio": {k: _ratio(other[k], base[k]) for k in RATIO_KEYS},
        "peer": peer_summary(with_.hostile_peer or {}),
        "phases": phases,
    }
    return without, provisioned, section
