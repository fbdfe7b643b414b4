"""EVENT duplicates by Session-Id (WIRE.md 1.1 section 6): an EVENT sent again under the same
Session-Id with a new End-to-End-Id, within the duplicate window, gets the first answer and
changes nothing; across a restart (snapshot) and a replay (the fixture) too."""

from __future__ import annotations

from protocol.codes import AccountOperation, CCRequestType, RequestedAction
from tests.charging.conftest import EUR, PEAK, SMS, Harness, amr, ccr, mscc, rsu, sid
from tests.charging.test_events import event

SUB = "491700000001"
WINDOW_MS = 240_000
DEBIT = RequestedAction.DIRECT_DEBITING
REFUND = RequestedAction.REFUND_ACCOUNT


def test_an_event_sent_again_with_a_new_end_to_end_id_is_applied_once(h: Harness) -> None:
    """Issue 16: it was applied twice."""
    h.account("a", SUB, 10 * EUR)
    debit = event(sid("1;1"), DEBIT, units=1)
    first = h.send(debit, PEAK, e2e=1)
    assert first.answer.result_code == 2001
    for n, later in enumerate((1, 60_000, WINDOW_MS)):
        again = h.send(debit, PEAK + later, e2e=2 + n)
        assert again.body == first.body
    assert h.balance("a") == 10 * EUR - 100_000 and len(h.cdr_lines) == 1
    # the new End-to-End-Ids were answered: they are duplicates by themselves now
    assert h.send(debit, PEAK + WINDOW_MS + 1000, e2e=4).duplicate


def test_a_refund_sent_again_with_a_new_end_to_end_id_credits_once(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(event("d", DEBIT, units=3), PEAK)
    refund = event("r", REFUND, units=1)
    first = h.send(refund, PEAK + 1000)
    assert first.answer.result_code == 2001
    assert h.send(refund, PEAK + 2000).body == first.body
    assert h.balance("a") == 10 * EUR - 200_000


def test_event_duplicates_survive_a_restart(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    debit = event("e", DEBIT, units=1)
    first = h.send(debit, PEAK)
    h.restart()
    assert h.send(debit, PEAK + 1000).body == first.body
    h.restart()
    assert h.send(debit, PEAK + 2000).body == first.body
    assert h.balance("a") == 10 * EUR - 100_000
    # and the replay of the journal (the fixture) finds the same


def test_after_the_window_the_same_session_id_is_a_new_event(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    debit = event("e", DEBIT, units=1)
    h.send(debit, PEAK)
    assert h.send(debit, PEAK + WINDOW_MS + 1).answer.result_code == 2001
    assert h.balance("a") == 10 * EUR - 200_000 and len(h.cdr_lines) == 2


def test_refusals_are_duplicates_too(h: Harness) -> None:
    """A refused EVENT sent again under its Session-Id gets the refusal, whatever changed
    since (as for a duplicate by End-to-End-Id): a new attempt is a new EVENT, a new id."""
    h.account("a", SUB, 50_000)
    debit = event("e", DEBIT, units=1)
    refused = h.send(debit, PEAK)
    assert refused.answer.result_code == 4012
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 1)
    assert h.send(debit, PEAK + 2).body == refused.body
    assert h.balance("a") == 50_000 + EUR
    assert h.send(event("e2", DEBIT, units=1), PEAK + 3).answer.result_code == 2001


def test_only_the_peer_that_sent_it_gets_the_answer(h: Harness) -> None:
    """The pair is (Origin-Host, Session-Id): another peer's EVENT under the same id is not a
    duplicate of it (one peer never receives another's cached answer); that peer may not use
    the id at all (WIRE.md 5.3: it does not begin with its Origin-Host): 5004."""
    h.account("a", SUB, 10 * EUR)
    debit = event("e", DEBIT, units=1)
    first = h.send(debit, PEAK)
    other = h.send(debit, PEAK + 1, origin="scp2.test.local")
    assert other.answer.result_code == 5004 and not other.duplicate
    assert other.answer.failed_avp == {"Session-Id": debit.session_id}
    assert h.balance("a") == 10 * EUR - 100_000
    assert h.send(debit, PEAK + 2).body == first.body


def test_a_session_under_an_events_id_is_not_a_duplicate_of_it(h: Harness) -> None:
    """Only EVENTs are remembered by Session-Id: an INITIAL reusing an EVENT's id opens its
    session; an EVENT under an open session's id is an event."""
    h.account("a", SUB, 10 * EUR)
    h.cca(event("x", DEBIT, units=1), PEAK)
    initial = ccr(
        "x", CCRequestType.INITIAL, 0, mscc(30, ask=rsu(units=1)), subscriber=SUB, service=SMS
    )
    assert h.cca(initial, PEAK + 1).result_code == 2001
    assert sid("x") in h.core.sessions
    assert h.cca(event("y-open", DEBIT, units=1), PEAK + 2).result_code == 2001
    h.cca(
        ccr("y", CCRequestType.INITIAL, 0, mscc(30, ask=rsu(units=1)), subscriber=SUB, service=SMS),
        PEAK + 3,
    )
    assert h.cca(event("y", DEBIT, units=1), PEAK + 4).result_code == 2001
    assert h.balance("a") == 10 * EUR - 300_000
