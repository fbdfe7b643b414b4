"""Usage counters across sessions (docs/charging.md *Usage counters*): per account and period,
in units and money, reset at the period's boundary, thresholds re-authorising every open
session of the account once per crossing per period, shown in GET. Through the core, with
hand-computed values; every test ends with the replay check of the `h`-like harness."""

from __future__ import annotations

import random

import msgspec
import pytest

from ocs.cli.catalog import catalog_changes, catalog_facts
from ocs.core.charging import ActionKind
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER
from ocs.core.counters import PeriodCache, UsageCounters
from protocol.codes import AccountOperation, CounterUnit, RequestedAction
from protocol.messages import MsccRequest, UsageCounter
from rating import CatalogError, parse_catalog
from rating.counters import CounterDef
from rating.counters import CounterUnit as CatalogUnit
from rating.periods import PeriodKind, period_bounds
from tests.charging.conftest import (
    DEMO,
    EUR,
    EVENT,
    INITIAL,
    PEAK,
    SMS,
    SUB,
    TERMINATION,
    UPDATE,
    Harness,
    MiB,
    amr,
    ccr,
    epoch_ms,
    epoch_s,
    mscc,
    rsu,
    sid,
    usu,
)

SUB2 = "491700000002"
MIN = 60_000

COUNTERS = """
[[counters]]
name = "data-daily"
unit = "octets"
rating_groups = [10, 20]
period = "daily"
thresholds = ["10 MiB", "50 MiB"]

[[counters]]
name = "money-monthly"
unit = "money"
period = "monthly"
anchor = 2026-01-01T00:00:00+01:00
thresholds = ["1.00"]

[[counters]]
name = "sms-weekly"
unit = "units"
rating_groups = [30]
period = "weekly"
thresholds = [3]
"""
# the demo catalog without its own counters (docs/catalog.md), with these
BASE = DEMO[: DEMO.index("# --- usage counters across sessions")]
CATALOG = BASE + COUNTERS
# PEAK is Monday 2026-01-05 14:00 Paris; "data-daily" is anchored at its first use, so its
# first period ends at the next local midnight, 2026-01-06 00:00 Paris (23:00 UTC)
MIDNIGHT = epoch_ms("2026-01-06T00:00:00+01:00")


def harness() -> Harness:
    h = Harness(catalog=CATALOG)
    h.account("a", SUB, 10 * EUR)
    h.account("b", SUB2, 10 * EUR)
    return h


def counters(h: Harness, account_id: str, now_ms: int) -> dict[str, UsageCounter]:
    answer = h.ama(amr(AccountOperation.GET, account_id), now_ms)
    assert answer.result_code == 2001 and answer.account is not None
    return {c.counter_name: c for c in answer.account.usage_counter or ()}


def data_report(octets: int) -> MsccRequest:
    return mscc(10, ask=rsu(), used=(usu(octets=octets),))


