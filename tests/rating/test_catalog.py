"""Catalog parsing: what is accepted, and every refusal names its key path."""

from __future__ import annotations

import copy
from fractions import Fraction
from typing import Any

import pytest

from ocs.edge.catalog_files import demo_catalog_text, load_catalog_file
from rating import CatalogError, Unit, Weekday, parse_catalog
from rating.money import (
    div_ceil,
    div_floor,
    format_exact,
    format_money,
    parse_money,
    parse_ratio,
    unit_value,
)
from tests.rating.util import MiB, ts

BASE_TOML = """
timezone = "Europe/Paris"

[currency]
code = 978

[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10]

[[rating_groups]]
id = 10
unit = "octets"
price = "0.02"
block = "1 MiB"
increment = "1 KiB"

[rating_groups.grant]
quantum = "10 MiB"

[[rating_groups.periods]]
name = "night"
days = ["weekdays"]
start = 00:00:00
end = "06:00"
price = "0.01"
"""


def base() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(BASE_TOML)


def refusal(data: dict[str, Any] | str) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse_catalog(data)
    return info.value


def test_base_parses() -> None:
    catalog = parse_catalog(BASE_TOML)
    rg = catalog.rating_groups[10]
    assert rg.unit is Unit.OCTETS
    assert (rg.price, rg.block, rg.billing.first, rg.billing.increment) == (20_000, MiB, 1024, 1024)
    assert rg.periods[0].days == (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)
    assert (rg.periods[0].start, rg.periods[0].end) == (0, 6 * 3600)
    assert rg.timezone == "Europe/Paris"
    assert rg.grant is not None and rg.grant.validity_time == 3600  # the default
    assert catalog.rating_group("32251@3gpp.org", 10) is rg


def test_demo_catalog_loads_from_package_data() -> None:
    catalog = load_catalog_file(None)
    assert catalog.name == "demo"
    assert sorted(catalog.rating_groups) == [10, 20, 30, 40, 50]
    assert set(catalog.services) == {"32251@3gpp.org", "32274@3gpp.org", "32260@3gpp.org"}
    assert parse_catalog(demo_catalog_text()).rating_groups[40].setup_fee == 50_000


