"""Offers of the catalog (`[[offers]]`, docs/catalog.md *Offers*): a fee, a period and
allowances of units per rating group or group of rating groups.

Pure: parsed from the catalog's TOML table by `parse_offers`, which `parse_catalog` calls;
the charging core (`ocs.core.offers`) keeps the subscriptions and unit balances.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Final

from rating.errors import CatalogError
from rating.model import Modifier, Promotion, RatingGroup, Unit
from rating.periods import PeriodKind
from rating.values import at as _at
from rating.values import check_keys as _check_keys
from rating.values import instant as _instant
from rating.values import integer, quantity, ratio
from rating.values import list_of as _list
from rating.values import money as _money
from rating.values import table as _table
from rating.values import text as _str

__all__ = ["Allowance", "Offer", "OfferModifier", "Unpaid", "parse_offers"]

_MAX_U32: Final = 2**32 - 1
#: The most units an allowance (or its rollover cap) may hold: 2^53, far above any bundle
#: (8 PiB of data), so that sums of balances stay small ints.
MAX_ALLOWANCE_UNITS: Final = 2**53
#: The largest fee, micro-units: one ledger operation (protocol.limits.MAX_AMOUNT, 10^9 units).
MAX_FEE: Final = 10**15
#: The largest surcharge factor of an offer's modifier (the core bounds charges from it).
MAX_FACTOR: Final = 100
_OFFER_KEYS: Final = (
    "name",
    "fee",
    "period",
    "priority",
    "on_unpaid",
    "allowances",
    "modifiers",
)
_MODIFIER_KEYS: Final = ("name", "rating_groups", "start", "end", "price", "factor")
_ALLOWANCE_KEYS: Final = ("name", "rating_groups", "units", "rollover_cap")


class Unpaid(enum.Enum):
    """What happens to a subscription whose renewal fee the money balance cannot pay."""

    SUSPEND = "suspend"  # kept, its allowances unusable until a later renewal is paid
    CANCEL = "cancel"  # removed


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowance:
    name: str
    rating_groups: tuple[int, ...]
    unit: Unit
    units: int
    """Units given at the subscription and at each renewal."""
    rollover_cap: int | None
    """None: what is left expires at the period's end. Else the unused units roll over and the
    balance after a renewal is at most this cap."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferModifier:
    """A discount or surcharge of the offer's holders on some rating groups over [start, end)
    (epoch seconds): a promotion of theirs alone, honoured as the catalog's promotions are."""

    name: str
    rating_groups: tuple[int, ...]
    promotion: Promotion


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer:
    name: str
    fee: int
    """Micro-units taken at the subscription and at each renewal."""
    period: PeriodKind
    priority: int
    """Allowances of offers with a lower priority are drawn first."""
    on_unpaid: Unpaid
    allowances: tuple[Allowance, ...]
    modifiers: tuple[OfferModifier, ...] = ()

    def allowance(self, name: str) -> Allowance | None:
        for allowance in self.allowances:
            if allowance.name == name:
                return allowance
        return None


def parse_offers(value: object, groups: Mapping[int, RatingGroup]) -> Mapping[str, Offer]:
    """The `[[offers]]` array of a catalog (absent: no offers)."""
    offers: dict[str, Offer] = {}
    if value is None:
        return MappingProxyType(offers)
    for i, raw in enumerate(_list(value, "offers")):
        offer = _offer(raw, f"offers[{i}]", groups)
        if offer.name in offers:
            raise CatalogError(f"offers[{i}].name", f"duplicate offer {offer.name!r}")
        offers[offer.name] = offer
    return MappingProxyType(offers)


