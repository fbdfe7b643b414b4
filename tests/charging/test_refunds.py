"""REFUND_ACCOUNT gives back only what was taken (WIRE.md 1.1 section 5.4), on the demo catalog.

A refund credits at most what DIRECT_DEBITING charged the same account for the same rating group
within the refund window and was not refunded yet; it draws on those debits newest first, at
their prices (docs/charging.md, "Refunds"). Prices: SMS (RG 30) 0.10 EUR a message; voice events
(RG 40) 0.001 EUR/s with the first minute whole on weekdays, half price at weekends."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.core.charging import (
    DEFAULT_REFUND_WINDOW_S,
    MAX_REFUND_WINDOW_S,
    MAX_REFUNDABLE_PER_GROUP,
    ChargingCore,
    Settings,
    settings_input,
)
from ocs.core.charging_types import CORE_LAYOUT, CoreState
from ocs.core.ledger import MAX_AMOUNT, MAX_TOTAL, Ledger
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CCRequestType,
    CommandCode,
    RequestedAction,
)
from protocol.errors import ProtocolError
from protocol.limits import MAX_UNITS
from protocol.messages import CCA, CCR
from tests.charging.conftest import (
    DATA,
    DEMO,
    EUR,
    PEAK,
    SMS,
    SUNDAY,
    VOICE,
    Harness,
    MiB,
    amr,
    ccr,
    mscc,
    only,
    rsu,
    usu,
)
from tests.charging.test_events import event

SUB = "491700000001"
OTHER = "491700000002"
SMS_PRICE = 100_000
DEBIT = RequestedAction.DIRECT_DEBITING
REFUND = RequestedAction.REFUND_ACCOUNT
DAY_MS = 24 * 3600 * 1000
# a weekend instant within the Event-Timestamp window around PEAK (a day after it at most):
# the Sunday before it, 2026-01-04
LAST_SUNDAY = SUNDAY - 7 * DAY_MS
# the demo catalog with an SMS at 1,000,000 EUR (10^12 micro-units): 1,000 of them are 10^15
DEAR_SMS = DEMO.replace(
    'price = "0.10"                 # 0.10 EUR per message', 'price = "1000000"'
)
assert DEAR_SMS != DEMO
# the most SMS one DIRECT_DEBITING may ask for at that price: the core bounds an event's price
# from the catalog before rating it (1,000 of them would be refused, docs/protocol.md "Limits")
DEAR_MOST = 997


def sms(sid: str, action: RequestedAction, units: int, *, sub: str = SUB) -> CCR:
    return event(sid, action, units=units, sub=sub)


def voice(
    sid: str, action: RequestedAction, seconds: int, *, at_ms: int = PEAK, sub: str = SUB
) -> CCR:
    return event(sid, action, seconds=seconds, rg=40, service=VOICE, at=at_ms // 1000, sub=sub)


def refused(answer: CCA, failed: dict[str, Any]) -> None:
    """5004 with Failed-AVP {Requested-Service-Unit: the unit map as received}."""
    assert answer.result_code == 5004, answer
    assert answer.failed_avp == {"Requested-Service-Unit": failed}
    assert answer.multiple_services_credit_control is None


def state(h: Harness) -> tuple[bytes, bytes, int]:
    return h.core.snapshot(duplicates=False), h.ledger.snapshot(), len(h.cdr_lines)


# --- hand-computed cases ------------------------------------------------------------------------


def test_refund_of_part_of_a_debit_credits_its_price(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    assert h.cca(sms("d1", DEBIT, 3), PEAK).result_code == 2001
    assert h.balance("a") == 10 * EUR - 300_000
    answer = h.cca(sms("r1", REFUND, 2), PEAK + 60_000)
    assert answer.result_code == 2001
    grant = only(answer).granted_service_unit
    assert grant is not None and grant.cc_service_specific_units == 2
    assert h.balance("a") == 10 * EUR - 300_000 + 2 * SMS_PRICE
    _, cdr = h.cdrs()
    assert cdr["requestedAction"] == "REFUND_ACCOUNT" and cdr["charge"] == -200_000
    assert cdr["listOfMultipleUnitUsage"] == [
        {
            "ratingGroup": 30,
            "usedUnitContainers": [
                {"serviceSpecificUnits": 2, "triggers": ["REFUND_ACCOUNT"], "charge": -200_000}
            ],
        }
    ]
    assert h.cdr_total("a") == 10 * EUR - h.balance("a")


def test_refund_beyond_the_debit_is_5004_and_credits_nothing(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 3), PEAK)
    before = state(h)
    refused(h.cca(sms("r1", REFUND, 5), PEAK + 1000), {"CC-Service-Specific-Units": 5})
    assert state(h) == before  # no credit, no CDR, the 3 units still refundable
    assert h.cca(sms("r2", REFUND, 3), PEAK + 2000).result_code == 2001
    assert h.balance("a") == 10 * EUR


def test_refund_of_units_never_debited_is_5004(h: Harness) -> None:
    """Issue 16: refunds of units that were never debited created money."""
    h.account("a", SUB, 0)
    refused(h.cca(sms("r1", REFUND, 1), PEAK), {"CC-Service-Specific-Units": 1})
    assert h.balance("a") == 0 and h.cdr_lines == []


def test_refund_of_ten_to_the_thirteen_sms_is_5004(h: Harness) -> None:
    """Issue 16: a REFUND of 10^13 SMS units credited 10^12 EUR, beyond the ledger's own
    per-operation limit. 10^13 is outside a unit AVP's domain: the codec refuses it (WIRE.md
    section 2's Failed-AVP, the path to the value); the largest refund inside the domain,
    beyond what was debited, is WIRE.md 5.4's 5004."""
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 1), PEAK)
    with pytest.raises(ProtocolError) as codec:
        decode_body(CommandCode.CREDIT_CONTROL, True, encode_body(sms("r0", REFUND, 10**13)))
    assert codec.value.result_code == 5004
    assert codec.value.failed_avp == {
        "Multiple-Services-Credit-Control": [
            {"Requested-Service-Unit": {"CC-Service-Specific-Units": 10**13}}
        ]
    }
    refused(h.cca(sms("r1", REFUND, MAX_UNITS), PEAK + 1), {"CC-Service-Specific-Units": MAX_UNITS})
    assert h.balance("a") == 10 * EUR - SMS_PRICE
    assert h.ledger.totals().credits == 0


