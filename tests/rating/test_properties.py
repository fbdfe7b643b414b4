"""Hypothesis properties of the engine, over random catalogs.

* price(0) = 0;
* monotone in units at one tariff (``price_at``, ``price_dearest``, ``price`` over a window
  without a tariff change), whatever the prior units, tiers and increments;
* price(split at a change) = sum of the parts, and one report = the same usage in any number of
  reports at one tariff (CUMULATIVE_CEIL);
* inverse exactness: price(affordable(x)) <= x < price(affordable(x) + 1) at the dearest tariff
  of the window, and affordable(x) ends on an increment boundary;
* the timeline (memoised per UTC day) agrees with a direct, minute-by-minute computation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rating import (
    RatingGroup,
    affordable,
    next_tariff_change,
    price,
    price_at,
    price_dearest,
)
from tests.rating.util import one_group, ts

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
T0 = ts("2026-01-01T00:00:00Z")
T1 = ts("2026-01-15T00:00:00Z")  # two weeks: promotions and windows meet often
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _money(micro: int) -> str:
    whole, frac = divmod(micro, 1_000_000)
    return f"{whole}.{frac:06d}"


@st.composite
def modifiers(draw: st.DrawFn) -> dict[str, str]:
    if draw(st.booleans()):
        return {"price": _money(draw(st.integers(0, 200_000)))}
    num = draw(st.integers(0, 40))
    den = draw(st.integers(1, 12))
    return {"factor": f"{num}/{den}"}


@st.composite
def periods(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Up to three periods on random days, minute boundaries, non-overlapping by construction
    (each owns a slice of the day)."""
    count = draw(st.integers(0, 4))
    cuts = sorted(draw(st.sets(st.integers(0, 24 * 60), min_size=2 * count, max_size=2 * count)))
    result = []
    for i in range(count):
        start, end = cuts[2 * i], cuts[2 * i + 1]
        days = draw(st.sets(st.sampled_from(DAY_NAMES), min_size=1))
        period = {
            "days": sorted(days),
            "start": f"{start // 60:02d}:{start % 60:02d}",
            "end": f"{end // 60:02d}:{end % 60:02d}",
        }
        period.update(draw(modifiers()))
        result.append(period)
    return result


