"""A deterministic transcript of the rating engine, to compare two builds of it line by line.

``transcript()`` drives every public function of ``rating`` (catalog parsing, valid and
broken catalogs, prices, inverse prices, tariff changes, money formatting) over seeded random
inputs and returns one line per call: the ``repr`` of the result, or the exception's type and
message. ``test_build.py`` runs it in-process (the installed build, normally mypyc-compiled)
and in a subprocess that imports ``rating`` from a copy of the ``.py`` files only (pure
Python), and compares.

Run alone: ``python -m tests.rating.transcript [SEED]`` prints the transcript.
"""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Callable
from typing import Any

from rating import (
    RatingGroup,
    affordable,
    billed_units,
    dearest_rates,
    format_exact,
    format_money,
    next_tariff_change,
    parse_catalog,
    parse_money,
    price,
    price_at,
    price_dearest,
    price_event,
    rates_at,
    unit_value,
)

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
SPAN = 21 * 86_400
DST = [1_774_747_800, 1_792_888_200]  # 2026-03-29T01:30Z, 2026-10-25T00:30Z (Europe)
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
UNITS = ["octets", "seconds", "units"]
BAD_VALUES: list[Any] = [
    -1,
    0,
    0.5,
    "",
    "0.0000001",
    "-1",
    "1/0",
    "25:00",
    "nope",
    [],
    {},
    None,
    True,
    2**70,
]