def _offer(value: object, path: str, groups: Mapping[int, RatingGroup]) -> Offer:
    table = _table(value, path)
    _check_keys(table, path, _OFFER_KEYS)
    for key in ("name", "period", "allowances"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    name = _str(table["name"], _at(path, "name"))
    if not name or len(name) > 64:
        raise CatalogError(_at(path, "name"), "must be 1 to 64 characters")
    fee = _money(table.get("fee", "0"), _at(path, "fee"))
    if fee > MAX_FEE:
        raise CatalogError(_at(path, "fee"), "must be at most 1000000000 (one ledger operation)")
    period_name = _str(table["period"], _at(path, "period"))
    try:
        period = PeriodKind(period_name)
    except ValueError:
        allowed = ", ".join(k.value for k in PeriodKind)
        raise CatalogError(
            _at(path, "period"), f"unknown period {period_name!r} (allowed: {allowed})"
        ) from None
    priority = _int(table.get("priority", 0), _at(path, "priority"), lo=0, hi=_MAX_U32)
    unpaid_name = _str(table.get("on_unpaid", "suspend"), _at(path, "on_unpaid"))
    try:
        on_unpaid = Unpaid(unpaid_name)
    except ValueError:
        raise CatalogError(
            _at(path, "on_unpaid"), f"unknown {unpaid_name!r} (allowed: suspend, cancel)"
        ) from None
    allowances: list[Allowance] = []
    ap = _at(path, "allowances")
    for j, raw in enumerate(_list(table["allowances"], ap)):
        allowance = _allowance(raw, f"{ap}[{j}]", groups)
        if any(a.name == allowance.name for a in allowances):
            raise CatalogError(f"{ap}[{j}].name", f"duplicate allowance {allowance.name!r}")
        allowances.append(allowance)
    modifiers: list[OfferModifier] = []
    mp = _at(path, "modifiers")
    for j, raw in enumerate(_list(table.get("modifiers", []), mp)):
        modifier = _offer_modifier(raw, f"{mp}[{j}]", groups)
        for k, other in enumerate(modifiers):
            shared = set(other.rating_groups) & set(modifier.rating_groups)
            a, b = other.promotion, modifier.promotion
            if shared and a.start < b.end and b.start < a.end:
                raise CatalogError(
                    f"{mp}[{j}]", f"overlaps {mp}[{k}] on rating group {min(shared)}"
                )
        modifiers.append(modifier)
    return Offer(
        name=name,
        fee=fee,
        period=period,
        priority=priority,
        on_unpaid=on_unpaid,
        allowances=tuple(allowances),
        modifiers=tuple(modifiers),
    )


def _offer_modifier(value: object, path: str, groups: Mapping[int, RatingGroup]) -> OfferModifier:
    table = _table(value, path)
    _check_keys(table, path, _MODIFIER_KEYS)
    for key in ("name", "rating_groups", "start", "end"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    name = _str(table["name"], _at(path, "name"))
    start = _instant(table["start"], _at(path, "start"))
    end = _instant(table["end"], _at(path, "end"))
    if end <= start:
        raise CatalogError(_at(path, "end"), "must be after start")
    has_price, has_factor = "price" in table, "factor" in table
    if has_price == has_factor:
        raise CatalogError(path, 'needs exactly one of "price" or "factor"')
    if has_price:
        modifier = Modifier(price=_money(table["price"], _at(path, "price")))
    else:
        modifier = Modifier(factor=_factor(table["factor"], _at(path, "factor")))
    rp = _at(path, "rating_groups")
    ids: list[int] = []
    for j, item in enumerate(_list(table["rating_groups"], rp)):
        rg_id = _int(item, f"{rp}[{j}]", lo=0, hi=_MAX_U32)
        group = groups.get(rg_id)
        if group is None or group.zero_rated:
            raise CatalogError(f"{rp}[{j}]", f"unknown or zero-rated rating group {rg_id}")
        for promo in group.promotions:  # one promotion at a time on a group's timeline
            if start < promo.end and promo.start < end:
                raise CatalogError(
                    path, f"overlaps promotion {promo.name!r} of rating group {rg_id}"
                )
        if rg_id not in ids:
            ids.append(rg_id)
    if not ids:
        raise CatalogError(rp, "must list at least one rating group")
    promotion = Promotion(name=f"offer {name}", start=start, end=end, modifier=modifier)
    return OfferModifier(name=name, rating_groups=tuple(ids), promotion=promotion)


def _allowance(value: object, path: str, groups: Mapping[int, RatingGroup]) -> Allowance:
    table = _table(value, path)
    _check_keys(table, path, _ALLOWANCE_KEYS)
    for key in ("name", "rating_groups", "units"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    name = _str(table["name"], _at(path, "name"))
    if not name or len(name) > 64:
        raise CatalogError(_at(path, "name"), "must be 1 to 64 characters")
    rp = _at(path, "rating_groups")
    ids: list[int] = []
    unit: Unit | None = None
    for j, item in enumerate(_list(table["rating_groups"], rp)):
        rg_id = _int(item, f"{rp}[{j}]", lo=0, hi=_MAX_U32)
        group = groups.get(rg_id)
        if group is None:
            raise CatalogError(f"{rp}[{j}]", f"unknown rating group {rg_id}")
        if rg_id in ids:
            raise CatalogError(f"{rp}[{j}]", f"rating group {rg_id} listed twice")
        if unit is not None and group.unit is not unit:
            raise CatalogError(
                f"{rp}[{j}]", f"rating group {rg_id} counts {group.unit.value}, not {unit.value}"
            )
        unit = group.unit
        ids.append(rg_id)
    if unit is None:
        raise CatalogError(rp, "must list at least one rating group")
    units = _quantity(table["units"], _at(path, "units"), unit, lo=1)
    if units > MAX_ALLOWANCE_UNITS:
        raise CatalogError(_at(path, "units"), f"must be <= {MAX_ALLOWANCE_UNITS}")
    cap = None
    if "rollover_cap" in table:
        cap = _quantity(table["rollover_cap"], _at(path, "rollover_cap"), unit, lo=1)
        if not units <= cap <= MAX_ALLOWANCE_UNITS:
            raise CatalogError(
                _at(path, "rollover_cap"), f"must be between units ({units}) and 2^53"
            )
    return Allowance(name=name, rating_groups=tuple(ids), unit=unit, units=units, rollover_cap=cap)


# -- typed getters: the catalog's (rating/values.py), with the bounds of offers ----------------


def _int(value: object, path: str, *, lo: int, hi: int) -> int:
    return integer(value, path, lo=lo, hi=hi)


def _quantity(value: object, path: str, unit: Unit, *, lo: int) -> int:
    """An int, or a string with a unit suffix ("10 GiB", "300 min"), at most
    MAX_ALLOWANCE_UNITS."""
    return integer(quantity(value, path, unit, lo=lo), path, lo=lo, hi=MAX_ALLOWANCE_UNITS)


def _factor(value: object, path: str) -> Fraction:
    """An exact ratio ("0.5", "3/2"), never a float, at most MAX_FACTOR."""
    factor = ratio(value, path)
    if factor > MAX_FACTOR:
        raise CatalogError(path, f"must be at most {MAX_FACTOR}")
    return factor
