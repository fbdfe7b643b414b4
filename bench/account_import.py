"""Provisioning speed: accounts per second created one `ocs account create` at a time (today's
way) against `ocs account import` (CREATEs pipelined over one connection), on one server.

    .venv/bin/python -m bench.account_import [--accounts 100000] [--one-by-one 200]
                                            [--processes 20] [--window 512]

Starts `ocs serve` (a subprocess, its own data directory: journal, fsync and group commit as in
production), then creates:
  1. `--processes` accounts with `python -m ocs account create` (a new process per account: the
     interpreter start, the imports, a connection, CER, one CREATE, DPR);
  2. `--one-by-one` accounts with `ocs account create` run in this process (no interpreter start:
     a connection, CER, one CREATE, DPR each);
  3. `--accounts` accounts from a CSV file with `ocs account import` (one connection, up to
     `--window` CREATEs in flight).
Prints a markdown table of accounts per second and the ratios, all measured in this one run.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocs.cli.main import main as ocs_main
from ocs.tools.spawn import SpawnedServer, serve_argv

ROOT = Path(__file__).resolve().parent.parent


def _write_csv(path: Path, first: int, count: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("account_id,msisdn,imsi,balance,credit_limit\n")
        for i in range(first, first + count):
            f.write(f"imp-{i:08d},+49170{i:08d},26201{i:010d},10.00,0\n")


def _quiet(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return ocs_main(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--one-by-one", type=int, default=200)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--window", type=int, default=512)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocs-import-") as tmp:
        work = Path(tmp)
        server = SpawnedServer(serve_argv(data_dir=work / "data"), work, cwd=ROOT)
        server.start()
        try:
            address = f"127.0.0.1:{server.port}"
            common = ["--server", address, "--origin-host", "admin.bench.local"]
            rows: list[tuple[str, int, float]] = []

            started = time.perf_counter()
            for i in range(args.processes):
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "ocs",
                        "account",
                        "create",
                        f"proc-{i}",
                        "--msisdn",
                        f"4930{i:08d}",
                        "--balance",
                        "10",
                        *common,
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                assert done.returncode == 0, done.stderr
            rows.append(
                (
                    "`python -m ocs account create`, a process each",
                    args.processes,
                    time.perf_counter() - started,
                )
            )

            started = time.perf_counter()
            for i in range(args.one_by_one):
                code = _quiet(
                    [
                        "account",
                        "create",
                        f"one-{i}",
                        "--msisdn",
                        f"4940{i:08d}",
                        "--balance",
                        "10",
                        *common,
                    ]
                )
                assert code == 0
            rows.append(
                (
                    "`ocs account create` in one process (connect, CER, CREATE, DPR each)",
                    args.one_by_one,
                    time.perf_counter() - started,
                )
            )

            csv_path = work / "accounts.csv"
            _write_csv(csv_path, 0, args.accounts)
            started = time.perf_counter()
            code = _quiet(
                [
                    "account",
                    "import",
                    str(csv_path),
                    "--window",
                    str(args.window),
                    "--timeout",
                    "120",
                    *common,
                ]
            )
            assert code == 0
            rows.append(
                (
                    f"`ocs account import` (one connection, window {args.window})",
                    args.accounts,
                    time.perf_counter() - started,
                )
            )
        finally:
            server.stop()
    base = rows[0][1] / rows[0][2]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| how | accounts | seconds | accounts/s | s per account | vs a process each |")
    print("|---|---|---|---|---|---|")
    for what, n, seconds in rows:
        rate = n / seconds
        print(
            f"| {what} | {n:,} | {seconds:.2f} | {rate:,.0f} | {seconds / n:.5f} | "
            f"{rate / base:,.0f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
