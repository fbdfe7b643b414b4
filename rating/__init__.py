"""Pure rating: catalog, money, price and inverse price. No I/O.

The charging layer loads a ``Catalog`` with ``parse_catalog`` (TOML text or a parsed dict; the
file is read in ``ocs.edge.catalog_files``), looks a group up with ``Catalog.rating_group`` and
calls the engine functions below. Money is int micro-units, time is int epoch seconds (UTC).
"""

from rating.catalog import parse_catalog
from rating.engine import (
    Charge,
    ChargePart,
    affordable,
    billed_units,
    dearest_rates,
    next_tariff_change,
    price,
    price_at,
    price_dearest,
    price_event,
    rates_at,
)
from rating.errors import CatalogError
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
from rating.money import (
    MICRO,
    div_ceil,
    div_floor,
    format_exact,
    format_money,
    parse_money,
    unit_value,
)
from rating.tariff import Rate

__all__ = [
    "MICRO",
    "AccountPolicy",
    "Billing",
    "Catalog",
    "CatalogError",
    "CdrPolicy",
    "Charge",
    "ChargePart",
    "Currency",
    "FinalUnitAction",
    "GrantPolicy",
    "Modifier",
    "Period",
    "Promotion",
    "Rate",
    "RatingGroup",
    "RedirectAddressType",
    "RedirectServer",
    "Service",
    "Tier",
    "Unit",
    "Weekday",
    "affordable",
    "billed_units",
    "dearest_rates",
    "div_ceil",
    "div_floor",
    "format_exact",
    "format_money",
    "next_tariff_change",
    "parse_catalog",
    "parse_money",
    "price",
    "price_at",
    "price_dearest",
    "price_event",
    "rates_at",
    "unit_value",
]
