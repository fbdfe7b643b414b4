"""Load, per-request cost, memory (and optionally profile) benchmark of the charging server.

    .venv/bin/python -m bench.load            # about 2 minutes
    .venv/bin/python -m bench.load --quick    # short runs, smaller sizes
    .venv/bin/python -m bench.load --profile  # also profile the server (about 1 more minute)

Prints a markdown report. Not a test: nothing is asserted.

0. The disk: fdatasync latency of a small append where the server's data directory goes.
1. Load (`ocs.tools.load`, what `ocs bench` runs): the real server started on 127.0.0.1 in a
   temporary data directory (journal with strict group commit, CDR files), pinned to one CPU,
   the load generator on the other(s). A closed loop (`--closed-seconds`, default 15 s) with
   `--vs-echo`, which also loads the bare echo server (`ocs.tools.echo`) in the same run; then an
   open loop at half the closed-loop maximum (`--open-seconds`, default 10 s), whose latency is
   measured from the scheduled send times; and that open loop again with the data directory on
   tmpfs (`--tmpfs`, default /dev/shm), where fsync is free, to tell disk latency from CPU.
2. Per-request cost of the in-process core, without sockets: for each kind of request of the
   load's flows, the thread CPU time to decode the body (`protocol.codec`), handle it
   (`ChargingCore.handle_ccr`) and journal it (`encode_input` + `Store.append`, no fsync). The
   difference to the server's CPU time per answer measured in 1. is the I/O edge (framing,
   connection, dispatch, group commit, CDR files, event loop, syscalls).
3. Memory per open session: `ChargingCore` + `Ledger` in a fresh process, accounts created
   first (not counted), then N data sessions opened with INITIAL CCRs (rating groups 10 and 20,
   two grants, two reservations) fed to `handle_ccr`: tracemalloc (exact, with the allocation
   sites) on `--traced-sessions`, the RSS delta on `--sessions` (a size whose projected time
   exceeds `--memory-budget` is skipped), right after and after the 4-minute duplicate cache
   has been evicted (the steady state).
4. With `--profile`: the server under the closed-loop load, once under cProfile (`ocs bench
   --profile-server`) and once under a SIGPROF sampling profiler (shares of CPU time without
   cProfile's per-call overhead).

Every figure depends on what else runs on the machine: each load run prints how busy the
machine was just before it.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import linecache
import os
import platform
import pstats
import resource
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import FrameType
from typing import Any

from ocs.core.accounts import SubscriberIdentity
from ocs.core.charging import ChargingCore, Input, InputKind, encode_input
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.store import Store
from ocs.node import KIND_CORE, CoreComponent
from ocs.tools.load import (
    DEFAULT_MIX,
    FUNDED_BALANCE,
    KINDS,
    BenchOptions,
    FrameTemplate,
    LoadConfig,
    flow_bodies,
    flow_weights,
    format_report,
    msisdn,
    percentile,
    run_bench,
)
from protocol.codec import decode_body
from protocol.codes import CommandCode
from protocol.messages import CCR

T0_MS = 1_700_000_000_000

ORIGIN = "bench.test.local"
STEP_NAMES = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATION", 4: "EVENT"}


def progress(line: str) -> None:
    print(f"    {line}", file=sys.stderr, flush=True)


# --- 0. the disk ---------------------------------------------------------------------------


def fsync_section(directory: Path, count: int = 200) -> dict[str, float]:
    """fdatasync latency of a small append in `directory`: with strict group commit, an answer
    waits for up to two of these (the one in flight, then its own)."""
    lat: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="ocs-fsync-") as f:
        fd = f.fileno()
        for _ in range(count):
            os.write(fd, b"x" * 200)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    out = {
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1],
    }
    print("## The disk\n")
    print(
        f"fdatasync of a 200-byte append in {directory} ({count} times): "
        f"p50 {out['p50_ms']:.2f} ms, p90 {out['p90_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, "
        f"max {out['max_ms']:.2f} ms.\n"
    )
    return out


# --- 1. load -------------------------------------------------------------------------------


def load_section(args: argparse.Namespace) -> dict[str, Any]:
    base = LoadConfig(
        connections=args.connections,
        concurrency=args.concurrency,
        subscribers=args.subscribers,
        warmup=args.warmup,
    )
    print("## Load (`ocs bench`)\n")
    print(f"Closed loop, {args.closed_seconds:g} s, with the echo server:\n")
    closed = run_bench(
        BenchOptions(load=replace(base, mode="closed", duration=args.closed_seconds), vs_echo=True),
        progress,
    )
    print("```\n" + format_report(closed) + "\n```\n")
    half = max(1.0, round(closed["answers_per_s"] / 2, -1))
    print(f"Open loop at half that maximum ({half:,.0f} requests/s), {args.open_seconds:g} s:\n")
    opened = run_bench(
        BenchOptions(load=replace(base, mode="open", rate=half, duration=args.open_seconds)),
        progress,
    )
    print("```\n" + format_report(opened) + "\n```\n")
    result = {"closed": closed, "open": opened}
    if args.tmpfs is not None and "tmpfs" not in args.skip_set:
        print(
            f"The same open loop with the server's data directory on tmpfs ({args.tmpfs}: "
            "fdatasync costs nothing, so what is left is CPU and scheduling):\n"
        )
        on_tmpfs = run_bench(
            BenchOptions(
                load=replace(base, mode="open", rate=half, duration=args.open_seconds),
                data_base=args.tmpfs,
            ),
            progress,
        )
        print("```\n" + format_report(on_tmpfs) + "\n```\n")
        result["open_tmpfs"] = on_tmpfs
    return result


# --- 2. in-process core cost ---------------------------------------------------------------


def core_section(flows_per_kind: int, *, compare_pure: bool = True) -> dict[str, Any]:
    """µs per request (decode, core, journal) for each step of each flow kind; with a compiled
    build, the same measured on the pure-Python source in a subprocess, for the ratio."""
    pure = _core_pure(flows_per_kind) if compare_pure and _compiled_core() else None
    result = _core_measure(flows_per_kind)
    _core_print(result, flows_per_kind)
    if pure is not None:
        ratio = pure["mix_average_us"] / result["mix_average_us"]
        print(
            f"The same on the pure-Python source (`OCS_PURE=1`'s build: the `.py` files in a "
            f"subprocess, run first): **{pure['mix_average_us']:.1f} µs** per request; the "
            f"compiled build is **{ratio:.2f}x** cheaper.\n"
        )
        result["pure_mix_average_us"] = pure["mix_average_us"]
    return result


def _compiled_core() -> bool:
    import ocs.core.charging

    return (ocs.core.charging.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))


def _core_pure(flows_per_kind: int) -> dict[str, Any]:
    """`_core_measure` in a subprocess importing `ocs`, `rating` and `protocol` from a copy of
    their source files (no compiled module beside them)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-load-pure-") as tmp:
        for package in ("ocs", "rating", "protocol"):
            for source in (root / package).rglob("*"):
                if source.suffix in (".py", ".toml", ".typed"):
                    target = Path(tmp, source.relative_to(root))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(root)]))
        # -P: the working directory does not go first on sys.path, so the packages are the copy
        command = [sys.executable, "-P", "-m", "bench.load", "--core-worker", str(flows_per_kind)]
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the pure-Python core run failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["module"].startswith(tmp) or not result["module"].endswith(".py"):
        raise SystemExit(f"the pure-Python core run imported {result['module']}")
    return result


