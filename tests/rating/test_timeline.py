"""Tariff changes in local time: DST gaps and folds, long windows, the per-day memo."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rating import RatingGroup, dearest_rates, next_tariff_change, price_at
from rating import tariff as tariff_module
from tests.rating.util import one_group, ts

NIGHT = {"days": ["all"], "start": "02:30", "end": "05:00", "price": "0.000002"}


def changes(start: int, end: int, rg: RatingGroup) -> list[int]:
    """Every tariff change in (start, end)."""
    found: list[int] = []
    change = next_tariff_change(rg, start, end)
    while change is not None:
        found.append(change)
        change = next_tariff_change(rg, change, end)
    return found


def test_boundary_inside_the_spring_forward_gap() -> None:
    # Paris, 29 March 2026: 02:00 CET jumps to 03:00 CEST at 01:00Z; 02:30 never happens, so
    # the night period starts at the jump. It ends at 05:00 CEST = 03:00Z.
    rg = one_group({"price": "0.000001", "periods": [NIGHT]}, timezone="Europe/Paris")
    day = ts("2026-03-29T00:00:00Z")
    assert changes(day, day + 6 * 3600, rg) == [
        ts("2026-03-29T01:00:00Z"),
        ts("2026-03-29T03:00:00Z"),
    ]
    assert price_at(rg, 1, ts("2026-03-29T00:59:59Z")).total == 1
    assert price_at(rg, 1, ts("2026-03-29T01:00:00Z")).total == 2


def test_boundary_inside_the_autumn_fold() -> None:
    # Paris, 25 October 2026: 03:00 CEST goes back to 02:00 CET at 01:00Z; 02:30 happens twice.
    rg = one_group({"price": "0.000001", "periods": [NIGHT]}, timezone="Europe/Paris")
    day = ts("2026-10-25T00:00:00Z")
    assert changes(day, day + 6 * 3600, rg) == [
        ts("2026-10-25T00:30:00Z"),  # 02:30 CEST
        ts("2026-10-25T01:00:00Z"),  # back to 02:00 CET: out of the period
        ts("2026-10-25T01:30:00Z"),  # 02:30 CET
        ts("2026-10-25T04:00:00Z"),  # 05:00 CET
    ]


def test_half_hour_dst_zone() -> None:
    # Lord Howe Island (UTC+10:30) moves by 30 minutes: 02:00 -> 02:30 on 4 October 2026,
    # 15:30Z the day before. A period starting at 02:15 starts at the jump.
    night = dict(NIGHT, start="02:15")
    rg = one_group({"price": "0.000001", "periods": [night]}, timezone="Australia/Lord_Howe")
    jump = ts("2026-10-03T15:30:00Z")
    assert next_tariff_change(rg, jump - 3600, jump + 3600) == jump


def test_long_window_jumps_to_the_next_promotion() -> None:
    # A weekend period with the base price changes nothing; the only change is a promotion
    # 40 days later, found without scanning day by day for ever.
    rg = one_group(
        {
            "price": "0.001",
            "periods": [{"days": ["weekend"], "start": "00:00", "end": "24:00", "factor": "1"}],
            "promotions": [
                {
                    "name": "p",
                    "start": ts("2026-02-10T00:00:00Z"),
                    "end": ts("2026-02-12T00:00:00Z"),
                    "factor": "3",
                }
            ],
        }
    )
    start = ts("2026-01-01T00:00:00Z")
    assert next_tariff_change(rg, start, start + 365 * 86400) == ts("2026-02-10T00:00:00Z")
    assert next_tariff_change(rg, start, ts("2026-02-10T00:00:00Z")) is None
    assert [r.per_unit for r in dearest_rates(rg, start, start + 60 * 86400)] == [3000]
    assert [r.per_unit for r in dearest_rates(rg, start, ts("2026-02-10T00:00:00Z"))] == [1000]


def test_long_window_sees_a_promotion_combined_with_a_period() -> None:
    # Peak on Mondays only; a promotion doubling prices over a weekend far away cannot meet a
    # Monday, a later one over a Monday can: the dearest rate is peak x 2 only with the latter.
    peak = {"name": "peak", "days": ["mon"], "start": "08:00", "end": "20:00", "factor": "5"}
    weekend = {
        "name": "we",
        "start": ts("2026-03-07T00:00:00Z"),
        "end": ts("2026-03-09T00:00:00Z"),
        "factor": "2",
    }
    monday = {
        "name": "mo",
        "start": ts("2026-04-13T00:00:00Z"),
        "end": ts("2026-04-14T00:00:00Z"),
        "factor": "2",
    }
    rg = one_group({"price": "0.001", "periods": [peak], "promotions": [weekend, monday]})
    start = ts("2026-01-01T00:00:00Z")
    assert [r.label for r in dearest_rates(rg, start, ts("2026-04-01T00:00:00Z"))] == ["peak"]
    worst = dearest_rates(rg, start, ts("2026-05-01T00:00:00Z"))
    assert [(r.label, r.per_unit) for r in worst] == [("peak, promotion mo", Fraction(10_000))]
    assert next_tariff_change(rg, ts("2026-04-13T07:00:00Z"), ts("2026-04-20T00:00:00Z")) == ts(
        "2026-04-13T08:00:00Z"
    )  # fmt: skip


def test_memo_is_bounded_and_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tariff_module, "_CACHE_LIMIT", 3)
    peak = {"days": ["weekdays"], "start": "08:00", "end": "20:00", "price": "0.002"}
    rg = one_group({"price": "0.001", "periods": [peak]}, timezone="Europe/Paris")
    monday = ts("2026-01-05T12:00:00+01:00")
    for week in range(10):
        for day in range(7):
            at = monday + (7 * week + day) * 86400
            assert price_at(rg, 1, at).total == (2000 if day < 5 else 1000)
    assert len(rg.tariff.timeline._buckets) <= 3