@st.composite
def promotions(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 3))
    cuts = sorted(
        draw(st.sets(st.integers(T0 // 60, T1 // 60), min_size=2 * count, max_size=2 * count))
    )
    result = []
    for i in range(count):
        promo: dict[str, Any] = {"start": cuts[2 * i] * 60, "end": cuts[2 * i + 1] * 60}
        promo.update(draw(modifiers()))
        result.append(promo)
    return result


@st.composite
def tiers(draw: st.DrawFn) -> list[dict[str, Any]]:
    starts = sorted(draw(st.sets(st.integers(1, 5_000), max_size=2)))
    result = []
    for start in starts:
        tier: dict[str, Any] = {"from": start}
        tier.update(draw(modifiers()))
        result.append(tier)
    return result


@st.composite
def groups(draw: st.DrawFn) -> RatingGroup:
    increment = draw(st.integers(1, 100))
    first = draw(st.one_of(st.just(increment), st.integers(1, 200)))
    return one_group(
        {
            "price": _money(draw(st.integers(1, 500_000))),
            "block": draw(st.sampled_from([1, 7, 60, 1000, 1024, 1 << 20])),
            "increment": increment,
            "first_increment": first,
            "periods": draw(periods()),
            "tiers": draw(tiers()),
            "promotions": draw(promotions()),
        },
        timezone=draw(st.sampled_from(ZONES)),
    )


instants = st.one_of(
    st.integers(T0, T1),
    st.sampled_from([ts("2026-03-29T00:30:00Z"), ts("2026-10-25T00:30:00Z")]),  # DST days
)
# Window lengths spread over scales (Hypothesis favours small integers on its own).
durations = st.sampled_from([3 * 86400, 86400, 6 * 3600, 3600, 60, 0]).flatmap(
    lambda scale: st.integers(0, scale // 2).map(lambda cut: scale - cut)
)
unit_counts = st.integers(0, 20_000)
priors = st.one_of(st.just(0), st.integers(0, 10_000))


@SETTINGS
@given(groups(), instants, durations, priors)
def test_price_of_nothing_is_nothing(rg: RatingGroup, start: int, span: int, prior: int) -> None:
    assert price(rg, 0, start, start + span, prior).total == 0
    assert price_at(rg, 0, start, prior).total == 0
    assert price_dearest(rg, 0, start, start + span, prior).total == 0


@SETTINGS
@given(groups(), instants, durations, unit_counts, st.integers(1, 3000), priors)
def test_monotone_in_units_at_one_tariff(
    rg: RatingGroup, start: int, span: int, units: int, more: int, prior: int
) -> None:
    end = start + span
    assert price_at(rg, units, start, prior).total <= price_at(rg, units + more, start, prior).total
    low = price_dearest(rg, units, start, end, prior).total
    assert low <= price_dearest(rg, units + more, start, end, prior).total
    if next_tariff_change(rg, start, end) is None:
        assert (
            price(rg, units, start, end, prior).total
            <= price(rg, units + more, start, end, prior).total
        )


@SETTINGS
@given(groups(), instants, unit_counts, st.lists(st.integers(0, 3000), max_size=6), priors)
def test_many_reports_cost_the_same_as_one(
    rg: RatingGroup, at: int, first: int, more: list[int], prior: int
) -> None:
    reports = [first, *more]
    whole = price_at(rg, sum(reports), at, prior).total
    total, used = 0, prior
    for units in reports:
        total += price_at(rg, units, at, used).total
        used += units
    assert total == whole


@SETTINGS
@given(groups(), instants, durations, unit_counts, priors)
def test_price_is_the_sum_of_its_parts(
    rg: RatingGroup, start: int, span: int, units: int, prior: int
) -> None:
    end = start + span
    charge = price(rg, units, start, end, prior)
    assert charge.total == sum(p.charge for p in charge.parts)
    assert sum(p.units for p in charge.parts) == units
    assert charge.billed_units == sum(p.billed_units for p in charge.parts)
    # Each time part re-priced on its own, at its start, with the units before it as prior.
    spans: dict[tuple[int, int], int] = {}
    for part in charge.parts:
        spans[(part.start, part.end)] = spans.get((part.start, part.end), 0) + part.units
    used, again = prior, 0
    for (t0, t1), part_units in spans.items():
        assert next_tariff_change(rg, t0, t1) is None
        again += price_at(rg, part_units, t0, used).total
        assert price(rg, part_units, t0, t1, used).total == price_at(rg, part_units, t0, used).total
        used += part_units
    assert again == charge.total
    # Split at the first change: the two halves, priced separately, add up to the whole.
    change = next_tariff_change(rg, start, end)
    event("tariff change in window" if change is not None else "one tariff")
    if change is not None:
        first = spans[(start, change)]
        before = price(rg, first, start, change, prior).total
        after = price(rg, units - first, change, end, prior + first).total
        assert before + after == charge.total
    # The dearest tariff bounds the actual one (up to one micro-unit of rounding per part).
    dearest = price_dearest(rg, units, start, end, prior)
    assert charge.total < dearest.total + len(charge.parts) + len(dearest.parts)


@SETTINGS
@given(groups(), instants, durations, st.integers(0, 5_000_000), priors)
def test_affordable_is_exact(
    rg: RatingGroup, start: int, span: int, amount: int, prior: int
) -> None:
    end = start + span
    units = affordable(rg, amount, start, end, prior)
    if units is None:
        # Unlimited: some tier's dearest rate is zero and the amount reaches it.
        assert price_dearest(rg, 10**9, start, end, prior).total <= amount
        return
    assert price_dearest(rg, units, start, end, prior).total <= amount
    assert price_dearest(rg, units + 1, start, end, prior).total > amount
    billing = rg.billing
    assert billing.billed(prior + units) == prior + units or prior + units == 0
    # A grant of that size, used across the window, costs at most that (up to one micro-unit of
    # rounding per part).
    actual = price(rg, units, start, end, prior)
    dearest = price_dearest(rg, units, start, end, prior)
    assert actual.total < amount + len(actual.parts) + len(dearest.parts)


def _direct_class(rg: RatingGroup, t: int) -> int:
    """The price key at ``t``, computed directly (zoneinfo at that instant, no memo)."""
    timeline = rg.tariff.timeline
    return timeline.price_key(timeline._state_class(t))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups(),
    instants,
    st.sampled_from([2 * 86400, 86400, 6 * 3600]).flatmap(
        lambda scale: st.integers(0, scale // 2).map(lambda cut: scale - cut)
    ),
)
def test_timeline_matches_minute_by_minute(rg: RatingGroup, start: int, span: int) -> None:
    # Period and promotion boundaries are whole minutes, and so are DST transitions in these
    # zones: the class can only change on a minute.
    start -= start % 60
    end = start + span
    timeline = rg.tariff.timeline

    def memo_class(t: int) -> int:
        return timeline.price_key(timeline.class_at(t))

    current = _direct_class(rg, start)
    assert memo_class(start) == current
    expected = None
    seen = {current}
    for minute in range(start + 60, end, 60):
        cls = _direct_class(rg, minute)
        assert memo_class(minute) == cls
        assert memo_class(minute - 1) == _direct_class(rg, minute - 1)
        seen.add(cls)
        if expected is None and cls != current:
            expected = minute
    assert next_tariff_change(rg, start, end) == expected
    assert {timeline.price_key(state) for state in timeline.classes_in(start, end)} == seen
