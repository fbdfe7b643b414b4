"""``ocs catalog check FILE`` and ``ocs catalog price ...``.

``check`` validates a catalog and exits 1 with ``error: FILE: key.path: message`` when it is
invalid. ``price`` prices a usage with the rating engine: by default the first report of a new
session at one instant (``--at``, default now), so the rating group's setup fee is added; with
``--end`` the usage is spread over [at, end] and split at tariff changes; ``--event`` prices an
event (no setup fee); ``--prior-units`` continues a session (no setup fee). See
``docs/catalog.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from ocs.edge.catalog_files import load_catalog_file
from rating import (
    Catalog,
    CatalogError,
    Charge,
    Rate,
    RatingGroup,
    format_exact,
    price,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "catalog", help="check a catalog or price a usage", description=__doc__
    )
    sub = parser.add_subparsers(dest="catalog_command", required=True)

    check = sub.add_parser("check", help="validate a catalog file (exit 1 if invalid)")
    check.add_argument("file", help="catalog TOML file")
    check.set_defaults(func=_check)

    quote = sub.add_parser("price", help="price a usage with a catalog")
    quote.add_argument("--catalog", metavar="FILE", help="catalog file (default: built-in demo)")
    quote.add_argument("--rating-group", type=int, required=True, metavar="N")
    amount = quote.add_mutually_exclusive_group(required=True)
    amount.add_argument("--octets", type=_count, metavar="N")
    amount.add_argument("--seconds", type=_count, metavar="N")
    amount.add_argument("--units", type=_count, metavar="N", help="service-specific units")
    quote.add_argument(
        "--at",
        metavar="ISO8601",
        help="when the usage happened (default: now); without an offset it is local time in "
        "the rating group's time zone; an integer is epoch seconds",
    )
    quote.add_argument(
        "--end", metavar="ISO8601", help="usage spread over [at, end], split at tariff changes"
    )
    quote.add_argument(
        "--prior-units",
        type=_count,
        default=0,
        metavar="N",
        help="units of the same session already rated (no setup fee then)",
    )
    quote.add_argument("--event", action="store_true", help="price an event: no setup fee")
    quote.add_argument("--json", action="store_true", help="print one JSON object")
    quote.set_defaults(func=_price)


def _count(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _check(args: argparse.Namespace) -> int:
    path: str = args.file
    try:
        catalog = load_catalog_file(path)
    except CatalogError as exc:
        return _error(f"{path}: {exc}")
    print(
        f"ok: {path}: catalog {catalog.name!r}, currency {catalog.currency.code}, "
        f"{len(catalog.services)} services, {len(catalog.rating_groups)} rating groups"
    )
    return 0


def _instant(text: str, tz: str) -> int:
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return (moment - _EPOCH) // _ONE_SECOND  # rounds down to a whole second


def _iso(instant: int) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(value)


def _rate_json(rate: Rate) -> dict[str, object]:
    return {
        "label": rate.label,
        "period": rate.period,
        "promotion": rate.promotion,
        "tier": rate.tier,
        "block": rate.block,
        "price_per_block": _fraction_text(rate.per_block),
        "micro_per_unit": _fraction_text(rate.per_unit),
    }


def _rate_text(rate: Rate, group: RatingGroup, catalog: Catalog) -> str:
    per_block = rate.per_block
    currency = catalog.currency.alpha or str(catalog.currency.code)
    if per_block.denominator == 1:
        amount = f"{format_exact(per_block.numerator, catalog.currency.exponent)} {currency}"
    else:
        amount = f"{per_block} micro-units"
    return f"{rate.label}: {amount} per {rate.block} {group.unit.value}"


def _price(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog_file(args.catalog)
    except CatalogError as exc:
        return _error(f"{args.catalog or 'built-in demo catalog'}: {exc}")
    group = catalog.rating_groups.get(args.rating_group)
    if group is None:
        known = ", ".join(str(rg) for rg in catalog.rating_groups)
        return _error(f"unknown rating group {args.rating_group} (catalog has: {known})")
    flag = group.unit.value  # the unit's spelling is its option: --octets, --seconds, --units
    units: int | None = getattr(args, flag)
    if units is None:
        return _error(
            f"rating group {group.id} ({group.name}) counts {group.unit.value}; use --{flag}"
        )
    try:
        start = int(time.time()) if args.at is None else _instant(args.at, group.timezone)
        end = start if args.end is None else _instant(args.end, group.timezone)
    except ValueError as exc:
        return _error(f"bad instant: {exc}")
    prior: int = args.prior_units
    try:
        charge = price(group, units, start, end, prior)
    except ValueError as exc:
        return _error(str(exc))
    setup_fee = group.setup_fee if not args.event and prior == 0 else 0
    total = charge.total + setup_fee
    if args.json:
        print(json.dumps(_as_json(catalog, group, charge, start, end, setup_fee, total)))
    else:
        _print_text(catalog, group, charge, start, end, setup_fee, total)
    return 0


def _as_json(
    catalog: Catalog,
    group: RatingGroup,
    charge: Charge,
    start: int,
    end: int,
    setup_fee: int,
    total: int,
) -> dict[str, object]:
    breakdown: list[dict[str, object]] = [
        {
            "kind": "usage",
            "start": part.start,
            "end": part.end,
            "start_iso": _iso(part.start),
            "end_iso": _iso(part.end),
            "tier": part.tier,
            "units": part.units,
            "billed_units": part.billed_units,
            "rate": _rate_json(part.rate),
            "charge": part.charge,
        }
        for part in charge.parts
    ]
    if setup_fee:
        breakdown.append({"kind": "setup_fee", "charge": setup_fee})
    return {
        "catalog": catalog.name,
        "currency": catalog.currency.code,
        "rating_group": group.id,
        "name": group.name,
        "unit": group.unit.value,
        "zero_rated": group.zero_rated,
        "units": charge.units,
        "prior_units": charge.prior_units,
        "billed_units": charge.billed_units,
        "start": start,
        "end": end,
        "start_iso": _iso(start),
        "end_iso": _iso(end),
        "usage_charge": charge.total,
        "setup_fee": setup_fee,
        "charge": total,
        "breakdown": breakdown,
    }


def _print_text(
    catalog: Catalog,
    group: RatingGroup,
    charge: Charge,
    start: int,
    end: int,
    setup_fee: int,
    total: int,
) -> None:
    when = _iso(start) if start == end else f"{_iso(start)} .. {_iso(end)}"
    print(f"rating group {group.id} ({group.name}): {charge.units} {group.unit.value} at {when}")
    if group.zero_rated:
        print("  zero-rated (the server answers 4011 CREDIT_CONTROL_NOT_APPLICABLE)")
    for part in charge.parts:
        span = (
            _iso(part.start) if part.start == part.end else f"{_iso(part.start)}..{_iso(part.end)}"
        )
        print(
            f"  {span}  units {part.units}  billed {part.billed_units}  "
            f"[{_rate_text(part.rate, group, catalog)}]  charge {part.charge}"
        )
    if setup_fee:
        print(f"  setup fee  charge {setup_fee}")
    currency = catalog.currency.alpha or str(catalog.currency.code)
    print(
        f"charge: {total} micro-units ({format_exact(total, catalog.currency.exponent)} {currency})"
    )
