"""The ledger's UpdateAccount and CloseAccount: identities re-indexed, the books balance, a
refusal changes nothing, applied once per id, and the snapshot round-trips."""

from __future__ import annotations

from ocs.core.accounts import SubscriberIdentity
from ocs.core.ledger import Code, Ledger, UpdateAccount
from ocs.core.ledger_types import command_problem

E164 = 0


def sub(data: str) -> SubscriberIdentity:
    return SubscriberIdentity(type=E164, data=data)


def made() -> Ledger:
    ledger = Ledger()
    assert ledger.create_account(
        "c1", now_ms=1, account_id="a", currency=978, subscriptions=[sub("1")]
    ).ok
    assert ledger.create_account(
        "c2", now_ms=1, account_id="b", currency=978, subscriptions=[sub("2")], balance=5
    ).ok
    return ledger


def test_update_reindexes_identities_and_sets_the_limit() -> None:
    ledger = made()
    out = ledger.update_account(
        "u1", now_ms=2, account_id="a", credit_limit=7, subscriptions=[sub("1"), sub("3")]
    )
    assert out.ok
    view = ledger.account("a")
    assert view is not None and view.credit_limit == 7
    assert ledger.account_for(E164, "3") == view and ledger.account_for(E164, "1") == view
    assert ledger.update_account("u2", now_ms=3, account_id="a", subscriptions=[sub("4")]).ok
    assert ledger.account_for(E164, "1") is None and ledger.account_for(E164, "3") is None
    ledger.check_invariants()


def test_update_with_an_identity_of_another_account_changes_nothing() -> None:
    ledger = made()
    before = ledger.account("a")
    out = ledger.update_account("u1", now_ms=2, account_id="a", subscriptions=[sub("2")])
    assert out.code is Code.SUBSCRIPTION_TAKEN and ledger.account("a") == before
    ledger.check_invariants()


def test_close_only_a_settled_account_and_once() -> None:
    ledger = made()
    assert ledger.close_account("x1", now_ms=2, account_id="b").code is Code.NOT_SETTLED
    assert ledger.close_account("x2", now_ms=2, account_id="a").ok
    assert ledger.account("a") is None and ledger.account_for(E164, "1") is None
    assert ledger.close_account("x2", now_ms=3, account_id="a").ok  # the first outcome
    assert ledger.close_account("x3", now_ms=3, account_id="a").code is Code.UNKNOWN_ACCOUNT
    ledger.check_invariants()
    restored = Ledger()
    restored.restore(ledger.snapshot())
    restored.check_invariants()
    assert restored.account("a") is None and restored.account("b") == ledger.account("b")


def test_static_checks() -> None:
    bad = UpdateAccount(id="u", now_ms=1, account_id="a", credit_limit=-1)
    assert command_problem(bad) == "credit_limit must be an int in 0..10^15"
    dup = UpdateAccount(id="u", now_ms=1, account_id="a", subscriptions=(sub("1"), sub("1")))
    assert command_problem(dup) == "duplicate subscription"