def test_a_crossing_re_authorises_every_open_session_of_the_account_once() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a2", INITIAL, 0, mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("b1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB2), PEAK)
    # 6 MiB of RG 10 in a1: data-daily 6 MiB, below 10 MiB; no RAR
    h.cca(ccr("a1", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=6 * MiB),))), PEAK + MIN)
    assert h.take_actions() == []
    # 5 MiB of RG 20 in a2: 6 + 5 = 11 MiB >= 10 MiB: both sessions of "a" get one RAR, "b" none
    h.cca(ccr("a2", UPDATE, 1, mscc(20, ask=rsu(), used=(usu(octets=5 * MiB),))), PEAK + 2 * MIN)
    actions = h.take_actions()
    assert [(a.kind, a.session_id, a.reason) for a in actions] == [
        (ActionKind.RAR, sid("a1"), "usage threshold"),
        (ActionKind.RAR, sid("a2"), "usage threshold"),
    ]
    crossed = UsageCounter(
        counter_name="data-daily",
        counter_unit=CounterUnit.OCTETS,
        counter_value=11 * MiB,
        start_time=(PEAK + MIN) // 1000,  # the first use (the anchor) ...
        stop_time=MIDNIGHT // 1000,  # ... to the next local midnight
        counter_threshold=10 * MiB,
    )
    assert all(a.usage_counters == (crossed,) for a in actions)
    # the groups each holds then: a2's report released its grant before the crossing (the
    # answer grants again), so its RAR names no group, which means all (WIRE.md 7)
    assert actions[0].rating_groups == (10,) and actions[1].rating_groups == ()
    # more usage below the next threshold (50 MiB): the crossing is not notified again
    h.cca(ccr("a1", UPDATE, 2, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + 3 * MIN)
    assert h.take_actions() == []
    h.assert_replays()


def test_get_shows_every_counter_in_units_and_money() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=6 * MiB),))), PEAK + MIN)
    h.cca(ccr("a1", TERMINATION, 2, mscc(10, used=(usu(octets=4 * MiB),))), PEAK + 2 * MIN)
    sms = ccr("e1", EVENT, 0, mscc(30, ask=rsu(units=2)), subscriber=SUB, service=SMS)
    sms = msgspec.structs.replace(sms, requested_action=RequestedAction.DIRECT_DEBITING)
    assert h.cca(sms, PEAK + 3 * MIN).result_code == 2001
    shown = counters(h, "a", PEAK + 4 * MIN)
    # the legacy counter first (the demo's [account] usage_thresholds), then catalog order
    assert list(shown) == ["account", "data-daily", "money-monthly", "sms-weekly"]
    # money: RG 10 at peak, 10 MiB x 0.02 = 0.20 EUR; 2 SMS x 0.10 = 0.20 EUR; 0.40 EUR
    assert shown["account"] == UsageCounter(
        counter_name="account", counter_unit=CounterUnit.MONEY, counter_value=400_000
    )
    assert shown["money-monthly"] == UsageCounter(
        counter_name="money-monthly",
        counter_unit=CounterUnit.MONEY,
        counter_value=400_000,
        start_time=epoch_s("2026-01-01T00:00:00+01:00"),  # the catalog's anchor
        stop_time=epoch_s("2026-02-01T00:00:00+01:00"),
    )
    # 6 + 4 MiB: exactly the first threshold (a value reaching it crosses it)
    assert shown["data-daily"].counter_value == 10 * MiB
    assert shown["data-daily"].counter_threshold == 10 * MiB
    # the SMS week starts at the first use (Monday 14:00) and ends 7 days after its midnight
    assert shown["sms-weekly"] == UsageCounter(
        counter_name="sms-weekly",
        counter_unit=CounterUnit.UNITS,
        counter_value=2,
        start_time=(PEAK + 3 * MIN) // 1000,
        stop_time=epoch_s("2026-01-12T00:00:00+01:00"),
    )
    # an account that used nothing: every counter at zero, no period yet (anchored at first
    # use) or the catalog's period
    other = counters(h, "b", PEAK + 4 * MIN)
    assert other["data-daily"] == UsageCounter(
        counter_name="data-daily", counter_unit=CounterUnit.OCTETS, counter_value=0
    )
    assert other["money-monthly"] == UsageCounter(
        counter_name="money-monthly",
        counter_unit=CounterUnit.MONEY,
        counter_value=0,
        start_time=epoch_s("2026-01-01T00:00:00+01:00"),
        stop_time=epoch_s("2026-02-01T00:00:00+01:00"),
    )
    h.assert_replays()


