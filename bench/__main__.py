"""`make bench`: run every benchmark in bench/, one after the other, in one process each."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHMARKS = [
    "bench.codec",
    "bench.rating",
    "bench.ledger",
    "bench.load",
    "bench.instructions",
    "bench.rollback",
    "bench.metrics",
    "bench.account_import",
    "bench.groups",
    "bench.iot",
    "bench.counters",
]


def main() -> int:
    failed = 0
    for name in BENCHMARKS:
        if importlib.util.find_spec(name) is None:
            continue
        print(f"=== {name} ===", flush=True)
        failed |= subprocess.call([sys.executable, "-m", name])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
