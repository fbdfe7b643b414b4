"""`python -m tests.vopr --seed S --steps N --seconds T --hostile CLASS,...`: see docs/vopr.md."""

from __future__ import annotations

import argparse
import os
import reprlib
import sys
import time
from pathlib import Path

from tests.vopr.simulator import Settings, Summary, simulate
from tests.vopr.workload import HOSTILE

DEFAULT_STEPS = 3000
SHOW = reprlib.Repr()  # a request as the report shows it: bounded in depth and length
SHOW.maxlevel = 8
SHOW.maxdict = SHOW.maxlist = 24
SHOW.maxstring = SHOW.maxother = 160


def parse_hostile(text: str) -> frozenset[str]:
    if text in ("", "none"):
        return frozenset()
    if text == "all":
        return frozenset(HOSTILE)
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = names - set(HOSTILE)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown hostile class(es) {sorted(unknown)}; known: {', '.join(HOSTILE)}"
        )
    return names


def hostile_arg(hostile: frozenset[str]) -> str:
    if not hostile:
        return "none"
    if hostile == frozenset(HOSTILE):
        return "all"
    return ",".join(c for c in HOSTILE if c in hostile)


def report(summary: Summary, *, verbose: bool = True) -> str:
    c = summary.counters
    lines = [
        f"vopr seed={summary.seed} steps={summary.steps} hostile={hostile_arg(summary.hostile)} "
        f"{summary.seconds:.1f}s digest={summary.digest}"
    ]
    if verbose:
        lines.append(
            f"  requests {c['requests']} (hostile {c['requests'] - c['requests:normal']}, "
            f"journaled {c['journaled']}, duplicates {c['duplicates']}, refused by the edge "
            f"{c['refused-by-edge']}, retried after a crash {c['retried']})"
        )
        lines.append(
            f"  commits {c['commits']}, ticks {c['ticks']}, checkpoints {c['checkpoints']}, "
            f"crashes {c['crashes']}, restarts {c['restarts']}, catalogs {c['catalogs']}, "
            f"RAR {c['rar']}, ASR {c['asr']}, connections closed {c['connections-closed']}"
        )
        codes = ", ".join(f"{code} x{n}" for code, n in sorted(summary.codes.items()))
        lines.append(f"  result codes {codes}")
        paths = ", ".join(
            f"{name.removeprefix('cdr:')} {n}"
            for name, n in sorted(c.items())
            if name.startswith("cdr:")
        )
        lines.append(f"  CDRs {paths}")
        expected = ", ".join(
            f"{name.removeprefix('expected:')} {n}"
            for name, n in sorted(c.items())
            if name.startswith("expected:")
        )
        lines.append(f"  expectations checked {expected}")
    finding = summary.finding
    if finding is None:
        lines.append("  OK")
        return "\n".join(lines)
    lines.append(f"FAILED at step {finding.step}: {finding.kind}: {finding.message}")
    probe = finding.probe
    if probe is not None:
        shown = SHOW.repr(probe.value)
        lines.append(
            f"  request (sent at step {probe.step}, {probe.cls}, {probe.label}) on "
            f"{probe.peer[:80]!r}, End-to-End-Id {probe.e2e}: {shown}"
        )
    lines.append(
        f"  reproduce: python -m tests.vopr --seed {summary.seed} --steps {finding.step + 1} "
        f"--hostile {hostile_arg(summary.hostile)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vopr", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"steps per seed ({DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="run seed, seed+1, ... until this many seconds have passed (0: one seed)",
    )
    parser.add_argument(
        "--hostile",
        type=parse_hostile,
        default=frozenset(HOSTILE),
        help=f"hostile classes, comma-separated, 'all' (default) or 'none': {', '.join(HOSTILE)}",
    )
    parser.add_argument("--keep-going", action="store_true", help="go on after a failing seed")
    parser.add_argument("--trace", action="store_true", help="print every step")
    parser.add_argument("--workdir", type=Path, default=None, help="where data directories go")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    print(f"vopr: first seed {seed}", flush=True)
    deadline = time.monotonic() + args.seconds
    failed = 0
    runs = 0
    while True:
        summary = simulate(
            Settings(
                seed=seed,
                steps=args.steps,
                hostile=args.hostile,
                workdir=args.workdir,
                trace=args.trace,
            )
        )
        runs += 1
        print(report(summary, verbose=args.seconds <= 0 or not summary.ok), flush=True)
        if not summary.ok:
            failed += 1
            if not args.keep_going:
                break
        if time.monotonic() >= deadline:
            break
        seed += 1
    if args.seconds > 0:
        print(f"vopr: {runs} seeds, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
