"""Instructions per request of the in-process charging path, counted by valgrind's callgrind.

`python -m bench.instructions [--checkout DIR] [--flows A,B]` runs ``bench.load --core-worker``
(decode + core + journal record for every flow kind of the load generator) under
``valgrind --tool=callgrind`` with two flow counts and prints the difference divided by the
extra requests: the set-up (imports, catalog, accounts) cancels out. Instruction counts do not
depend on what else the machine is doing, so two builds compare to a fraction of a percent on
a shared machine, where timings differ by 20 % from one run to the next. Measure another
checkout (its own `.venv`, e.g. a `git worktree` of an older commit after `make`) with
``--checkout``. Needs valgrind (Debian package ``valgrind``)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

KINDS = 10  # request kinds per flow in bench.load's core section (data, voice, SMS)


def instructions(checkout: Path, flows: int, workdir: Path) -> int:
    python = checkout / ".venv" / "bin" / "python"
    out = workdir / f"callgrind.{flows}"
    worker = (str(python), "-m", "bench.load", "--core-worker", str(flows))
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *worker],
        cwd=checkout,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--checkout",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="a checkout with its .venv installed (default: this one)",
    )
    parser.add_argument("--flows", default="50,250", help="two flow counts per kind")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: skipped")
        return 0
    low, high = (int(n) for n in args.flows.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        counts = {n: instructions(args.checkout, n, Path(tmp)) for n in (low, high)}
    per_request = (counts[high] - counts[low]) / ((high - low) * KINDS)
    print(f"{args.checkout}: {per_request:,.0f} instructions per request (callgrind; {counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
