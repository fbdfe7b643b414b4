"""Parse and validate a catalog (TOML text or an already-parsed dict) into a ``Catalog``.

Every problem raises ``CatalogError`` naming the key path (``rating_groups[2].periods[1].start``,
indexes from 0). The format is documented in ``docs/catalog.md``. No I/O happens here: the caller
reads the file.

Exactness: money is a decimal *string* of currency units (``"0.02"``), at most six decimals,
parsed digit by digit into micro-units; factors and thresholds are decimal strings or fractions
(``"0.5"``, ``"1/3"``). A TOML float anywhere is refused, so no binary fraction ever reaches a
price.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import time
from fractions import Fraction
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating.counters import parse_counters
from rating.devices import parse_device_classes
from rating.errors import CatalogError
from rating.load import parse_load
from rating.loans import parse_loan_policy
from rating.model import (
    AccountPolicy,
    Billing,
    Catalog,
    CdrPolicy,
    Currency,
    FinalUnitAction,
    GrantPolicy,
    Modifier,
    Period,
    Promotion,
    RatingGroup,
    RedirectAddressType,
    RedirectServer,
    Service,
    Tier,
    Unit,
    Weekday,
)
from rating.offers import parse_offers
from rating.packages import parse_packages
from rating.policies import parse_status
from rating.tariff import DAY, Rate, Tariff, Timeline
from rating.values import (
    at as _at,
)
from rating.values import (
    boolean as _bool,
)
from rating.values import (
    check_keys as _check_keys,
)
from rating.values import (
    instant as _instant,
)
from rating.values import (
    integer as _int,
)
from rating.values import (
    list_of as _list,
)
from rating.values import (
    money as _money,
)
from rating.values import (
    quantity as _quantity,
)
from rating.values import (
    ratio as _ratio,
)
from rating.values import (
    table as _table,
)
from rating.values import (
    text as _str,
)

_MAX_U32: Final = 2**32 - 1

_TIME_RE = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")


_DAY_NAMES: dict[str, tuple[Weekday, ...]] = {
    "mon": (Weekday.MON,),
    "tue": (Weekday.TUE,),
    "wed": (Weekday.WED,),
    "thu": (Weekday.THU,),
    "fri": (Weekday.FRI,),
    "sat": (Weekday.SAT,),
    "sun": (Weekday.SUN,),
    "weekdays": (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI),
    "weekend": (Weekday.SAT, Weekday.SUN),
    "all": tuple(Weekday),
}

_FUA_NAMES = {
    "terminate": FinalUnitAction.TERMINATE,
    "redirect": FinalUnitAction.REDIRECT,
    "restrict_access": FinalUnitAction.RESTRICT_ACCESS,
}

_REDIRECT_TYPES = {
    "ipv4": RedirectAddressType.IPV4_ADDRESS,
    "ipv6": RedirectAddressType.IPV6_ADDRESS,
    "url": RedirectAddressType.URL,
    "sip_uri": RedirectAddressType.SIP_URI,
}

_TOP_KEYS = (
    "version",
    "name",
    "timezone",
    "currency",
    "services",
    "rating_groups",
    "account",
    "cdr",
    "offers",  # rating/offers.py (docs/catalog.md, *Offers*)
    "loan_policy",  # rating/loans.py
    "packages",  # groups (rating/packages.py)
    "load",  # load-modulated prices (rating/load.py)
    "status",  # status-policy: rating/policies.py
    "device_classes",  # IoT profile: rating/devices.py
    "counters",
)
_RG_KEYS = (
    "id",
    "name",
    "unit",
    "price",
    "block",
    "increment",
    "first_increment",
    "setup_fee",
    "zero_rated",
    "timezone",
    "linked_rating_groups",
    "grant",
    "periods",
    "tiers",
    "promotions",
)


# -- key paths and typed getters ------------------------------------------------------------


def _time_of_day(value: object, path: str, *, allow_24: bool) -> int:
    """Seconds since local midnight: "HH:MM", "HH:MM:SS" or a TOML local time."""
    if isinstance(value, time):
        if value.tzinfo is not None or value.microsecond:
            raise CatalogError(path, "time of day must be local and whole seconds")
        return value.hour * 3600 + value.minute * 60 + value.second
    text = _str(value, path)
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise CatalogError(path, f'not a time of day: {text!r} (expected "HH:MM" or "HH:MM:SS")')
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hour == 24 and minute == 0 and second == 0:
        if not allow_24:
            raise CatalogError(path, '"24:00" is only allowed as an end')
        return DAY
    if hour > 23 or minute > 59 or second > 59:
        raise CatalogError(path, f"not a valid time of day: {text!r}")
    return hour * 3600 + minute * 60 + second


def _zone(value: object, path: str) -> str:
    name = _str(value, path)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CatalogError(path, f"unknown time zone {name!r}") from None
    return name


# -- sections ---------------------------------------------------------------------------------


def _modifier(table: Mapping[str, object], path: str) -> Modifier:
    has_price = "price" in table
    has_factor = "factor" in table
    if has_price == has_factor:
        raise CatalogError(path, 'needs exactly one of "price" or "factor"')
    if has_price:
        return Modifier(price=_money(table["price"], _at(path, "price")))
    return Modifier(factor=_ratio(table["factor"], _at(path, "factor")))


def _currency(value: object, path: str) -> Currency:
    table = _table(value, path)
    _check_keys(table, path, ("code", "alpha", "exponent"))
    if "code" not in table:
        raise CatalogError(_at(path, "code"), "missing (ISO 4217 numeric code, e.g. 978)")
    code = _int(table["code"], _at(path, "code"), lo=1, hi=999)
    alpha = None
    if "alpha" in table:
        alpha = _str(table["alpha"], _at(path, "alpha"))
        if not re.fullmatch(r"[A-Z]{3}", alpha):
            raise CatalogError(_at(path, "alpha"), f"expected 3 capital letters, got {alpha!r}")
    exponent = _int(table.get("exponent", 2), _at(path, "exponent"), lo=0, hi=6)
    return Currency(code=code, alpha=alpha, exponent=exponent)


def _periods(value: object, path: str) -> tuple[Period, ...]:
    periods: list[Period] = []
    by_day: dict[Weekday, list[tuple[int, int, int]]] = {}
    for i, raw in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        table = _table(raw, p)
        _check_keys(table, p, ("name", "days", "start", "end", "price", "factor"))
        for key in ("days", "start", "end"):
            if key not in table:
                raise CatalogError(_at(p, key), "missing")
        name = _str(table.get("name", f"period{i}"), _at(p, "name"))
        days: list[Weekday] = []
        day_list = _list(table["days"], _at(p, "days"))
        if not day_list:
            raise CatalogError(_at(p, "days"), "must name at least one day")
        for j, day in enumerate(day_list):
            dp = f"{_at(p, 'days')}[{j}]"
            key = _str(day, dp).lower()
            if key not in _DAY_NAMES:
                raise CatalogError(dp, f"unknown day {day!r} (allowed: {', '.join(_DAY_NAMES)})")
            for wd in _DAY_NAMES[key]:
                if wd in days:
                    raise CatalogError(dp, f"day {wd.name.lower()} listed twice")
                days.append(wd)
        start = _time_of_day(table["start"], _at(p, "start"), allow_24=False)
        end = _time_of_day(table["end"], _at(p, "end"), allow_24=True)
        if end <= start:
            raise CatalogError(
                _at(p, "end"),
                "must be after start (a period cannot cross midnight; split it in two)",
            )
        modifier = _modifier(table, p)
        for wd in days:
            for other_start, other_end, other in by_day.get(wd, []):
                if start < other_end and other_start < end:
                    raise CatalogError(
                        p,
                        f"overlaps {path}[{other}] on {wd.name.lower()} (periods must not overlap)",
                    )
            by_day.setdefault(wd, []).append((start, end, i))
        periods.append(Period(name=name, days=tuple(days), start=start, end=end, modifier=modifier))
    return tuple(periods)


def _tiers(value: object, path: str, unit: Unit) -> tuple[Tier, ...]:
    tiers: list[Tier] = []
    for i, raw in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        table = _table(raw, p)
        _check_keys(table, p, ("from", "price", "factor"))
        if "from" not in table:
            raise CatalogError(_at(p, "from"), "missing")
        start = _quantity(table["from"], _at(p, "from"), unit, lo=1)
        if tiers and start <= tiers[-1].start:
            raise CatalogError(_at(p, "from"), "tiers must be in strictly increasing order")
        tiers.append(Tier(start=start, modifier=_modifier(table, p)))
    return tuple(tiers)


def _promotions(value: object, path: str) -> tuple[Promotion, ...]:
    promos: list[tuple[Promotion, int]] = []
    for i, raw in enumerate(_list(value, path)):
        p = f"{path}[{i}]"
        table = _table(raw, p)
        _check_keys(table, p, ("name", "start", "end", "price", "factor"))
        for key in ("start", "end"):
            if key not in table:
                raise CatalogError(_at(p, key), "missing")
        name = _str(table.get("name", f"promotion{i}"), _at(p, "name"))
        start = _instant(table["start"], _at(p, "start"))
        end = _instant(table["end"], _at(p, "end"))
        if end <= start:
            raise CatalogError(_at(p, "end"), "must be after start")
        modifier = _modifier(table, p)
        for other, j in promos:
            if start < other.end and other.start < end:
                raise CatalogError(p, f"overlaps {path}[{j}] (promotions must not overlap)")
        promos.append((Promotion(name=name, start=start, end=end, modifier=modifier), i))
    return tuple(sorted((promo for promo, _ in promos), key=lambda promo: promo.start))


def _grant(value: object, path: str, unit: Unit) -> GrantPolicy:
    table = _table(value, path)
    _check_keys(
        table,
        path,
        (
            "quantum",
            "validity_time",
            "threshold",
            "quota_holding_time",
            "final_unit_action",
            "redirect_server",
            "redirect_address_type",
            "filter_ids",
        ),
    )
    if "quantum" not in table:
        raise CatalogError(_at(path, "quantum"), "missing (default grant, in the group's unit)")
    quantum = _quantity(table["quantum"], _at(path, "quantum"), unit, lo=1)
    validity = _quantity(
        table.get("validity_time", 3600), _at(path, "validity_time"), Unit.SECONDS, lo=1
    )
    if validity > _MAX_U32:
        raise CatalogError(_at(path, "validity_time"), f"must be <= {_MAX_U32}")
    threshold = _ratio(table.get("threshold", 0), _at(path, "threshold"))
    if threshold > 1:
        raise CatalogError(_at(path, "threshold"), "must be a fraction between 0 and 1")
    holding = _quantity(
        table.get("quota_holding_time", 0), _at(path, "quota_holding_time"), Unit.SECONDS, lo=0
    )
    if holding > _MAX_U32:
        raise CatalogError(_at(path, "quota_holding_time"), f"must be <= {_MAX_U32}")
    fua_name = _str(table.get("final_unit_action", "terminate"), _at(path, "final_unit_action"))
    if fua_name not in _FUA_NAMES:
        raise CatalogError(
            _at(path, "final_unit_action"),
            f"unknown action {fua_name!r} (allowed: {', '.join(_FUA_NAMES)})",
        )
    fua = _FUA_NAMES[fua_name]
    redirect = None
    if fua is FinalUnitAction.REDIRECT:
        if "redirect_server" not in table:
            raise CatalogError(_at(path, "redirect_server"), 'required with action "redirect"')
        kind_name = _str(
            table.get("redirect_address_type", "url"), _at(path, "redirect_address_type")
        )
        if kind_name not in _REDIRECT_TYPES:
            raise CatalogError(
                _at(path, "redirect_address_type"),
                f"unknown type {kind_name!r} (allowed: {', '.join(_REDIRECT_TYPES)})",
            )
        address = _str(table["redirect_server"], _at(path, "redirect_server"))
        if not address:
            raise CatalogError(_at(path, "redirect_server"), "must not be empty")
        redirect = RedirectServer(address_type=_REDIRECT_TYPES[kind_name], address=address)
    else:
        for key in ("redirect_server", "redirect_address_type"):
            if key in table:
                raise CatalogError(_at(path, key), 'only allowed with action "redirect"')
    filter_ids: tuple[str, ...] = ()
    if fua is FinalUnitAction.RESTRICT_ACCESS:
        if "filter_ids" not in table:
            raise CatalogError(_at(path, "filter_ids"), 'required with action "restrict_access"')
        raw_ids = _list(table["filter_ids"], _at(path, "filter_ids"))
        if not raw_ids:
            raise CatalogError(_at(path, "filter_ids"), "must list at least one filter id")
        filter_ids = tuple(
            _str(f, f"{_at(path, 'filter_ids')}[{j}]") for j, f in enumerate(raw_ids)
        )
    elif "filter_ids" in table:
        raise CatalogError(_at(path, "filter_ids"), 'only allowed with action "restrict_access"')
    return GrantPolicy(
        quantum=quantum,
        validity_time=validity,
        threshold=threshold,
        quota_holding_time=holding,
        final_unit_action=fua,
        redirect_server=redirect,
        filter_ids=filter_ids,
    )


def _rate_label(period: Period | None, tier: int, promo: Promotion | None) -> str:
    parts = [period.name if period is not None else "base"]
    if tier:
        parts.append(f"tier {tier}")
    if promo is not None:
        parts.append(f"promotion {promo.name}")
    return ", ".join(parts)


def _compile(
    *,
    price: int,
    block: int,
    tz: str,
    periods: tuple[Period, ...],
    tiers: tuple[Tier, ...],
    promotions: tuple[Promotion, ...],
) -> Tariff:
    """Precompute every rate (period x promotion x tier) and the timeline."""
    class_of: dict[tuple[int, int], int] = {}
    class_rates: list[tuple[Rate, ...]] = []
    price_key: list[int] = []
    keys: dict[tuple[int, ...], int] = {}
    for pi, period in enumerate((None, *periods)):
        for mi, promo in enumerate((None, *promotions)):
            rates: list[Rate] = []
            for ti, tier in enumerate((None, *tiers)):
                per_block = Fraction(price)
                if period is not None:
                    per_block = period.modifier.apply(per_block)
                if tier is not None:
                    per_block = tier.modifier.apply(per_block)
                if promo is not None:
                    per_block = promo.modifier.apply(per_block)
                # Exact: a Fraction, no rounding at all.
                per_unit = Fraction(per_block.numerator, per_block.denominator * block)
                rates.append(
                    Rate(
                        num=per_unit.numerator,
                        den=per_unit.denominator,
                        block=block,
                        tier=ti,
                        period=period.name if period is not None else None,
                        promotion=promo.name if promo is not None else None,
                        label=_rate_label(period, ti, promo),
                    )
                )
            key = tuple(x for r in rates for x in (r.num, r.den))
            class_of[(pi, mi)] = len(class_rates)
            class_rates.append(tuple(rates))
            price_key.append(keys.setdefault(key, len(keys)))
    weekly: list[list[tuple[int, int, int]]] = [[] for _ in range(7)]
    for pi, period in enumerate(periods, start=1):
        for day in period.days:
            weekly[day].append((period.start, period.end, pi))
    timeline = Timeline(
        tz=ZoneInfo(tz),
        weekly=tuple(tuple(sorted(day)) for day in weekly),
        promos=tuple((p.start, p.end, mi) for mi, p in enumerate(promotions, start=1)),
        class_of=class_of,
        price_key=tuple(price_key),
    )
    return Tariff(
        tier_starts=(0, *(t.start for t in tiers)),
        class_rates=tuple(class_rates),
        timeline=timeline,
    )


def _rating_group(value: object, path: str, default_tz: str) -> RatingGroup:
    table = _table(value, path)
    _check_keys(table, path, _RG_KEYS)
    for key in ("id", "unit"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    rg_id = _int(table["id"], _at(path, "id"), lo=0, hi=_MAX_U32)
    unit_name = _str(table["unit"], _at(path, "unit"))
    try:
        unit = Unit(unit_name)
    except ValueError:
        raise CatalogError(
            _at(path, "unit"),
            f"unknown unit {unit_name!r} (allowed: {', '.join(u.value for u in Unit)})",
        ) from None
    name = _str(table.get("name", f"rg{rg_id}"), _at(path, "name"))
    zero_rated = _bool(table.get("zero_rated", False), _at(path, "zero_rated"))
    tz = _zone(table["timezone"], _at(path, "timezone")) if "timezone" in table else default_tz
    block = _quantity(table.get("block", 1), _at(path, "block"), unit, lo=1)
    increment = _quantity(table.get("increment", 1), _at(path, "increment"), unit, lo=1)
    first = _quantity(
        table.get("first_increment", increment), _at(path, "first_increment"), unit, lo=1
    )
    linked_raw = _list(table.get("linked_rating_groups", []), _at(path, "linked_rating_groups"))
    linked: list[int] = []
    for j, item in enumerate(linked_raw):
        lp = f"{_at(path, 'linked_rating_groups')}[{j}]"
        other = _int(item, lp, lo=0, hi=_MAX_U32)
        if other == rg_id:
            raise CatalogError(lp, "a rating group cannot be linked to itself")
        if other in linked:
            raise CatalogError(lp, f"rating group {other} listed twice")
        linked.append(other)
    if zero_rated:
        for key in ("setup_fee", "periods", "tiers", "promotions"):
            if key in table:
                raise CatalogError(_at(path, key), "not allowed in a zero-rated group")
        price = _money(table["price"], _at(path, "price")) if "price" in table else 0
        if price != 0:
            raise CatalogError(_at(path, "price"), "a zero-rated group has no price")
        periods: tuple[Period, ...] = ()
        tiers: tuple[Tier, ...] = ()
        promotions: tuple[Promotion, ...] = ()
        setup_fee = 0
    else:
        if "price" not in table:
            raise CatalogError(
                _at(path, "price"), 'missing (price per block, e.g. "0.02"; or zero_rated)'
            )
        price = _money(table["price"], _at(path, "price"))
        setup_fee = _money(table.get("setup_fee", "0"), _at(path, "setup_fee"))
        periods = _periods(table.get("periods", []), _at(path, "periods"))
        tiers = _tiers(table.get("tiers", []), _at(path, "tiers"), unit)
        promotions = _promotions(table.get("promotions", []), _at(path, "promotions"))
    grant = None
    if "grant" in table:
        grant = _grant(table["grant"], _at(path, "grant"), unit)
    elif not zero_rated:
        raise CatalogError(_at(path, "grant"), "missing (the grant policy of a priced group)")
    tariff = _compile(
        price=price, block=block, tz=tz, periods=periods, tiers=tiers, promotions=promotions
    )
    all_zero = all(rate.num == 0 for rates in tariff.class_rates for rate in rates)
    return RatingGroup(
        id=rg_id,
        name=name,
        unit=unit,
        price=price,
        block=block,
        billing=Billing(first=first, increment=increment),
        setup_fee=setup_fee,
        zero_rated=zero_rated or (all_zero and setup_fee == 0),
        timezone=tz,
        periods=periods,
        tiers=tiers,
        promotions=promotions,
        linked_rating_groups=tuple(linked),
        grant=grant,
        tariff=tariff,
    )


def _service(value: object, path: str, known: Mapping[int, RatingGroup]) -> Service:
    table = _table(value, path)
    _check_keys(table, path, ("context_id", "name", "rating_groups"))
    for key in ("context_id", "rating_groups"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    context_id = _str(table["context_id"], _at(path, "context_id"))
    if not context_id:
        raise CatalogError(_at(path, "context_id"), "must not be empty")
    name = _str(table.get("name", context_id), _at(path, "name"))
    groups: list[int] = []
    for j, item in enumerate(_list(table["rating_groups"], _at(path, "rating_groups"))):
        gp = f"{_at(path, 'rating_groups')}[{j}]"
        rg = _int(item, gp, lo=0, hi=_MAX_U32)
        if rg not in known:
            raise CatalogError(gp, f"unknown rating group {rg}")
        if rg in groups:
            raise CatalogError(gp, f"rating group {rg} listed twice")
        groups.append(rg)
    return Service(context_id=context_id, name=name, rating_groups=tuple(groups))


def _account(value: object, path: str) -> AccountPolicy:
    table = _table(value, path)
    _check_keys(table, path, ("usage_thresholds",))
    thresholds: list[int] = []
    tp = _at(path, "usage_thresholds")
    for j, item in enumerate(_list(table.get("usage_thresholds", []), tp)):
        amount = _money(item, f"{tp}[{j}]")
        if amount <= 0:
            raise CatalogError(f"{tp}[{j}]", "must be positive")
        if thresholds and amount <= thresholds[-1]:
            raise CatalogError(f"{tp}[{j}]", "thresholds must be strictly increasing")
        thresholds.append(amount)
    return AccountPolicy(usage_thresholds=tuple(thresholds))


def _cdr(value: object, path: str) -> CdrPolicy:
    table = _table(value, path)
    _check_keys(table, path, ("volume_limit", "time_limit"))
    volume = None
    if "volume_limit" in table:
        volume = _quantity(table["volume_limit"], _at(path, "volume_limit"), Unit.OCTETS, lo=1)
    limit = None
    if "time_limit" in table:
        limit = _quantity(table["time_limit"], _at(path, "time_limit"), Unit.SECONDS, lo=1)
    return CdrPolicy(volume_limit=volume, time_limit=limit)


def parse_catalog(source: str | Mapping[str, object]) -> Catalog:
    """Build a ``Catalog`` from TOML text or an already-parsed table.

    Raises ``CatalogError`` (with the key path) for anything invalid.
    """
    if isinstance(source, str):
        try:
            data: object = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError("", f"invalid TOML: {exc}") from None
    else:
        data = dict(source)
    top = _table(data, "")
    _check_keys(top, "", _TOP_KEYS)
    version = _int(top.get("version", 1), "version", lo=1)
    if version != 1:
        raise CatalogError("version", f"unsupported catalog version {version} (expected 1)")
    name = _str(top.get("name", "catalog"), "name")
    if "currency" not in top:
        raise CatalogError("currency", "missing (e.g. [currency] code = 978)")
    currency = _currency(top["currency"], "currency")
    tz = _zone(top.get("timezone", "UTC"), "timezone")
    if "rating_groups" not in top:
        raise CatalogError("rating_groups", "missing (at least one [[rating_groups]])")
    groups: dict[int, RatingGroup] = {}
    raw_groups = _list(top["rating_groups"], "rating_groups")
    if not raw_groups:
        raise CatalogError("rating_groups", "must define at least one rating group")
    for i, raw in enumerate(raw_groups):
        group = _rating_group(raw, f"rating_groups[{i}]", tz)
        if group.id in groups:
            raise CatalogError(f"rating_groups[{i}].id", f"duplicate rating group {group.id}")
        groups[group.id] = group
    for i, group in enumerate(groups.values()):
        for j, other in enumerate(group.linked_rating_groups):
            if other not in groups:
                raise CatalogError(
                    f"rating_groups[{i}].linked_rating_groups[{j}]",
                    f"unknown rating group {other}",
                )
    services: dict[str, Service] = {}
    if "services" not in top:
        raise CatalogError("services", "missing (at least one [[services]])")
    for i, raw in enumerate(_list(top["services"], "services")):
        service = _service(raw, f"services[{i}]", groups)
        if service.context_id in services:
            raise CatalogError(
                f"services[{i}].context_id", f"duplicate service {service.context_id!r}"
            )
        services[service.context_id] = service
    account = _account(top["account"], "account") if "account" in top else AccountPolicy()
    cdr = _cdr(top["cdr"], "cdr") if "cdr" in top else CdrPolicy()
    offers = parse_offers(top.get("offers"), groups)  # offers: rating/offers.py
    # loans: rating/loans.py
    loan_policy = parse_loan_policy(top["loan_policy"]) if "loan_policy" in top else None
    packages = parse_packages(top.get("packages", []), groups)  # groups
    load = parse_load(top["load"], "load", groups) if "load" in top else None  # rating/load.py
    # status-policy: service control by account state (rating/policies.py)
    status = parse_status(top["status"], "status", groups, services) if "status" in top else None
    # IoT profile (issue 15): parsed by rating/devices.py
    devices = top.get("device_classes")
    device_classes = (
        () if devices is None else parse_device_classes(devices, "device_classes", groups)
    )
    # usage counters (rating/counters.py), read with this module's readers of values
    counters = parse_counters(
        top.get("counters", []),
        "counters",
        {rg: group.unit.value for rg, group in groups.items()},
        quantity=lambda v, p, u: _quantity(v, p, Unit(u), lo=1),
        money=_money,
        instant=_instant,
    )
    return Catalog(
        version=version,
        name=name,
        currency=currency,
        timezone=tz,
        services=MappingProxyType(services),
        rating_groups=MappingProxyType(groups),
        account=account,
        cdr=cdr,
        offers=offers,
        loan_policy=loan_policy,
        packages=packages,
        load=load,
        status=status,
        device_classes=device_classes,
        counters=counters,
    )


def with_promotions(rg: RatingGroup, extra: tuple[Promotion, ...]) -> RatingGroup:
    """`rg` with `extra` promotions on its timeline besides its own (offers: the price
    modifiers of an account's offers, rating/offers.py). `extra` must not overlap them."""
    promotions = tuple(sorted((*rg.promotions, *extra), key=lambda promo: promo.start))
    tariff = _compile(
        price=rg.price,
        block=rg.block,
        tz=rg.timezone,
        periods=rg.periods,
        tiers=rg.tiers,
        promotions=promotions,
    )
    return replace(rg, promotions=promotions, tariff=tariff)
