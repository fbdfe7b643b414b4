"""`ocs sim upf`, `ocs sim scp` and `ocs reconcile` (docs/simulators.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

import uvloop

from ocs.cli.args import add_tls_client_arguments, host_port, tls_client_config
from ocs.cli.config import ClientSettings
from ocs.edge.client import ClientError
from ocs.edge.logs import configure_logging
from ocs.edge.tls import TlsConfigError
from ocs.tools.sim.iot import IotProfile
from ocs.tools.sim.reconcile import reconcile
from ocs.tools.sim.runtime import SimConfig, SimRuntime
from ocs.tools.sim.scp import ScpConfig, ScpProfile, run_scp
from ocs.tools.sim.traffic import DataProfile
from ocs.tools.sim.upf import UpfConfig, run_upf
from ocs.tools.sim.usage_log import UsageLogError
from protocol.codes import ENCODING_BY_NAME
from rating import parse_money

# the connection settings a simulator reads from the environment and the client file too
# (`ocs.cli.config`): not its Origin-Host, which is the simulated element's
CLIENT_KEYS: Final = ("server", "tls-ca", "tls-cert", "tls-key", "tls-server-name")


def parse_amount(text: str) -> int:
    """A decimal amount of currency units ("10", "2.50") -> micro-units, exactly."""
    try:
        return parse_money(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
        return value

    return parse


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
        return value

    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def _common(p: argparse.ArgumentParser, *, name: str, first_msisdn: int) -> None:
    p.add_argument(
        "--server",
        type=host_port,
        default=("127.0.0.1", 3868),
        metavar="HOST:PORT",
        help="the charging server (default 127.0.0.1:3868)",
    )
    p.add_argument(
        "--subscribers", type=_positive(int), default=10, metavar="N", help="accounts to create"
    )
    p.add_argument(
        "--duration", type=_positive(float), default=10.0, metavar="S", help="real seconds"
    )
    p.add_argument(
        "--speed",
        type=_positive(float),
        default=1.0,
        metavar="X",
        help="simulated seconds per real second (traffic, durations, validity, QHT)",
    )
    p.add_argument("--seed", type=int, default=1, metavar="N", help="seed of the random choices")
    p.add_argument("--usage-log", type=Path, default=Path(f"{name}-usage.jsonl"), metavar="FILE")
    p.add_argument(
        "--balance",
        type=parse_amount,
        default=parse_money("10"),
        metavar="AMOUNT",
        help='initial balance of each subscriber in currency units (default "10")',
    )
    p.add_argument(
        "--offer",
        default=None,
        metavar="NAME",
        help="the first subscriber takes this offer of the catalog (its fee paid from the "
        "balance), so its usage draws on the offer's allowances",
    )
    p.add_argument(
        "--group-members",
        type=int,
        default=0,
        metavar="N",
        help="the first N subscribers share a group account's package (docs/accounts.md)",
    )
    p.add_argument(
        "--group-package",
        default="family",
        metavar="NAME",
        help='the catalog package of that group (default "family", the demo catalog\'s)',
    )
    p.add_argument(
        "--inhibit-threshold",
        type=parse_amount,
        default=None,
        metavar="AMOUNT",
        help="give each subscriber this low-balance threshold (UPDATE): grants stop there and "
        "service is redirected or restricted as the catalog's [status] says",
    )
    p.add_argument("--origin-host", default=f"{name}.sim.test.local")
    p.add_argument("--origin-realm", default="test.local")
    p.add_argument(
        "--first-msisdn",
        type=int,
        default=first_msisdn,
        metavar="MSISDN",
        help=f"MSISDN of the first subscriber (default {first_msisdn})",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=10.0,
        metavar="S",
        help="how long to try reaching the server at the start",
    )
    p.add_argument("--log-level", default="warning")
    p.add_argument(
        "--encoding",
        choices=tuple(ENCODING_BY_NAME),
        default="msgpack",
        help="the body encoding: MessagePack (version 0x4D, default) or standard Diameter "
        "AVPs (0x01), WIRE.md 1.1",
    )
    add_tls_client_arguments(p)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="network-element simulators")
    sims = sim.add_subparsers(dest="simulator", required=True)

    upf = sims.add_parser("upf", help="UPF: data sessions with usage reporting rules")
    _common(upf, name="upf", first_msisdn=491710000000)
    upf.add_argument(
        "--rate",
        type=_positive(float),
        default=50_000.0,
        metavar="BYTES_PER_S",
        help="mean traffic of a subscriber during a burst",
    )
    upf.add_argument(
        "--session-mean",
        type=_positive(float),
        default=600.0,
        metavar="S",
        help="mean data session length (simulated seconds)",
    )
    upf.add_argument(
        "--pause-mean",
        type=_positive(float),
        default=90.0,
        metavar="S",
        help="mean pause between bursts (simulated seconds)",
    )
    upf.add_argument(
        "--iot",
        type=_non_negative(int),
        default=0,
        metavar="N",
        help="IoT devices beside the subscribers (IMSIs 999010000000000 on: the demo catalog's "
        "device class)",
    )
    upf.add_argument(
        "--iot-interval",
        type=_positive(int),
        default=900,
        metavar="S",
        help="simulated seconds between two reports of an IoT device (default 900)",
    )
    upf.add_argument(
        "--iot-bytes",
        type=_positive(int),
        default=200,
        metavar="B",
        help="bytes of one IoT report (default 200)",
    )
    upf.set_defaults(func=run_upf_command, settings=ClientSettings(upf, CLIENT_KEYS))

    scp = sims.add_parser("scp", help="SCP: SMS (reservation, events, refunds) and voice")
    _common(scp, name="scp", first_msisdn=491720000000)
    scp.add_argument(
        "--sms-rate",
        type=_non_negative(float),
        default=1.0,
        metavar="R",
        help="messages per simulated second, all subscribers together",
    )
    scp.add_argument("--failure-rate", type=_share, default=0.1, metavar="F")
    scp.add_argument(
        "--event-share",
        type=_share,
        default=0.5,
        metavar="F",
        help="share of messages charged by immediate event (the rest by reservation)",
    )
    scp.add_argument(
        "--calls", type=_non_negative(int), default=10, metavar="N", help="voice calls in the run"
    )
    scp.add_argument(
        "--call-mean",
        type=_positive(float),
        default=180.0,
        metavar="S",
        help="mean call length (simulated seconds)",
    )
    scp.set_defaults(func=run_scp_command, settings=ClientSettings(scp, CLIENT_KEYS))

    rec = sub.add_parser("reconcile", help="compare simulator usage logs with the CDRs")
    rec.add_argument(
        "--usage-log", type=Path, nargs="+", action="extend", required=True, metavar="FILE"
    )
    rec.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    rec.set_defaults(func=run_reconcile)


def _sim_config(args: argparse.Namespace) -> SimConfig:
    host, port = args.server
    return SimConfig(
        host=host,
        port=port,
        subscribers=args.subscribers,
        duration=args.duration,
        speed=args.speed,
        seed=args.seed,
        usage_log=args.usage_log,
        balance=args.balance,
        inhibit_threshold=args.inhibit_threshold,
        origin_host=args.origin_host,
        origin_realm=args.origin_realm,
        first_msisdn=args.first_msisdn,
        connect_timeout=args.connect_timeout,
        tls=tls_client_config(args),
        encoding=ENCODING_BY_NAME[args.encoding],
        offer=args.offer,
        group_members=args.group_members,
        group_package=args.group_package,
    )


def _run(coro: Coroutine[Any, Any, SimRuntime]) -> SimRuntime:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _finish(rt: SimRuntime) -> int:
    print(rt.summary(), flush=True)
    return 0 if rt.stats.protocol_errors == 0 and rt.stats.unanswered == 0 else 1


def run_upf_command(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    profile = DataProfile(
        rate=args.rate, session_mean_s=args.session_mean, off_mean_s=args.pause_mean
    )
    try:
        iot = IotProfile(report_bytes=args.iot_bytes, interval_s=args.iot_interval)
        config = UpfConfig(sim=_sim_config(args), profile=profile, iot_devices=args.iot, iot=iot)
        rt = _run(run_upf(config))
    except (OSError, RuntimeError, ClientError, TlsConfigError) as exc:
        print(f"ocs sim upf: {exc}", file=sys.stderr)
        return 2
    return _finish(rt)


def run_scp_command(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level)
    profile = ScpProfile(
        sms_rate=args.sms_rate,
        failure_rate=args.failure_rate,
        event_share=args.event_share,
        calls=args.calls,
        call_mean_s=args.call_mean,
    )
    try:
        rt = _run(run_scp(ScpConfig(sim=_sim_config(args), profile=profile)))
    except (OSError, RuntimeError, ClientError, TlsConfigError) as exc:
        print(f"ocs sim scp: {exc}", file=sys.stderr)
        return 2
    return _finish(rt)


def run_reconcile(args: argparse.Namespace) -> int:
    try:
        result = reconcile(args.usage_log, args.data_dir / "cdr")
    except (OSError, UsageLogError) as exc:
        print(f"ocs reconcile: {exc}", file=sys.stderr)
        return 2
    print(result.render(), flush=True)
    return 0 if result.ok else 1
