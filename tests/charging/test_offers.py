"""Offers in the core (docs/charging.md, *Allowances*; docs/protocol.md, *Extension: offers*):
SUBSCRIBE takes the fee and gives the allowances, usage draws on the allowances first, a grant
may span an allowance and money, renewals at their instants, suspension, rollover, estimates
on paper, GET, replay and restart. Expectations are worked by hand in the comments."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from ocs.cli.catalog import catalog_facts
from ocs.core.charging_types import STATE_DECODER
from protocol.codes import (
    AccountOperation,
    CheckBalanceResult,
    Estimate,
    OfferStatus,
    RequestedAction,
    TariffChangeUsage,
)
from protocol.messages import AMA
from rating import CatalogError, parse_catalog
from tests.charging.conftest import (
    DATA,
    DEMO,
    EUR,
    EVENING,
    INITIAL,
    PEAK,
    PEAK_END_S,
    SMS,
    SUB,
    TERMINATION,
    UPDATE,
    VOICE,
    Harness,
    MiB,
    amr,
    ccr,
    epoch_ms,
    epoch_s,
    mscc,
    only,
    rsu,
    usu,
)
from tests.charging.test_events import event

GiB = 1 << 30
# A daily offer of 1 MiB of data for 1 EUR, and one with rollover, beside the demo's bundle.
OFFERS = (
    DEMO
    + """
[[offers]]
name = "tiny"
fee = "1.00"
period = "daily"
priority = 1

[[offers.allowances]]
name = "data"
rating_groups = [10]
units = "1 MiB"

[[offers]]
name = "roll"
fee = "0.50"
period = "daily"
priority = 2