def test_two_refunds_that_together_exceed_the_debit(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 3), PEAK)
    assert h.cca(sms("r1", REFUND, 2), PEAK + 1000).result_code == 2001
    refused(h.cca(sms("r2", REFUND, 2), PEAK + 2000), {"CC-Service-Specific-Units": 2})
    assert h.cca(sms("r3", REFUND, 1), PEAK + 3000).result_code == 2001
    refused(h.cca(sms("r4", REFUND, 1), PEAK + 4000), {"CC-Service-Specific-Units": 1})
    assert h.balance("a") == 10 * EUR and h.cdr_total("a") == 0


def test_the_window_includes_its_last_millisecond(h: Harness) -> None:
    """A debit at t is refundable at t + window exactly, even when another debit of the group
    at that instant forgets what left the window."""
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 1), PEAK)
    h.cca(sms("d2", DEBIT, 1), PEAK + DAY_MS)
    assert h.cca(sms("r1", REFUND, 2), PEAK + DAY_MS).result_code == 2001
    assert h.balance("a") == 10 * EUR


def test_refund_after_the_window_is_5004(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 1), PEAK)
    h.cca(sms("d2", DEBIT, 1), PEAK + 1)
    # 24 h after d1 it is still in the window (now - debit <= 24 h), 1 ms later it is not
    assert h.cca(sms("r1", REFUND, 1), PEAK + DAY_MS).result_code == 2001  # takes d2, newest
    refused(h.cca(sms("r2", REFUND, 1), PEAK + 1 + DAY_MS + 1), {"CC-Service-Specific-Units": 1})
    assert h.balance("a") == 10 * EUR - SMS_PRICE
    # d1 is forgotten at the next request or tick in the next second (expiry is kept by second)
    assert h.core.refundable_debits == 1
    h.cca(sms("p1", RequestedAction.PRICE_ENQUIRY, 1), PEAK + DAY_MS + 1000)
    assert h.core.refundable_debits == 0


