"""Shared group packages: the catalog's ``[[packages]]`` and the apportioning of a fee.

Pure (no clock, no I/O). A package is what a group account owns: a fee per period (the
periods of `rating.periods`), split among the package's services by fixed shares of money
(``50 EUR = voice 20 + data 30``), where a service is a set of rating groups; optionally a cap
on what one member's usage may be charged in a period. docs/catalog.md, *Packages*, and
docs/accounts.md, *Shared group packages*, describe the format and the rule.

Apportioning (`apportion`), in integer micro-units that add up exactly to the fee:

1. The fee is split among the services by the catalog's shares (they add up to the fee).
2. Each service's share is divided among the members in proportion to their usage of that
   service (units of its rating groups, which share one unit); when no member used it, in
   proportion to the time each was a member during the period (equally among members who were
   members the whole period).
3. Each division is by largest remainder (`largest_remainder`): every member gets the floor of
   its exact share, and the micro-units left over go one each to the members with the largest
   remainders; equal remainders are ordered by member account id (code point order, the
   smaller first). So each amount is within one micro-unit of its exact share, the amounts add
   up exactly, and the result does not depend on the order members are given in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from rating.errors import CatalogError
from rating.model import RatingGroup, Unit
from rating.money import parse_money
from rating.periods import PeriodKind
from rating.values import list_of as _list

__all__ = [
    "MAX_NAME_LENGTH",
    "Package",
    "PackageService",
    "apportion",
    "largest_remainder",
    "parse_packages",
]

_PACKAGE_KEYS: Final = ("name", "fee", "period", "member_cap", "services")
_SERVICE_KEYS: Final = ("name", "rating_groups", "share")
#: The longest package or service name (protocol/limits.py MAX_PACKAGE_NAME_LENGTH).
MAX_NAME_LENGTH: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageService:
    """One service of a package: its rating groups (one unit) and its share of the fee."""

    name: str
    rating_groups: tuple[int, ...]
    share: int  # micro-units of the fee
    unit: Unit


@dataclass(frozen=True, slots=True, kw_only=True)
class Package:
    name: str
    fee: int  # micro-units per period
    period: PeriodKind
    services: tuple[PackageService, ...]
    member_cap: int | None = None  # micro-units of usage charge per member and period

    def service_of(self, rating_group: int) -> PackageService | None:
        """The service whose rating groups include `rating_group`, if any."""
        for service in self.services:
            if rating_group in service.rating_groups:
                return service
        return None


# --- catalog --------------------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    return f"{path}.{key}"


def _table(value: object, path: str, allowed: Iterable[str]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise CatalogError(path, f"expected a table, got {type(value).__name__}")
    keys = tuple(allowed)
    for key in value:
        if key not in keys:
            raise CatalogError(_at(path, str(key)), f"unknown key (allowed: {', '.join(keys)})")
    return value


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise CatalogError(path, f"expected a name of 1 to {MAX_NAME_LENGTH} characters")
    return value


def _money(value: object, path: str) -> int:
    if not isinstance(value, str):
        raise CatalogError(path, 'money is a decimal string of currency units, e.g. "20.00"')
    if value.startswith("-"):
        raise CatalogError(path, f"must not be negative, got {value!r}")
    try:
        return parse_money(value)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None


def _service(
    value: object, path: str, known: Mapping[int, RatingGroup], taken: set[int]
) -> PackageService:
    table = _table(value, path, _SERVICE_KEYS)
    for key in _SERVICE_KEYS:
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    name = _name(table["name"], _at(path, "name"))
    groups: list[int] = []
    unit: Unit | None = None
    rp = _at(path, "rating_groups")
    items = _list(table["rating_groups"], rp)
    if not items:
        raise CatalogError(rp, "must name at least one rating group")
    for j, item in enumerate(items):
        ip = f"{rp}[{j}]"
        if not isinstance(item, int) or isinstance(item, bool) or item not in known:
            raise CatalogError(ip, f"unknown rating group {item!r}")
        if item in taken:
            raise CatalogError(ip, f"rating group {item} is in another service of the package")
        rg_unit = known[item].unit
        if unit is not None and rg_unit is not unit:
            raise CatalogError(ip, f"rating group {item} counts {rg_unit.value}, not {unit.value}")
        unit = rg_unit
        taken.add(item)
        groups.append(item)
    assert unit is not None
    share = _money(table["share"], _at(path, "share"))
    return PackageService(name=name, rating_groups=tuple(groups), share=share, unit=unit)


def _package(value: object, path: str, known: Mapping[int, RatingGroup]) -> Package:
    table = _table(value, path, _PACKAGE_KEYS)
    for key in ("name", "fee", "period", "services"):
        if key not in table:
            raise CatalogError(_at(path, key), "missing")
    name = _name(table["name"], _at(path, "name"))
    fee = _money(table["fee"], _at(path, "fee"))
    period_text = table["period"]
    kinds = [k.value for k in PeriodKind if k is not PeriodKind.ONCE]
    if period_text not in kinds:
        raise CatalogError(_at(path, "period"), f"expected one of {', '.join(kinds)}")
    assert isinstance(period_text, str)
    cap = None
    if "member_cap" in table:
        cap = _money(table["member_cap"], _at(path, "member_cap"))
    sp = _at(path, "services")
    raw = _list(table["services"], sp)
    if not raw:
        raise CatalogError(sp, "must define at least one service")
    taken: set[int] = set()
    services: list[PackageService] = []
    for i, item in enumerate(raw):
        service = _service(item, f"{sp}[{i}]", known, taken)
        if any(s.name == service.name for s in services):
            raise CatalogError(f"{sp}[{i}].name", f"duplicate service {service.name!r}")
        services.append(service)
    total = sum(s.share for s in services)
    if total != fee:
        raise CatalogError(sp, f"the shares add up to {total} micro-units, the fee is {fee}")
    return Package(
        name=name, fee=fee, period=PeriodKind(period_text), services=tuple(services), member_cap=cap
    )


def parse_packages(value: object, known: Mapping[int, RatingGroup]) -> Mapping[str, Package]:
    """The catalog's ``[[packages]]`` (raises `CatalogError` with the key path)."""
    packages: dict[str, Package] = {}
    for i, item in enumerate(_list(value, "packages")):
        package = _package(item, f"packages[{i}]", known)
        if package.name in packages:
            raise CatalogError(f"packages[{i}].name", f"duplicate package {package.name!r}")
        packages[package.name] = package
    return MappingProxyType(packages)