def test_a_period_boundary_resets_the_counter_dated_at_the_boundary() -> None:
    h = harness()
    night = MIDNIGHT - 60 * MIN  # Monday 23:00 Paris: off-peak data, 0.01 EUR/MiB
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), night)
    h.cca(ccr("a2", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), night)
    h.cca(ccr("a1", UPDATE, 1, data_report(12 * MiB)), night + 10 * MIN)  # crosses 10 MiB
    assert len(h.take_actions()) == 2
    # 23:59:59 Paris, still the first day: 12 MiB, from the first use (23:10) to midnight
    last = counters(h, "a", MIDNIGHT - 1000)["data-daily"]
    assert (last.counter_value, last.start_time) == (12 * MiB, (night + 10 * MIN) // 1000)
    assert last.stop_time == MIDNIGHT // 1000
    # at midnight, before any use: GET shows the new day at zero, from the boundary
    at_midnight = counters(h, "a", MIDNIGHT)["data-daily"]
    assert at_midnight.counter_value == 0 and at_midnight.counter_threshold is None
    assert at_midnight.start_time == MIDNIGHT // 1000
    assert at_midnight.stop_time == epoch_s("2026-01-07T00:00:00+01:00")
    # the first report of the new day (at 00:30) counts from zero: 4 MiB, no crossing ...
    h.cca(ccr("a1", UPDATE, 2, data_report(4 * MiB)), MIDNIGHT + 30 * MIN)
    assert h.take_actions() == []
    value = counters(h, "a", MIDNIGHT + 31 * MIN)["data-daily"]
    assert (value.counter_value, value.start_time) == (4 * MiB, MIDNIGHT // 1000)
    # ... and the threshold is crossed again in the new period: 4 + 7 = 11 MiB, one RAR each
    h.cca(ccr("a2", UPDATE, 1, data_report(7 * MiB)), MIDNIGHT + 40 * MIN)
    actions = h.take_actions()
    assert [a.session_id for a in actions] == [sid("a1"), sid("a2")]
    assert actions[0].usage_counters[0].counter_value == 11 * MiB
    assert actions[0].usage_counters[0].start_time == MIDNIGHT // 1000
    # the money counter (monthly from Jan 1) did not reset: 12 + 4 + 7 = 23 MiB, all
    # off-peak at 0.01 EUR/MiB: 0.23 EUR
    assert counters(h, "a", MIDNIGHT + 41 * MIN)["money-monthly"].counter_value == 230_000
    h.assert_replays()


def test_several_counters_crossed_by_one_report_go_in_one_rar_per_session() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    # 60 MiB at peak: data-daily crosses 10 MiB and 50 MiB (the highest is reported), and
    # money-monthly 1.20 EUR crosses 1.00 EUR
    h.cca(ccr("a1", UPDATE, 1, data_report(60 * MiB)), PEAK + MIN)
    (rar,) = h.take_actions()
    assert [(c.counter_name, c.counter_threshold) for c in rar.usage_counters] == [
        ("data-daily", 50 * MiB),
        ("money-monthly", EUR),
    ]
    h.assert_replays()


def test_the_legacy_money_threshold_is_the_counter_account() -> None:
    """`[account] usage_thresholds` works as before (money charged, never reset), and its RAR
    now names it: `Usage-Counter` "account" with the threshold crossed."""
    catalog = BASE.replace('["5.00", "10.00", "20.00"]', '["0.10", "0.20"]')
    h = Harness(catalog=catalog)
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, data_report(6 * MiB)), PEAK + MIN)  # 0.12 EUR: crosses 0.10
    (rar,) = h.take_actions()
    assert rar.reason == "usage threshold"
    assert rar.usage_counters == (
        UsageCounter(
            counter_name="account",
            counter_unit=CounterUnit.MONEY,
            counter_value=120_000,
            counter_threshold=100_000,
        ),
    )
    assert [c.counter_name for c in counters(h, "a", PEAK + 2 * MIN).values()] == ["account"]
    h.assert_replays()


def test_estimates_and_refunds_count_nowhere() -> None:
    h = harness()
    sms = ccr("e1", EVENT, 0, mscc(30, ask=rsu(units=2)), subscriber=SUB, service=SMS)
    debit = msgspec.structs.replace(sms, requested_action=RequestedAction.DIRECT_DEBITING)
    assert h.cca(debit, PEAK).result_code == 2001
    refund = msgspec.structs.replace(
        debit, session_id=sid("e2"), requested_action=RequestedAction.REFUND_ACCOUNT
    )
    assert h.cca(refund, PEAK + MIN).result_code == 2001
    assert counters(h, "a", PEAK + 2 * MIN)["sms-weekly"].counter_value == 2  # refund: still 2
    h.assert_replays()


