"""EVENT requests (WIRE.md 5.4) on the demo catalog."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    CheckBalanceResult,
    RequestedAction,
)
from protocol.messages import CCR
from tests.charging.conftest import (
    DATA,
    EUR,
    PEAK,
    SMS,
    SUNDAY,
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
    sid,
    usu,
)

EVENT = CCRequestType.EVENT
SUB = "491700000001"


def event(
    sid: str,
    action: RequestedAction,
    *,
    units: int | None = None,
    seconds: int | None = None,
    octets: int | None = None,
    rg: int = 30,
    service: str = SMS,
    sub: str = SUB,
    at: int | None = None,
    aoc: AoCRequestType | None = None,
) -> CCR:
    return ccr(
        sid,
        EVENT,
        0,
        mscc(rg, ask=rsu(units=units, seconds=seconds, octets=octets)),
        subscriber=sub,
        service=service,
        action=action,
        event_timestamp=at,
        aoc=aoc,
    )


def test_direct_debiting_an_sms(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1), PEAK)
    assert answer.result_code == 2001 and answer.cc_request_type == EVENT
    g = only(answer)
    assert g.result_code == 2001
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_service_specific_units == 1
    assert h.balance("a") == 10 * EUR - 100_000 and h.reserved("a") == 0
    (cdr,) = h.cdrs()
    assert cdr["recordType"] == "event" and cdr["charge"] == 100_000
    assert cdr["sessionId"] == sid("e1") and cdr["accountId"] == "a"
    assert cdr["servedSubscriber"] == SUB and cdr["nodeId"] == "upf1.test.local"
    assert cdr["causeForRecordClosing"] == "normalRelease"
    (usage,) = cdr["listOfMultipleUnitUsage"]
    assert usage["ratingGroup"] == 30
    assert usage["usedUnitContainers"] == [
        {"serviceSpecificUnits": 1, "triggers": ["DIRECT_DEBITING"], "charge": 100_000}
    ]


def test_direct_debiting_rated_at_the_event_timestamp(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    # 90 s of voice as an event on a weekday: 90 x 0.001, no setup fee (catalog.md row 16),
    # although the request arrives on a Sunday
    answer = h.cca(
        event(
            "e1",
            RequestedAction.DIRECT_DEBITING,
            seconds=90,
            rg=40,
            service=VOICE,
            at=PEAK // 1000,
        ),
        SUNDAY,
    )
    assert answer.result_code == 2001
    assert h.balance("a") == 10 * EUR - 90_000
    cdr = h.cdrs()[0]
    assert cdr["recordOpeningTime"] == "2026-01-05T13:00:00.000Z"
    # without a timestamp, the arrival time rates it: Sunday is half price
    h.cca(event("e2", RequestedAction.DIRECT_DEBITING, seconds=90, rg=40, service=VOICE), SUNDAY)
    assert h.balance("a") == 10 * EUR - 90_000 - 45_000


def test_direct_debiting_without_enough_credit_is_4012_and_debits_nothing(h: Harness) -> None:
    h.account("a", SUB, 99_999)
    before = h.ledger.snapshot()
    answer = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1), PEAK)
    assert answer.result_code == 4012
    assert answer.multiple_services_credit_control is None
    assert h.balance("a") == 99_999 and h.cdr_lines == []
    assert (h.ledger.snapshot()) == before


def test_direct_debiting_of_several_groups_is_all_or_nothing(h: Harness) -> None:
    h.account("a", SUB, 250_000)
    two = ccr(
        "e1",
        EVENT,
        0,
        mscc(10, ask=rsu(octets=10 * MiB)),  # 0.20 at peak
        mscc(20, ask=rsu(octets=20 * MiB)),  # 0.10
        subscriber=SUB,
        service=DATA,
        action=RequestedAction.DIRECT_DEBITING,
    )
    assert h.cca(two, PEAK).result_code == 4012
    assert h.balance("a") == 250_000
    h.ama(amr(AccountOperation.CREDIT, "a", amount=50_000), PEAK)
    # the same Session-Id again is a duplicate of the refusal (WIRE.md 6): a new EVENT, a new id
    assert h.cca(two, PEAK + 1000).result_code == 4012
    assert h.cca(replace(two, session_id=sid("e2")), PEAK + 1000).result_code == 2001
    assert h.balance("a") == 0
    (cdr,) = h.cdrs()
    assert [u["ratingGroup"] for u in cdr["listOfMultipleUnitUsage"]] == [10, 20]
    assert cdr["charge"] == 300_000


@pytest.mark.parametrize("status", [AccountStatus.SUSPENDED, AccountStatus.BARRED])
def test_direct_debiting_on_an_inactive_account_is_4010(h: Harness, status: AccountStatus) -> None:
    h.account("a", SUB, 10 * EUR)
    h.ama(amr(AccountOperation.SET_STATUS, "a", status=status), PEAK)
    answer = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1), PEAK)
    assert answer.result_code == 4010 and h.balance("a") == 10 * EUR


def test_event_for_an_unknown_subscriber_is_5030(h: Harness) -> None:
    answer = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1, sub="4900"), PEAK)
    assert answer.result_code == 5030


def test_refund_is_applied_once_however_often_retransmitted(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(event("d1", RequestedAction.DIRECT_DEBITING, units=2), PEAK - 1000)
    refund = event("r1", RequestedAction.REFUND_ACCOUNT, units=1)
    first = h.send(refund, PEAK, e2e=77)
    assert first.answer.result_code == 2001 and not first.duplicate
    assert h.balance("a") == 10 * EUR - 100_000
    for later in (1_000, 60_000, 239_000):
        again = h.send(refund, PEAK + later, e2e=77)
        assert again.body == first.body and again.duplicate
    assert h.balance("a") == 10 * EUR - 100_000
    _, cdr = h.cdrs()
    assert cdr["charge"] == -100_000 and cdr["requestedAction"] == "REFUND_ACCOUNT"
    assert cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"][0]["charge"] == -100_000
    # the same End-to-End-Id from another peer is another request
    theirs = ccr(
        "r1",
        EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service=SMS,
        action=RequestedAction.REFUND_ACCOUNT,
        origin="scp2.test.local",
    )
    other = h.send(theirs, PEAK + 2_000, e2e=77)
    assert not other.duplicate and h.balance("a") == 10 * EUR
    assert h.cdr_total() == 0


def test_check_balance(h: Harness) -> None:
    h.account("a", SUB, 100_000)
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    enough = h.cca(event("c1", RequestedAction.CHECK_BALANCE, units=1), PEAK)
    assert enough.result_code == 2001
    assert enough.check_balance_result == CheckBalanceResult.ENOUGH_CREDIT
    short = h.cca(event("c2", RequestedAction.CHECK_BALANCE, units=2), PEAK)
    assert short.result_code == 2001
    assert short.check_balance_result == CheckBalanceResult.NO_CREDIT
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert h.cdr_lines == []


def test_price_enquiry_touches_nothing(h: Harness) -> None:
    h.account("a", SUB, 0)
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    answer = h.cca(
        event(
            "p1",
            RequestedAction.PRICE_ENQUIRY,
            octets=10 * MiB,
            rg=10,
            service=DATA,
            at=epoch_s("2026-11-27T14:00:00+01:00"),
        ),
        epoch_ms("2026-11-27T14:00:05+01:00"),  # (inside the Event-Timestamp window)
    )
    assert answer.result_code == 2001
    cost = answer.cost_information
    assert cost is not None
    # catalog.md row 9: Black Friday halves the peak price: 0.10 EUR = 1 x 10^-1
    assert (cost.unit_value.value_digits, cost.unit_value.exponent) == (1, -1)
    assert cost.currency_code == 978 and cost.cost_unit == "EUR"
    assert answer.check_balance_result is None
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert h.cdr_lines == []
    # no balance check: an unknown subscriber may ask too
    anyone = h.cca(event("p2", RequestedAction.PRICE_ENQUIRY, units=3, sub="4900"), PEAK)
    assert anyone.result_code == 2001 and anyone.cost_information is not None
    assert anyone.cost_information.unit_value.value_digits == 3  # 0.30 EUR = 3 x 10^-1


def test_direct_debit_with_aoc_reports_cost_and_remaining_balance(h: Harness) -> None:
    h.account("a", SUB, EUR)
    answer = h.cca(
        event("e1", RequestedAction.DIRECT_DEBITING, units=1, aoc=AoCRequestType.FULL),
        PEAK,
    )
    assert answer.cost_information is not None and answer.remaining_balance is not None
    assert answer.cost_information.unit_value.value_digits == 1
    assert answer.cost_information.unit_value.exponent == -1
    assert answer.remaining_balance.unit_value.value_digits == 9  # 0.90 EUR
    assert answer.remaining_balance.unit_value.exponent == -1


def test_unknown_rating_group_in_an_event(h: Harness) -> None:
    h.account("a", SUB, EUR)
    answer = h.cca(event("e1", RequestedAction.DIRECT_DEBITING, units=1, rg=10), PEAK)
    assert only(answer).result_code == 5031
    assert h.balance("a") == EUR


def test_price_enquiry_of_a_call_includes_the_setup_fee(h: Harness) -> None:
    """Issue 15: a 90 s call was quoted 0.09 EUR and charged 0.14. Monday 14:00 (no weekend
    discount): the first minute whole (60 s) then 30 s per second, 90 x 0.001 = 90,000, plus
    the 0.05 EUR setup fee every call pays = 140,000 = 0.14 EUR = 14 x 10^-2; the real call
    is charged exactly that."""
    quote = h.cca(
        event("q1", RequestedAction.PRICE_ENQUIRY, seconds=90, rg=40, service=VOICE), PEAK
    )
    assert quote.result_code == 2001
    cost = quote.cost_information
    assert cost is not None
    assert (cost.unit_value.value_digits, cost.unit_value.exponent) == (14, -2)
    h.account("a", SUB, EUR)
    h.cca(
        ccr("call", CCRequestType.INITIAL, 0, mscc(40, ask=rsu()), subscriber=SUB, service=VOICE),
        PEAK,
    )
    h.cca(
        ccr("call", CCRequestType.TERMINATION, 1, mscc(40, used=(usu(seconds=90),)), service=VOICE),
        PEAK + 90_000,
    )
    assert h.balance("a") == EUR - 140_000