[[offers.allowances]]
name = "data"
rating_groups = [10]
units = "1 MiB"
rollover_cap = "2 MiB"
"""
)
# Monday 2026-01-05 14:00 Paris (PEAK); the next local midnight, Tuesday 00:00 Paris (23:00Z).
TUESDAY = epoch_ms("2026-01-06T00:00:00+01:00")
WEDNESDAY = epoch_ms("2026-01-07T00:00:00+01:00")
# bundle-15 is monthly on the subscription's day: 2026-02-05 00:00 Paris
FEBRUARY_5 = epoch_ms("2026-02-05T00:00:00+01:00")


def subscribe(
    h: Harness,
    offer: str,
    now_ms: int,
    *,
    account: str = "a",
    op: AccountOperation = AccountOperation.SUBSCRIBE,
    operation_id: str | None = None,
) -> AMA:
    message = replace(amr(op, account, operation_id=operation_id), offer_name=offer)
    return h.ama(message, now_ms)


def balances(h: Harness, account: str = "a") -> dict[tuple[str, str], tuple[int, int, int | None]]:
    """(offer, allowance) -> (units left, units held, expiry s) as GET answers them."""
    answer = h.ama(amr(AccountOperation.GET, account), PEAK)
    assert answer.account is not None
    return {
        (b.offer_name, b.allowance_name): (
            b.allowance_units,
            b.allowance_reserved,
            b.balance_expiry,
        )
        for b in answer.account.offer_balance or ()
    }


def check(h: Harness, top_ups: int = 0) -> None:
    """Both books balance, and the records reconcile with the money the accounts lost: every
    debit is charging (no administrative DEBIT in these tests), every credit a refund (a
    negative record) or one of the `top_ups`."""
    h.ledger.check_invariants()
    h.core.offers.check_invariants()
    totals = h.ledger.totals()
    assert h.cdr_total() == totals.debits - (totals.credits - top_ups)


def test_subscribe_takes_the_fee_and_gives_the_allowances(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    answer = subscribe(h, "bundle-15", PEAK)
    assert answer.result_code == 2001
    assert h.balance("a") == 5 * EUR  # 20 - 15
    # 10 GiB, 300 min = 18,000 s, 100 SMS; all expire at the first renewal, 5 Feb 00:00 Paris
    assert balances(h) == {
        ("bundle-15", "data"): (10 * GiB, 0, FEBRUARY_5 // 1000),
        ("bundle-15", "voice"): (18_000, 0, FEBRUARY_5 // 1000),
        ("bundle-15", "sms"): (100, 0, FEBRUARY_5 // 1000),
    }
    (fee,) = h.cdrs()  # CREATE writes no record; the fee does
    assert fee["recordType"] == "offerFee" and fee["charge"] == 15 * EUR
    assert fee["offerName"] == "bundle-15" and fee["offerPeriod"] == 0
    assert fee["recordOpeningTime"] == "2026-01-05T13:00:00.000Z"
    check(h)
    h.assert_replays()


def test_subscribe_refusals_change_nothing(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    before = h.core.snapshot(duplicates=False), h.ledger.snapshot()
    poor = subscribe(h, "bundle-15", PEAK)  # 15 EUR > 10 EUR
    assert poor.result_code == 4012 and poor.failed_avp == {"Offer-Name": "bundle-15"}
    unknown = subscribe(h, "gold", PEAK)
    assert unknown.result_code == 5004 and unknown.failed_avp == {"Offer-Name": "gold"}
    missing = h.ama(amr(AccountOperation.SUBSCRIBE, "a"), PEAK)
    assert missing.result_code == 5005 and missing.failed_avp == {"Offer-Name": None}
    not_held = subscribe(h, "bundle-15", PEAK, op=AccountOperation.UNSUBSCRIBE)
    assert not_held.result_code == 5004
    assert before[0] == h.core.snapshot(duplicates=False)
    assert h.balance("a") == 10 * EUR and h.cdrs() == []


def test_subscribe_is_applied_once_per_operation_id(h: Harness) -> None:
    h.account("a", SUB, 40 * EUR)
    assert subscribe(h, "bundle-15", PEAK, operation_id="op-1").result_code == 2001
    assert subscribe(h, "bundle-15", PEAK + 1, operation_id="op-1").result_code == 2001
    assert h.balance("a") == 25 * EUR  # one fee
    # the same id for another operation is refused
    assert subscribe(h, "tiny", PEAK + 2, operation_id="op-1").result_code == 5004
    # a second SUBSCRIBE under a new id is refused: the account holds the offer
    again = subscribe(h, "bundle-15", PEAK + 3, operation_id="op-2")
    assert again.result_code == 5004 and again.error_message is not None
    assert "already" in again.error_message


def test_a_data_session_is_paid_by_the_allowance(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    grant = only(h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    # the default quantum, 10 MiB, held on the allowance; no money reserved
    assert grant.result_code == 2001 and grant.granted_service_unit is not None
    assert grant.granted_service_unit.cc_total_octets == 10 * MiB
    assert grant.final_unit_indication is None
    assert h.reserved("a") == 0
    assert balances(h)[("bundle-15", "data")][:2] == (10 * GiB - 10 * MiB, 10 * MiB)
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=4 * MiB),))), PEAK + 60_000)
    # 4 MiB used; 6 MiB given back; a new 10 MiB held
    assert balances(h)[("bundle-15", "data")][:2] == (10 * GiB - 14 * MiB, 10 * MiB)
    h.cca(ccr("s", TERMINATION, 2, mscc(10, used=(usu(octets=3 * MiB),))), PEAK + 120_000)
    assert balances(h)[("bundle-15", "data")][:2] == (10 * GiB - 7 * MiB, 0)
    assert h.balance("a") == 5 * EUR  # only the fee was paid in money
    session = [r for r in h.cdrs() if r["recordType"] == "session"]
    containers = [
        c for r in session for u in r["listOfMultipleUnitUsage"] for c in u["usedUnitContainers"]
    ]
    assert [c["charge"] for c in containers] == [0, 0]
    assert [c["balanceUsage"] for c in containers] == [
        [{"offerName": "bundle-15", "allowanceName": "data", "units": 4 * MiB}],
        [{"offerName": "bundle-15", "allowanceName": "data", "units": 3 * MiB}],
    ]
    assert [c["moneyUnits"] for c in containers] == [0, 0]
    check(h)
    h.assert_replays()


def test_a_grant_spans_the_allowance_and_money() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)  # 1 EUR: 9 EUR left, 1 MiB of data
    grant = only(h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    assert grant.granted_service_unit is not None
    assert grant.granted_service_unit.cc_total_octets == 10 * MiB
    # 1 MiB on the allowance, 9 MiB in money at the peak price 0.02 EUR/MiB: 0.18 EUR reserved
    assert h.reserved("a") == 180_000
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=10 * MiB),))), PEAK + 60_000)
    # 9 MiB charged: 180,000 micro-units; the allowance is empty
    assert h.balance("a") == 9 * EUR - 180_000
    (container,) = [
        c
        for r in h.cdrs()
        if r["recordType"] == "session"
        for u in r["listOfMultipleUnitUsage"]
        for c in u["usedUnitContainers"]
    ]
    assert container["totalVolume"] == 10 * MiB and container["moneyUnits"] == 9 * MiB
    assert container["charge"] == 180_000
    assert container["balanceUsage"] == [
        {"offerName": "tiny", "allowanceName": "data", "units": MiB}
    ]
    assert balances(h)[("tiny", "data")][:2] == (0, 0)
    check(h)
    h.assert_replays()


def test_draw_order_is_priority_then_expiry() -> None:
    """tiny (priority 1) is drawn before roll (priority 2), whatever the order of
    subscription."""
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "roll", PEAK)
    subscribe(h, "tiny", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB + MiB // 2)), subscriber=SUB), PEAK)
    # 1 MiB on tiny, then 0.5 MiB on roll
    assert balances(h)[("tiny", "data")][:2] == (0, MiB)
    assert balances(h)[("roll", "data")][:2] == (MiB // 2, MiB // 2)
    assert h.reserved("a") == 0
    check(h)


def test_renewal_at_the_boundary_takes_the_fee_and_resets_the_allowance() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB // 4)), subscriber=SUB), PEAK)
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB // 4),))), PEAK + 1000)
    assert balances(h)[("tiny", "data")] == (3 * MiB // 4, 0, TUESDAY // 1000)
    assert not h.core.due(TUESDAY - 1)
    assert h.tick(TUESDAY)  # the edge ticks at the boundary
    # 10 - 1 (subscription) - 1 (renewal) = 8 EUR; the unused 0.75 MiB expired
    assert h.balance("a") == 8 * EUR
    assert balances(h)[("tiny", "data")] == (MiB, 0, WEDNESDAY // 1000)
    fees = [r for r in h.cdrs() if r["recordType"] == "offerFee"]
    assert [(f["offerPeriod"], f["charge"], f["recordOpeningTime"]) for f in fees] == [
        (0, EUR, "2026-01-05T13:00:00.000Z"),
        (1, EUR, "2026-01-05T23:00:00.000Z"),
    ]
    check(h)
    h.assert_replays()


def test_renewals_missed_by_ticks_are_made_each_at_its_instant() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    h.tick(WEDNESDAY + 5_000)  # two boundaries passed: Tuesday and Wednesday 00:00
    assert h.balance("a") == 7 * EUR
    fees = [r["recordOpeningTime"] for r in h.cdrs() if r["recordType"] == "offerFee"]
    assert fees[1:] == ["2026-01-05T23:00:00.000Z", "2026-01-06T23:00:00.000Z"]
    check(h)


def test_an_unpaid_renewal_suspends_the_offer_until_a_top_up_pays_it() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, EUR + 500_000)  # 1.50 EUR
    subscribe(h, "tiny", PEAK)  # 0.50 EUR left
    h.tick(TUESDAY)  # 1 EUR cannot be paid: suspended, its allowance unusable
    assert h.balance("a") == 500_000
    answer = h.ama(amr(AccountOperation.GET, "a"), TUESDAY)
    assert answer.account is not None and answer.account.offer_balance is not None
    (bal,) = answer.account.offer_balance
    assert bal.offer_status is OfferStatus.SUSPENDED and bal.allowance_units == 0
    # usage goes to money: 0.5 MiB at the off-peak price 0.01 EUR/MiB (Tuesday 00:00-08:00)
    grant = only(
        h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB // 2)), subscriber=SUB), TUESDAY)
    )
    assert grant.result_code == 2001 and h.reserved("a") == 5_000
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB // 2),))), TUESDAY + 1000)
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR, operation_id="top-up"), TUESDAY + 2000)
    # the top-up retries the fee at once: paid (0.495 + 1 - 1 EUR), active again with 1 MiB
    assert balances(h)[("tiny", "data")][:2] == (MiB, 0)
    assert h.balance("a") == 500_000 - 5_000 + EUR - EUR
    fees = [(r["offerPeriod"], r["recordOpeningTime"]) for r in h.cdrs() if "offerName" in r]
    assert fees == [(0, "2026-01-05T13:00:00.000Z"), (1, "2026-01-05T23:00:02.000Z")]
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR, operation_id="again"), TUESDAY + 3000)
    assert h.balance("a") == 500_000 - 5_000 + EUR  # a second top-up pays nothing more
    h.tick(WEDNESDAY)  # the next renewal as usual
    assert balances(h)[("tiny", "data")][:2] == (MiB, 0)
    assert h.balance("a") == 500_000 - 5_000 + EUR - EUR
    check(h, top_ups=2 * EUR)
    h.assert_replays()


def test_rollover_up_to_the_cap() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "roll", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB // 2)), subscriber=SUB), PEAK)
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB // 2),))), PEAK + 1000)
    h.tick(TUESDAY)  # 0.5 MiB left + 1 MiB = 1.5 MiB (cap 2 MiB)
    assert balances(h)[("roll", "data")][0] == MiB + MiB // 2
    h.tick(WEDNESDAY)  # 1.5 + 1 = 2.5 MiB, cut to the cap: 2 MiB (0.5 MiB expire)
    assert balances(h)[("roll", "data")][0] == 2 * MiB
    check(h)
    h.assert_replays()


def test_units_held_across_a_renewal_are_used_and_the_rest_expires() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB)), subscriber=SUB), TUESDAY - 60_000)
    h.tick(TUESDAY)  # renewed while 1 MiB of the first period is held
    assert balances(h)[("tiny", "data")][:2] == (MiB, MiB)
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB // 4),))), TUESDAY + 1000)
    # 0.25 MiB used from the hold, the 0.75 MiB given back belong to the last period: expired
    assert balances(h)[("tiny", "data")][:2] == (MiB, 0)
    check(h)
    h.assert_replays()


def test_a_grant_paid_by_the_allowance_expires_with_its_hold() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB // 2)), subscriber=SUB), PEAK)
    # the session is held open by Tcc (2 x 1 h validity); the hold expires at the grant's
    # reservation expiry (Tcc + 60 s); supervision closes the session first
    h.tick(PEAK + (7200 + 1) * 1000)
    assert balances(h)[("tiny", "data")][:2] == (MiB, 0)
    assert not h.core.sessions
    check(h)


def test_estimate_draws_on_allowances_on_paper_only(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    before = balances(h)
    first = ccr("e", INITIAL, 0, mscc(40, ask=rsu(seconds=120)), subscriber=SUB, service=VOICE)
    grant = only(h.cca(msgspec.structs.replace(first, estimate=Estimate.ESTIMATE), PEAK))
    assert grant.granted_service_unit is not None and grant.granted_service_unit.cc_time == 120
    end = ccr("e", TERMINATION, 1, mscc(40, used=(usu(seconds=90),)), service=VOICE)
    answer = h.cca(msgspec.structs.replace(end, estimate=Estimate.ESTIMATE), PEAK + 90_000)
    # 90 s on the voice allowance: costs nothing, no setup fee (money pays no unit)
    assert answer.cost_information is not None
    assert answer.cost_information.unit_value.value_digits == 0
    assert balances(h) == before and h.balance("a") == 5 * EUR
    assert [r["recordType"] for r in h.cdrs()] == ["offerFee"]


def test_sms_and_voice_draw_on_their_own_allowances(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    h.cca(ccr("m", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    h.cca(ccr("m", TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS), PEAK + 1)
    h.cca(ccr("v", INITIAL, 0, mscc(40, ask=rsu()), subscriber=SUB, service=VOICE), PEAK)
    h.cca(ccr("v", TERMINATION, 1, mscc(40, used=(usu(seconds=61),)), service=VOICE), PEAK + 61)
    got = balances(h)
    assert got[("bundle-15", "sms")][0] == 99
    assert got[("bundle-15", "voice")][0] == 18_000 - 61  # units, no billing increment
    assert h.balance("a") == 5 * EUR  # no setup fee: the allowance paid every second
    check(h)


def test_unsubscribe_refused_while_held_then_drops_the_balances(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    busy = subscribe(h, "bundle-15", PEAK + 1, op=AccountOperation.UNSUBSCRIBE)
    assert busy.result_code == 5012 and busy.failed_avp == {"Offer-Name": "bundle-15"}
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), PEAK + 2)
    gone = subscribe(h, "bundle-15", PEAK + 3, op=AccountOperation.UNSUBSCRIBE)
    assert gone.result_code == 2001
    assert gone.account is not None and gone.account.offer_balance is None
    assert not h.core.due(FEBRUARY_5)  # no renewal left
    check(h)
    h.assert_replays()


def test_offers_survive_a_restart() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=MiB // 2)), subscriber=SUB), PEAK)
    h.restart()
    h.catalog = OFFERS
    assert STATE_DECODER.decode(h.core.snapshot()).offers is not None
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB // 4),))), PEAK + 1000)
    assert balances(h)[("tiny", "data")][:2] == (3 * MiB // 4, 0)
    assert h.core.due(TUESDAY)
    check(h)


# --- the units identity under any sequence of operations (hypothesis) --------------------------

_STEP = st.tuples(
    st.sampled_from(
        [
            "open",
            "report",
            "close",
            "tick",
            "top-up",
            "subscribe",
            "unsubscribe",
            "debit",
            "refund",
            "restart",
        ]
    ),
    st.integers(min_value=0, max_value=2),  # which session / offer
    st.integers(min_value=0, max_value=3 * MiB),  # units
    st.integers(min_value=1, max_value=40 * 3600),  # seconds later
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=30))
def test_units_granted_are_used_or_returned(steps: list[tuple[str, int, int, int]]) -> None:
    """Whatever happens, every balance's units add up (granted = used + returned + held),
    the money books balance, the records reconcile, and replay rebuilds the same state, also
    after restarts from snapshots on the way."""
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 5 * EUR)
    subscribe(h, "tiny", PEAK)
    now = PEAK
    numbers: dict[int, int] = {}
    top_ups = 0
    offers = ["tiny", "roll", "bundle-15"]
    for kind, which, units, later in steps:
        now += later * 1000
        name = f"s{which}"
        if kind == "open" and which not in numbers:
            ask = mscc(10, ask=rsu(octets=max(units, 1)))
            if h.cca(ccr(name, INITIAL, 0, ask, subscriber=SUB), now).result_code == 2001:
                numbers[which] = 0
        elif kind in ("report", "close") and which in numbers:
            numbers[which] += 1
            used = (usu(octets=units),)
            closing = kind == "close"
            request = ccr(
                name,
                TERMINATION if closing else UPDATE,
                numbers[which],
                mscc(10, used=used) if closing else mscc(10, used=used, ask=rsu()),
            )
            code = h.cca(request, now).result_code
            if closing or code != 2001:
                del numbers[which]
        elif kind == "tick":
            h.tick(now)
            numbers = {
                k: n for k, n in numbers.items() if h.core.has_session(f"upf1.test.local;s{k}")
            }
        elif kind == "top-up":
            h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR + units), now)
            top_ups += EUR + units
        elif kind in ("debit", "refund"):  # video events draw on the bundle's data
            action = (
                RequestedAction.DIRECT_DEBITING
                if kind == "debit"
                else (RequestedAction.REFUND_ACCOUNT)
            )
            h.cca(event(f"ev{now}", action, octets=units // 4 or 1, rg=20, service=DATA), now)
        elif kind == "restart":  # a checkpoint and a restart: restored from the snapshots
            h.restart()
        elif kind == "subscribe":
            subscribe(h, offers[which], now)
        else:
            subscribe(h, offers[which], now, op=AccountOperation.UNSUBSCRIBE)
        h.core.offers.check_invariants()
        h.ledger.check_invariants()
    for which, number in numbers.items():  # closed, so that every charge is in a record
        h.cca(ccr(f"s{which}", TERMINATION, number + 1, mscc(10, used=(usu(octets=0),))), now)
    check(h, top_ups)
    h.assert_replays()


def test_subscribing_again_in_the_same_millisecond_pays_again(h: Harness) -> None:
    """Requests of one batch share their `now_ms`: the fee's ledger id is made of the
    subscription's number, not its instant, or the second fee would be taken for a repeat of
    the first (regression: it was the instant)."""
    h.account("a", SUB, 40 * EUR)
    subscribe(h, "bundle-15", PEAK)
    subscribe(h, "bundle-15", PEAK, op=AccountOperation.UNSUBSCRIBE)
    assert subscribe(h, "bundle-15", PEAK).result_code == 2001
    assert h.balance("a") == 10 * EUR  # 40 - 15 - 15
    check(h)


# --- events: DIRECT_DEBITING draws on the allowances, a refund gives the units back ----------


def _event_containers(h: Harness) -> list[dict[str, object]]:
    return [
        c
        for r in h.cdrs()
        if r["recordType"] == "event"
        for u in r["listOfMultipleUnitUsage"]
        for c in u["usedUnitContainers"]
    ]


def test_an_sms_event_is_paid_by_the_allowance_and_its_refund_gives_it_back(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    debit = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1), PEAK)
    assert debit.result_code == 2001
    assert balances(h)[("bundle-15", "sms")][0] == 99 and h.balance("a") == 5 * EUR
    refund = h.cca(event("e2", RequestedAction.REFUND_ACCOUNT, units=1), PEAK + 1000)
    assert refund.result_code == 2001
    assert balances(h)[("bundle-15", "sms")][0] == 100 and h.balance("a") == 5 * EUR
    paid, back = _event_containers(h)
    assert paid["charge"] == 0 and paid["moneyUnits"] == 0
    assert paid["balanceUsage"] == [{"offerName": "bundle-15", "allowanceName": "sms", "units": 1}]
    assert back["charge"] == 0 and back["balanceUsage"] == [
        {"offerName": "bundle-15", "allowanceName": "sms", "units": -1}
    ]
    check(h)


def test_an_event_beyond_the_allowance_pays_the_rest_in_money(h: Harness) -> None:
    h.account("a", SUB, 20 * EUR)
    subscribe(h, "bundle-15", PEAK)
    # 102 messages: 100 on the allowance, 2 x 0.10 EUR in money
    assert h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=102), PEAK).result_code == 2001
    assert h.balance("a") == 5 * EUR - 200_000
    assert balances(h)[("bundle-15", "sms")][0] == 0
    (paid,) = _event_containers(h)
    assert paid["charge"] == 200_000 and paid["moneyUnits"] == 2
    # a refund of 101 gives back the newest first: the 100 allowance units, then 1 in money
    assert h.cca(event("e2", RequestedAction.REFUND_ACCOUNT, units=101), PEAK + 1).result_code == (
        2001
    )
    assert balances(h)[("bundle-15", "sms")][0] == 100
    assert h.balance("a") == 5 * EUR - 100_000
    check(h)
    h.assert_replays()


def test_check_balance_and_estimates_count_the_allowance_on_paper(h: Harness) -> None:
    h.account("a", SUB, 15 * EUR)
    subscribe(h, "bundle-15", PEAK)  # no money left
    check_balance = h.cca(event("c1", RequestedAction.CHECK_BALANCE, units=3), PEAK)
    assert check_balance.check_balance_result is CheckBalanceResult.ENOUGH_CREDIT
    estimate = msgspec.structs.replace(
        event("c2", RequestedAction.DIRECT_DEBITING, units=3), estimate=Estimate.ESTIMATE
    )
    answer = h.cca(estimate, PEAK)
    assert answer.result_code == 2001 and answer.cost_information is not None
    assert answer.cost_information.unit_value.value_digits == 0
    assert balances(h)[("bundle-15", "sms")][0] == 100
    too_many = h.cca(event("c3", RequestedAction.DIRECT_DEBITING, units=101), PEAK)
    assert too_many.result_code == 4012  # the 101st message cannot be paid: nothing drawn
    assert balances(h)[("bundle-15", "sms")][0] == 100
    check(h)


# --- price modifiers of an offer: promotions of its holders alone -----------------------------

HALF = (
    DEMO
    + """