def test_a_catalog_that_redefines_a_counter_starts_it_again() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, data_report(6 * MiB)), PEAK + MIN)
    # new thresholds only: the value stays
    h.load_catalog(CATALOG.replace('["10 MiB", "50 MiB"]', '["20 MiB"]'), PEAK + 2 * MIN)
    assert counters(h, "a", PEAK + 3 * MIN)["data-daily"].counter_value == 6 * MiB
    # another period: it starts from zero
    weekly = CATALOG.replace('period = "daily"', 'period = "weekly"')
    h.load_catalog(weekly, PEAK + 4 * MIN)
    assert counters(h, "a", PEAK + 5 * MIN)["data-daily"].counter_value == 0
    h.assert_replays()


def test_counters_survive_a_snapshot_and_an_old_snapshot_loads() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, data_report(6 * MiB)), PEAK + MIN)
    before = counters(h, "a", PEAK + 2 * MIN)
    state = STATE_DECODER.decode(h.core.snapshot())
    jan, feb = epoch_ms("2026-01-01T00:00:00+01:00"), epoch_ms("2026-02-01T00:00:00+01:00")
    assert state.counters == [
        ("a", "data-daily", PEAK + MIN, PEAK + MIN, MIDNIGHT, 6 * MiB),
        ("a", "money-monthly", jan, jan, feb, 120_000),  # 6 MiB at peak, 0.02 EUR/MiB
    ]
    h.restart()
    assert counters(h, "a", PEAK + 2 * MIN) == before
    # a snapshot of layout 4 (no counters): restored, the counters start empty
    old = msgspec.structs.replace(state, counters=[], layout=4)
    h.core.restore(STATE_ENCODER.encode(old))
    assert counters(h, "a", PEAK + 3 * MIN)["data-daily"].counter_value == 0


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ('name = "x"\nunit = "liters"', "counters[0].unit", "one of"),
        ('name = "account"\nunit = "money"', "counters[0].name", "usage_thresholds"),
        (
            'name = "x"\nunit = "octets"\nrating_groups = [30]',
            "counters[0].rating_groups[0]",
            "units",
        ),
        (
            'name = "x"\nunit = "octets"\nrating_groups = [99]',
            "counters[0].rating_groups[0]",
            "unknown",
        ),
        (
            'name = "x"\nunit = "units"\nthresholds = [3, 2]',
            "counters[0].thresholds[1]",
            "increasing",
        ),
        ('name = "x"\nunit = "money"\nthresholds = ["0"]', "counters[0].thresholds[0]", "positive"),
        ('name = "x"\nunit = "money"\nperiod = "yearly"', "counters[0].period", "one of"),
        ('name = "x"\nunit = "money"\ncolour = 1', "counters[0].colour", "unknown key"),
    ],
)
def test_catalog_errors_name_the_key(section: str, path: str, words: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(BASE + "\n[[counters]]\n" + section + "\n")
    assert path in str(info.value) and words in str(info.value)


def test_the_catalog_reads_quantities_money_and_anchors() -> None:
    catalog = parse_catalog(CATALOG)
    data, money, sms = catalog.counters
    assert data.thresholds == (10 * MiB, 50 * MiB) and data.anchor_ms is None
    assert money.thresholds == (EUR,) and money.anchor_ms == epoch_ms("2026-01-01T00:00:00+01:00")
    assert sms.thresholds == (3,) and sms.rating_groups == (30,)


def test_the_period_cache_gives_what_period_bounds_gives() -> None:
    """`PeriodCache` shares the zone arithmetic between accounts: over instants around DST
    changes and month ends, in several zones, in any order, it answers exactly
    `rating.periods.period_bounds`."""
    rnd = random.Random(5)
    first = epoch_ms("2026-01-01T00:00:00+00:00")
    span = 400 * 86_400_000
    for tz in ("Europe/Paris", "America/Santiago", "Australia/Lord_Howe", "UTC"):
        cache = PeriodCache()
        for kind in PeriodKind:
            for anchored in (True, False):
                anchor = first + rnd.randrange(span)
                counter = CounterDef(
                    name="c",
                    unit=CatalogUnit.OCTETS,
                    rating_groups=(),
                    period=kind,
                    anchor_ms=anchor if anchored else None,
                    thresholds=(),
                )
                at = anchor - 86_400_000
                for _ in range(300):
                    at += rnd.choice((1, 1000, 3_600_000, 86_400_000, 7 * 86_400_000))
                    if rnd.random() < 0.1:
                        at -= rnd.randrange(3 * 86_400_000)  # the clock goes back
                    expected = period_bounds(kind, anchor, at, tz)
                    assert cache.bounds(counter, anchor, at, tz) == expected, (tz, kind, at)


def test_catalog_show_and_diff_name_the_counters() -> None:
    """`ocs catalog show|diff` (docs/operations.md): one fact per counter."""
    facts = catalog_facts(parse_catalog(CATALOG))
    assert facts["counter data-daily"] == (
        "octets of rating groups 10, 20, daily from first use, thresholds 10 MiB, 50 MiB"
    )
    assert facts["counter money-monthly"] == (
        "money of rating groups all, monthly from 2025-12-31T23:00:00Z, thresholds 1.00 EUR"
    )
    assert facts["counter sms-weekly"] == (
        "units of rating groups 30, weekly from first use, thresholds 3 units"
    )
    changed = CATALOG.replace("thresholds = [3]", "thresholds = [5]")
    assert list(catalog_changes(parse_catalog(CATALOG), parse_catalog(changed))) == [
        (
            "counter sms-weekly",
            "units of rating groups 30, weekly from first use, thresholds 3 units",
            "units of rating groups 30, weekly from first use, thresholds 5 units",
        )
    ]


def test_a_new_time_zone_starts_every_counter_again() -> None:
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, data_report(6 * MiB)), PEAK + MIN)
    tokyo = CATALOG.replace('timezone = "Europe/Paris"', 'timezone = "Asia/Tokyo"', 1)
    assert tokyo != CATALOG
    h.load_catalog(tokyo, PEAK + 2 * MIN)
    shown = counters(h, "a", PEAK + 3 * MIN)
    assert shown["data-daily"].counter_value == 0
    # the monthly counter's months are Tokyo's now: its anchor (Jan 1, 00:00 Paris) is Jan 1,
    # 08:00 in Tokyo, the first period runs from it to Feb 1, 00:00 Tokyo time
    assert shown["money-monthly"].counter_value == 0
    assert shown["money-monthly"].start_time == epoch_s("2026-01-01T00:00:00+01:00")
    assert shown["money-monthly"].stop_time == epoch_s("2026-02-01T00:00:00+09:00")
    h.assert_replays()