def test_refunds_draw_newest_first_at_the_prices_of_the_debits(h: Harness) -> None:
    """Three voice events: 7 s on a weekday (the first minute whole: 60,000), 90 s at a
    weekend's half price (45,000), 90 s on a weekday (90,000). Refunds take the newest first;
    part of a debit is priced pro rata, rounded down, and its last unit returns the rest."""
    h.account("a", SUB, 10 * EUR)
    h.cca(voice("v1", DEBIT, 7), PEAK)
    h.cca(voice("v2", DEBIT, 90, at_ms=LAST_SUNDAY), PEAK + 1000)
    h.cca(voice("v3", DEBIT, 90), PEAK + 2000)
    assert [r["charge"] for r in h.cdrs()] == [60_000, 45_000, 90_000]
    # 120 s: v3 whole (90,000) + 30 of v2's 90 s: floor(45,000 x 30 / 90) = 15,000
    assert h.cca(voice("r1", REFUND, 120), PEAK + 3000).result_code == 2001
    # 62 s: the rest of v2 (60 s, 30,000) + 2 of v1's 7 s: floor(60,000 x 2 / 7) = 17,142
    assert h.cca(voice("r2", REFUND, 62), PEAK + 4000).result_code == 2001
    # 5 s: the rest of v1: 60,000 - 17,142 = 42,858
    assert h.cca(voice("r3", REFUND, 5), PEAK + 5000).result_code == 2001
    assert [r["charge"] for r in h.cdrs()[3:]] == [-105_000, -47_142, -42_858]
    assert h.balance("a") == 10 * EUR and h.core.refundable_debits == 0
    refused(h.cca(voice("r4", REFUND, 1), PEAK + 6000), {"CC-Time": 1})


def test_refund_prices_ignore_the_refunds_own_timestamp(h: Harness) -> None:
    """A refund stamped on a weekend does not give back less (nor a weekday one more) than
    the debit it undoes took."""
    h.account("a", SUB, 10 * EUR)
    h.cca(voice("v1", DEBIT, 90), PEAK)
    assert h.cca(voice("r1", REFUND, 90, at_ms=LAST_SUNDAY), PEAK + 1000).result_code == 2001
    assert h.balance("a") == 10 * EUR and h.cdrs()[-1]["charge"] == -90_000


