"""``ocs catalog check FILE``, ``ocs catalog price ...``, ``ocs catalog show`` and
``ocs catalog diff FILE``.

``check`` validates a catalog and exits 1 with ``error: FILE: key.path: message`` when it is
invalid (and prints its name and digest when it is valid). ``show`` asks a running server
(``--server``) which catalog is in force: name, digest (SHA-256 of its text), since when;
``--source`` prints its text. ``diff`` compares a file with the catalog in force on a running
server and lists what would change, money in currency units: exit 0 when the file is the
catalog in force, 1 when it differs, 2 when the file is invalid or no answer came.

``price`` prices a usage with the rating engine: by default the first report of a new session
at one instant (``--at``, default now), so the rating group's setup fee is added; with ``--end``
the usage is spread over [at, end] and split at tariff changes; ``--event`` prices an event (no
setup fee); ``--prior-units`` continues a session (no setup fee). See ``docs/catalog.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Final
from zoneinfo import ZoneInfo

from ocs.cli.account import CLIENT_KEYS, default_origin_host, server_options
from ocs.cli.args import tls_client_config
from ocs.cli.config import ClientSettings
from ocs.core.charging import catalog_digest
from ocs.core.load import LoadPricing
from ocs.edge.catalog_files import load_catalog_file
from ocs.edge.client import Client, ClientError
from ocs.edge.tls import TlsConfigError, client_context
from protocol.codes import MAX_ENCODABLE_LENGTH, AccountOperation, ApplicationId
from protocol.messages import AMA, AMR
from protocol.messages import Catalog as CatalogInForce
from rating import (
    Catalog,
    CatalogError,
    Charge,
    Modifier,
    Rate,
    RatingGroup,
    Unit,
    Weekday,
    format_exact,
    parse_catalog,
    price,
)
from rating.counters import CounterUnit
from rating.devices import DeviceClass
from rating.load import load_facts
from rating.policies import status_policies  # status-policy

EXIT_OK: Final = 0
EXIT_DIFFERENT: Final = 1  # diff: the file is not the catalog in force; show: refused
EXIT_TROUBLE: Final = 2  # no answer, or an invalid file
# CATALOG_SHOW's Account-Id: required by WIRE.md 8, ignored by the server
SHOW_ACCOUNT_ID: Final = "*"

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

    server = server_options("the running server to ask")

    show = sub.add_parser(
        "show",
        parents=[server],
        help="the catalog in force on a running server (name, digest, since when)",
    )
    show.add_argument(
        "--source", action="store_true", help="print the catalog's text (TOML) instead"
    )
    show.set_defaults(func=_show, settings=ClientSettings(show, CLIENT_KEYS))

    diff = sub.add_parser(
        "diff",
        parents=[server],
        help="what a catalog file would change against the one in force on a running server "
        "(exit 0 same, 1 different, 2 trouble)",
    )
    diff.add_argument("file", help="catalog TOML file")
    diff.set_defaults(func=_diff, settings=ClientSettings(diff, CLIENT_KEYS))

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
    quote.add_argument(
        "--load-band",
        metavar="NAME",
        help="price in this load band of the catalog's [load] section (default: the base band)",
    )
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
        f"{len(catalog.services)} services, {len(catalog.rating_groups)} rating groups, "
        f"sha256 {_file_digest(path)}"
    )
    return 0


def _file_digest(path: str) -> str:
    """The digest the server gives the file's catalog (of its text, as it reads it)."""
    with open(path, encoding="utf-8") as f:
        return catalog_digest(f.read())


# --- show and diff: the catalog in force on a running server -----------------------------------


async def _ask(args: argparse.Namespace) -> CatalogInForce | str:
    """CATALOG_SHOW to the server: the catalog in force, or why there is none to show."""
    host, port = args.server
    tls = tls_client_config(args)
    try:
        client = await Client.connect(
            host,
            port,
            origin_host=args.origin_host or default_origin_host(),
            origin_realm=args.origin_realm,
            applications=(ApplicationId.ADMINISTRATION,),
            timeout=args.timeout,
            product_name="ocs-catalog",
            ssl=client_context(tls) if tls is not None else None,
            server_hostname=tls.hostname(host) if tls is not None else None,
            # the answer carries the catalog's text: up to the longest message there is
            max_message_length=MAX_ENCODABLE_LENGTH,
        )
    except (OSError, TimeoutError, ClientError) as exc:
        return f"cannot connect to {host}:{port}: {_why(exc)}"
    try:
        answer = await client.request(
            AMR(
                origin_host=client.identity.origin_host,
                origin_realm=args.origin_realm,
                account_operation=AccountOperation.CATALOG_SHOW,
                account_id=SHOW_ACCOUNT_ID,
            ),
            timeout=args.timeout,
        )
    except (OSError, TimeoutError, ClientError) as exc:
        return f"no answer from {host}:{port}: {_why(exc)}"
    finally:
        await client.close(timeout=min(args.timeout, 2.0))
    if not isinstance(answer, AMA) or answer.result_code != 2001 or answer.catalog is None:
        detail = f": {answer.error_message}" if answer.error_message else ""
        return f"{host}:{port} answered Result-Code {answer.result_code}{detail}"
    return answer.catalog