def _money(rnd: random.Random) -> str:
    micro = rnd.choice([0, rnd.randrange(1, 1_000), rnd.randrange(1, 500_000)])
    whole, frac = divmod(micro, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def _modifier(rnd: random.Random) -> dict[str, Any]:
    if rnd.random() < 0.5:
        return {"price": _money(rnd)}
    return {
        "factor": rnd.choice(
            ["0.5", "2", "1/3", "0", f"{rnd.randrange(40)}/{rnd.randrange(1, 12)}"]
        )
    }


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _group(rnd: random.Random, rg_id: int) -> dict[str, Any]:
    increment = rnd.randrange(1, 100)
    group: dict[str, Any] = {
        "id": rg_id,
        "name": f"rg{rg_id}",
        "unit": rnd.choice(UNITS),
        "price": _money(rnd),
        "block": rnd.choice([1, 7, 60, 1000, 1024, 1 << 20]),
        "increment": increment,
        "first_increment": rnd.choice([increment, rnd.randrange(1, 200)]),
        "grant": {
            "quantum": rnd.randrange(1, 10_000),
            "validity_time": rnd.choice([60, 600, 3600]),
            "threshold": rnd.choice(["0", "0.1", "1/3"]),
            "final_unit_action": "restrict_access",
            "filter_ids": ["blocked"],
        },
    }
    count = rnd.randrange(0, 4)
    cuts = sorted(rnd.sample(range(0, 24 * 60 + 1), 2 * count))
    group["periods"] = [
        {
            "name": f"p{i}",
            "days": rnd.choice([["weekdays"], ["weekend"], sorted(rnd.sample(DAYS, 2))]),
            "start": _hhmm(cuts[2 * i]),
            "end": _hhmm(cuts[2 * i + 1]),
            **_modifier(rnd),
        }
        for i in range(count)
    ]
    starts = sorted(rnd.sample(range(1, 5_000), rnd.randrange(0, 3)))
    group["tiers"] = [{"from": start, **_modifier(rnd)} for start in starts]
    count = rnd.randrange(0, 3)
    bounds = sorted(rnd.sample(range(T0 // 60, (T0 + SPAN) // 60), 2 * count))
    group["promotions"] = [
        {
            "name": f"promo{i}",
            "start": bounds[2 * i] * 60,
            "end": bounds[2 * i + 1] * 60,
            **_modifier(rnd),
        }
        for i in range(count)
    ]
    return group


def _catalog(rnd: random.Random) -> dict[str, Any]:
    groups = [_group(rnd, rg_id) for rg_id in (1, 2, 3)]
    return {
        "version": 1,
        "name": "transcript",
        "timezone": rnd.choice(ZONES),
        "currency": {"code": 978, "alpha": "EUR"},
        "services": [{"context_id": "x@example", "rating_groups": [1, 2, 3]}],
        "rating_groups": groups,
        "account": {"usage_thresholds": [t for t in ("1", "5", "10", "20") if rnd.random() < 0.5]},
    }


def _break(rnd: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one value somewhere replaced by a wrong one (or a key removed)."""
    broken = copy.deepcopy(doc)
    node: Any = broken
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return broken
        key = rnd.choice(keys)
        child = node[key]
        if isinstance(child, dict | list) and child and rnd.random() < 0.7:
            node = child
            continue
        if isinstance(node, dict) and rnd.random() < 0.2:
            del node[key]
        else:
            node[key] = rnd.choice(BAD_VALUES)
        return broken


def _call(out: list[str], label: str, fn: Callable[..., object], *args: object) -> None:
    try:
        result = fn(*args)
    except Exception as exc:
        out.append(f"{label} -> {type(exc).__name__}: {exc}")
        return
    parts = getattr(result, "parts", None)
    out.append(f"{label} -> {result!r}" + (f" {parts!r}" if parts is not None else ""))


def _queries(rnd: random.Random, out: list[str], rg: RatingGroup, count: int) -> None:
    for n in range(count):
        start = rnd.choice([T0 + rnd.randrange(SPAN), *DST, rnd.randrange(-5, 5)])
        span = rnd.choice([0, 1, 60, 3600, 86_400, 3 * 86_400, rnd.randrange(-10, 10_000)])
        end = start + span
        units = rnd.choice([0, 1, rnd.randrange(10_000), rnd.randrange(1 << 31), -1])
        prior = rnd.choice([0, rnd.randrange(10_000), rnd.randrange(1 << 31)])
        amount = rnd.choice([0, rnd.randrange(1_000_000), rnd.randrange(100_000_000), -5])
        tag = f"rg{rg.id} #{n} ({start}, {end}, {units}, {prior}, {amount})"
        _call(out, f"price {tag}", price, rg, units, start, end, prior)
        _call(out, f"price_at {tag}", price_at, rg, units, start, prior)
        _call(out, f"price_event {tag}", price_event, rg, units, start)
        _call(out, f"price_dearest {tag}", price_dearest, rg, units, start, end, prior)
        _call(out, f"affordable {tag}", affordable, rg, amount, start, end, prior)
        _call(out, f"next_tariff_change {tag}", next_tariff_change, rg, start, end)
        _call(out, f"rates_at {tag}", rates_at, rg, start)
        _call(out, f"dearest_rates {tag}", dearest_rates, rg, start, end)
        _call(out, f"billed_units {tag}", billed_units, rg, units, prior)


def transcript(seed: int = 0, catalogs: int = 25, queries: int = 40) -> list[str]:
    rnd = random.Random(seed)
    out: list[str] = []
    for n in range(catalogs):
        doc = _catalog(rnd)
        catalog = parse_catalog(doc)
        out.append(f"catalog #{n} -> {catalog!r}")
        for rg in catalog.rating_groups.values():
            _queries(rnd, out, rg, queries)
        for m in range(8):
            _call(out, f"broken #{n}.{m}", parse_catalog, _break(rnd, doc))
    for _ in range(200):
        micro = rnd.choice([0, rnd.randrange(-(10**9), 10**9), rnd.randrange(10**15)])
        decimals = rnd.choice([0, 2, 6, 7, -1])
        _call(out, f"format_money {micro} {decimals}", format_money, micro, decimals)
        _call(out, f"format_exact {micro}", format_exact, micro, 2)
        _call(out, f"unit_value {micro}", unit_value, micro)
        text = rnd.choice(["0.02", "12", "1.0000001", "1.1000000", "-3", "x", f"{micro}"])
        _call(out, f"parse_money {text!r}", parse_money, text)
    return out


if __name__ == "__main__":
    print("\n".join(transcript(int(sys.argv[1]) if len(sys.argv) > 1 else 0)))
