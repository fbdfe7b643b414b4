"""`ocs serve` (WIRE.md section 10)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import os
import socket
import sys
from functools import partial
from pathlib import Path
from typing import NoReturn

import structlog
import uvloop

from ocs.cli.args import DEFAULT_METRICS_PORT, host_port, metrics_address
from ocs.cli.config import ServeSettings
from ocs.core.charging import MAX_REFUND_WINDOW_S
from ocs.core.history import MAX_HISTORY_LIMIT
from ocs.edge.logs import configure_logging
from ocs.edge.server import (
    DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_OUTPUT_HIGH_WATER_BYTES,
    DESCRIPTOR_RESERVE,
    IPNetwork,
    PeerEntry,
    ServerConfig,
    serve_until_signalled,
)
from ocs.edge.tls import TlsConfigError, TlsServerConfig, server_context
from ocs.node import Node, NodeConfig
from ocs.startup import ConfigurationError, ExitStatus, ListenError, log_startup_failed
from protocol.codes import DEFAULT_PORT, ApplicationId

_APP_NAMES = {
    "cc": ApplicationId.CREDIT_CONTROL,
    "credit-control": ApplicationId.CREDIT_CONTROL,
    "admin": ApplicationId.ADMINISTRATION,
    "administration": ApplicationId.ADMINISTRATION,
}

_DEFAULTS = NodeConfig()

log = structlog.get_logger("ocs.cli.serve")


def parse_peer(text: str) -> tuple[str, PeerEntry]:
    """`ORIGIN_HOST[=cc,admin][@ADDRESS[,ADDRESS...]]`: the applications (default `cc`) and
    the addresses or networks (`10.1.2.3`, `10.1.2.0/24`, `2001:db8::/32`) the peer may connect
    from (default: any)."""
    name, bound, where = text.partition("@")
    host, _, apps = name.partition("=")
    if not host:
        raise argparse.ArgumentTypeError(f"no Origin-Host in {text!r}")
    names = [a for a in apps.split(",") if a] or ["cc"]
    try:
        applications = frozenset(_APP_NAMES[n] for n in names)
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"unknown application {exc.args[0]!r}") from None
    networks: list[IPNetwork] = []
    for address in where.split(",") if bound else ():
        try:
            networks.append(ipaddress.ip_network(address.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not an IP address or network: {address!r} (a network has no host bits set: "
                "10.1.2.0/24)"
            ) from None
    return host, PeerEntry(applications=applications, networks=tuple(networks))


def peer_list(entries: list[tuple[str, PeerEntry]] | None) -> dict[str, PeerEntry] | None:
    """The `--peer` options as the server's peer list (None: none given); a name given twice
    is refused rather than one of its entries silently dropped."""
    if not entries:
        return None
    peers: dict[str, PeerEntry] = {}
    for host, entry in entries:
        if host in peers:
            raise ValueError(f"--peer {host} is given twice")
        peers[host] = entry
    return peers


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def refund_window(text: str) -> int:
    """Whole seconds, 1 .. 90 days."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if not 1 <= value <= MAX_REFUND_WINDOW_S:
        raise argparse.ArgumentTypeError(f"must be 1 .. {MAX_REFUND_WINDOW_S} seconds")
    return value


