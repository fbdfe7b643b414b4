"""The `ocs` command line: one parser, each subcommand registered by its own module.

A subcommand module exposes ``register(subparsers)``; it adds its parser(s) and sets ``func``
(``Callable[[argparse.Namespace], int]``) as the parser default, and ``settings`` (an
`ocs.cli.config.ServeSettings` or `ClientSettings`) when it reads settings from a file or the
environment. ``main`` returns that function's exit code. The modules are imported by name
here, so a missing or broken one is an import error at once, never a silently absent command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from ocs.cli import account, bench, catalog, cdr, journal, serve, sim, status

SUBCOMMANDS = (serve, catalog, account, cdr, journal, sim, bench, status)


def package_version() -> str:
    try:
        return version("ocs")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocs", description="Online charging system")
    parser.add_argument("--version", action="version", version=f"ocs {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of `argv` (default: the process's arguments). A subcommand that reads
    settings from a file or the environment (``settings`` in its defaults: `ocs.cli.config`)
    has its command line parsed again with them as defaults, so that the command line wins."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extras = parser.parse_known_args(words)
    settings = getattr(args, "settings", None)
    if extras:  # refused by the subcommand's parser (`ocs serve` may report it as JSON)
        leaf = settings.leaf if settings is not None else parser
        leaf.error(f"unrecognized arguments: {' '.join(extras)}")
    if settings is not None:
        args = settings(parser, words, args)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
