"""The `ocs` command line. Each feature module registers its own subcommands.

A module listed in ``_COMMAND_MODULES`` exposes ``register(subparsers)``; it adds its parser(s)
and sets ``func`` (``Callable[[argparse.Namespace], int]``) as the parser default. ``main``
returns that function's exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

_COMMAND_MODULES = (
    "ocs.serve_cli",
    "ocs.catalog_cli",
    "ocs.account_cli",
    "ocs.sim_cli",
    "ocs.bench_cli",
)


def host_port(text: str) -> tuple[str, int]:
    """Argument type ``HOST:PORT`` (``[::1]:3868`` for IPv6; an empty host is 127.0.0.1),
    shared by the subcommands."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocs", description="Online charging system")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
