"""Duplicates and retransmissions (WIRE.md 6): answered identically, charged once."""

from __future__ import annotations

from msgspec.structs import replace

from protocol.codes import AccountOperation, CCRequestType, ReportingReason, RequestedAction
from protocol.messages import CCR
from tests.charging.conftest import (
    EUR,
    PEAK,
    Harness,
    MiB,
    amr,
    ccr,
    mscc,
    rsu,
    sid,
    usu,
)

INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
SUB = "491700000001"
MIN = 60_000


def session(h: Harness) -> tuple[CCR, CCR, CCR]:
    h.account("a", SUB, 10 * EUR)
    initial = ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB)
    update = ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),)))
    term = ccr(
        "s", TERMINATION, 2, mscc(10, used=(usu(octets=2 * MiB, reason=ReportingReason.FINAL),))
    )
    return initial, update, term


def test_same_origin_host_and_end_to_end_id_is_answered_from_cache(h: Harness) -> None:
    initial, update, term = session(h)
    results = [
        h.send(initial, PEAK, e2e=1),
        h.send(update, PEAK + MIN, e2e=2),
        h.send(term, PEAK + 2 * MIN, e2e=3),
    ]
    assert not any(r.duplicate for r in results)
    charged = h.balance("a")
    assert charged == 10 * EUR - 60_000
    inputs, cdrs = len(h.inputs), list(h.cdr_lines)
    # each one again, as a retransmission would arrive, even out of order
    for message, e2e, result in [(update, 2, results[1]), (initial, 1, results[0])]:
        again = h.send(message, PEAK + 3 * MIN, e2e=e2e)
        assert again.body == result.body and again.duplicate
    again = h.send(term, PEAK + 3 * MIN, e2e=3)
    assert again.body == results[2].body and again.duplicate
    assert h.balance("a") == charged and h.reserved("a") == 0
    assert len(h.inputs) == inputs and h.cdr_lines == cdrs


def test_same_session_and_request_number_is_answered_identically(h: Harness) -> None:
    initial, update, term = session(h)
    first_initial = h.send(initial, PEAK)
    h.send(initial, PEAK + 1000)  # new End-to-End-Id, same (Session-Id, number 0)
    assert h.reserved("a") == 200_000 and h.ledger.reservation_count == 1
    first_update = h.send(update, PEAK + MIN)
    # the last one processed is number 1 now: a repeat of it, with other usage even
    different = ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=50 * MiB),)))
    again = h.send(different, PEAK + MIN + 500)
    # answered from the session (a new End-to-End-Id: processed and journaled, not a cache hit)
    assert again.body == first_update.body and not again.duplicate
    assert h.balance("a") == 10 * EUR - 20_000
    # an INITIAL repeat is no longer the last one: 5004
    late = h.send(initial, PEAK + MIN + 600)
    assert late.answer.result_code == 5004 and late.body != first_initial.body
    final = h.send(term, PEAK + 2 * MIN)
    assert h.balance("a") == 10 * EUR - 60_000
    # a TERMINATION repeated with a new End-to-End-Id, the session already closed
    repeat = h.send(term, PEAK + 3 * MIN)
    assert repeat.body == final.body and not repeat.duplicate
    assert h.balance("a") == 10 * EUR - 60_000
    assert len(h.cdrs()) == 1


def test_closed_session_is_forgotten_after_the_duplicate_window(h: Harness) -> None:
    initial, _, _ = session(h)
    h.send(initial, PEAK)
    term = ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),)))
    first = h.send(term, PEAK + 1000)
    assert h.send(term, PEAK + 4 * MIN).body == first.body  # still within the window
    h.send(amr(AccountOperation.CREDIT, "a", amount=1), PEAK + 5 * MIN)  # evicts what is old
    late = h.send(term, PEAK + 5 * MIN)
    assert late.answer.result_code == 5002
    assert h.balance("a") == 10 * EUR - 20_000 + 1