def _core_measure(flows_per_kind: int) -> dict[str, Any]:
    text = demo_catalog_text()
    accounts = 2_000
    rows: dict[str, dict[str, float]] = {}
    overhead_us = _clock_overhead_us()
    with tempfile.TemporaryDirectory(prefix="ocs-bench-core-") as tmp:
        ledger = Ledger()
        core = ChargingCore(ledger, text, origin_host="ocs.test.local")
        comp = CoreComponent(core)
        with Store.open(Path(tmp), ledger=ledger, components={KIND_CORE: comp}) as store:
            for i in range(accounts):
                ledger.create_account(
                    f"create-{i}",
                    now_ms=T0_MS,
                    account_id=f"acct-{i}",
                    currency=978,
                    subscriptions=[_sub(i)],
                    balance=FUNDED_BALANCE,
                )
            now = T0_MS
            e2e = 0
            for kind in KINDS:
                bodies = flow_bodies(kind, ORIGIN, 2)
                sid_len = len(f"{ORIGIN};1;") + 10
                templates = [FrameTemplate(b, sid_len, 15) for b in bodies]
                steps = [(b["CC-Request-Type"], b["CC-Request-Number"]) for b in bodies]
                frames = [
                    [
                        t.render(0, f"{ORIGIN};1;{kind[:1]}{f:09d}".encode(), _msisdn(f % accounts))
                        for t in templates
                    ]
                    for f in range(flows_per_kind)
                ]
                times = [[0.0, 0.0, 0.0] for _ in steps]
                clock = time.thread_time  # CPU time: robust to other work on the machine
                for flow in frames:
                    for s, frame in enumerate(flow):
                        body = frame[20:]
                        now += 1
                        e2e += 1
                        t0 = clock()
                        ccr = decode_body(CommandCode.CREDIT_CONTROL, True, body)
                        t1 = clock()
                        assert isinstance(ccr, CCR)
                        result = core.handle_ccr(now, ORIGIN, e2e, ccr)
                        t2 = clock()
                        if not result.duplicate:
                            store.append(
                                KIND_CORE,
                                encode_input(
                                    Input(
                                        kind=InputKind.REQUEST,
                                        now_ms=now,
                                        origin_host=ORIGIN,
                                        end_to_end=e2e,
                                        command=272,
                                        body=body,
                                    )
                                ),
                            )
                        core.take_cdrs()
                        core.take_closed()
                        core.take_actions()
                        t3 = clock()
                        row = times[s]
                        row[0] += t1 - t0
                        row[1] += t2 - t1
                        row[2] += t3 - t2
                        if result.answer.result_code != 2001:
                            raise RuntimeError(f"{kind} step {s}: {result.answer.result_code}")
                    if e2e % 256 == 0:
                        store.journal.flush()
                for s, (req_type, number) in enumerate(steps):
                    d, c, j = (x * 1e6 / flows_per_kind - overhead_us for x in times[s])
                    name = f"{kind} {STEP_NAMES[req_type]}"
                    if req_type == 2:
                        name += f" #{number}"
                    rows[name] = {
                        "decode_us": d,
                        "core_us": c,
                        "journal_us": j,
                        "total_us": d + c + j,
                    }
            store.journal.flush()
    cumulative, lengths = flow_weights(DEFAULT_MIX, 2)
    probs = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(KINDS))]
    weighted = 0.0
    requests = 0.0
    for kind, p, n in zip(KINDS, probs, lengths, strict=True):
        flow_total = sum(v["total_us"] for k, v in rows.items() if k.startswith(kind + " "))
        weighted += p * flow_total
        requests += p * n
    mix_avg = weighted / requests
    return {"rows": rows, "mix_average_us": mix_avg, "overhead_us": overhead_us}


