"""Rating engine throughput: prices/s and inverse (affordable)/s on the demo catalog.

One process, one core. Each figure is the best of ``--repeat`` runs of about ``--seconds``
seconds over precomputed inputs (varied instants over a week, varied units and prior units),
so the per-day tariff memo is warm, as it is in a running server. A charging request needs one
price (the used units) and one inverse (the next grant): the last line measures that pair.

When the installed ``rating`` is the mypyc build (the normal install, see setup.py), the same
cases also run on the pure-Python source, in a subprocess that imports ``rating`` from a
temporary copy of its ``.py`` files (so no compiled module can shadow them), and each line
shows both figures and their ratio. ``--no-compare`` skips that.

Run: .venv/bin/python -m bench.rating [--seconds S] [--repeat N] [--no-compare]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import rating.engine
from ocs.edge.catalog_files import load_catalog_file
from rating import RatingGroup, affordable, price, price_at, price_dearest

MONDAY = 1_767_567_600  # 2026-01-05T00:00:00+01:00
WEEK = 7 * 86_400
VALIDITY = 3_600
N_INPUTS = 4_096


def _inputs(seed: int) -> list[tuple[int, int, int, int]]:
    """(start, units, prior, amount) tuples."""
    rnd = random.Random(seed)
    out = []
    for _ in range(N_INPUTS):
        start = MONDAY + rnd.randrange(WEEK)
        units = rnd.randrange(1, 20 * 1024 * 1024)
        prior = rnd.choice([0, rnd.randrange(0, 2 * 1024**3)])
        amount = rnd.randrange(0, 50_000_000)
        out.append((start, units, prior, amount))
    return out


def _rate(run: Callable[[], int], seconds: float, repeat: int) -> float:
    """Best operations per second over ``repeat`` runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(repeat):
        ops = 0
        began = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            ops += run()
            elapsed = time.perf_counter() - began
        best = max(best, ops / elapsed)
    return best


def _cases(rg: RatingGroup, voice: RatingGroup) -> list[tuple[str, Callable[[], int]]]:
    data_in = _inputs(1)
    voice_in = [(s, u % 3600, p % 7200, a) for s, u, p, a in _inputs(2)]

    def price_at_data() -> int:
        for start, units, prior, _ in data_in:
            price_at(rg, units, start, prior)
        return N_INPUTS

    def price_window_data() -> int:
        for start, units, prior, _ in data_in:
            price(rg, units, start - VALIDITY, start, prior)
        return N_INPUTS

    def price_window_voice() -> int:
        for start, units, prior, _ in voice_in:
            price(voice, units, start - VALIDITY, start, prior)
        return N_INPUTS

    def dearest_data() -> int:
        for start, units, prior, _ in data_in:
            price_dearest(rg, units, start, start + VALIDITY, prior)
        return N_INPUTS

    def affordable_data() -> int:
        for start, _, prior, amount in data_in:
            affordable(rg, amount, start, start + VALIDITY, prior)
        return N_INPUTS

    def affordable_voice() -> int:
        for start, _, prior, amount in voice_in:
            affordable(voice, amount, start, start + VALIDITY, prior)
        return N_INPUTS

    def request_data() -> int:
        for start, units, prior, amount in data_in:
            charge = price(rg, units, start - VALIDITY, start, prior)
            left = max(amount - charge.total, 0)
            affordable(rg, left, start, start + VALIDITY, prior + units)
        return N_INPUTS

    return [
        ("price_at, data RG 10 (one instant)", price_at_data),
        ("price, data RG 10 (1 h window, split at changes)", price_window_data),
        ("price, voice RG 40 (1 h window)", price_window_voice),
        ("price_dearest, data RG 10 (1 h window)", dearest_data),
        ("affordable, data RG 10 (1 h window)", affordable_data),
        ("affordable, voice RG 40 (1 h window)", affordable_voice),
        ("price + affordable, data RG 10 (one CCR)", request_data),
    ]


def _measure(seconds: float, repeat: int) -> list[tuple[str, float]]:
    catalog = load_catalog_file(None)
    rg, voice = catalog.rating_groups[10], catalog.rating_groups[40]
    figures = []
    for name, run in _cases(rg, voice):
        run()  # warm the per-day tariff memo
        figures.append((name, _rate(run, seconds, repeat)))
    return figures


def _is_ext(path: str) -> bool:
    return path.endswith(tuple(EXTENSION_SUFFIXES))


def _compiled() -> bool:
    return _is_ext(rating.engine.__file__ or "")


def _measure_pure(seconds: float, repeat: int) -> list[tuple[str, float]]:
    """The same cases on the pure-Python source: a subprocess importing ``rating`` from a copy
    of ``rating/*.py`` in a temporary directory (bench and ocs come from this tree)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-rating-pure-") as tmp:
        package = Path(tmp, "rating")
        package.mkdir()
        for source in Path(rating.engine.__file__ or "").parent.glob("*.py"):
            shutil.copy2(source, package / source.name)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(root)]))
        # -P: the working directory does not go first on sys.path, so `rating` is the copy.
        command = [sys.executable, "-P", "-m", "bench.rating", "--worker"]
        command += ["--seconds", str(seconds), "--repeat", str(repeat)]
        done = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"the pure-Python run failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    if not result["engine"].startswith(tmp) or _is_ext(result["engine"]):
        raise SystemExit(f"the pure-Python run imported {result['engine']}")
    return [(name, ops) for name, ops in result["figures"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="do not also run the pure-Python source (when the installed build is compiled)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        figures = _measure(args.seconds, args.repeat)
        print(json.dumps({"engine": rating.engine.__file__, "figures": figures}))
        return 0
    compiled = _compiled()
    build = "mypyc-compiled" if compiled else "pure Python (not compiled)"
    print(
        f"rating engine ({build}), demo catalog, {platform.python_implementation()} "
        f"{platform.python_version()}, one process; best of {args.repeat} x {args.seconds:g} s"
    )
    if not compiled or args.no_compare:
        for name, ops in _measure(args.seconds, args.repeat):
            print(f"  {name:<52} {ops:>10,.0f} /s  {1e6 / ops:6.2f} us")
        return 0
    print("  pure Python: the .py source in a subprocess, run first; then the compiled build")
    pure = _measure_pure(args.seconds, args.repeat)
    mine = _measure(args.seconds, args.repeat)
    print(f"  {'':<52} {'compiled':>17} {'pure Python':>21} {'speed-up':>9}")
    for (name, ops), (_, pure_ops) in zip(mine, pure, strict=True):
        print(
            f"  {name:<52} {ops:>10,.0f} /s {1e6 / ops:5.2f} us"
            f" {pure_ops:>10,.0f} /s {1e6 / pure_ops:5.2f} us  {ops / pure_ops:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