def history_limit(text: str) -> int:
    """Movements kept per account, 1 .. MAX_HISTORY_LIMIT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_HISTORY_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1 .. {MAX_HISTORY_LIMIT}")
    return value


def tune_gc() -> None:
    """Latency: what recovery loaded lives as long as the process, so it is moved out of the
    collector's sight (`gc.freeze`). Young collections stay small (a pause grows with the
    objects a collection examines: ~0.4 ms at 2,000, 1-9 ms at 10,000 under load), and full
    collections, which examine everything created since the freeze, are rare. Most
    per-request objects are msgspec Structs that the collector does not track at all."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 20, 1_000)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the charging server")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="read every option from this TOML file (keys: the long option names, e.g. "
        'data-dir = "/var/lib/ocs"); the command line overrides it (docs/operations.md)',
    )
    p.add_argument(
        "--listen", type=host_port, default=("127.0.0.1", DEFAULT_PORT), metavar="HOST:PORT"
    )
    p.add_argument("--data-dir", type=Path, default=Path("ocs-data"))
    p.add_argument("--catalog", type=Path, default=None, help="catalog TOML (default: demo)")
    p.add_argument("--origin-host", default="ocs.test.local")
    p.add_argument("--origin-realm", default="test.local")
    p.add_argument(
        "--peer",
        type=parse_peer,
        action="append",
        metavar="ORIGIN_HOST[=cc,admin][@ADDRESS[,ADDRESS]]",
        help="serve only these peers (repeatable), for these applications (default cc), "
        "from these addresses or networks (default any); default: any peer on loopback",
    )
    p.add_argument("--watchdog", type=float, default=30.0, metavar="SECONDS", help="Tw")
    p.add_argument("--cer-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument(
        "--max-pending",
        type=positive_int,
        default=1024,
        help="outstanding requests per peer (across its connections); the excess is 3004",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"connections in total (default: the descriptor limit - {DESCRIPTOR_RESERVE})",
    )
    p.add_argument(
        "--max-connections-per-peer",
        type=positive_int,
        default=None,
        metavar="N",
        help="connections of one Origin-Host, counted from its CER; a CER beyond is answered "
        f"3004 (default: a quarter of --max-connections, at most "
        f"{DEFAULT_MAX_CONNECTIONS_PER_PEER})",
    )
    p.add_argument(
        "--max-unopened-connections",
        type=positive_int,
        default=None,
        metavar="N",
        help="connections that have not sent their CER yet; beyond, the oldest is closed "
        "(default: a quarter of --max-connections)",
    )
    p.add_argument(
        "--output-high-water",
        type=positive_int,
        default=DEFAULT_OUTPUT_HIGH_WATER_BYTES,
        metavar="BYTES",
        help="unsent output per connection above which it is not read until it drains "
        "(closed if it has not within Tw)",
    )
    p.add_argument(
        "--sync-interval-ms",
        type=float,
        default=None,
        metavar="MS",
        help="relaxed durability: answer after write(2), fsync at most every MS "
        "(default: strict group commit, fsync before answers; see docs/durability.md)",
    )
    p.add_argument(
        "--checkpoint-records",
        type=int,
        default=_DEFAULTS.checkpoint_records,
        metavar="N",
        help="journal records between snapshots (bounds restart time)",
    )
    p.add_argument(
        "--no-fork-checkpoints",
        dest="fork_checkpoints",
        action="store_false",
        help="capture checkpoints on the event loop (pauses serving) instead of in a forked "
        "child (which needs up to the server's memory again while it runs)",
    )
    p.add_argument(
        "--cdr-rotate-bytes", type=int, default=_DEFAULTS.cdr_rotate_bytes, metavar="BYTES"
    )
    p.add_argument(
        "--cdr-rotate-seconds",
        type=float,
        default=_DEFAULTS.cdr_rotate_seconds,
        metavar="SECONDS",
    )
    tls = p.add_argument_group(
        "TLS", "TLS on the peer port (RFC 6733 section 13): with --tls-cert it speaks TLS only"
    )
    tls.add_argument("--tls-cert", type=Path, metavar="FILE", help="server certificate chain (PEM)")
    tls.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="its private key (default: in --tls-cert)"
    )
    tls.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="CA certificates (PEM) that sign accepted client certificates; a presented client "
        "certificate must then name the peer's CER Origin-Host",
    )
    tls.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        help="refuse a TLS handshake without a client certificate (needs --tls-client-ca)",
    )
    p.add_argument(
        "--history-limit",
        type=history_limit,
        default=_DEFAULTS.history_limit,
        metavar="N",
        help="movements of money and units kept per account for `ocs account history` "
        "(default 10; older ones are in the CDR files and the journal; docs/protocol.md)",
    )
    p.add_argument(
        "--refund-window-s",
        type=refund_window,
        default=_DEFAULTS.refund_window_s,
        metavar="SECONDS",
        help="a REFUND_ACCOUNT draws on the DIRECT_DEBITING of this many seconds back "
        "(default 86400; WIRE.md 5.4, docs/charging.md)",
    )
    p.add_argument(
        "--metrics",
        type=metrics_address,
        nargs="?",
        const=("127.0.0.1", DEFAULT_METRICS_PORT),
        default=None,
        metavar="[HOST:]PORT",
        help="serve /metrics (Prometheus), /ready and /status over HTTP on this address "
        f"(host default 127.0.0.1; without a value 127.0.0.1:{DEFAULT_METRICS_PORT}); "
        "default: no metrics",
    )
    p.add_argument("--log-json", action="store_true", help="JSON log lines instead of console")
    p.add_argument("--log-level", default="info")
    p.add_argument("--ready-file", type=Path, help="write the listening port here when ready")
    p.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of a failed start-up (startup.failed) on stderr",
    )
    p.set_defaults(func=run, settings=ServeSettings(p))
    setattr(p, "error", partial(usage_error, p))  # noqa: B010 (a method of this instance)


def usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """A command line argparse refuses (an unknown option, a bad value): with ``--log-json``
    among the process's arguments, one JSON `startup.failed` event (exit status 2) rather than
    argparse's usage text, so that the log stays JSON; otherwise argparse's usage and error."""
    if "--log-json" not in sys.argv[1:]:
        argparse.ArgumentParser.error(parser, message)
    configure_logging(json=True)
    log_startup_failed(log, ConfigurationError(f"{parser.prog}: {message}"), data_dir=None)
    sys.exit(int(ExitStatus.USAGE))


def tls_config(args: argparse.Namespace) -> TlsServerConfig | None:
    """The TLS options; None without --tls-cert (plain TCP). Raises `TlsConfigError` for
    options without --tls-cert, or --tls-require-client-cert without --tls-client-ca."""
    if args.tls_cert is None:
        if args.tls_key or args.tls_client_ca or args.tls_require_client_cert:
            raise TlsConfigError("--tls-key and --tls-client-ca* need --tls-cert")
        return None
    return TlsServerConfig(
        cert_file=args.tls_cert,
        key_file=args.tls_key,
        client_ca_file=args.tls_client_ca,
        require_client_cert=args.tls_require_client_cert,
    )


def check_listen(host: str, port: int) -> None:
    """Raise `ListenError` if the server could not listen on ``host:port`` (in use, not an
    address of this machine, a port it may not bind): checked before the data directory is
    touched, so that such a start creates nothing. The server binds again when it starts (the
    address could be taken in between: that start fails after recovery, with the same
    error)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenError(f"cannot listen on {host}:{port}: {_why(exc)}") from None


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another server on that port?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine"
    if exc.errno == errno.EACCES:
        return "permission denied (a port below 1024 needs privileges)"
    return exc.strerror or str(exc)


def run(args: argparse.Namespace) -> int:
    """`ocs serve`: the exit status is an `ExitStatus` (docs/operations.md, *Exit status*);
    any start-up failure is logged once as `startup.failed`, before anything is created on
    disk when the configuration, the TLS files or the address are at fault."""
    configure_logging(json=args.log_json, level=args.log_level, debug=args.debug)
    data_dir: Path = args.data_dir

    def failed_start(exc: BaseException) -> int:
        """The one `startup.failed` event (unless the recovery logged it), the exit status."""
        # a wrong configuration may name another data directory than the one parsed
        where = None if isinstance(exc, ConfigurationError) else data_dir
        found = log_startup_failed(log, exc, data_dir=where, catalog=args.catalog)
        return int(found.exit_status)

    try:
        config_error: str | None = getattr(args, "config_error", None)
        if config_error is not None:
            raise ConfigurationError(config_error)
        try:
            peers = peer_list(args.peer)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        tls = tls_config(args)
        if tls is not None:
            server_context(tls)  # certificate, key and CA files load, before recovery
        host, port = args.listen
        check_listen(host, port)
        if args.metrics is not None:
            check_listen(*args.metrics)
    except Exception as exc:
        return failed_start(exc)
    config = ServerConfig(
        host=host,
        port=port,
        origin_host=args.origin_host,
        origin_realm=args.origin_realm,
        peers=peers,
        watchdog_s=args.watchdog,
        cer_timeout_s=args.cer_timeout,
        max_pending_requests=args.max_pending,
        tls=tls,
        max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer,
        max_unopened_connections=args.max_unopened_connections,
        output_high_water_bytes=args.output_high_water,
    )
    node_config = NodeConfig(
        data_dir=args.data_dir,
        catalog=args.catalog,
        relaxed_sync_ms=args.sync_interval_ms,
        checkpoint_records=args.checkpoint_records,
        fork_checkpoints=args.fork_checkpoints,
        cdr_rotate_bytes=args.cdr_rotate_bytes,
        cdr_rotate_seconds=args.cdr_rotate_seconds,
        refund_window_s=args.refund_window_s,
        history_limit=args.history_limit,
        metrics_listen=args.metrics,
    )
    ready_file: Path | None = args.ready_file

    async def main() -> int:
        try:
            node = await Node.open(config, node_config)
        except Exception as exc:  # logged as startup.failed by the recovery
            return failed_start(exc)
        tune_gc()
        started = False
        try:

            def ready() -> None:
                nonlocal started
                started = True
                if ready_file is not None:
                    tmp = ready_file.with_suffix(".tmp")
                    tmp.write_text(str(node.server.port))
                    os.replace(tmp, ready_file)

            await serve_until_signalled(
                node, ready=ready, reload=node.reload_catalog, rotate=node.rotate_cdrs
            )
        except OSError as exc:
            if started:
                raise
            # the address was taken since `check_listen`
            return failed_start(ListenError(f"cannot listen on {host}:{port}: {_why(exc)}"))
        finally:
            await node.close()
        return int(ExitStatus.STOPPED)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())
