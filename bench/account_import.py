"""Provisioning speed: accounts per second created one `ocs account create` at a time, one
CREATE per row pipelined (`ocs account import --batch 1`), and in CREATE_BULK batches
(`ocs account import`, 128 accounts a request), on one server.

    .venv/bin/python -m bench.account_import [--accounts 1000000] [--single 50000]
                                            [--one-by-one 200] [--processes 20]
                                            [--batch 128] [--window 32]

Starts `ocs serve` (a subprocess, its own data directory: journal, fsync and group commit as in
production; its log to a file), then creates:
  1. `--processes` accounts with `python -m ocs account create` (a new process per account: the
     interpreter start, the imports, a connection, CER, one CREATE, DPR);
  2. `--one-by-one` accounts with `ocs account create` run in this process (no interpreter start:
     a connection, CER, one CREATE, DPR each);
  3. `--single` accounts from a CSV file with `ocs account import --batch 1` (one connection,
     up to 512 CREATEs in flight);
  4. `--accounts` accounts from a CSV file with `ocs account import` (one connection,
     `--batch` accounts a CREATE_BULK, up to `--window` of them in flight).
Each row is timed whole (reading the file included); for the imports the CPU seconds the
server process (with its forked checkpoints) and this (client) process spent are shown too,
and the client's reading and checking of the file alone. Any step given 0 is skipped. Prints
a markdown table of accounts per second and the ratios, all measured in this one run. Not a
test: nothing is asserted but that every account was created.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocs.cli.account_import import read_rows
from ocs.cli.main import main as ocs_main
from ocs.tools.spawn import SpawnedServer, serve_argv

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def _write_csv(path: Path, prefix: str, count: int) -> None:
    """`count` accounts `<prefix>-NNNNNNNN`, each with an MSISDN (with its +) and an IMSI of
    their own (`prefix` "a" or "b": numbers that do not meet)."""
    series = "ab".index(prefix)
    with path.open("w", encoding="utf-8") as f:
        f.write("account_id,msisdn,imsi,balance,credit_limit\n")
        f.writelines(
            f"{prefix}-{i:08d},+4917{series}{i:08d},2620{series}{i:010d},10.00,0\n"
            for i in range(count)
        )


def _quiet(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = ocs_main(argv)
    return code, out.getvalue()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far, with those of its children it has
    waited for (the server's forked checkpoints) (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / _TICKS


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=50_000)
    parser.add_argument("--one-by-one", type=int, default=200)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--window", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocs-import-") as tmp:
        work = Path(tmp)
        server = SpawnedServer(serve_argv(data_dir=work / "data"), work, cwd=ROOT)
        server.start()
        try:
            address = f"127.0.0.1:{server.port}"
            common = ["--server", address, "--origin-host", "admin.bench.local"]
            # (what, accounts, seconds, server CPU s, client CPU s, client reading s)
            rows: list[tuple[str, int, float, float | None, float | None, float | None]] = []

            started = time.perf_counter()
            for i in range(args.processes):
                done = subprocess.run(
                    [
                        sys.executable, "-m", "ocs", "account", "create", f"proc-{i}",
                        "--msisdn", f"4930{i:08d}", "--balance", "10", *common,
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
            if args.processes:
                rows.append(
                    (
                        "`python -m ocs account create`, a process each",
                        args.processes, time.perf_counter() - started, None, None, None,
                    )
                )  # fmt: skip

            started = time.perf_counter()
            for i in range(args.one_by_one):
                code, _ = _quiet(
                    ["account", "create", f"one-{i}", "--msisdn", f"4940{i:08d}",
                     "--balance", "10", *common]
                )  # fmt: skip
                assert code == 0
            if args.one_by_one:
                rows.append(
                    (
                        "`ocs account create` in one process (connect, CER, CREATE, DPR each)",
                        args.one_by_one, time.perf_counter() - started, None, None, None,
                    )
                )  # fmt: skip

            for what, prefix, count, extra in (
                (
                    "`ocs account import --batch 1` (one CREATE a row, window 512)",
                    "a", args.single, ["--batch", "1", "--window", "512"],
                ),
                (
                    f"`ocs account import` (CREATE_BULK of {args.batch}, window {args.window})",
                    "b", args.accounts,
                    ["--batch", str(args.batch), "--window", str(args.window)],
                ),
            ):  # fmt: skip
                if not count:
                    continue
                csv_path = work / f"{prefix}.csv"
                _write_csv(csv_path, prefix, count)
                reading = time.perf_counter()
                assert sum(1 for _ in read_rows(csv_path, micro=False)) == count
                reading_s = time.perf_counter() - reading
                server_cpu, client_cpu = _cpu_s(server.pid), _own_cpu_s()
                started = time.perf_counter()
                code, out = _quiet(
                    ["account", "import", str(csv_path), "--timeout", "600", "--json",
                     *extra, *common]
                )  # fmt: skip
                elapsed = time.perf_counter() - started
                summary = json.loads(out.strip().splitlines()[-1])
                assert code == 0 and summary["created"] == count, summary
                rows.append(
                    (
                        what, count, elapsed, _cpu_s(server.pid) - server_cpu,
                        _own_cpu_s() - client_cpu, reading_s,
                    )
                )  # fmt: skip
                csv_path.unlink()
        finally:
            server.stop()
    base = rows[0][1] / rows[0][2]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print(
        "| how | accounts | seconds | accounts/s | vs the first row | server CPU s "
        "| client CPU s (reading the file alone) |"
    )
    print("|---|---|---|---|---|---|---|")
    for what, n, seconds, server_s, client_s, read_s in rows:
        rate = n / seconds
        cpu = "-" if server_s is None else f"{server_s:.1f}"
        client = "-" if client_s is None or read_s is None else f"{client_s:.1f} ({read_s:.1f})"
        print(
            f"| {what} | {n:,} | {seconds:.2f} | {rate:,.0f} | {rate / base:,.1f}x | {cpu} "
            f"| {client} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
