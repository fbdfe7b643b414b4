"""`ocs bench`: load the charging server and report throughput, latency, errors and CPU.

Without `--server`, starts its own `ocs serve` on 127.0.0.1 in a temporary data directory
(pinned to one CPU, the load generator on the others) and stops it afterwards. See
`ocs.tools.load` for what is sent and how it is measured. With `--tls-ca` (and the other
`--tls-*` options) it loads a `--server` over TLS.

With `--hostile KIND[,KIND...]` one misbehaving peer runs beside the load (never-reads, flood,
churn, foreign-ids, or all; see `ocs.tools.load.hostile`): the same load runs without it and
with it (`--rounds` pairs, in alternating order) against the same server, and the report gives
both, their ratio, and what the neighbour saw. It takes twice as long (or 2 x --rounds times).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocs.cli.args import add_tls_client_arguments, host_port, tls_client_config
from ocs.edge.tls import TlsConfigError, client_context
from ocs.tools.load import (
    DEFAULT_MIX,
    HOSTILE_KINDS,
    BenchOptions,
    LoadConfig,
    format_report,
    parse_hostile,
    parse_mix,
    run_bench,
)
from protocol.codes import ENCODING_BY_NAME


def _mix(text: str) -> tuple[tuple[str, float], ...]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _hostile(text: str) -> tuple[str, ...]:
    try:
        return parse_hostile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="load test the charging server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--server",
        type=host_port,
        metavar="HOST:PORT",
        help="load this server (default: start one on 127.0.0.1 in a temporary directory)",
    )
    p.add_argument("--server-pid", type=int, help="pid of --server, for its CPU figure")
    p.add_argument("--duration", type=_positive_float, default=10.0, metavar="SECONDS")
    p.add_argument("--warmup", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument(
        "--rate", type=_positive_float, default=1000.0, help="open loop: requests/s in all"
    )
    p.add_argument("--connections", type=_positive_int, default=8, metavar="C")
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=32,
        metavar="K",
        help="closed loop: requests in flight per connection",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="P",
        help="client processes (default: one per CPU not given to the server)",
    )
    p.add_argument(
        "--mix",
        type=_mix,
        default=DEFAULT_MIX,
        metavar="data=70,sms=20,voice=10",
        help="share of requests per service",
    )
    p.add_argument("--subscribers", type=_positive_int, default=10_000, metavar="N")
    p.add_argument(
        "--low-balance",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="share of subscribers with a few cents (grants cut, 4012)",
    )
    p.add_argument("--updates", type=int, default=2, help="UPDATEs per data session")
    p.add_argument("--drain", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--vs-echo", action="store_true", help="also load the bare echo server")
    p.add_argument(
        "--hostile",
        type=_hostile,
        default=(),
        metavar="KIND[,KIND...]",
        help="run one misbehaving peer beside the load, doing any of "
        f"{', '.join(HOSTILE_KINDS)} (or all); the load runs without and with it",
    )
    p.add_argument(
        "--rounds",
        type=_positive_int,
        default=1,
        metavar="N",
        help="with --hostile: N pairs of runs, in alternating order (without, with, with, "
        "without, ...)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin server and clients to CPUs")
    p.add_argument(
        "--profile-server",
        type=Path,
        metavar="FILE.prof",
        help="run the self-started server under cProfile, write the profile here",
    )
    p.add_argument(
        "--data-base",
        type=Path,
        metavar="DIR",
        help="where the self-started server's temporary data directory goes (default: TMPDIR)",
    )
    p.add_argument("--histogram", type=Path, metavar="FILE.png", help="latency histogram")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--encoding",
        choices=tuple(ENCODING_BY_NAME),
        default="msgpack",
        help="the load's body encoding: MessagePack (version 0x4D, default) or standard "
        "Diameter AVPs (0x01), WIRE.md 1.1 (the hostile neighbour speaks MessagePack)",
    )
    add_tls_client_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.low_balance < 1:
        print("ocs bench: --low-balance must be in [0, 1)", file=sys.stderr)
        return 2
    try:
        tls = tls_client_config(args)
        if tls is not None:
            client_context(tls)  # the files load, before any worker starts
    except TlsConfigError as exc:
        print(f"ocs bench: {exc}", file=sys.stderr)
        return 2
    if tls is not None and (args.server is None or args.vs_echo):
        print(
            "ocs bench: --tls-* loads a --server over TLS; the self-started and echo servers "
            "speak plain TCP",
            file=sys.stderr,
        )
        return 2
    if args.encoding != "msgpack" and args.vs_echo:
        print("ocs bench: the echo server (--vs-echo) speaks MessagePack only", file=sys.stderr)
        return 2
    load = LoadConfig(
        mode=args.mode,
        duration=args.duration,
        warmup=max(0.0, args.warmup),
        drain=max(0.1, args.drain),
        rate=args.rate,
        connections=args.connections,
        concurrency=args.concurrency,
        mix=args.mix,
        subscribers=args.subscribers,
        low_balance_share=args.low_balance,
        updates=max(0, args.updates),
        seed=args.seed,
        tls=tls,
        encoding=ENCODING_BY_NAME[args.encoding],
    )
    opts = BenchOptions(
        server=args.server,
        server_pid=args.server_pid,
        load=load,
        processes=max(0, args.processes),
        vs_echo=args.vs_echo,
        pin=not args.no_pin,
        profile_server=args.profile_server,
        histogram=args.histogram,
        data_base=args.data_base,
        hostile=args.hostile,
        rounds=args.rounds,
    )
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        if tty:
            print(f"\r\x1b[2K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    try:
        report = run_bench(opts, None if args.quiet else progress)
    except (OSError, RuntimeError, TimeoutError) as exc:
        if tty:
            print(file=sys.stderr)
        print(f"ocs bench: {exc}", file=sys.stderr)
        return 1
    if tty and not args.quiet:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(format_report(report))
    hostile = report.get("hostile")
    errors = report["errors"] + (hostile["with"]["errors"] if hostile else 0)
    return 0 if errors == 0 else 3
