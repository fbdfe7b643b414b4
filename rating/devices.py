"""Device classes of the IoT low-signalling profile: the catalog's `[[device_classes]]`.

Pure: parsed from the catalog's table, no clock, no I/O (docs/catalog.md, *Device classes*).

A device is in a class when the INITIAL of its session carries a `Subscription-Id` of type
END_USER_IMSI (1) whose data begins with one of the class's `imsi_prefixes` (the first class
listed wins). Within the class's threshold set (at most `max_octets` of the class's rating
groups and `max_reports` credit-control requests per `period`), the charging core
(`ocs.core.iot`) grants such a device what is left of `max_octets` for the rest of the period,
valid until the period's end, with the class's `quota_holding_time`, and reserves at most
`reserve` of its price; its usage goes into one CDR per period. Periods are fixed lengths
aligned on the Unix epoch (UTC): with `period = "1 d"` they run from 00:00 UTC to 00:00 UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rating.errors import CatalogError
from rating.money import parse_money

if TYPE_CHECKING:  # rating.model imports this module (the catalog's field)
    from rating.model import RatingGroup

__all__ = ["DeviceClass", "parse_device_classes"]

_KEYS: Final = (
    "name",
    "imsi_prefixes",
    "rating_groups",
    "period",
    "max_octets",
    "max_reports",
    "reserve",
    "quota_holding_time",
)
_OCTETS: Final = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SECONDS: Final = {"": 1, "s": 1, "min": 60, "h": 3600, "d": 86400}
_QUANTITY_RE: Final = re.compile(r"([0-9]+)\s*([A-Za-z]*)")
#: The longest period (and holding time): 31 days.
MAX_PERIOD_S: Final = 31 * 86400
#: The largest threshold set: 2^40 octets (a unit AVP's domain), 2^20 reports.
MAX_OCTETS: Final = 2**40
MAX_REPORTS: Final = 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceClass:
    name: str
    imsi_prefixes: tuple[str, ...]
    rating_groups: tuple[int, ...]
    """The groups the profile applies to (octet groups); others are charged as usual."""
    period_s: int
    max_octets: int
    """Octets of `rating_groups` a device may use per period within the profile."""
    max_reports: int
    """Credit-control requests a device's sessions may send per period within the profile."""
    reserve: int
    """The most money (micro-units) one grant of the profile reserves."""
    quota_holding_time_s: int

    def period_start_s(self, at_s: int) -> int:
        return at_s - at_s % self.period_s

    def matches(self, imsi: str) -> bool:
        return any(imsi.startswith(p) for p in self.imsi_prefixes)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _quantity(value: object, path: str, suffixes: Mapping[str, int], hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CatalogError(path, f"expected an integer or a quantity string, got {value!r}")
    if isinstance(value, int):
        amount = value
    else:
        match = _QUANTITY_RE.fullmatch(value.strip())
        if match is None or match.group(2) not in suffixes:
            known = ", ".join(s for s in suffixes if s)
            raise CatalogError(path, f"not a quantity: {value!r} (suffixes: {known})")
        amount = int(match.group(1)) * suffixes[match.group(2)]
    if not 1 <= amount <= hi:
        raise CatalogError(path, f"must be between 1 and {hi}, got {amount}")
    return amount


def _device_class(value: object, path: str, groups: Mapping[int, RatingGroup]) -> DeviceClass:
    if not isinstance(value, Mapping):
        raise CatalogError(path, "expected a table ([[device_classes]])")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise CatalogError(_at(path, unknown[0]), f"unknown key (allowed: {', '.join(_KEYS)})")
    for key in ("name", "imsi_prefixes", "rating_groups", "max_octets", "max_reports", "reserve"):
        if key not in value:
            raise CatalogError(_at(path, key), "missing")
    name = value["name"]
    if not isinstance(name, str) or not name:
        raise CatalogError(_at(path, "name"), "expected a non-empty string")
    prefixes = value["imsi_prefixes"]
    pp = _at(path, "imsi_prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise CatalogError(pp, "expected a non-empty list of digit strings")
    for j, prefix in enumerate(prefixes):
        if not isinstance(prefix, str) or not prefix.isdigit() or len(prefix) > 15:
            raise CatalogError(f"{pp}[{j}]", f"expected 1 to 15 digits, got {prefix!r}")
    rgs = value["rating_groups"]
    rp = _at(path, "rating_groups")
    if not isinstance(rgs, list) or not rgs:
        raise CatalogError(rp, "expected a non-empty list of rating group ids")
    for j, rg in enumerate(rgs):
        group = groups.get(rg) if isinstance(rg, int) and not isinstance(rg, bool) else None
        if group is None:
            raise CatalogError(f"{rp}[{j}]", f"unknown rating group {rg!r}")
        if group.unit.value != "octets" or group.grant is None:
            raise CatalogError(f"{rp}[{j}]", f"rating group {rg} is not a charged octet group")
    reports = value["max_reports"]
    if isinstance(reports, bool) or not isinstance(reports, int) or not 1 <= reports <= MAX_REPORTS:
        raise CatalogError(_at(path, "max_reports"), f"expected 1 to {MAX_REPORTS}")
    reserve = value["reserve"]
    if not isinstance(reserve, str):
        raise CatalogError(_at(path, "reserve"), 'money is a decimal string, e.g. "0.05"')
    try:
        reserve_amount = parse_money(reserve)
    except ValueError as exc:
        raise CatalogError(_at(path, "reserve"), str(exc)) from None
    if reserve_amount <= 0:
        raise CatalogError(_at(path, "reserve"), "must be positive")
    period_s = _quantity(value.get("period", "1 d"), _at(path, "period"), _SECONDS, MAX_PERIOD_S)
    return DeviceClass(
        name=name,
        imsi_prefixes=tuple(prefixes),
        rating_groups=tuple(rgs),
        period_s=period_s,
        max_octets=_quantity(value["max_octets"], _at(path, "max_octets"), _OCTETS, MAX_OCTETS),
        max_reports=reports,
        reserve=reserve_amount,
        quota_holding_time_s=_quantity(
            value.get("quota_holding_time", period_s),
            _at(path, "quota_holding_time"),
            _SECONDS,
            MAX_PERIOD_S,
        ),
    )


def parse_device_classes(
    value: object, path: str, groups: Mapping[int, RatingGroup]
) -> tuple[DeviceClass, ...]:
    """The catalog's `[[device_classes]]` (raises `CatalogError` with the key path)."""
    if not isinstance(value, list):
        raise CatalogError(path, "expected an array of tables ([[device_classes]])")
    classes: list[DeviceClass] = []
    for i, raw in enumerate(value):
        device_class = _device_class(raw, f"{path}[{i}]", groups)
        if any(c.name == device_class.name for c in classes):
            raise CatalogError(f"{path}[{i}].name", f"duplicate device class {device_class.name!r}")
        classes.append(device_class)
    return tuple(classes)