def _core_print(result: dict[str, Any], flows_per_kind: int) -> None:
    rows, mix_avg = result["rows"], result["mix_average_us"]
    print("## Per-request cost of the in-process core (no sockets)\n")
    print(
        f"{flows_per_kind:,} flows of each kind, 2,000 accounts; µs of thread CPU time "
        f"per request (`time.thread_time`, its own cost of {result['overhead_us']:.2f} µs per "
        "reading subtracted), mean over the flows.\n"
    )
    print("| request | decode | core (`handle_ccr`) | journal record | total |")
    print("|---|---:|---:|---:|---:|")
    for name, v in rows.items():
        print(
            f"| {name} | {v['decode_us']:.1f} | {v['core_us']:.1f} | {v['journal_us']:.1f} | "
            f"**{v['total_us']:.1f}** |"
        )
    print(f"\nWeighted by the default mix ({dict(DEFAULT_MIX)} by requests): **{mix_avg:.1f} µs**")
    print(f"per request, i.e. at most {1e6 / mix_avg:,.0f} requests/s on one core for this part.\n")


def _clock_overhead_us(n: int = 20_000) -> float:
    """The cost of one `time.thread_time()` reading, which each measured phase includes."""
    clock = time.thread_time
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            clock()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def _sub(i: int) -> SubscriberIdentity:
    return SubscriberIdentity(type=0, data=msisdn(1, i))


def _msisdn(i: int) -> bytes:
    return msisdn(1, i).encode()