def test_answered_event_duplicates_are_charged_once(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    debit = ccr(
        "e",
        CCRequestType.EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service="32274@3gpp.org",
        action=RequestedAction.DIRECT_DEBITING,
    )
    first = h.send(debit, PEAK, e2e=9)
    again = h.send(debit, PEAK + 1000, e2e=9)
    assert again.body == first.body and again.duplicate
    assert h.balance("a") == 10 * EUR - 100_000 and len(h.cdrs()) == 1
    # past the window (4 minutes), the same identifiers are a new request
    later = h.send(debit, PEAK + 241_000, e2e=9)
    assert not later.duplicate and h.balance("a") == 10 * EUR - 200_000


def test_admin_credit_applied_once_by_end_to_end_id_and_operation_id(h: Harness) -> None:
    h.account("a", SUB, 0)
    credit = amr(AccountOperation.CREDIT, "a", amount=EUR, operation_id="topup-77")
    first = h.send(credit, PEAK, e2e=5)
    assert first.answer.result_code == 2001
    assert h.send(credit, PEAK + 1000, e2e=5).body == first.body
    h.send(credit, PEAK + 2000)  # another End-to-End-Id, the same Operation-Id
    assert h.balance("a") == EUR
    h.send(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 3000)
    assert h.balance("a") == 2 * EUR


def test_create_of_an_existing_account_is_5004(h: Harness) -> None:
    h.account("a", SUB, EUR)
    before = h.ledger.snapshot()
    again = h.ama(amr(AccountOperation.CREATE, "a", amount=5 * EUR, subscriber="4999"), PEAK + 1)
    assert again.result_code == 5004 and again.account is None
    taken = h.ama(amr(AccountOperation.CREATE, "b", amount=5 * EUR, subscriber=SUB), PEAK + 2)
    assert taken.result_code == 5004
    assert h.ledger.snapshot() == before  # refused before the ledger: nothing remembered
    assert h.balance("a") == EUR and h.ledger.account("b") is None
    # the refusal is not remembered: with a free subscription, "b" can be created
    ok = h.ama(amr(AccountOperation.CREATE, "b", amount=5 * EUR, subscriber="4999"), PEAK + 3)
    assert ok.result_code == 2001 and h.balance("b") == 5 * EUR


def test_duplicate_of_a_refusal_gets_the_refusal_whatever_changed_since(h: Harness) -> None:
    """WIRE.md 6: a duplicate gets the cached answer and changes nothing, refusals included
    (journaled like every request, so this holds across a restart too)."""
    initial = ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB)
    first = h.send(initial, PEAK, e2e=40)
    assert first.answer.result_code == 5030 and not first.duplicate
    h.account("a", SUB, 10 * EUR, now_ms=PEAK + 1000)
    again = h.send(initial, PEAK + 2000, e2e=40)
    assert again.body == first.body and again.duplicate
    assert h.core.sessions == {} and h.reserved("a") == 0

    debit = ccr(
        "e",
        CCRequestType.EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber="491700000009",
        service="32274@3gpp.org",
        action=RequestedAction.DIRECT_DEBITING,
    )
    h.account("poor", "491700000009", 0, now_ms=PEAK)
    refused = h.send(debit, PEAK + 3000, e2e=41)
    assert refused.answer.result_code == 4012
    h.send(amr(AccountOperation.CREDIT, "poor", amount=EUR), PEAK + 4000)
    assert h.send(debit, PEAK + 5000, e2e=41).body == refused.body
    assert h.balance("poor") == EUR
    credit = amr(AccountOperation.CREDIT, "nobody", amount=EUR)
    unknown = h.send(credit, PEAK + 6000, e2e=42)
    assert unknown.answer.result_code == 5030
    h.account("nobody", "491700000008", 0, now_ms=PEAK + 7000)
    assert h.send(credit, PEAK + 8000, e2e=42).body == unknown.body
    assert h.balance("nobody") == 0
    # an EVENT under the same Session-Id with a new End-to-End-Id is a duplicate too (WIRE.md 6)
    assert h.send(debit, PEAK + 9000).body == refused.body
    assert h.balance("poor") == EUR
    # a new Session-Id, or once the window has passed, it is a new request
    assert h.send(debit, PEAK + 3000 + 240_001).answer.result_code == 2001
    assert h.send(credit, PEAK + 8000 + 240_001, e2e=42).answer.result_code == 2001
    assert h.balance("nobody") == EUR
    # the snapshot does not hold refusals: replay (the fixture) finds the same state


def test_a_restart_keeps_refusals_and_what_was_applied(h: Harness) -> None:
    """WIRE.md 6: duplicate detection survives a restart, for refusals too: a refusal is
    journaled, so after replay its retransmission gets the refusal, even though the
    subscriber exists by then."""
    refund = ccr(
        "r",
        CCRequestType.EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service="32274@3gpp.org",
        action=RequestedAction.REFUND_ACCOUNT,
    )
    refused = h.send(refund, PEAK, e2e=50)  # no such subscriber yet
    assert refused.answer.result_code == 5030
    h.account("a", SUB, EUR, now_ms=PEAK + 1000)
    debit = replace(refund, session_id=sid("d"), requested_action=RequestedAction.DIRECT_DEBITING)
    assert h.send(debit, PEAK + 1500).answer.result_code == 2001
    retry = replace(refund, session_id=sid("r2"))  # a new EVENT: a new Session-Id (WIRE.md 6)
    applied = h.send(retry, PEAK + 2000, e2e=51)
    assert applied.answer.result_code == 2001
    h.restart()
    assert h.send(retry, PEAK + 3000, e2e=51).body == applied.body  # kept: journaled
    again = h.send(refund, PEAK + 4000, e2e=50)
    assert again.body == refused.body and again.duplicate  # the refusal, again
    assert h.send(refund, PEAK + 5000).body == refused.body  # by its Session-Id too
    assert h.balance("a") == EUR  # one debit and one refund of 0.10 EUR