[[offers]]
name = "evening-half"
period = "monthly"

[[offers.allowances]]
name = "none"
rating_groups = [30]
units = 1

[[offers.modifiers]]
name = "half"
rating_groups = [10]
start = 2026-01-05T19:45:00+01:00
end = 2026-01-06T00:00:00+01:00
factor = "0.5"
"""
)


def test_a_modifier_starting_inside_a_grant_is_its_tariff_change() -> None:
    h = Harness(catalog=HALF)
    h.account("a", SUB, 10 * EUR)
    h.account("b", "491700000002", 10 * EUR)
    assert subscribe(h, "evening-half", EVENING).result_code == 2001  # no fee
    mine = only(h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), EVENING))
    theirs = only(
        h.cca(ccr("t", INITIAL, 0, mscc(10, ask=rsu()), subscriber="491700000002"), EVENING)
    )
    # the grant from 19:30 for an hour: a's price halves at 19:45 (its offer), b's at 20:00
    assert mine.tariff_time_change == epoch_s("2026-01-05T19:45:00+01:00")
    assert theirs.tariff_time_change == PEAK_END_S
    used = (
        usu(octets=4 * MiB, tcu=TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
        usu(octets=6 * MiB, tcu=TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
    )
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=used)), EVENING + 1_800_000)
    # 4 MiB x 0.02 (peak) + 6 MiB x 0.02 x 0.5 (peak, halved from 19:45) = 80,000 + 60,000
    assert h.balance("a") == 10 * EUR - 140_000
    check(h)
    h.assert_replays()


def test_a_modifier_may_not_overlap_a_promotion_of_its_rating_group() -> None:
    bad = HALF.replace("2026-01-05T19:45:00+01:00", "2026-11-27T10:00:00+01:00").replace(
        "2026-01-06T00:00:00+01:00", "2026-11-28T00:00:00+01:00"
    )
    with pytest.raises(CatalogError, match="overlaps promotion 'black-friday'"):
        parse_catalog(bad)


def test_a_renewal_under_a_new_catalog_gives_the_allowances_it_added() -> None:
    h = Harness(catalog=OFFERS)
    h.account("a", SUB, 10 * EUR)
    subscribe(h, "tiny", PEAK)
    more = OFFERS.replace(
        'units = "1 MiB"\n\n[[offers]]',
        'units = "1 MiB"\n\n[[offers.allowances]]\nname = "sms"\nrating_groups = [30]\n'
        "units = 5\n\n[[offers]]",
        1,
    )
    h.load_catalog(more, PEAK + 1000)
    assert ("tiny", "sms") not in balances(h)  # until the renewal
    h.tick(TUESDAY)
    assert balances(h)[("tiny", "sms")][0] == 5 and balances(h)[("tiny", "data")][0] == MiB
    check(h)
    h.assert_replays()


MARCH_5 = epoch_ms("2026-03-05T00:00:00+01:00")


def test_the_worked_example_of_docs_catalog(h: Harness) -> None:
    """docs/catalog.md, *Offers*: the demo bundle, monthly from 2026-01-05 14:00 Paris."""
    h.account("a", SUB, 20 * EUR)
    h.account("b", "491700000002", 35 * EUR)
    subscribe(h, "bundle-15", PEAK)
    subscribe(h, "bundle-15", PEAK, account="b")
    assert h.balance("a") == 5 * EUR and h.balance("b") == 20 * EUR
    # b uses 6 GiB of data (4 GiB left) and 90 s of a call
    h.cca(ccr("d", INITIAL, 0, mscc(10, ask=rsu(octets=6 * GiB)), subscriber="491700000002"), PEAK)
    h.cca(ccr("d", TERMINATION, 1, mscc(10, used=(usu(octets=6 * GiB),))), PEAK + 60_000)
    h.cca(ccr("v", INITIAL, 0, mscc(40, ask=rsu()), subscriber="491700000002", service=VOICE), PEAK)
    h.cca(ccr("v", TERMINATION, 1, mscc(40, used=(usu(seconds=90),)), service=VOICE), PEAK + 90)
    assert balances(h, "b")[("bundle-15", "voice")][0] == 18_000 - 90
    assert h.balance("b") == 20 * EUR  # no setup fee: the allowance paid every second
    h.tick(FEBRUARY_5)
    # a: 15 EUR from 5 EUR: suspended, its units gone
    assert {k: v[0] for k, v in balances(h, "a").items()} == {
        ("bundle-15", "data"): 0,
        ("bundle-15", "voice"): 0,
        ("bundle-15", "sms"): 0,
    }
    # b: paid; min(4 + 10, 20) = 14 GiB of data, the unused minutes expired: 18,000 s again
    assert h.balance("b") == 5 * EUR
    assert balances(h, "b") == {
        ("bundle-15", "data"): (14 * GiB, 0, MARCH_5 // 1000),
        ("bundle-15", "voice"): (18_000, 0, MARCH_5 // 1000),
        ("bundle-15", "sms"): (100, 0, MARCH_5 // 1000),
    }
    # a tops up 10 EUR: the fee is paid at once, the bundle back until 5 March
    h.ama(amr(AccountOperation.CREDIT, "a", amount=10 * EUR, operation_id="t"), FEBRUARY_5 + 1)
    assert h.balance("a") == 0
    assert balances(h, "a") == {
        ("bundle-15", "data"): (10 * GiB, 0, MARCH_5 // 1000),
        ("bundle-15", "voice"): (18_000, 0, MARCH_5 // 1000),
        ("bundle-15", "sms"): (100, 0, MARCH_5 // 1000),
    }
    check(h, top_ups=10 * EUR)


def test_a_renewal_reauthorises_a_session_held_at_its_final_units() -> None:
    h = Harness(catalog=OFFERS.replace('fee = "1.00"', 'fee = "0"'))  # tiny, free
    h.account("a", SUB, 0)
    subscribe(h, "tiny", PEAK)  # no money: the 1 MiB allowance only
    grant = only(
        h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=2 * MiB)), subscriber=SUB), PEAK)
    )
    assert grant.granted_service_unit is not None
    assert grant.granted_service_unit.cc_total_octets == MiB  # the allowance; money: none
    assert grant.final_unit_indication is not None
    again = h.cca(
        ccr("s", UPDATE, 1, mscc(10, ask=rsu(octets=2 * MiB), used=(usu(octets=MiB),))),
        TUESDAY - 60_000,
    )
    assert only(again).result_code == 4012  # the allowance is used up
    h.take_actions()
    h.tick(TUESDAY)  # renewed: 1 MiB more, so the session is asked to re-authorise
    (rar,) = h.take_actions()
    assert rar.session_id == "upf1.test.local;s" and rar.rating_groups == (10,)
    check(h)
    h.assert_replays()


def test_catalog_facts_show_the_offers_so_a_diff_shows_their_changes() -> None:
    before = catalog_facts(parse_catalog(OFFERS))
    after = catalog_facts(parse_catalog(OFFERS.replace('rollover_cap = "2 MiB"', "")))
    assert before["offer tiny"] == "fee 1.00 EUR, daily, priority 1, unpaid: suspend"
    assert before["offer roll allowance data"] == (
        "1 MiB of rating groups 10, rolls over up to 2 MiB"
    )
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {"offer roll allowance data"}
    assert after["offer roll allowance data"] == (
        "1 MiB of rating groups 10, expires at the period's end"
    )
    half = catalog_facts(parse_catalog(HALF))["offer evening-half modifier half"]
    assert half.startswith("rating groups 10, 2026-01-05T18:45:00Z .. ") and half.endswith("x 1/2")


def test_a_subscription_refused_for_its_fee_is_paid_after_a_top_up(h: Harness) -> None:
    """The ledger remembers a refused fee under its id: the next SUBSCRIBE must not reuse it
    (regression: it did, and was refused again whatever the balance)."""
    h.account("a", SUB, 10 * EUR)
    assert subscribe(h, "bundle-15", PEAK).result_code == 4012
    h.ama(amr(AccountOperation.CREDIT, "a", amount=10 * EUR, operation_id="t"), PEAK + 1)
    assert subscribe(h, "bundle-15", PEAK + 2).result_code == 2001
    assert h.balance("a") == 5 * EUR
    check(h, top_ups=10 * EUR)