def test_a_refund_draws_on_the_same_account_and_rating_group_only(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.account("b", OTHER, 10 * EUR)
    h.cca(sms("d1", DEBIT, 2), PEAK)
    h.cca(event("d2", DEBIT, octets=MiB, rg=20, service=DATA), PEAK)  # video: 5,000
    refused(h.cca(sms("r1", REFUND, 1, sub=OTHER), PEAK + 1), {"CC-Service-Specific-Units": 1})
    refused(
        h.cca(event("r2", REFUND, octets=MiB, rg=10, service=DATA), PEAK + 2),
        {"CC-Total-Octets": MiB},
    )
    both = ccr(
        "r3",
        CCRequestType.EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        mscc(30, ask=rsu(units=2)),  # the same group twice: 3 units in all, 2 debited
        subscriber=SUB,
        service=SMS,
        action=REFUND,
    )
    # a Rating-Group at most once per request (docs/protocol.md "Limits"): the codec refuses
    # it, so a refund cannot draw on one group twice
    with pytest.raises(ProtocolError) as codec:
        decode_body(CommandCode.CREDIT_CONTROL, True, encode_body(both))
    assert codec.value.result_code == 5004
    assert h.balance("a") == 10 * EUR - 200_000 - 5_000 and h.balance("b") == 10 * EUR
    assert h.cca(event("r4", REFUND, octets=MiB, rg=20, service=DATA), PEAK + 4).result_code == (
        2001
    )
    assert h.balance("a") == 10 * EUR - 200_000


def test_usage_charged_in_a_session_is_not_refundable(h: Harness) -> None:
    """Only DIRECT_DEBITING counts (WIRE.md 5.4): an SMS by reservation is undone by a
    TERMINATION with zero units, not by a refund."""
    h.account("a", SUB, 10 * EUR)
    h.cca(
        ccr(
            "s1", CCRequestType.INITIAL, 0, mscc(30, ask=rsu(units=1)), subscriber=SUB, service=SMS
        ),
        PEAK,
    )
    h.cca(
        ccr("s1", CCRequestType.TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS),
        PEAK + 1000,
    )
    assert h.balance("a") == 10 * EUR - SMS_PRICE
    refused(h.cca(sms("r1", REFUND, 1), PEAK + 2000), {"CC-Service-Specific-Units": 1})


def test_unpriced_groups_in_a_refund_credit_nothing(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    free = h.cca(event("r1", REFUND, octets=MiB, rg=50, service=DATA), PEAK)  # zero-rated
    assert free.result_code == 2001 and only(free).result_code == 4011
    unknown = h.cca(event("r2", REFUND, units=1, rg=10), PEAK)  # not an SMS group
    assert unknown.result_code == 2001 and only(unknown).result_code == 5031
    empty = h.cca(sms("r3", REFUND, 0), PEAK)
    assert empty.result_code == 2001
    assert h.balance("a") == 10 * EUR and h.cdr_total() == 0


def test_a_refund_on_a_suspended_account_still_gives_back(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 1), PEAK)
    h.ama(amr(AccountOperation.SET_STATUS, "a", status=AccountStatus.SUSPENDED), PEAK + 1)
    assert h.cca(sms("r1", REFUND, 1), PEAK + 2).result_code == 2001
    assert h.balance("a") == 10 * EUR


# --- the window setting -------------------------------------------------------------------------


def test_the_window_is_a_journaled_setting(h: Harness) -> None:
    assert h.core.refund_window_s == DEFAULT_REFUND_WINDOW_S
    h.settings(PEAK, refund_window_s=3600)
    h.account("a", SUB, 10 * EUR)
    h.cca(sms("d1", DEBIT, 2), PEAK + 1000)
    assert h.cca(sms("r1", REFUND, 1), PEAK + 1000 + 3_600_000).result_code == 2001
    h.restart()  # the setting is in the snapshot
    assert h.core.refund_window_s == 3600
    refused(h.cca(sms("r2", REFUND, 1), PEAK + 1000 + 3_600_001), {"CC-Service-Specific-Units": 1})
    # widening the window makes older debits refundable again, if not forgotten yet
    h.cca(sms("d2", DEBIT, 1), PEAK + 2 * 3_600_000)
    h.settings(PEAK + 3 * 3_600_000, refund_window_s=DEFAULT_REFUND_WINDOW_S)
    assert h.cca(sms("r3", REFUND, 1), PEAK + 4 * 3_600_000).result_code == 2001
    # the fixture replays the journal: the SETTINGS inputs where they were


@pytest.mark.parametrize("seconds", [0, -1, MAX_REFUND_WINDOW_S + 1])
def test_a_window_out_of_range_is_refused(seconds: int) -> None:
    with pytest.raises(ValueError):
        settings_input(PEAK, Settings(refund_window_s=seconds))
    settings_input(PEAK, Settings(refund_window_s=MAX_REFUND_WINDOW_S))


# --- bounded memory -----------------------------------------------------------------------------


def test_debits_are_forgotten_once_out_of_the_window(h: Harness) -> None:
    h.settings(PEAK, refund_window_s=600)
    h.account("a", SUB, 10 * EUR)
    h.account("b", OTHER, 10 * EUR)
    for n in range(5):
        h.cca(sms(f"d{n}", DEBIT, 1, sub=SUB if n % 2 else OTHER), PEAK + n * 60_000)
    assert h.core.refundable_debits == 5
    # any request forgets the debits that left the window (kept by second: d0 and d1 are out
    # of it from 600,001 ms after them on, forgotten once the next second begins)
    h.cca(sms("x", RequestedAction.PRICE_ENQUIRY, 1), PEAK + 60_000 + 601_000)
    assert h.core.refundable_debits == 3
    h.cca(sms("y", RequestedAction.PRICE_ENQUIRY, 1), PEAK + 4 * 60_000 + 601_000)
    assert h.core.refundable_debits == 0


def test_debits_per_group_are_capped_and_merged_oldest_first(h: Harness) -> None:
    h.account("a", SUB, 1000 * EUR)
    n = MAX_REFUNDABLE_PER_GROUP + 2
    for i in range(n):
        h.cca(sms(f"d{i}", DEBIT, 1), PEAK + i)
    assert h.core.refundable_debits == MAX_REFUNDABLE_PER_GROUP
    # the merged entry (3 messages) still gives back all it took, however it is cut
    assert h.cca(sms("r1", REFUND, n - 2), PEAK + n).result_code == 2001
    assert h.cca(sms("r2", REFUND, 2), PEAK + n + 1).result_code == 2001
    assert h.balance("a") == 1000 * EUR and h.core.refundable_debits == 0


def test_merged_debits_leave_the_window_with_the_older(h: Harness) -> None:
    h.account("a", SUB, 1000 * EUR)
    n = MAX_REFUNDABLE_PER_GROUP + 1  # d0 and d1 are merged, at d0's time
    h.cca(sms("d0", DEBIT, 1), PEAK)
    for i in range(1, n):
        h.cca(sms(f"d{i}", DEBIT, 1), PEAK + 60_000 + i)
    assert h.core.refundable_debits == MAX_REFUNDABLE_PER_GROUP
    later = PEAK + DAY_MS + 1  # d0 has left the window, d1 has not
    refused(h.cca(sms("r1", REFUND, n - 1), later), {"CC-Service-Specific-Units": n - 1})
    assert h.cca(sms("r2", REFUND, n - 2), later + 1).result_code == 2001
    assert h.balance("a") == 1000 * EUR - 2 * SMS_PRICE


def test_a_refund_beyond_the_largest_single_amount_is_5004() -> None:
    """A refund never credits more than the ledger's largest single amount (10^15 micro-units)
    in one operation, even when that much was debited: here two debits of 997 x 10^12."""
    h = Harness(catalog=DEAR_SMS)
    h.account("a", SUB, MAX_AMOUNT, credit_limit=MAX_AMOUNT)
    debit = DEAR_MOST * 10**12
    for n in (1, 2):
        assert h.cca(sms(f"d{n}", DEBIT, DEAR_MOST), PEAK + n).result_code == 2001
    assert h.balance("a") == MAX_AMOUNT - 2 * debit < 0
    both = 2 * DEAR_MOST
    refused(h.cca(sms("r1", REFUND, both), PEAK + 3), {"CC-Service-Specific-Units": both})
    assert h.balance("a") == MAX_AMOUNT - 2 * debit
    for n in (4, 5):
        assert h.cca(sms(f"r{n}", REFUND, DEAR_MOST), PEAK + n).result_code == 2001
    assert h.balance("a") == MAX_AMOUNT
    h.ledger.check_invariants()
    h.assert_replays()


def test_a_refund_the_balance_bound_refuses_is_5004_and_changes_nothing() -> None:
    """The ledger keeps every balance within +-2^62 (MAX_TOTAL): a refund it cannot credit is
    refused as a whole, and the debits stay refundable."""
    h = Harness(catalog=DEAR_SMS)
    h.account("a", SUB, 0, credit_limit=MAX_AMOUNT)
    debit = DEAR_MOST * 10**12
    assert h.cca(sms("d1", DEBIT, DEAR_MOST), PEAK).result_code == 2001
    missing = MAX_TOTAL + 1  # from -debit up to MAX_TOTAL - debit + 1
    while missing:
        amount = min(missing, MAX_AMOUNT)
        assert h.ama(amr(AccountOperation.CREDIT, "a", amount=amount), PEAK + 1).result_code == 2001
        missing -= amount
    # decided before anything changes: the ledger is not even asked (its clock stays)
    before = (h.core.snapshot(duplicates=False), h.ledger.snapshot(), list(h.cdr_lines))
    assert h.balance("a") == MAX_TOTAL + 1 - debit
    refused(h.cca(sms("r1", REFUND, DEAR_MOST), PEAK + 2), {"CC-Service-Specific-Units": DEAR_MOST})
    assert (h.core.snapshot(duplicates=False), h.ledger.snapshot(), h.cdr_lines) == before
    assert h.cca(sms("r2", REFUND, DEAR_MOST - 1), PEAK + 3).result_code == 2001
    assert h.balance("a") == MAX_TOTAL + 1 - 10**12  # one SMS (10^12) short of the bound
    h.ledger.check_invariants()


# --- snapshot layout ----------------------------------------------------------------------------


#: Where `CoreState.layout` is in a snapshot (the same in layouts 2 and 3)
LAYOUT = CoreState.__struct_fields__.index("layout")


def _layout_1(snapshot: bytes) -> bytes:
    """The same state as a build before this layout wrote it: `CoreState` without its
    fields from `refund_window_s` on, `CachedAnswer` without its last one."""
    raw = msgspec.msgpack.decode(snapshot)
    assert raw[LAYOUT] == CORE_LAYOUT
    old = raw[:8]
    old[3] = [[host, e2e, cached[:4]] for host, e2e, cached in old[3]]
    return msgspec.msgpack.encode(old)


def test_a_snapshot_of_layout_1_is_restored(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    first = h.cca(sms("d1", DEBIT, 1), PEAK)
    old = _layout_1(h.core.snapshot())
    ledger = Ledger()
    ledger.restore(h.ledger.snapshot())
    core = ChargingCore(ledger, DEMO)
    core.restore(old)
    # EVENT duplicates by Session-Id are found in the cached answers of the old layout
    again = core.handle_ccr(PEAK + 1000, "upf1.test.local", 99, sms("d1", DEBIT, 1))
    assert again.body == encode(first)
    # it had no record of debits: refunds draw on the debits made from now on
    refund = core.handle_ccr(PEAK + 2000, "upf1.test.local", 100, sms("r1", REFUND, 1))
    assert refund.answer.result_code == 5004
    assert msgspec.msgpack.decode(core.snapshot())[LAYOUT] == CORE_LAYOUT


def test_a_snapshot_of_a_newer_layout_is_refused(h: Harness) -> None:
    raw = msgspec.msgpack.decode(h.core.snapshot())
    raw[LAYOUT] = CORE_LAYOUT + 1
    core = ChargingCore(Ledger(), DEMO)
    with pytest.raises(ValueError, match="newer than this build"):
        core.restore(msgspec.msgpack.encode(raw))


def encode(answer: CCA) -> bytes:
    return encode_body(answer)


# --- property: no refund ever gives back more than was taken ------------------------------------

_STEP = st.tuples(
    st.sampled_from(["debit", "debit", "refund", "refund", "refund", "any refund", "wait"]),
    st.sampled_from([SUB, OTHER]),
    st.sampled_from([30, 40]),
    st.integers(0, 400),
)


@settings(max_examples=100, deadline=None)
@given(
    window_s=st.sampled_from([600, 1800, DEFAULT_REFUND_WINDOW_S]),
    steps=st.lists(_STEP, min_size=8, max_size=40),
)
def test_refunds_never_give_back_more_than_was_debited(
    window_s: int, steps: list[tuple[str, str, int, int]]
) -> None:
    """Random debits and refunds of SMS and voice (at weekday and weekend prices) for two
    accounts, and time passing (a wait of up to 20 minutes); refunds mostly of at most one unit
    more than is refundable, some of any amount. A refund is applied exactly when
    the units it asks for were debited within the window and not refunded (drawn newest
    first); per account and group, what refunds gave back is at least the charge of every debit
    given back whole and at most the charge of every debit they drew on, so never more than
    was taken; the money identity holds after every step; replay rebuilds the same state."""
    h = Harness()
    h.settings(PEAK, refund_window_s=window_s)
    account = {SUB: "a", OTHER: "b"}
    for sub, acct in account.items():
        h.account(acct, sub, 1000 * EUR)
    now = PEAK
    # (account, rg) -> [time, units left, charge, drawn on] of each applied debit
    debits: dict[tuple[str, int], list[list[int]]] = {}
    given_back: dict[tuple[str, int], int] = {}
    for n, (kind, sub, rg, amount) in enumerate(steps):
        if kind == "wait":
            now += amount * 3000
            continue
        now += 1
        key = (account[sub], rg)
        entries = debits.setdefault(key, [])
        live = [e for e in entries if now - e[0] <= window_s * 1000]
        action = DEBIT if kind == "debit" else REFUND
        if kind == "refund":  # mostly what is refundable, one more at most
            amount %= sum(e[1] for e in live) + 2
        elif rg == 30:
            amount //= 40  # 0..10 messages
        if rg == 30:
            message = sms(f"e{n}", action, amount, sub=sub)
        else:
            at = LAST_SUNDAY if n % 3 == 0 else PEAK
            message = voice(f"e{n}", action, amount, at_ms=at, sub=sub)
        cdrs = len(h.cdr_lines)
        answer = h.cca(message, now)
        new = h.cdrs()[cdrs:]
        if kind == "debit":
            assert answer.result_code == 2001
            if amount:
                entries.append([now, amount, new[0]["charge"], 0])
        elif amount > sum(e[1] for e in live):
            assert answer.result_code == 5004 and new == []
            note("refund refused")
        else:
            assert answer.result_code == 2001
            note("refund applied" if amount else "refund of nothing")
            need = amount
            for entry in reversed(live):  # newest first
                if not need:
                    break
                take = min(need, entry[1])
                entry[1] -= take
                entry[3] = 1
                need -= take
            given_back[key] = given_back.get(key, 0) - new[0]["charge"]
        back = given_back.get(key, 0)
        whole = sum(e[2] for e in entries if e[1] == 0)
        drawn = sum(e[2] for e in entries if e[3])
        assert whole <= back <= drawn <= sum(e[2] for e in entries)
        for acct in account.values():
            assert h.balance(acct) + h.cdr_total(acct) == 1000 * EUR
        h.ledger.check_invariants()
    h.assert_replays()
