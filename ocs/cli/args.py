"""Argument types shared by the `ocs` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ocs.edge.tls import TlsClientConfig


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to listen on (``[::1]:3868`` for IPv6; an empty host is 127.0.0.1; port 0
    lets the system choose)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


#: The port of the metrics listener when `--metrics` is given without one (`ocs status` too).
DEFAULT_METRICS_PORT = 9868


def metrics_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` of the metrics listener: a bare port is on 127.0.0.1."""
    if text.isdigit():
        text = ":" + text
    return host_port(text)


def server_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of a server to connect to (the port cannot be 0)."""
    host, port = host_port(text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, port


def add_tls_client_arguments(parser: argparse.ArgumentParser) -> None:
    """`--tls-ca`, `--tls-cert`, `--tls-key`, `--tls-server-name`: TLS to the server's peer
    port (RFC 6733 section 13) when any of them is given (`tls_client_config`)."""
    group = parser.add_argument_group(
        "TLS", "connect over TLS (RFC 6733 section 13) when any of these options is given"
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="FILE",
        help="CA certificates (PEM) trusted for the server's certificate (default: the system's)",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="our certificate chain (PEM), for a server that requires client certificates: it "
        "must name our --origin-host",
    )
    group.add_argument(
        "--tls-key", type=Path, metavar="FILE", help="the key of --tls-cert (default: in that file)"
    )
    group.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="the name the server's certificate must carry (default: the host of --server)",
    )


def tls_client_config(args: argparse.Namespace) -> TlsClientConfig | None:
    """The TLS options of `add_tls_client_arguments`; None when none is given (plain TCP).
    Raises `TlsConfigError` for a key without a certificate."""
    if not any((args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)):
        return None
    return TlsClientConfig(
        ca_file=args.tls_ca,
        cert_file=args.tls_cert,
        key_file=args.tls_key,
        server_name=args.tls_server_name,
    )
