"""Argument types shared by the `ocs` subcommands."""

from __future__ import annotations

import argparse


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to listen on (``[::1]:3868`` for IPv6; an empty host is 127.0.0.1; port 0
    lets the system choose)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def server_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of a server to connect to (the port cannot be 0)."""
    host, port = host_port(text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, port