def test_direct_debits_cross_thresholds_too() -> None:
    """An SMS event (DIRECT_DEBITING) counts toward sms-weekly (threshold 3): the third one
    re-authorises the account's open data session."""
    h = harness()
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    for n in range(3):
        sms = ccr(f"e{n}", EVENT, 0, mscc(30, ask=rsu(units=1)), subscriber=SUB, service=SMS)
        debit = msgspec.structs.replace(sms, requested_action=RequestedAction.DIRECT_DEBITING)
        assert h.cca(debit, PEAK + (n + 1) * MIN).result_code == 2001
        if n < 2:
            assert h.take_actions() == []
    (rar,) = h.take_actions()
    assert rar.session_id == sid("a1") and rar.rating_groups == (10,)
    assert [(c.counter_name, c.counter_value, c.counter_threshold) for c in rar.usage_counters] == [
        ("sms-weekly", 3, 3)
    ]
    h.assert_replays()


def test_a_counter_of_every_group_counts_zero_rated_units() -> None:
    """Without `rating_groups`, an octets counter counts every octets group, the zero-rated
    portal (RG 50, answered 4011, charged nothing) included; a money counter gains nothing
    from it."""
    catalog = BASE + '[[counters]]\nname = "octets"\nunit = "octets"\nperiod = "once"\n'
    catalog += '[[counters]]\nname = "spend"\nunit = "money"\nperiod = "once"\n'
    h = Harness(catalog=catalog)
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("p1", INITIAL, 0, mscc(50, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("p1", UPDATE, 1, mscc(50, used=(usu(octets=3 * MiB),))), PEAK + MIN)
    h.cca(ccr("p1", UPDATE, 2, mscc(20, used=(usu(octets=MiB),))), PEAK + 2 * MIN)
    shown = counters(h, "a", PEAK + 3 * MIN)
    assert shown["octets"].counter_value == 4 * MiB  # 3 MiB of RG 50 + 1 MiB of RG 20
    # "once": from the first use, for ever
    assert shown["octets"].start_time == (PEAK + MIN) // 1000 and shown["octets"].stop_time is None
    assert shown["spend"].counter_value == 5_000  # 1 MiB of RG 20 x 0.005 EUR
    h.assert_replays()


def test_values_and_crossings_follow_an_oracle_over_many_periods() -> None:
    """Random reports over months, against an oracle written from `rating.periods` alone: a
    counter's value is the sum of the amounts of the reports in the period of the last one,
    and each report crosses the thresholds between its period's sum before and after it."""
    rnd = random.Random(15)
    catalog = parse_catalog(CATALOG)
    rg = catalog.rating_groups[10]
    for trial in range(40):
        tz = rnd.choice(("Europe/Paris", "America/New_York", "UTC"))
        kind = rnd.choice(list(PeriodKind))
        anchor = epoch_ms("2026-01-31T10:00:00+00:00") if rnd.random() < 0.5 else None
        thresholds = tuple(sorted(rnd.sample(range(1, 400), rnd.randrange(0, 5))))
        counter = CounterDef(
            name="c",
            unit=CatalogUnit.OCTETS,
            rating_groups=(),
            period=kind,
            anchor_ms=anchor,
            thresholds=thresholds,
        )
        values = UsageCounters()
        at = epoch_ms("2026-01-20T00:00:00+00:00") + rnd.randrange(86_400_000)
        first = None
        sums: dict[int, int] = {}
        last_index = last_at = 0
        for _ in range(60):
            at += rnd.choice((0, 60_000, 3_600_000, 20 * 3_600_000, 9 * 86_400_000))
            amount = rnd.randrange(0, 60)
            crossed = values.add((counter,), tz, "a", rg, amount, 0, at)
            if amount and first is None:
                first = at
            if not amount:
                assert crossed == []
                continue
            origin = anchor if anchor is not None else first
            assert origin is not None
            index = (
                period_bounds(kind, origin, at, tz)[0] if at >= origin else origin
            )  # the period's start names it
            before = sums.get(index, 0)
            after = sums[index] = before + amount
            last_index, last_at = index, at
            hit = [t for t in thresholds if before < t <= after]
            assert [c.counter_threshold for c in crossed] == ([hit[-1]] if hit else []), trial
        shown = values.views((counter,), tz, "a", last_at)[0]
        if first is not None:
            assert shown.counter_value == sums[last_index], trial
            assert shown.start_time == last_index // 1000


def test_units_paid_by_an_offer_count_and_cost_no_money() -> None:
    """The demo catalog as shipped (offers and counters): with bundle-15's 10 GiB of data,
    6 MiB of RG 10 are drawn from the allowance; `data-daily` counts them, `spend-monthly`
    and the legacy "account" counter (money) count nothing, the offer's fee is not usage."""
    h = Harness(catalog=DEMO)
    h.account("a", SUB, 20 * EUR)
    subscribe = msgspec.structs.replace(
        amr(AccountOperation.SUBSCRIBE, "a"), offer_name="bundle-15"
    )
    assert h.ama(subscribe, PEAK).result_code == 2001
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", UPDATE, 1, data_report(6 * MiB)), PEAK + MIN)
    shown = counters(h, "a", PEAK + 2 * MIN)
    assert shown["data-daily"].counter_value == 6 * MiB
    assert shown["spend-monthly"].counter_value == 0
    assert shown["account"].counter_value == 0
    h.assert_replays()