# --- 3. memory per open session ------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(sessions: int, method: str) -> dict[str, Any]:
    """Run in a fresh process: open `sessions` data sessions in an in-process core."""
    text = demo_catalog_text()
    ledger = Ledger()
    core = ChargingCore(ledger, text, origin_host="ocs.test.local")
    started = time.perf_counter()
    for i in range(sessions):
        ledger.create_account(
            f"create-{i}",
            now_ms=T0_MS,
            account_id=f"acct-{i:08d}",
            currency=978,
            subscriptions=[_sub(i)],
            balance=FUNDED_BALANCE,
        )
    accounts_s = time.perf_counter() - started
    body = flow_bodies("data", ORIGIN, 2)[0]
    sid_prefix = f"{ORIGIN};1700000000;"
    template = FrameTemplate(body, len(sid_prefix) + 10, 15)
    prefix = sid_prefix.encode()
    empty_state = (ledger.snapshot(), core.snapshot()) if method == "rss" else None
    gc.collect()
    snapshot0: tracemalloc.Snapshot | None = None
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        snapshot0 = tracemalloc.take_snapshot()
    else:
        before = rss_bytes()
    now = T0_MS
    started = time.perf_counter()
    for i in range(sessions):
        frame = template.render(0, prefix + b"%010d" % i, _msisdn(i))
        ccr = decode_body(CommandCode.CREDIT_CONTROL, True, frame[20:])
        assert isinstance(ccr, CCR)
        if i % 1000 == 0:
            now += 1  # 1,000 INITIALs per ms
        result = core.handle_ccr(now, ORIGIN, i, ccr)
        if result.answer.result_code != 2001:
            raise RuntimeError(f"INITIAL answered {result.answer.result_code}")
        core.take_cdrs()
        del ccr, result, frame
    open_s = time.perf_counter() - started
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()
    # the duplicate cache (WIRE.md 6) forgets answers after 4 minutes, and sessions idle that
    # long are packed: the steady state
    started = time.process_time()
    core.tick(now + 5 * 60 * 1000)
    pack_us = (time.process_time() - started) / sessions * 1e6  # eviction + packing, per session
    if len(core.sessions) != sessions:
        raise RuntimeError("sessions were closed by the tick")
    reservations, remembered = ledger.reservation_count, ledger.remembered_count
    gc.collect()
    sites: list[tuple[str, str, float, float]] = []
    if method == "tracemalloc":
        evicted = tracemalloc.get_traced_memory()[0]
        assert snapshot0 is not None
        diff = tracemalloc.take_snapshot().compare_to(snapshot0, "lineno")
        tracemalloc.stop()
        root = str(Path(__file__).resolve().parent.parent) + os.sep
        for stat in diff[:14]:
            frame0 = stat.traceback[0]
            where = f"{frame0.filename.removeprefix(root)}:{frame0.lineno}"
            code = linecache.getline(frame0.filename, frame0.lineno).strip()
            sites.append((where, code, stat.size_diff / sessions, stat.count_diff / sessions))
    else:
        evicted = rss_bytes()
    restored: float | None = None
    restore_us: float | None = None
    unpack_us: float | None = None
    if empty_state is not None:
        # RSS never shrinks much after the packing frees the unpacked sessions (the allocator
        # keeps partly used arenas; a running server reuses them). What the state itself takes
        # shows in a fresh process that restores it, as a restart would.
        packed = core.sessions.packed()
        if packed != sessions:
            raise RuntimeError(f"{packed} of {sessions} sessions packed after the window")
        with tempfile.TemporaryDirectory(prefix="ocs-bench-mem-") as tmp:
            full, empty = Path(tmp, "full"), Path(tmp, "empty")
            _write_state(full, ledger.snapshot(), core.snapshot())
            _write_state(empty, *empty_state)
            # what a later request pays to unpack an idle session (a copy: nothing changes)
            sample = list(core.sessions)[: min(sessions, 10_000)]
            started = time.process_time()
            for sid in sample:
                core.sessions[sid]
            unpack_us = (time.process_time() - started) / len(sample) * 1e6
            del core, ledger
            gc.collect()
            done, base = _restored(full), _restored(empty)
            restored = (done["rss"] - base["rss"]) / sessions
            restore_us = done["core_restore_s"] / sessions * 1e6
    return {
        "sessions": sessions,
        "method": method,
        "reservations": reservations,
        "remembered_op_ids": remembered,
        "bytes_per_session": (after - before) / sessions,
        "bytes_per_session_steady": (evicted - before) / sessions,
        "bytes_per_session_restored": restored,
        "pack_us": pack_us,
        "unpack_us": unpack_us,
        "restore_us": restore_us,
        "accounts_s": accounts_s,
        "open_s": open_s,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sites": sites,
    }


