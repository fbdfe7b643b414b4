"""The catalog's data model: immutable, exact (ints and Fractions, never floats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

from rating.counters import CounterDef
from rating.devices import DeviceClass  # IoT profile (issue 15): the catalog's device classes
from rating.load import LoadPolicy
from rating.loans import LoanPolicy
from rating.money import ceil_to_multiple, div_floor, floor_to_multiple
from rating.tariff import Tariff

if TYPE_CHECKING:
    from rating.offers import Offer
    from rating.packages import Package
    from rating.policies import StatusPolicies


class Unit(Enum):
    """What a rating group counts. The value is the catalog spelling."""

    OCTETS = "octets"
    SECONDS = "seconds"
    UNITS = "units"

    @property
    def avp(self) -> str:
        """The unit-map key carrying this unit (WIRE.md 5.1)."""
        return _UNIT_AVP[self]


_UNIT_AVP = {
    Unit.OCTETS: "CC-Total-Octets",
    Unit.SECONDS: "CC-Time",
    Unit.UNITS: "CC-Service-Specific-Units",
}


class FinalUnitAction(IntEnum):
    TERMINATE = 0
    REDIRECT = 1
    RESTRICT_ACCESS = 2


class RedirectAddressType(IntEnum):
    IPV4_ADDRESS = 0
    IPV6_ADDRESS = 1
    URL = 2
    SIP_URI = 3


class Weekday(IntEnum):
    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Currency:
    code: int
    """ISO 4217 numeric code (EUR = 978): the Diameter ``Currency-Code``."""
    alpha: str | None = None
    """ISO 4217 letters, for display only."""
    exponent: int = 2
    """Minor-unit exponent (EUR 2), for display; money itself is always micro-units."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Modifier:
    """A price change: either a replacement price per block (micro-units) or an exact factor
    applied to the price in force."""

    price: int | None = None
    factor: Fraction | None = None

    def apply(self, per_block: Fraction) -> Fraction:
        if self.price is not None:
            return Fraction(self.price)
        assert self.factor is not None
        return per_block * self.factor


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A weekly time-of-day window in local time: ``start`` <= local seconds-of-day < ``end`` on
    each of ``days``. ``end`` may be 86400 (24:00)."""

    name: str
    days: tuple[Weekday, ...]
    start: int
    end: int
    modifier: Modifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """From ``start`` cumulative billed units of a session on, ``modifier`` applies."""

    start: int
    modifier: Modifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Promotion:
    """A price modifier in force over [start, end) (epoch seconds, UTC)."""

    name: str
    start: int
    end: int
    modifier: Modifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Billing:
    """Billing increments: usage is billed by ``first`` units, then by ``increment`` units,
    counted cumulatively over a session (``first = 60, increment = 1``: a minute, then per
    second; ``first = increment = 1024``: per started KiB)."""

    first: int
    increment: int

    def billed(self, used: int) -> int:
        """Cumulative billed units for ``used`` cumulative units (rounds up,
        ``ceil_to_multiple``)."""
        if used <= 0:
            return 0
        if used <= self.first:
            return self.first
        return self.first + ceil_to_multiple(used - self.first, self.increment)

    def grid_floor(self, position: int) -> int:
        """Largest billable position <= ``position`` (rounds down, ``floor_to_multiple``)."""
        if position < self.first:
            return 0
        return self.first + floor_to_multiple(position - self.first, self.increment)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectServer:
    address_type: RedirectAddressType
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantPolicy:
    quantum: int
    """Default Granted-Service-Unit, in the rating group's unit."""
    validity_time: int
    """Validity-Time, seconds."""
    threshold: Fraction
    """Quota threshold as an exact fraction of the grant (0 = none)."""
    quota_holding_time: int
    """Quota-Holding-Time, seconds (0 = none)."""
    final_unit_action: FinalUnitAction
    redirect_server: RedirectServer | None = None
    filter_ids: tuple[str, ...] = ()

    def threshold_units(self, granted: int) -> int:
        """The threshold for a grant of ``granted`` units (rounds down, ``div_floor``)."""
        return div_floor(granted * self.threshold.numerator, self.threshold.denominator)


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingGroup:
    id: int
    name: str
    unit: Unit
    price: int
    """Base price per ``block`` units, micro-units."""
    block: int
    billing: Billing
    setup_fee: int
    """One-off fee per session, micro-units; the session layer charges it once."""
    zero_rated: bool
    """True when no usage can ever cost anything (the server answers 4011)."""
    timezone: str
    periods: tuple[Period, ...]
    tiers: tuple[Tier, ...]
    promotions: tuple[Promotion, ...]
    linked_rating_groups: tuple[int, ...]
    grant: GrantPolicy | None
    """None only for zero-rated groups."""
    tariff: Tariff = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    context_id: str
    name: str
    rating_groups: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountPolicy:
    usage_thresholds: tuple[int, ...] = ()
    """Money (micro-units, increasing) charged across all of an account's sessions at which
    the server re-authorises the account's sessions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CdrPolicy:
    volume_limit: int | None = None
    """Close a partial record once a record holds this many octets."""
    time_limit: int | None = None
    """Close a partial record once a record is this many seconds old."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    version: int
    name: str
    currency: Currency
    timezone: str
    services: Mapping[str, Service]
    rating_groups: Mapping[int, RatingGroup]
    account: AccountPolicy
    cdr: CdrPolicy
    offers: Mapping[str, Offer] = field(default_factory=lambda: MappingProxyType({}))
    """Offers by name (rating/offers.py, docs/catalog.md *Offers*)."""
    # loans (rating/loans.py, `[loan_policy]`): None when the catalog offers no loans
    loan_policy: LoanPolicy | None = None
    # groups: the `[[packages]]` by name (rating/packages.py)
    packages: Mapping[str, Package] = field(default_factory=lambda: MappingProxyType({}))
    load: LoadPolicy | None = None
    """Load-modulated prices (``[load]``, rating/load.py); None: prices ignore load."""
    # status-policy: the `[status]` section (rating/policies.py, imported for the type checker
    # only, as offers and packages are: this compiled module does not import it; read it with
    # `rating.policies.status_policies(catalog)`). None: the catalog has none. (Typed `object`,
    # the compiled build failed to import: mypyc's dataclass fields do not take `object`.)
    status: StatusPolicies | None = None
    # IoT low-signalling profile (rating/devices.py, docs/catalog.md *Device classes*)
    device_classes: tuple[DeviceClass, ...] = ()
    # usage counters (`[[counters]]`, rating/counters.py; docs/catalog.md *Usage counters*)
    counters: tuple[CounterDef, ...] = ()

    def service(self, service_context_id: str) -> Service | None:
        """The service for a Service-Context-Id. An exact match wins; otherwise the 3GPP
        prefixes are dropped (``"8.32251@3gpp.org"`` finds ``"32251@3gpp.org"``)."""
        found = self.services.get(service_context_id)
        if found is None:
            local, at, domain = service_context_id.rpartition("@")
            if at and "." in local:
                found = self.services.get(f"{local.rsplit('.', 1)[1]}@{domain}")
        return found

    def rating_group(self, service_context_id: str, rating_group: int) -> RatingGroup | None:
        """The rating group if the service allows it, else None (-> 5031 RATING_FAILED)."""
        service = self.service(service_context_id)
        if service is None or rating_group not in service.rating_groups:
            return None
        return self.rating_groups.get(rating_group)

    def is_zero_rated(self, rating_group: int) -> bool:
        """True for a known rating group that never costs anything (-> 4011)."""
        group = self.rating_groups.get(rating_group)
        return group is not None and group.zero_rated