def _why(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__


def _in_force(args: argparse.Namespace) -> CatalogInForce | str:
    try:
        return asyncio.run(_ask(args))
    except TlsConfigError as exc:
        return str(exc)


def _since(info: CatalogInForce) -> str:
    return "unknown" if info.catalog_since is None else _iso(info.catalog_since)


def _show(args: argparse.Namespace) -> int:
    info = _in_force(args)
    if isinstance(info, str):
        print(f"error: {info}", file=sys.stderr)
        return EXIT_TROUBLE
    if args.source:
        if info.catalog_source is None:
            print("error: the catalog in force is too long for one message", file=sys.stderr)
            return EXIT_TROUBLE
        sys.stdout.write(info.catalog_source)
    elif args.json:
        print(
            json.dumps(
                {
                    "name": info.catalog_name,
                    "digest": info.catalog_digest,
                    "since": info.catalog_since,
                    "since_iso": None if info.catalog_since is None else _iso(info.catalog_since),
                }
            )
        )
    else:
        print(f"name:   {info.catalog_name}")
        print(f"digest: sha256 {info.catalog_digest}")
        print(f"since:  {_since(info)}")
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    path: str = args.file
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = parse_catalog(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    except CatalogError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    info = _in_force(args)
    if isinstance(info, str):
        print(f"error: {info}", file=sys.stderr)
        return EXIT_TROUBLE
    digest = catalog_digest(text)
    same = digest == info.catalog_digest
    if info.catalog_source is None and not same:
        print(
            "error: the catalog in force is too long for one message: only its digest "
            f"{info.catalog_digest} can be compared, and the file's ({digest}) differs",
            file=sys.stderr,
        )
        return EXIT_TROUBLE
    changes = [] if same else list(catalog_changes(parse_catalog(info.catalog_source or ""), new))
    if args.json:
        print(
            json.dumps(
                {
                    "in_force": {
                        "name": info.catalog_name,
                        "digest": info.catalog_digest,
                        "since": info.catalog_since,
                    },
                    "file": {"path": path, "name": new.name, "digest": digest},
                    "same": same,
                    "changes": [
                        {"what": what, "in_force": before, "file": after}
                        for what, before, after in changes
                    ],
                }
            )
        )
        return EXIT_OK if same else EXIT_DIFFERENT
    print(f"--- in force: {info.catalog_name!r} sha256 {info.catalog_digest} since {_since(info)}")
    print(f"+++ {path}: {new.name!r} sha256 {digest}")
    if same:
        print("no difference: the file is the catalog in force")
        return EXIT_OK
    for what, before, after in changes:
        if before is None:
            print(f"+ {what}: {after}")
        elif after is None:
            print(f"- {what}: {before}")
        else:
            print(f"~ {what}: {before} -> {after}")
    if not changes:
        print("the texts differ (comments or layout), the prices and rules do not")
    else:
        print(f"{len(changes)} change{'s' if len(changes) != 1 else ''}")
    return EXIT_DIFFERENT


def catalog_changes(old: Catalog, new: Catalog) -> Iterator[tuple[str, str | None, str | None]]:
    """What differs from `old` to `new`, as (what, in old, in new): None where one of them
    lacks it. Money is shown in currency units."""
    before, after = catalog_facts(old), catalog_facts(new)
    for what, value in before.items():
        if what not in after:
            yield what, value, None
        elif after[what] != value:
            yield what, value, after[what]
    for what, value in after.items():
        if what not in before:
            yield what, None, value


_WEEKDAYS: Final = tuple(Weekday)[:5]
_WEEKEND: Final = tuple(Weekday)[5:]


def catalog_facts(catalog: Catalog) -> dict[str, str]:
    """A catalog as what it says, one line each, keyed by what it is about: the prices (in
    currency units), increments, periods, tiers, promotions, grants, services and policies."""
    currency = catalog.currency
    symbol = currency.alpha or str(currency.code)

    def money(micro: int | Fraction) -> str:
        value = Fraction(micro)
        if value.denominator == 1:
            return f"{format_exact(value.numerator, currency.exponent)} {symbol}"
        return f"{value} micro-units {symbol}"

    def modifier(mod: Modifier, group: RatingGroup) -> str:
        if mod.price is not None:
            return f"{money(mod.price)} per {_quantity(group.block, group.unit)}"
        return f"x {_fraction_text(mod.factor or Fraction(1))}"

    facts: dict[str, str] = {
        "name": catalog.name,
        "currency": f"{currency.code} ({symbol}, exponent {currency.exponent})",
        "timezone": catalog.timezone,
    }
    for service in catalog.services.values():
        groups = ", ".join(str(rg) for rg in service.rating_groups)
        facts[f"service {service.context_id}"] = f"{service.name or '-'}: rating groups {groups}"
    for group in catalog.rating_groups.values():
        key = f"rating group {group.id}"
        facts[key] = f"{group.name}, {group.unit.value}"
        if group.zero_rated:
            facts[f"{key} price"] = "zero-rated"
        else:
            facts[f"{key} price"] = f"{money(group.price)} per {_quantity(group.block, group.unit)}"
            facts[f"{key} setup fee"] = money(group.setup_fee)
        billing = group.billing
        facts[f"{key} increments"] = (
            f"first {_quantity(billing.first, group.unit)}, "
            f"then {_quantity(billing.increment, group.unit)}"
        )
        if group.periods:
            facts[f"{key} timezone"] = group.timezone
        for period in group.periods:
            facts[f"{key} period {period.name}"] = (
                f"{_days(period.days)} {_clock(period.start)}-{_clock(period.end)}: "
                f"{modifier(period.modifier, group)}"
            )
        for tier in group.tiers:
            facts[f"{key} tier from {_quantity(tier.start, group.unit)}"] = modifier(
                tier.modifier, group
            )
        for promotion in group.promotions:
            facts[f"{key} promotion {promotion.name}"] = (
                f"{_iso(promotion.start)} .. {_iso(promotion.end)}: "
                f"{modifier(promotion.modifier, group)}"
            )
        if group.linked_rating_groups:
            facts[f"{key} linked rating groups"] = ", ".join(
                str(rg) for rg in group.linked_rating_groups
            )
        grant = group.grant
        if grant is not None:
            action = grant.final_unit_action.name.lower()
            if grant.redirect_server is not None:
                action += f" {grant.redirect_server.address}"
            if grant.filter_ids:
                action += f" {','.join(grant.filter_ids)}"
            facts[f"{key} grant quantum"] = _quantity(grant.quantum, group.unit)
            facts[f"{key} grant validity time"] = _quantity(grant.validity_time, Unit.SECONDS)
            facts[f"{key} grant threshold"] = _fraction_text(grant.threshold)
            facts[f"{key} grant quota holding time"] = _quantity(
                grant.quota_holding_time, Unit.SECONDS
            )
            facts[f"{key} grant final unit action"] = action
    if catalog.account.usage_thresholds:
        facts["account usage thresholds"] = ", ".join(
            money(t) for t in catalog.account.usage_thresholds
        )
    cdr = catalog.cdr
    if cdr.volume_limit is not None:
        facts["cdr volume limit"] = _quantity(cdr.volume_limit, Unit.OCTETS)
    if cdr.time_limit is not None:
        facts["cdr time limit"] = _quantity(cdr.time_limit, Unit.SECONDS)
    _offer_facts(catalog, facts, money)  # offers (docs/catalog.md, *Offers*)
    facts.update(load_facts(catalog.load))  # load-modulated prices (rating/load.py)
    for device_class in catalog.device_classes:  # IoT profile (rating/devices.py)
        facts.update(_device_class_facts(device_class, money(device_class.reserve)))
    facts.update(_status_facts(catalog, money))  # status-policy
    return facts


def _status_facts(catalog: Catalog, money: Callable[[int], str]) -> dict[str, str]:
    """status-policy: the `[status]` section, one fact per threshold, state and policy."""
    status = status_policies(catalog)
    facts: dict[str, str] = {}
    if status.states:
        facts["status states"] = ", ".join(status.states)
    if status.inhibit_threshold is not None:
        facts["status inhibit threshold"] = money(status.inhibit_threshold)
    if status.notify_threshold is not None:
        facts["status notify threshold"] = money(status.notify_threshold)
    entries = [
        *((f"{state} rating group {rg}", p) for (state, rg), p in status.by_group.items()),
        *((f"{state} service {ctx}", p) for (state, ctx), p in status.by_service.items()),
        *((f"{state} every service", p) for state, p in status.by_state.items()),
    ]
    for where, policy in entries:
        what = policy.action.value
        if policy.redirect_server is not None:
            what += f" {policy.redirect_server.address}"
        if policy.filter_ids:
            what += f" {','.join(policy.filter_ids)}"
        facts[f"status {where}"] = what
    for counter in catalog.counters:  # usage counters (docs/catalog.md)
        money_counter = counter.unit is CounterUnit.MONEY

        def amount(value: int, unit: CounterUnit = counter.unit) -> str:
            return money(value) if unit is CounterUnit.MONEY else _quantity(value, Unit(unit.value))

        groups = ", ".join(str(rg) for rg in counter.rating_groups) or "all"
        anchor = "first use" if counter.anchor_ms is None else _iso(counter.anchor_ms // 1000)
        facts[f"counter {counter.name}"] = (
            f"{'money' if money_counter else counter.unit.value} of rating groups {groups}, "
            f"{counter.period.value} from {anchor}, thresholds "
            + (", ".join(amount(t) for t in counter.thresholds) or "none")
        )
    return facts


def _device_class_facts(device_class: DeviceClass, reserve: str) -> dict[str, str]:
    key = f"device class {device_class.name}"
    return {
        f"{key} imsi prefixes": ", ".join(device_class.imsi_prefixes),
        f"{key} rating groups": ", ".join(str(rg) for rg in device_class.rating_groups),
        f"{key} threshold set": (
            f"at most {_quantity(device_class.max_octets, Unit.OCTETS)} and "
            f"{device_class.max_reports} reports per "
            f"{_quantity(device_class.period_s, Unit.SECONDS)}"
        ),
        f"{key} reserve": reserve,
        f"{key} quota holding time": _quantity(device_class.quota_holding_time_s, Unit.SECONDS),
    }


_SIZES: Final = {
    Unit.OCTETS: (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)),
    Unit.SECONDS: (("h", 3600), ("min", 60), ("s", 1)),
}


def _quantity(amount: int, unit: Unit) -> str:
    """`1048576` octets -> "1 MiB", 90 seconds -> "90 s": the largest unit that divides it."""
    if unit is Unit.UNITS:
        return f"{amount} unit" if amount == 1 else f"{amount} units"
    for suffix, size in _SIZES[unit]:
        if amount % size == 0 and (amount >= size or size == 1):
            return f"{amount // size} {suffix}"
    return str(amount)


def _days(days: tuple[Weekday, ...]) -> str:
    if days == tuple(Weekday):
        return "all days"
    if days == _WEEKDAYS:
        return "weekdays"
    if days == _WEEKEND:
        return "weekend"
    return ",".join(day.name.lower() for day in days)


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


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
    if args.load_band is not None:  # load-modulated prices (docs/catalog.md "Load bands")
        banded = _in_band(catalog, group, args.load_band)
        if isinstance(banded, str):
            return _error(banded)
        group = banded
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


def _in_band(catalog: Catalog, group: RatingGroup, name: str) -> RatingGroup | str:
    """`group` priced in the load band `name`, or what is wrong."""
    policy = catalog.load
    if policy is None or not policy.applies(group.id):
        return f"rating group {group.id} is not priced by load in this catalog"
    for index in range(len(policy.bands) + 1):
        band, factor = policy.band(index)
        if band == name:
            return LoadPricing(catalog).priced(group, factor, band)
    names = ", ".join(policy.band(i)[0] for i in range(len(policy.bands) + 1))
    return f"unknown load band {name!r} (the catalog has: {names})"


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


def _offer_facts(catalog: Catalog, facts: dict[str, str], money: Callable[[int], str]) -> None:
    """The catalog's offers as facts (so that `ocs catalog diff` shows what changed)."""
    for offer in catalog.offers.values():
        key = f"offer {offer.name}"
        facts[key] = (
            f"fee {money(offer.fee)}, {offer.period.value}, priority {offer.priority}, "
            f"unpaid: {offer.on_unpaid.value}"
        )
        for a in offer.allowances:
            groups = ", ".join(str(rg) for rg in a.rating_groups)
            end = (
                f"rolls over up to {_quantity(a.rollover_cap, a.unit)}"
                if a.rollover_cap is not None
                else "expires at the period's end"
            )
            facts[f"{key} allowance {a.name}"] = (
                f"{_quantity(a.units, a.unit)} of rating groups {groups}, {end}"
            )
        for m in offer.modifiers:
            groups = ", ".join(str(rg) for rg in m.rating_groups)
            promo = m.promotion
            change = (
                f"{money(promo.modifier.price)} per block"
                if promo.modifier.price is not None
                else f"x {_fraction_text(promo.modifier.factor or Fraction(1))}"
            )
            facts[f"{key} modifier {m.name}"] = (
                f"rating groups {groups}, {_iso(promo.start)} .. {_iso(promo.end)}: {change}"
            )
