"""Rating engine throughput: prices/s and inverse (affordable)/s on the demo catalog.

One process, one core. Each figure is the best of ``--repeat`` runs of about ``--seconds``
seconds over precomputed inputs (varied instants over a week, varied units and prior units),
so the per-day tariff memo is warm, as it is in a running server. A charging request needs one
price (the used units) and one inverse (the next grant): the last line measures that pair.

Run: .venv/bin/python -m bench.rating [--seconds S] [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable

from ocs.catalog_files import load_catalog_file
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    args = parser.parse_args(argv)
    catalog = load_catalog_file(None)
    rg, voice = catalog.rating_groups[10], catalog.rating_groups[40]
    print(
        f"rating engine, demo catalog, {platform.python_implementation()} "
        f"{platform.python_version()}, one process; best of {args.repeat} x {args.seconds:g} s"
    )
    for name, run in _cases(rg, voice):
        run()  # warm the per-day tariff memo
        ops = _rate(run, args.seconds, args.repeat)
        print(f"  {name:<52} {ops:>10,.0f} /s  {1e6 / ops:6.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