def test_file_errors(tmp_path: Any) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog_file(str(tmp_path / "missing.toml"))
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"name = '\xe9'\n")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog_file(str(path))


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of ``data`` with ``a.b[0].c`` set to ``value`` (``...`` deletes the key)."""
    data = copy.deepcopy(data)
    node: Any = data
    keys: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        keys.append(name)
        if rest:
            keys.extend(int(i) for i in rest.rstrip("]").split("]["))
    for key in keys[:-1]:
        node = node[key]
    if value is ...:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


OVERLAP = {"name": "x", "days": ["mon"], "start": "05:00", "end": "07:00", "price": "0.03"}
PROMO = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "factor": "0.5"}


R = "rating_groups[0]"
P = "rating_groups[0].periods[0]"
G = "rating_groups[0].grant"


@pytest.mark.parametrize(
    ("path", "value", "error_path", "fragment"),
    [
        (R + ".unit", "bytes", R + ".unit", "unknown unit 'bytes'"),
        (R + ".price", "-0.02", R + ".price", "negative"),
        (R + ".price", 0.02, R + ".price", "floats are not allowed"),
        (R + ".price", 2, R + ".price", "decimal string"),
        (R + ".price", "0.0000001", R + ".price", "more than 6"),
        (R + ".price", "abc", R + ".price", "not a decimal"),
        (R + ".price", ..., R + ".price", "missing"),
        (R + ".setup_fee", "-1", R + ".setup_fee", "negative"),
        (R + ".block", 0, R + ".block", ">= 1"),
        (R + ".block", "1 min", R + ".block", "unknown suffix 'min'"),
        (R + ".increment", -1, R + ".increment", ">= 1"),
        (R + ".colour", "red", R + ".colour", "unknown key"),
        (R + ".id", "10", R + ".id", "expected an integer"),
        (R + ".id", True, R + ".id", "expected an integer"),
        (R + ".timezone", "Mars/Olympus", R + ".timezone", "unknown"),
        ("timezone", "Nowhere/City", "timezone", "unknown time zone"),
        ("currency.code", 1000, "currency.code", "<= 999"),
        ("currency", ..., "currency", "missing"),
        ("currency.alpha", "eur", "currency.alpha", "3 capital letters"),
        ("version", 2, "version", "unsupported"),
        (P + ".start", "25:00", P + ".start", "valid"),
        (P + ".start", "24:00", P + ".start", "end"),
        (P + ".end", "00:00", P + ".end", "midnight"),
        (P + ".days", ["mon", "fun"], P + ".days[1]", "unknown day"),
        (P + ".days", ["mon", "weekdays"], P + ".days[1]", "twice"),
        (P + ".days", [], P + ".days", "at least one"),
        (P + ".factor", "2", P, "exactly one"),
        (P + ".price", ..., P, "exactly one"),
        (
            R + ".periods[1]",
            OVERLAP,
            R + ".periods[1]",
            "overlaps rating_groups[0].periods[0] on mon",
        ),
        (
            R + ".tiers",
            [{"from": "2 MiB", "factor": "0.5"}, {"from": "1 MiB", "factor": "0.1"}],
            R + ".tiers[1].from",
            "increasing",
        ),
        (R + ".tiers", [{"from": "1 MiB", "factor": "-0.5"}], R + ".tiers[0].factor", "negative"),
        (R + ".tiers", [{"from": "1 MiB", "factor": 0.5}], R + ".tiers[0].factor", "floats"),
        (
            R + ".promotions",
            [dict(PROMO, end="2025-01-01T00:00:00Z")],
            R + ".promotions[0].end",
            "after start",
        ),
        (
            R + ".promotions",
            [dict(PROMO, start="2026-01-01T00:00:00")],
            R + ".promotions[0].start",
            "offset",
        ),
        (
            R + ".promotions",
            [PROMO, dict(PROMO, start="2026-01-31T00:00:00Z")],
            R + ".promotions[1]",
            "overlaps rating_groups[0].promotions[0]",
        ),
        (G, ..., G, "missing"),
        (G + ".quantum", ..., G + ".quantum", "missing"),
        (G + ".threshold", "1.5", G + ".threshold", "between 0 and 1"),
        (G + ".final_unit_action", "explode", G + ".final_unit_action", "unknown action"),
        (G + ".final_unit_action", "redirect", G + ".redirect_server", "required"),
        (G + ".final_unit_action", "restrict_access", G + ".filter_ids", "required"),
        (G + ".redirect_server", "http://x/", G + ".redirect_server", "only allowed"),
        (G + ".validity_time", "1 MiB", G + ".validity_time", "unknown suffix"),
        (
            R + ".linked_rating_groups",
            [11],
            R + ".linked_rating_groups[0]",
            "unknown rating group 11",
        ),
        (R + ".linked_rating_groups", [10], R + ".linked_rating_groups[0]", "itself"),
        (R + ".zero_rated", "yes", R + ".zero_rated", "true or false"),
        (R + ".zero_rated", True, R + ".periods", "zero-rated"),
        (
            "rating_groups[1]",
            {"id": 10, "unit": "units", "price": "1", "grant": {"quantum": 1}},
            "rating_groups[1].id",
            "duplicate rating group 10",
        ),
        ("rating_groups", [], "rating_groups", "at least one"),
        (
            "services[0].rating_groups",
            [10, 12],
            "services[0].rating_groups[1]",
            "unknown rating group 12",
        ),
        (
            "services[1]",
            {"context_id": "32251@3gpp.org", "rating_groups": []},
            "services[1].context_id",
            "duplicate service",
        ),
        ("account", {"usage_thresholds": ["5", "2"]}, "account.usage_thresholds[1]", "increasing"),
        ("account", {"usage_thresholds": ["0"]}, "account.usage_thresholds[0]", "positive"),
        ("cdr", {"volume_limit": "10 min"}, "cdr.volume_limit", "unknown suffix"),
        ("cdr", {"time_limit": 0}, "cdr.time_limit", ">= 1"),
        ("cdr", {"records": 3}, "cdr.records", "unknown key"),
    ],
)
def test_refusals_name_the_key_path(path: str, value: Any, error_path: str, fragment: str) -> None:
    data = base()
    if path == R + ".periods[1]":
        data["rating_groups"][0]["periods"].append(value)
    elif path == "rating_groups[1]" or path == "services[1]":
        section, _ = path.split("[")
        data[section].append(value)
    else:
        data = _set(data, path, value)
    error = refusal(data)
    assert error.path == error_path, str(error)
    assert fragment in error.message, str(error)
    assert str(error).startswith(f"{error_path}: ")


def test_bad_toml_is_refused_with_position() -> None:
    error = refusal("rating_groups = [\n  {id = 1,\n")
    assert error.path == ""
    assert "invalid TOML" in error.message
    assert "line" in error.message


def test_toml_float_in_text_is_refused() -> None:
    error = refusal(BASE_TOML.replace('price = "0.02"', "price = 0.02"))
    assert error.path == "rating_groups[0].price"


def test_overlap_on_a_shared_day_only() -> None:
    data = base()
    data["rating_groups"][0]["periods"].append(dict(OVERLAP, days=["sat"]))
    parse_catalog(data)  # Saturday has no night period: no overlap
    data["rating_groups"][0]["periods"].append(dict(OVERLAP, days=["weekend", "wed"]))
    assert refusal(data).path == "rating_groups[0].periods[2]"
    # Touching periods do not overlap.
    data = base()
    data["rating_groups"][0]["periods"].append(dict(OVERLAP, start="06:00", end="08:00"))
    parse_catalog(data)


def test_quantities_and_instants() -> None:
    data = base()
    rg = data["rating_groups"][0]
    rg["tiers"] = [{"from": "1 GiB", "factor": "1/3"}, {"from": "2GB", "price": "0"}]
    rg["promotions"] = [
        {"name": "a", "start": ts("2026-01-01T00:00:00Z"), "end": "2026-01-02T01:00:00+01:00",
         "price": "0.001"},
    ]  # fmt: skip
    rg["grant"] = {
        "quantum": 5000,
        "validity_time": "2 h",
        "quota_holding_time": "1 min",
        "threshold": "1/4",
        "final_unit_action": "restrict_access",
        "filter_ids": ["a", "b"],
    }
    group = parse_catalog(data).rating_groups[10]
    assert [t.start for t in group.tiers] == [1024**3, 2 * 1000**3]
    assert group.tiers[0].modifier.factor == Fraction(1, 3)
    assert group.tiers[1].modifier.price == 0
    assert (group.promotions[0].start, group.promotions[0].end) == (
        ts("2026-01-01T00:00:00Z"),
        ts("2026-01-02T00:00:00Z"),
    )
    assert group.grant is not None
    assert (group.grant.quantum, group.grant.validity_time) == (5000, 7200)
    assert (group.grant.quota_holding_time, group.grant.threshold) == (60, Fraction(1, 4))
    assert group.grant.filter_ids == ("a", "b")


def test_zero_rated_group_needs_no_price_or_grant() -> None:
    data = base()
    data["rating_groups"].append({"id": 11, "unit": "octets", "zero_rated": True})
    group = parse_catalog(data).rating_groups[11]
    assert group.zero_rated and group.grant is None and group.price == 0
    data["rating_groups"][1]["price"] = "0.01"
    assert refusal(data).path == "rating_groups[1].price"


# -- money helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "floor", "ceil"),
    [(7, 2, 3, 4), (6, 2, 3, 3), (-7, 2, -4, -3), (0, 5, 0, 0), (1, 1_000_000, 0, 1)],
)
def test_divisions(a: int, b: int, floor: int, ceil: int) -> None:
    assert div_floor(a, b) == floor
    assert div_ceil(a, b) == ceil


def test_division_by_zero() -> None:
    with pytest.raises(ZeroDivisionError):
        div_ceil(1, 0)
    with pytest.raises(ZeroDivisionError):
        div_floor(1, -1)


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("0.02", 20_000),
        ("12", 12_000_000),
        ("0.000001", 1),
        ("1.5", 1_500_000),
        ("0.02000", 20_000),
    ],
)
def test_parse_money(text: str, micro: int) -> None:
    assert parse_money(text) == micro


@pytest.mark.parametrize("text", ["-1", "1e3", "0.0000001", ".5", "1.", "", " 1", "0x10", "1,5"])
def test_parse_money_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money(text)


def test_parse_ratio_and_formatting() -> None:
    assert parse_ratio("0.2") == Fraction(1, 5)
    assert parse_ratio("1/3") == Fraction(1, 3)
    assert parse_ratio("2") == 2
    for bad in ("1/0", "-0.5", "0.5.1", "x"):
        with pytest.raises(ValueError):
            parse_ratio(bad)
    assert format_money(20_000) == "0.020000"
    assert format_money(-1_500_000, 2) == "-1.50"
    assert format_money(1, 2) == "0.01"  # display rounds up
    assert format_exact(20_000) == "0.02"
    assert format_exact(5_000) == "0.005"
    assert format_exact(12_000_000, 0) == "12"
    assert unit_value(20_000) == (2, -2)
    assert unit_value(1_500_000) == (15, -1)
    assert unit_value(7) == (7, -6)
    assert unit_value(0) == (0, 0)
    assert unit_value(-30_000_000) == (-30, 0)