def _write_state(path: Path, ledger_state: bytes, core_state: bytes) -> None:
    path.write_bytes(len(ledger_state).to_bytes(8, "little") + ledger_state + core_state)


def _restored(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.load", "--memory-restore", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def memory_restore(path: Path) -> dict[str, float]:
    """Run in a fresh process: the RSS growth from restoring a ledger + core snapshot, and the
    CPU time of the core's restore (which unpacks each packed session once to index it)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    ledger = Ledger()
    core = ChargingCore(ledger, demo_catalog_text(), origin_host="ocs.test.local")
    gc.collect()
    before = rss_bytes()
    ledger.restore(memoryview(data)[8 : 8 + size])
    started = time.process_time()
    core.restore(data[8 + size :])
    core_s = time.process_time() - started
    del data
    gc.collect()
    return {"rss": rss_bytes() - before, "core_restore_s": core_s}


def _memory_run(size: int, method: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.load", "--memory-child", str(size), method],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def memory_section(
    traced: int, sizes: list[int], budget_s: float
) -> dict[str, list[dict[str, Any]]]:
    print("## Memory per open session\n")
    print(
        "In-process `ChargingCore` + `Ledger` in a fresh process, one account per session "
        "created first (not counted); each session is a data INITIAL for rating groups 10 and "
        "20 (two grants, two ledger reservations). *Right after* includes the 4-minute "
        "duplicate-cache entry of the INITIAL; *steady* is after that cache was evicted and "
        "the idle sessions were packed. "
        f"tracemalloc counts exactly but slows the run about 5x, so it runs on {traced:,} "
        "sessions; the RSS delta (pages the process really got) runs on the larger sizes. RSS "
        "hardly shrinks when objects are freed (the allocator keeps partly used arenas, which "
        "a running server reuses), so for RSS the steady state is also measured by restoring "
        "a snapshot of it in a fresh process, as a restart would: *restored*.\n"
    )
    print(
        "| open sessions | method | bytes/session right after | bytes/session steady | "
        "restored | open reservations | time to open | peak RSS |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    results: dict[str, list[dict[str, Any]]] = {"tracemalloc": [], "rss": []}
    runs = [(traced, "tracemalloc")] + [(n, "rss") for n in sizes]
    per_session_s: float | None = None
    for size, method in runs:
        if method == "rss" and per_session_s is not None:
            projected = size * per_session_s
            if projected > budget_s:
                print(
                    f"| {size:,} | {method} | skipped: projected {projected:.0f} s > "
                    f"{budget_s:.0f} s (raise --memory-budget) | | | | | |"
                )
                continue
        r = _memory_run(size, method)
        results[method].append(r)
        if method == "rss":
            per_session_s = (r["accounts_s"] + r["open_s"]) / size
        restored = r["bytes_per_session_restored"]
        print(
            f"| {size:,} | {method} | {r['bytes_per_session']:,.0f} | "
            f"**{r['bytes_per_session_steady']:,.0f}** | "
            + (f"**{restored:,.0f}**" if restored is not None else "-")
            + f" | {r['reservations']:,} | {r['open_s']:.1f} s | {r['max_rss_mib']:,.0f} MiB |"
        )
    if results["rss"]:
        print("\nCPU time of the packing (RSS runs, µs per session):\n")
        print("| open sessions | pack (tick after the window) | unpack a copy | restore, core |")
        print("|---:|---:|---:|---:|")
        for r in results["rss"]:
            print(
                f"| {r['sessions']:,} | {r['pack_us']:.1f} | {r['unpack_us']:.1f} | "
                f"{r['restore_us']:.1f} |"
            )
    if results["tracemalloc"]:
        print("\nWhere the steady-state bytes are allocated (tracemalloc, per session):\n")
        print("| allocation site | code | bytes | objects |")
        print("|---|---|---:|---:|")
        for where, code, size_b, count in results["tracemalloc"][0]["sites"]:
            code = code.replace("|", "\\|")
            print(f"| `{where}` | `{code}` | {size_b:,.0f} | {count:.2f} |")
    print()
    return results


# --- 4. where the server's time goes: cProfile and a sampling profiler ----------------------


def profile_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The server under the closed-loop load, profiled twice: cProfile (exact call counts, but
    its per-call overhead inflates call-heavy code about 2.5x) and a SIGPROF sampler (shares of
    CPU time as they are, Python frames only)."""
    base = LoadConfig(
        mode="closed",
        duration=args.profile_seconds,
        warmup=1.0,
        connections=args.connections,
        concurrency=args.concurrency,
        subscribers=args.subscribers,
    )
    print("## Profile of the server under the closed-loop load\n")
    prof = work / "server.prof"
    report = run_bench(BenchOptions(load=base, profile_server=prof), progress)
    print(
        f"cProfile: `ocs bench --profile-server FILE` ({report['answers_per_s']:,.0f} answers/s "
        f"under the profiler, server CPU {report['server_cpu_percent']}%).\n"
    )
    stats = pstats.Stats(str(prof))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    requests = max(
        (v[0] for k, v in raw.items() if k[2] == "_dispatch" and k[0].endswith("server.py")),
        default=0,
    )
    total_tt = sum(v[2] for v in raw.values())
    rows = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)
    print(f"{requests:,} requests dispatched; total profiled time {total_tt:.2f} s.\n")
    print("| function | calls | self s | cumulative s | cumulative % |")
    print("|---|---:|---:|---:|---:|")
    shown = 0
    for (filename, line, name), (_, ncalls, tt, ct, _) in rows:
        if not any(part in filename for part in ("/ocs/", "/protocol/", "/rating/")):
            continue
        short = filename.split("/main/")[-1]
        print(
            f"| `{short}:{line}({name})` | {ncalls:,} | {tt:.2f} | {ct:.2f} | "
            f"{100 * ct / total_tt:.0f}% |"
        )
        shown += 1
        if shown >= args.profile_rows:
            break
    print("\nBy self time:\n")
    print("| function | calls | self s | self % |")
    print("|---|---:|---:|---:|")
    for (filename, line, name), (_, ncalls, tt, _, _) in sorted(
        raw.items(), key=lambda kv: kv[1][2], reverse=True
    )[: args.profile_rows]:
        short = filename.split("/main/")[-1] if "/main/" in filename else Path(filename).name
        print(f"| `{short}:{line}({name})` | {ncalls:,} | {tt:.2f} | {100 * tt / total_tt:.0f}% |")
    samples_path = work / "samples.json"
    prefix = (sys.executable, "-m", "bench.load", "--sample-child", str(samples_path), "--")
    sampled = run_bench(BenchOptions(load=base, server_prefix=prefix), progress)
    samples = json.loads(samples_path.read_text())
    n = max(1, samples["samples"])
    print(
        f"\nSampling profiler (SIGPROF every 1 ms of CPU, Python frames; "
        f"{sampled['answers_per_s']:,.0f} answers/s, server CPU "
        f"{sampled['server_cpu_percent']}%, {n:,} samples). Share of server CPU time "
        "spent in a function and what it calls:\n"
    )
    print("| function | inclusive | self |")
    print("|---|---:|---:|")
    self_by_fn: dict[str, int] = samples["self"]
    ours = [
        (name, count)
        for name, count in samples["inclusive"]
        if name.startswith(("ocs/", "protocol/", "rating/")) and "cli.py" not in name
    ]
    for name, count in ours[: args.profile_rows]:
        print(f"| `{name}` | {count / n:.1%} | {self_by_fn.get(name, 0) / n:.1%} |")
    print("\nBy self time:\n")
    print("| function | self |")
    print("|---|---:|")
    for name, count in sorted(self_by_fn.items(), key=lambda kv: kv[1], reverse=True)[
        : args.profile_rows
    ]:
        print(f"| `{name}` | {count / n:.1%} |")
    print("\nCyclic garbage collector pauses in the server over the whole run (`gc.callbacks`):\n")
    print(gc_table(samples["gc"]))
    print()
    return {"cprofile_answers_per_s": report["answers_per_s"], "samples": samples}


