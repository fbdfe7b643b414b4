"""Table tests: prices computed by hand (in the comments) for every feature of the engine."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rating import (
    FinalUnitAction,
    RedirectAddressType,
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
from tests.rating.util import DEMO, GiB, KiB, MiB, one_group, ts

DATA = DEMO.rating_groups[10]
VIDEO = DEMO.rating_groups[20]
SMS = DEMO.rating_groups[30]
VOICE = DEMO.rating_groups[40]
PORTAL = DEMO.rating_groups[50]

MONDAY_14 = ts("2026-01-05T14:00:00+01:00")  # weekday, peak (08:00-20:00 Paris)
MONDAY_22 = ts("2026-01-05T22:00:00+01:00")  # weekday, off-peak
SATURDAY_14 = ts("2026-01-10T14:00:00+01:00")  # weekend: off-peak data, half-price voice


# -- the demo catalog: data, peak / off-peak, per MiB, per started KiB ---------------------------


@pytest.mark.parametrize(
    ("units", "at", "charge"),
    [
        (10 * MiB, MONDAY_14, 200_000),  # 10 MiB x 0.02 EUR
        (10 * MiB, MONDAY_22, 100_000),  # 10 MiB x 0.01 EUR
        (10 * MiB, SATURDAY_14, 100_000),  # weekend: off-peak all day
        (1, MONDAY_14, 20),  # billed 1 KiB: 1024 x 20000 / 2^20 = 19.53125 -> 20
        (1000, MONDAY_14, 20),  # same KiB
        (1024, MONDAY_14, 20),
        (1025, MONDAY_14, 40),  # 2 KiB: 39.0625 -> 40
        (1 * MiB, MONDAY_14, 20_000),
        (0, MONDAY_14, 0),
        # 1 GiB at 0.02 = 20.48 EUR, then 10 MiB in tier 1 (half price: 0.01) = 0.10 EUR
        (1 * GiB + 10 * MiB, MONDAY_14, 20_580_000),
        (1 * GiB + 10 * MiB, MONDAY_22, 10_290_000),  # off-peak: 10.24 + 0.05
    ],
)
def test_demo_data_prices(units: int, at: int, charge: int) -> None:
    assert price_at(DATA, units, at).total == charge


def test_peak_boundary_is_local_time() -> None:
    # 20:00 Paris is 19:00Z in winter and 18:00Z in summer.
    assert price_at(DATA, MiB, ts("2026-01-05T18:59:59Z")).total == 20_000
    assert price_at(DATA, MiB, ts("2026-01-05T19:00:00Z")).total == 10_000
    assert price_at(DATA, MiB, ts("2026-07-06T17:59:59Z")).total == 20_000
    assert price_at(DATA, MiB, ts("2026-07-06T18:00:00Z")).total == 10_000
    assert price_at(DATA, MiB, ts("2026-01-05T07:00:00Z")).total == 20_000  # 08:00 CET
    assert price_at(DATA, MiB, ts("2026-01-05T06:59:59Z")).total == 10_000


def test_session_crossing_peak_to_off_peak() -> None:
    # 20 MiB over 19:50-20:10 Paris: half the time (and so half the units) at each price:
    # 10 MiB x 0.02 + 10 MiB x 0.01 = 0.30 EUR.
    charge = price(DATA, 20 * MiB, ts("2026-01-05T19:50:00+01:00"), ts("2026-01-05T20:10:00+01:00"))
    assert charge.total == 300_000
    assert [(p.start, p.end, p.units, p.billed_units, p.charge) for p in charge.parts] == [
        (
            ts("2026-01-05T19:50:00+01:00"),
            ts("2026-01-05T20:00:00+01:00"),
            10 * MiB,
            10 * MiB,
            200_000,
        ),
        (
            ts("2026-01-05T20:00:00+01:00"),
            ts("2026-01-05T20:10:00+01:00"),
            10 * MiB,
            10 * MiB,
            100_000,
        ),
    ]
    assert [p.rate.label for p in charge.parts] == ["peak", "base"]


def test_session_crossing_unevenly_started_kib_billed_where_it_started() -> None:
    # 20 MiB = 20971520 octets over 19:55-20:10: the peak part gets floor(20971520 x 5/15)
    # = 6990506 octets, billed up to the KiB it started: 6827 KiB = 6990848 octets, at
    # 20000/2^20 per octet = 133339.84 -> 133340 (cumulative ceil). Off-peak: positions
    # 6990848 .. 20971520 at 10000/2^20: ceil(200000) - ceil(66669.92) = 200000 - 66670 = 133330.
    charge = price(DATA, 20 * MiB, ts("2026-01-05T19:55:00+01:00"), ts("2026-01-05T20:10:00+01:00"))
    assert [(p.units, p.billed_units, p.charge) for p in charge.parts] == [
        (6_990_506, 6_990_848, 133_340),
        (20 * MiB - 6_990_506, 20 * MiB - 6_990_848, 133_330),
    ]
    assert charge.total == 266_670
    assert charge.billed_units == 20 * MiB


def test_split_usage_costs_the_same_as_the_whole() -> None:
    # The client reporting the two sides separately (Tariff-Change-Usage) pays the same.
    start = ts("2026-01-05T19:55:00+01:00")
    change = ts("2026-01-05T20:00:00+01:00")
    before = price_at(DATA, 6_990_506, start)
    after = price_at(DATA, 20 * MiB - 6_990_506, change, prior_units=6_990_506)
    assert (before.total, after.total) == (133_340, 133_330)


def test_cumulative_money_never_costs_more_for_more_reports() -> None:
    # Three reports of 1 KiB at peak, 19.53125 micro-units each: cumulative ceil gives
    # 20, 40 - 20 = 20, ceil(58.59375) - 40 = 19: 59 in all, exactly ceil(3 x 19.53125).
    charges = [price_at(DATA, KiB, MONDAY_14, prior_units=n * KiB).total for n in range(3)]
    assert charges == [20, 20, 19]
    assert sum(charges) == price_at(DATA, 3 * KiB, MONDAY_14).total == 59
    # Reports inside one started KiB cost nothing more.
    assert price_at(DATA, 1, MONDAY_14, prior_units=0).total == 20
    assert price_at(DATA, 500, MONDAY_14, prior_units=1).total == 0
    assert price_at(DATA, 523, MONDAY_14, prior_units=501).total == 0
    assert price_at(DATA, 1, MONDAY_14, prior_units=1024).total == 20


def test_volume_tier_is_cumulative_over_the_session() -> None:
    # Prior 1 GiB - 1 MiB at peak: the next 2 MiB are 1 MiB at 0.02 and 1 MiB at 0.01.
    charge = price_at(DATA, 2 * MiB, MONDAY_14, prior_units=GiB - MiB)
    assert charge.total == 30_000
    assert [(p.tier, p.units, p.charge) for p in charge.parts] == [
        (0, MiB, 20_000),
        (1, MiB, 10_000),
    ]


def test_tiers_with_replacement_price_and_factor() -> None:
    rg = one_group(
        {
            "price": "0.00001",  # 10 micro-units per unit
            "tiers": [{"from": 100, "factor": "1/2"}, {"from": 200, "price": "0.000001"}],
        }
    )
    assert price_at(rg, 250, 0).total == 100 * 10 + 100 * 5 + 50 * 1
    assert price_at(rg, 100, 0, prior_units=150).total == 50 * 5 + 50 * 1
    assert price_at(rg, 10, 0, prior_units=500).total == 10


# -- voice: a minute, then per second; setup fee once; weekend half price ----------------------


@pytest.mark.parametrize(
    ("units", "prior", "at", "charge"),
    [
        (10, 0, MONDAY_14, 60_000),  # first minute billed whole: 60 s x 0.001
        (55, 10, MONDAY_14, 5_000),  # 65 s billed in all, 60 already: 5 s more
        (60, 0, MONDAY_14, 60_000),
        (61, 0, MONDAY_14, 61_000),
        (90, 0, MONDAY_14, 90_000),
        (0, 65, MONDAY_14, 0),
        (90, 0, SATURDAY_14, 45_000),  # weekend: 0.0005 per second
        (10, 0, SATURDAY_14, 30_000),
    ],
)
def test_demo_voice_prices(units: int, prior: int, at: int, charge: int) -> None:
    assert price_at(VOICE, units, at, prior_units=prior).total == charge


def test_setup_fee_is_separate_and_never_in_a_debit() -> None:
    assert VOICE.setup_fee == 50_000
    assert DATA.setup_fee == 0
    # Every report of a call is usage only; the session layer adds the fee once.
    reports = [price_at(VOICE, 30, MONDAY_14, prior_units=30 * n).total for n in range(4)]
    assert reports == [60_000, 0, 30_000, 30_000]
    assert sum(reports) == price_at(VOICE, 120, MONDAY_14).total


def test_billed_units() -> None:
    assert billed_units(VOICE, 10) == 60
    assert billed_units(VOICE, 55, prior_units=10) == 5
    assert billed_units(DATA, 1) == KiB
    assert billed_units(DATA, 1, prior_units=1) == 0
    assert billed_units(DATA, 0, prior_units=7) == 0


# -- events, zero-rated, links, grant policy, account, CDR -----------------------------------


def test_sms_event() -> None:
    assert price_event(SMS, 1, MONDAY_14).total == 100_000
    assert price_event(SMS, 3, SATURDAY_14).total == 300_000
    assert price_event(VOICE, 10, MONDAY_14).total == 60_000  # no setup fee in an event


def test_zero_rated_group() -> None:
    assert PORTAL.zero_rated
    assert DEMO.is_zero_rated(50)
    assert not DEMO.is_zero_rated(10)
    assert not DEMO.is_zero_rated(999)
    assert price_at(PORTAL, 5 * GiB, MONDAY_14).total == 0
    assert affordable(PORTAL, 0, MONDAY_14, MONDAY_14 + 3600) is None
    assert PORTAL.grant is None


def test_group_priced_at_zero_is_zero_rated_too() -> None:
    assert one_group({"price": "0"}).zero_rated
    assert not one_group({"price": "0", "setup_fee": "0.01"}).zero_rated
    assert not one_group({"price": "0", "periods": [_all_day("0.01")]}).zero_rated


def _all_day(amount: str) -> dict[str, object]:
    return {"days": ["all"], "start": "00:00", "end": "24:00", "price": amount}


def test_lookup_by_service() -> None:
    assert DEMO.rating_group("32251@3gpp.org", 10) is DATA
    assert DEMO.rating_group("32251@3gpp.org", 30) is None  # SMS is not a data group
    assert DEMO.rating_group("32274@3gpp.org", 30) is SMS
    assert DEMO.rating_group("32260@3gpp.org", 40) is VOICE
    assert DEMO.rating_group("nope@3gpp.org", 10) is None
    assert DEMO.rating_group("32251@3gpp.org", 11) is None
    # 3GPP prefixes (MNC.MCC.release.) before the service context are ignored.
    assert DEMO.rating_group("01.001.18.32251@3gpp.org", 20) is VIDEO


def test_links_and_grant_policies() -> None:
    assert VIDEO.linked_rating_groups == (10,)
    assert DATA.linked_rating_groups == ()
    grant = DATA.grant
    assert grant is not None
    assert (grant.quantum, grant.validity_time, grant.quota_holding_time) == (10 * MiB, 3600, 300)
    assert grant.threshold == Fraction(1, 5)
    assert grant.threshold_units(10 * MiB) == 2 * MiB
    assert grant.threshold_units(7) == 1  # 1.4 rounds down
    assert grant.final_unit_action is FinalUnitAction.REDIRECT
    assert grant.redirect_server is not None
    assert grant.redirect_server.address_type is RedirectAddressType.URL
    assert grant.redirect_server.address == "http://topup.example.com/"
    assert VIDEO.grant is not None
    assert VIDEO.grant.final_unit_action is FinalUnitAction.RESTRICT_ACCESS
    assert VIDEO.grant.filter_ids == ("video-blocked",)
    assert VOICE.grant is not None and VOICE.grant.quantum == 300
    assert SMS.grant is not None and SMS.grant.threshold == 0


def test_account_cdr_currency() -> None:
    assert DEMO.currency.code == 978
    assert DEMO.currency.alpha == "EUR"
    assert DEMO.account.usage_thresholds == (5_000_000, 10_000_000, 20_000_000)
    assert DEMO.cdr.volume_limit == 100 * MiB
    assert DEMO.cdr.time_limit == 3600


# -- tariff changes, promotions, grants ----------------------------------------------------------


def test_next_tariff_change() -> None:
    seven_pm = ts("2026-01-05T19:00:00+01:00")
    assert next_tariff_change(DATA, seven_pm, seven_pm + 3600) is None  # 20:00 is not inside
    assert next_tariff_change(DATA, seven_pm, seven_pm + 3601) == seven_pm + 3600
    assert next_tariff_change(DATA, MONDAY_22, MONDAY_22 + 86400) == ts("2026-01-06T08:00:00+01:00")
    # Friday 20:00 -> Monday 08:00: no change over the weekend.
    friday_9pm = ts("2026-01-09T21:00:00+01:00")
    assert next_tariff_change(DATA, friday_9pm, friday_9pm + 4 * 86400) == ts(
        "2026-01-12T08:00:00+01:00"
    )
    assert next_tariff_change(SMS, MONDAY_14, MONDAY_14 + 365 * 86400) is None
    assert next_tariff_change(VOICE, MONDAY_14, MONDAY_14 + 7 * 86400) == ts(
        "2026-01-10T00:00:00+01:00"
    )


def test_promotion_starting_mid_grant_is_honoured() -> None:
    # A grant at Thursday 23:30 for an hour: off-peak 0.01 EUR/MiB, then from midnight the
    # black-friday promotion halves it to 0.005.
    start = ts("2026-11-26T23:30:00+01:00")
    end = start + 3600
    midnight = ts("2026-11-27T00:00:00+01:00")
    assert next_tariff_change(DATA, start, end) == midnight
    # The grant is sized at the dearer side: 1 EUR buys 100 MiB at 0.01.
    assert affordable(DATA, 1_000_000, start, end) == 100 * MiB
    # Usage over the whole hour is split at the promotion start: 10 MiB x 0.01 + 10 MiB x 0.005.
    charge = price(DATA, 20 * MiB, start, end)
    assert [(p.units, p.charge) for p in charge.parts] == [(10 * MiB, 100_000), (10 * MiB, 50_000)]
    assert charge.parts[1].rate.promotion == "black-friday"
    assert charge.total == 150_000
    # The same usage reported already split (UNIT_BEFORE / UNIT_AFTER).
    assert price_at(DATA, 10 * MiB, start).total == 100_000
    assert price_at(DATA, 10 * MiB, midnight, prior_units=10 * MiB).total == 50_000
    # The promotion applies at peak too: Friday 14:00, 0.02 x 0.5 = 0.01.
    assert price_at(DATA, 10 * MiB, ts("2026-11-27T14:00:00+01:00")).total == 100_000
    # ... and ends on Monday 00:00.
    assert price_at(DATA, 10 * MiB, ts("2026-11-30T14:00:00+01:00")).total == 200_000


def test_surcharge_promotion_starting_mid_grant_shrinks_the_grant() -> None:
    rg = one_group(
        {
            "price": "0.001",  # 1000 micro-units per unit
            "promotions": [
                {"name": "surge", "start": 1_000_000, "end": 2_000_000, "factor": "2"},
            ],
        }
    )
    assert affordable(rg, 10_000, 999_000, 999_999) == 10
    assert affordable(rg, 10_000, 999_000, 1_000_001) == 5  # worst case: 2000 per unit
    assert next_tariff_change(rg, 999_000, 1_000_001) == 1_000_000
    assert next_tariff_change(rg, 1_000_000, 3_000_000) == 2_000_000
    assert price_dearest(rg, 5, 999_000, 1_000_001).total == 10_000
    assert price_at(rg, 5, 999_999).total == 5_000
    assert price_at(rg, 5, 1_000_000).total == 10_000
    assert price_at(rg, 5, 2_000_000).total == 5_000


def test_dearest_rates() -> None:
    seven_pm = ts("2026-01-05T19:00:00+01:00")
    assert [r.label for r in dearest_rates(DATA, seven_pm + 3600, seven_pm + 7200)] == [
        "base",
        "base, tier 1",
    ]
    assert [r.label for r in dearest_rates(DATA, seven_pm, seven_pm + 7200)] == [
        "peak",
        "peak, tier 1",
    ]
    assert [r.label for r in rates_at(DATA, MONDAY_22)] == ["base", "base, tier 1"]
    # A window ending exactly at the change does not include the later tariff.
    assert dearest_rates(DATA, MONDAY_22 - 3600, ts("2026-01-06T08:00:00+01:00"))[0].label == "base"


@pytest.mark.parametrize(
    ("amount", "prior", "units"),
    [
        (1_000_000, 0, 1000),  # 1 EUR = 1000 s on a weekday
        (59_999, 0, 0),  # the first minute costs 0.06
        (60_000, 0, 60),
        (60_999, 0, 60),
        (61_000, 0, 61),
        (0, 10, 50),  # 50 s of the first minute are already paid for
        (1_000, 10, 51),
        (0, 0, 0),
    ],
)
def test_affordable_voice(amount: int, prior: int, units: int) -> None:
    assert affordable(VOICE, amount, MONDAY_14, MONDAY_14 + 3600, prior_units=prior) == units


@pytest.mark.parametrize(
    ("amount", "units"),
    [
        (1_000_000, 50 * MiB),  # 1 EUR at peak (0.02 EUR/MiB)
        (20, KiB),  # 1 KiB costs 19.53125 -> 20
        (19, 0),
        (39, KiB),  # 2 KiB would cost 39.0625 -> 40
        (40, 2 * KiB),
        # Past 1 GiB the price halves: 20.48 EUR for the first GiB, then 0.01 per MiB.
        (20_480_000 + 10_000, GiB + MiB),
    ],
)
def test_affordable_data_at_peak(amount: int, units: int) -> None:
    assert affordable(DATA, amount, MONDAY_14, MONDAY_14 + 3600) == units


def test_affordable_window_takes_the_dearest_rate() -> None:
    # 19:30-20:30: peak then off-peak: the grant is sized at peak.
    start = ts("2026-01-05T19:30:00+01:00")
    assert affordable(DATA, 1_000_000, start, start + 3600) == 50 * MiB
    assert affordable(DATA, 1_000_000, start + 1800, start + 5400) == 100 * MiB


def test_affordable_with_a_free_tier_is_unlimited() -> None:
    rg = one_group({"price": "0.001", "tiers": [{"from": 10, "factor": "0"}]})
    assert affordable(rg, 9_999, 0, 0) == 9
    assert affordable(rg, 10_000, 0, 0) is None
    assert affordable(rg, 0, 0, 0, prior_units=10) is None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        price_at(DATA, -1, MONDAY_14)
    with pytest.raises(ValueError):
        price_at(DATA, 1, MONDAY_14, prior_units=-1)
    with pytest.raises(ValueError):
        price(DATA, 1, MONDAY_14, MONDAY_14 - 1)
    with pytest.raises(ValueError):
        price_at(DATA, 1, -5)
    with pytest.raises(ValueError):
        affordable(DATA, -1, MONDAY_14, MONDAY_14)


def test_a_started_increment_is_charged_where_it_started() -> None:
    # Increments of 10 units; 100 s window: 50 s free, then 50 s at 10 micro-units per unit.
    rg = one_group(
        {
            "price": "0.00001",
            "increment": 10,
            "periods": [{"days": ["all"], "start": "00:00", "end": "00:00:50", "price": "0"}],
        }
    )
    start, end = ts("2026-01-05T00:00:00Z"), ts("2026-01-05T00:01:40Z")
    # 21 units: 10 before the change (block 0-10, free), 11 after: blocks 10-20 and 20-30 start
    # after the change: 20 units x 10 = 200.
    assert [(p.units, p.billed_units, p.charge) for p in price(rg, 21, start, end).parts] == [
        (10, 10, 0),
        (11, 20, 200),
    ]
    # 22 units: 11 before the change, so block 10-20 was started (and is charged) before it.
    # Proportional apportioning with per-started-increment billing is therefore not monotone
    # across a tariff change; at one tariff it is (see test_properties).
    assert [(p.units, p.billed_units, p.charge) for p in price(rg, 22, start, end).parts] == [
        (11, 20, 0),
        (11, 10, 100),
    ]