# --- apportioning ---------------------------------------------------------------------------


def largest_remainder(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`total` (>= 0) divided among the keys in proportion to their weights (>= 0, not all 0):
    each gets the floor of ``total * weight / sum``, and what is left (fewer micro-units than
    there are keys) goes one each to the largest remainders, equal remainders by key in code
    point order. Exact sum; each part within one of its exact value; order-independent."""
    whole = sum(weights.values())
    if total < 0 or whole <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("largest_remainder needs total >= 0 and weights >= 0 with a positive sum")
    parts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights.items():
        part, rest = divmod(total * weight, whole)
        parts[key] = part
        remainders.append((-rest, key))
    left = total - sum(parts.values())
    for _, key in sorted(remainders)[:left]:
        parts[key] += 1
    return parts


def apportion(
    package: Package,
    usage: Mapping[str, Mapping[str, int]],
    presence: Mapping[str, int],
) -> dict[str, dict[str, int]]:
    """Each member's share of the fee per service, in micro-units (module docstring).

    `presence`: every member of the period with the time (ms) it was a member during it;
    `usage`: member -> service name -> units used in the period (absent: none). A member that
    used a service but is not in `presence` is not apportioned anything. If nobody used a
    service and every presence is 0 (members for no time at all), it is split equally."""
    members = sorted(presence)
    shares: dict[str, dict[str, int]] = {m: {} for m in members}
    if not members:
        return shares
    for service in package.services:
        used = {m: usage.get(m, {}).get(service.name, 0) for m in members}
        if sum(used.values()) > 0:
            weights = used
        elif sum(presence[m] for m in members) > 0:
            weights = {m: presence[m] for m in members}
        else:
            weights = dict.fromkeys(members, 1)
        for member, amount in largest_remainder(service.share, weights).items():
            shares[member][service.name] = amount
    return shares