def gc_table(pauses: dict[str, list[float]]) -> str:
    lines = [
        "| generation | collections | total ms | max ms | pauses > 5 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for gen, (count, total_ms, max_ms, slow) in sorted(pauses.items()):
        lines.append(f"| {gen} | {int(count):,} | {total_ms:,.1f} | {max_ms:.1f} | {int(slow)} |")
    return "\n".join(lines)


def sample_child(out: Path, argv: list[str]) -> int:
    """Run `-m MODULE ARGS` under a SIGPROF sampler; write the counts to `out` at exit."""
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: --sample-child OUT -- -m MODULE [ARGS]")
    module, rest = argv[1], argv[2:]
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = [0]

    def name_of(frame: FrameType) -> str:
        code = frame.f_code
        return f"{code.co_filename.removeprefix(root)}:{code.co_name}"

    def on_sample(signum: int, frame: FrameType | None) -> None:
        total[0] += 1
        if frame is None:
            return
        self_time[name_of(frame)] += 1
        seen: set[str] = set()
        f: FrameType | None = frame
        while f is not None:
            key = name_of(f)
            if key not in seen:
                seen.add(key)
                inclusive[key] += 1
            f = f.f_back

    # cyclic garbage collector pauses, per generation: [count, total ms, max ms, over 5 ms]
    gc_pauses = {g: [0, 0.0, 0.0, 0] for g in range(3)}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - gc_started[0]) * 1000
        entry = gc_pauses[info["generation"]]
        entry[0] += 1
        entry[1] += ms
        entry[2] = max(entry[2], ms)
        entry[3] += ms > 5.0

    def dump() -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        gc.callbacks.remove(on_gc)
        out.write_text(
            json.dumps(
                {
                    "samples": total[0],
                    "inclusive": inclusive.most_common(200),
                    "self": dict(self_time.most_common(400)),
                    "gc": gc_pauses,
                }
            )
        )

    gc.callbacks.append(on_gc)

    signal.signal(signal.SIGPROF, on_sample)
    signal.setitimer(signal.ITIMER_PROF, 0.001, 0.001)
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        dump()
    return 0


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, 100k sessions only")
    parser.add_argument("--closed-seconds", type=float, default=15.0)
    parser.add_argument("--open-seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--core-flows", type=int, default=3_000)
    parser.add_argument("--sessions", default="100000,1000000", help="comma-separated sizes")
    parser.add_argument("--traced-sessions", type=int, default=20_000, metavar="N")
    parser.add_argument("--memory-budget", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--tmpfs",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="also run the open loop with the data directory here (default /dev/shm)",
    )
    parser.add_argument("--skip", default="", help="comma-separated: fsync,load,tmpfs,core,memory")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--profile", action="store_true", help="also profile the server")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--profile-rows", type=int, default=25)
    parser.add_argument("--sample-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs=2, metavar=("N", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-restore", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--core-worker", type=int, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--sample-child"]:
        return sample_child(Path(argv[1]), argv[3:] if argv[2:3] == ["--"] else argv[2:])
    args = parser.parse_args(argv)
    if args.memory_restore:
        print(json.dumps(memory_restore(args.memory_restore)))
        return 0
    if args.core_worker:
        import ocs.core.charging

        result = _core_measure(args.core_worker)
        print(json.dumps({"module": ocs.core.charging.__file__, **result}))
        return 0
    if args.memory_child:
        print(json.dumps(memory_child(int(args.memory_child[0]), args.memory_child[1])))
        return 0
    if args.quick:
        args.closed_seconds, args.open_seconds, args.warmup = 5.0, 4.0, 1.0
        args.sessions, args.core_flows, args.traced_sessions = "100000", 1_000, 10_000
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.skip_set = skip
    print("# Load benchmark\n")
    print(
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    figures: dict[str, Any] = {}
    if "fsync" not in skip:
        figures["fsync"] = fsync_section(Path(tempfile.gettempdir()))
    if "load" not in skip:
        figures["load"] = load_section(args)
    if "core" not in skip:
        figures["core"] = core_section(args.core_flows)
    if "memory" not in skip:
        sizes = [int(s) for s in args.sessions.split(",") if s.strip()]
        figures["memory"] = memory_section(args.traced_sessions, sizes, args.memory_budget)
    if "load" in figures and "core" in figures:
        closed = figures["load"]["closed"]
        if closed["server_cpu_percent"] and closed["answers_per_s"]:
            per_answer = closed["server_cpu_percent"] / 100 * 1e6 / closed["answers_per_s"]
            core_us = figures["core"]["mix_average_us"]
            print("## Where the server's time goes\n")
            print(
                f"Server CPU per answer in the closed loop: **{per_answer:.0f} µs**; of which "
                f"the in-process core path (decode + handle + journal record): {core_us:.0f} µs "
                f"({core_us / per_answer:.0%}); the rest, {per_answer - core_us:.0f} µs, is the "
                "I/O edge (event loop, framing, connection, dispatch, group commit, CDR files, "
                "syscalls).\n"
            )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="ocs-bench-profile-") as tmp:
            figures["profile"] = profile_section(args, Path(tmp))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
