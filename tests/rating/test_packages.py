"""The catalog's `[[packages]]` and the apportioning of a package fee (rating/packages.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import CatalogError, parse_catalog
from rating.model import Unit
from rating.packages import Package, PackageService, apportion, largest_remainder
from rating.periods import PeriodKind

BASE = """
version = 1
[currency]
code = 978
alpha = "EUR"
exponent = 2
[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10, 11]
[[services]]
context_id = "32260@3gpp.org"
rating_groups = [40]
[[rating_groups]]
id = 10
unit = "octets"
price = "0.01"
block = "1 MiB"
grant = { quantum = "10 MiB", validity_time = "1 h" }
[[rating_groups]]
id = 11
unit = "octets"
price = "0.02"
block = "1 MiB"
grant = { quantum = "10 MiB", validity_time = "1 h" }
[[rating_groups]]
id = 40
unit = "seconds"
price = "0.01"
block = "60 s"
grant = { quantum = "10 min", validity_time = "1 h" }
"""

FAMILY = """
[[packages]]
name = "family"
fee = "50.00"
period = "monthly"
member_cap = "30.00"
[[packages.services]]
name = "voice"
rating_groups = [40]
share = "20.00"
[[packages.services]]
name = "data"
rating_groups = [10, 11]
share = "30.00"
"""


def test_a_package_is_parsed() -> None:
    catalog = parse_catalog(BASE + FAMILY)
    family = catalog.packages["family"]
    assert family.fee == 50_000_000
    assert family.period is PeriodKind.MONTHLY
    assert family.member_cap == 30_000_000
    assert [(s.name, s.rating_groups, s.share, s.unit) for s in family.services] == [
        ("voice", (40,), 20_000_000, Unit.SECONDS),
        ("data", (10, 11), 30_000_000, Unit.OCTETS),
    ]
    assert family.service_of(11) is family.services[1]
    assert family.service_of(99) is None


def test_a_catalog_without_packages_has_none() -> None:
    assert dict(parse_catalog(BASE).packages) == {}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (('share = "30.00"', 'share = "31.00"'), "packages[0].services"),
        (("rating_groups = [10, 11]", "rating_groups = [10, 40]"), "rating_groups[1]"),
        (("rating_groups = [10, 11]", "rating_groups = [10, 99]"), "rating_groups[1]"),
        (('period = "monthly"', 'period = "once"'), "packages[0].period"),
        (('fee = "50.00"', "fee = 50"), "packages[0].fee"),
        (('member_cap = "30.00"', 'member_cap = "-1"'), "packages[0].member_cap"),
    ],
)
def test_a_bad_package_is_refused_with_its_path(change: tuple[str, str], path: str) -> None:
    with pytest.raises(CatalogError) as refused:
        parse_catalog(BASE + FAMILY.replace(*change))
    assert path in str(refused.value)


def test_a_rating_group_is_in_one_service_of_a_package() -> None:
    twice = FAMILY.replace("rating_groups = [40]", "rating_groups = [10]")
    with pytest.raises(CatalogError, match="another service"):
        parse_catalog(BASE + twice)


# --- largest remainder ---------------------------------------------------------------------

ids = st.text(alphabet="abcdef", min_size=1, max_size=4)
weights = st.dictionaries(ids, st.integers(0, 10**12), min_size=1, max_size=8).filter(
    lambda w: sum(w.values()) > 0
)


@settings(deadline=None)
@given(st.integers(0, 10**15), weights)
def test_largest_remainder_is_exact_close_and_order_independent(
    total: int, w: dict[str, int]
) -> None:
    parts = largest_remainder(total, w)
    assert sum(parts.values()) == total
    whole = sum(w.values())
    for key, part in parts.items():
        exact = Fraction(total * w[key], whole)
        assert abs(part - exact) < 1
    assert largest_remainder(total, dict(reversed(list(w.items())))) == parts


def test_equal_remainders_go_to_the_smaller_account_ids() -> None:
    # 10 / 3 = 3 each, 1 left: the remainders tie, "a" comes first
    assert largest_remainder(10, {"c": 1, "a": 1, "b": 1}) == {"a": 4, "b": 3, "c": 3}
    # 11 / 3: 2 left, to "a" and "b"
    assert largest_remainder(11, {"c": 1, "b": 1, "a": 1}) == {"a": 4, "b": 4, "c": 3}


# --- apportion -------------------------------------------------------------------------------

PACKAGE = Package(
    name="p",
    fee=50_000_000,
    period=PeriodKind.MONTHLY,
    services=(
        PackageService(name="voice", rating_groups=(40,), share=20_000_000, unit=Unit.SECONDS),
        PackageService(name="data", rating_groups=(10,), share=30_000_000, unit=Unit.OCTETS),
    ),
)

members = st.lists(ids, min_size=1, max_size=6, unique=True)


@settings(deadline=None)
@given(
    members.flatmap(
        lambda ms: st.tuples(
            st.just(ms),
            st.fixed_dictionaries(
                {
                    m: st.fixed_dictionaries(
                        {"voice": st.integers(0, 10**9), "data": st.integers(0, 10**12)}
                    )
                    for m in ms
                }
            ),
            st.fixed_dictionaries({m: st.integers(0, 31 * 86_400_000) for m in ms}),
        )
    )
)
def test_apportion_adds_up_is_close_and_order_independent(
    drawn: tuple[list[str], dict[str, dict[str, int]], dict[str, int]],
) -> None:
    ms, usage, presence = drawn
    shares = apportion(PACKAGE, usage, presence)
    assert sum(sum(s.values()) for s in shares.values()) == PACKAGE.fee
    for service in PACKAGE.services:
        got = {m: shares[m][service.name] for m in ms}
        assert sum(got.values()) == service.share
        used = {m: usage[m][service.name] for m in ms}
        basis = used if sum(used.values()) else presence
        if sum(basis.values()) == 0:
            basis = dict.fromkeys(ms, 1)
        for m in ms:
            exact = Fraction(service.share * basis[m], sum(basis.values()))
            assert abs(got[m] - exact) < 1
    reordered = apportion(
        PACKAGE, dict(reversed(list(usage.items()))), dict(reversed(list(presence.items())))
    )
    assert reordered == shares


def test_the_family_of_three() -> None:
    """docs/accounts.md: voice 20 EUR by minutes, data 30 EUR by octets; carol never calls."""
    month = 30 * 86_400_000
    usage = {
        "alice": {"voice": 1_800, "data": 2_000},
        "bob": {"voice": 1_200, "data": 3_000},
        "carol": {"data": 1_000},
    }
    shares = apportion(PACKAGE, usage, dict.fromkeys(usage, month))
    # voice: 20,000,000 x 1800/3000 = 12,000,000; x 1200/3000 = 8,000,000; carol 0
    # data: 30,000,000 x 2000/6000 = 10,000,000; x 3000/6000 = 15,000,000; x 1000/6000 = 5,000,000
    assert shares == {
        "alice": {"voice": 12_000_000, "data": 10_000_000},
        "bob": {"voice": 8_000_000, "data": 15_000_000},
        "carol": {"voice": 0, "data": 5_000_000},
    }


def test_an_unused_service_is_split_by_time_of_membership() -> None:
    # nobody called: voice 20 EUR by presence 2:1:1 -> 10, 5, 5 EUR
    shares = apportion(PACKAGE, {}, {"a": 20, "b": 10, "c": 10})
    assert {m: s["voice"] for m, s in shares.items()} == {
        "a": 10_000_000,
        "b": 5_000_000,
        "c": 5_000_000,
    }
