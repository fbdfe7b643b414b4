"""Behaviour of the ledger core, case by case (the state machine covers the combinations)."""

from __future__ import annotations

import pytest

from ocs.core.accounts import AccountStatus, SubscriberIdentity
from ocs.core.ledger import (
    Code,
    Command,
    CreateAccount,
    Credit,
    Debit,
    Expire,
    Ledger,
    LedgerOutcome,
    Post,
    Reserve,
    SetStatus,
    Totals,
    Void,
    decode_command,
    encode_command,
)

T0 = 1_700_000_000_000


def make(balance: int = 1_000, credit_limit: int = 0, **kwargs: int) -> Ledger:
    ledger = Ledger(**kwargs)
    out = ledger.create_account(
        "create-a",
        now_ms=T0,
        account_id="a",
        currency=978,
        subscriptions=[SubscriberIdentity(type=0, data="4915100000001")],
        balance=balance,
        credit_limit=credit_limit,
    )
    assert out.ok
    return ledger


def test_reserve_allowed_exactly_down_to_the_credit_limit() -> None:
    ledger = make(balance=100, credit_limit=50)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=120, expires_at_ms=T0 + 1).ok
    refused = ledger.reserve("r2", now_ms=T0, account_id="a", amount=31, expires_at_ms=T0 + 1)
    assert refused.code is Code.INSUFFICIENT_FUNDS
    assert ledger.reserve("r3", now_ms=T0, account_id="a", amount=30, expires_at_ms=T0 + 1).ok
    view = ledger.account("a")
    assert view is not None
    assert (view.balance, view.reserved, view.available, view.headroom) == (100, 150, -50, 0)


def test_post_charges_overuse_and_flags_overdraft() -> None:
    ledger = make(balance=100, credit_limit=10)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=100, expires_at_ms=T0 + 60_000).ok
    out = ledger.post("p1", now_ms=T0 + 5, reservation_id="r1", amount=150)
    assert out == LedgerOutcome(code=Code.OK, overdraft=True)
    view = ledger.account("a")
    assert view is not None
    assert (view.balance, view.reserved) == (-50, 0)
    assert ledger.totals() == Totals(initial=100, credits=0, debits=150)
    assert ledger.reservation("r1") is None
    # Within the credit limit is not an overdraft.
    ledger2 = make(balance=100, credit_limit=10)
    assert ledger2.reserve("r1", now_ms=T0, account_id="a", amount=100, expires_at_ms=T0 + 1).ok
    assert ledger2.post("p1", now_ms=T0, reservation_id="r1", amount=110) == LedgerOutcome(
        code=Code.OK
    )


def test_post_of_zero_and_void_give_the_reservation_back() -> None:
    ledger = make(balance=100)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=40, expires_at_ms=T0 + 1).ok
    assert ledger.reserve("r2", now_ms=T0, account_id="a", amount=60, expires_at_ms=T0 + 1).ok
    assert ledger.post("p1", now_ms=T0, reservation_id="r1", amount=0).ok
    assert ledger.void("v2", now_ms=T0, reservation_id="r2").ok
    view = ledger.account("a")
    assert view is not None
    assert (view.balance, view.reserved) == (100, 0)
    again = ledger.void("v3", now_ms=T0, reservation_id="r2")
    assert again.code is Code.UNKNOWN_RESERVATION
    assert ledger.post("p4", now_ms=T0, reservation_id="nope", amount=1).code is (
        Code.UNKNOWN_RESERVATION
    )


def test_admin_debit_needs_funds_unless_overdraft_allowed() -> None:
    ledger = make(balance=100)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=80, expires_at_ms=T0 + 1).ok
    assert ledger.debit("d1", now_ms=T0, account_id="a", amount=21).code is Code.INSUFFICIENT_FUNDS
    assert ledger.debit("d2", now_ms=T0, account_id="a", amount=20) == LedgerOutcome(code=Code.OK)
    forced = ledger.debit("d3", now_ms=T0, account_id="a", amount=500, allow_overdraft=True)
    assert forced == LedgerOutcome(code=Code.OK, overdraft=True)
    assert ledger.credit("c1", now_ms=T0, account_id="a", amount=1_000).ok
    view = ledger.account("a")
    assert view is not None
    assert (view.balance, view.reserved) == (580, 80)
    assert ledger.totals() == Totals(initial=100, credits=1_000, debits=520)
    ledger.check_invariants()


def test_unknown_account_everywhere() -> None:
    ledger = make()
    assert ledger.credit("1", now_ms=T0, account_id="x", amount=1).code is Code.UNKNOWN_ACCOUNT
    assert ledger.debit("2", now_ms=T0, account_id="x", amount=1).code is Code.UNKNOWN_ACCOUNT
    assert ledger.set_status("3", now_ms=T0, account_id="x", status=AccountStatus.BARRED).code is (
        Code.UNKNOWN_ACCOUNT
    )
    assert ledger.reserve("4", now_ms=T0, account_id="x", amount=1, expires_at_ms=T0 + 1).code is (
        Code.UNKNOWN_ACCOUNT
    )
    assert ledger.account("x") is None


def test_inactive_account_cannot_reserve_but_open_reservations_still_close() -> None:
    ledger = make(balance=100)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=10, expires_at_ms=T0 + 1).ok
    for i, status in enumerate((AccountStatus.SUSPENDED, AccountStatus.BARRED)):
        assert ledger.set_status(f"s{i}", now_ms=T0, account_id="a", status=status).ok
        out = ledger.reserve(f"r{i + 2}", now_ms=T0, account_id="a", amount=1, expires_at_ms=T0 + 1)
        assert out.code is Code.ACCOUNT_NOT_ACTIVE
    assert ledger.post("p1", now_ms=T0, reservation_id="r1", amount=10).ok
    assert ledger.credit("c1", now_ms=T0, account_id="a", amount=5).ok
    assert ledger.set_status("s9", now_ms=T0, account_id="a", status=AccountStatus.ACTIVE).ok
    assert ledger.reserve("r9", now_ms=T0, account_id="a", amount=1, expires_at_ms=T0 + 1).ok


def test_create_checks_account_id_and_subscriptions() -> None:
    ledger = make()
    dup = ledger.create_account("c2", now_ms=T0, account_id="a", currency=978)
    assert dup.code is Code.ACCOUNT_EXISTS
    taken = ledger.create_account(
        "c3",
        now_ms=T0,
        account_id="b",
        currency=978,
        subscriptions=[
            SubscriberIdentity(type=1, data="262011234567890"),
            SubscriberIdentity(type=0, data="4915100000001"),
        ],
    )
    assert taken.code is Code.SUBSCRIPTION_TAKEN
    assert ledger.account("b") is None
    assert ledger.account_for(1, "262011234567890") is None
    # Same data under another type is another identity.
    ok = ledger.create_account(
        "c4",
        now_ms=T0,
        account_id="b",
        currency=840,
        subscriptions=[SubscriberIdentity(type=1, data="4915100000001")],
        status=AccountStatus.SUSPENDED,
    )
    assert ok.ok
    found = ledger.account_for(0, "4915100000001")
    assert found is not None and found.account_id == "a"
    other = ledger.account_for(1, "4915100000001")
    assert other is not None
    assert (other.account_id, other.currency, other.status) == ("b", 840, AccountStatus.SUSPENDED)
    assert other.subscriptions == (SubscriberIdentity(type=1, data="4915100000001"),)
    ledger.check_invariants()


@pytest.mark.parametrize(
    "cmd",
    [
        Credit(id="", now_ms=T0, account_id="a", amount=1),
        Credit(id="x", now_ms=T0, account_id="a", amount=0),
        Credit(id="x", now_ms=T0, account_id="a", amount=True),
        Credit(id="x", now_ms=T0, account_id="a", amount=1.5),  # type: ignore[arg-type]
        Debit(id="x", now_ms=T0, account_id="a", amount=-3),
        Credit(id="x", now_ms=-1, account_id="a", amount=1),
        Credit(id="x" * 257, now_ms=T0, account_id="a", amount=1),
        Reserve(id="x", now_ms=T0, account_id="a", amount=1, expires_at_ms=T0),
        Reserve(id="x", now_ms=T0, account_id="a", amount=10**16, expires_at_ms=T0 + 1),
        Post(id="x", now_ms=T0, reservation_id="r", amount=-1),
        SetStatus(id="x", now_ms=T0, account_id="a", status=7),  # type: ignore[arg-type]
        CreateAccount(id="x", now_ms=T0, account_id="b", currency=1000),
        CreateAccount(id="x", now_ms=T0, account_id="b", currency=978, credit_limit=-1),
        CreateAccount(
            id="x",
            now_ms=T0,
            account_id="b",
            currency=978,
            subscriptions=(SubscriberIdentity(type=5, data="1"),),
        ),
        CreateAccount(
            id="x",
            now_ms=T0,
            account_id="b",
            currency=978,
            subscriptions=(
                SubscriberIdentity(type=0, data="1"),
                SubscriberIdentity(type=0, data="1"),
            ),
        ),
    ],
)
def test_invalid_commands_change_nothing_and_are_not_remembered(cmd: Command) -> None:
    ledger = make()
    before = ledger.snapshot()
    out = ledger.apply(cmd)
    assert out.code is Code.INVALID and out.detail
    assert ledger.snapshot() == before
    # The id is still free for a valid command.
    assert ledger.credit("x", now_ms=T0, account_id="a", amount=1).ok


def test_a_repeat_returns_the_first_outcome_and_changes_nothing() -> None:
    ledger = make(balance=10)
    refused = Debit(id="op-1", now_ms=T0, account_id="a", amount=50)
    assert ledger.apply(refused).code is Code.INSUFFICIENT_FUNDS
    assert ledger.credit("op-2", now_ms=T0, account_id="a", amount=100).ok
    before = ledger.snapshot()
    # Still refused, although funds now allow it: the first outcome stands.
    assert ledger.apply(refused).code is Code.INSUFFICIENT_FUNDS
    assert ledger.credit("op-2", now_ms=T0 + 10, account_id="a", amount=100).ok
    assert ledger.snapshot() == before
    view = ledger.account("a")
    assert view is not None and view.balance == 110


def test_operation_ids_are_forgotten_after_the_retention_horizon() -> None:
    ledger = make(retention_ms=60_000)
    assert ledger.credit("op-1", now_ms=T0, account_id="a", amount=5).ok
    assert ledger.recall("op-1") is not None
    assert ledger.credit("op-x", now_ms=T0 + 60_000, account_id="a", amount=1).ok
    assert ledger.recall("op-1") is not None  # at least 60 s
    assert ledger.credit("op-y", now_ms=T0 + 61_000, account_id="a", amount=1).ok
    assert ledger.recall("op-1") is None
    assert ledger.credit("op-1", now_ms=T0 + 61_000, account_id="a", amount=5).ok
    view = ledger.account("a")
    assert view is not None and view.balance == 1_012
    assert ledger.totals().credits == 12
    ledger.check_invariants()


def test_a_reservation_older_than_the_horizon_is_not_reopened() -> None:
    ledger = make(retention_ms=1_000)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=5, expires_at_ms=T0 + 10**6).ok
    assert ledger.credit("tick", now_ms=T0 + 5_000, account_id="a", amount=1).ok
    assert ledger.recall("r1") is None
    again = ledger.reserve(
        "r1", now_ms=T0 + 5_000, account_id="a", amount=5, expires_at_ms=T0 + 10**6
    )
    assert again.code is Code.RESERVATION_EXISTS


def test_memory_is_capped_oldest_first() -> None:
    ledger = make(max_remembered=3)
    for i in range(5):
        assert ledger.credit(f"op-{i}", now_ms=T0, account_id="a", amount=1).ok
    assert ledger.remembered_count == 3
    assert [ledger.recall(f"op-{i}") is not None for i in range(5)] == [False] * 2 + [True] * 3
    ledger.check_invariants()


def test_expire_releases_due_reservations_in_expiry_order() -> None:
    ledger = make(balance=1_000)
    for rid, ttl in (("r-b", 300), ("r-a", 300), ("r-c", 100), ("r-d", 900)):
        assert ledger.reserve(rid, now_ms=T0, account_id="a", amount=10, expires_at_ms=T0 + ttl).ok
    assert ledger.next_expiry() == T0 + 100
    nothing = ledger.expire_due(T0 + 99)
    assert nothing == LedgerOutcome(code=Code.OK) and ledger.remembered_count == 5
    # Overdue but not yet swept: still open, a post is accepted.
    assert ledger.post("p-c", now_ms=T0 + 150, reservation_id="r-c", amount=10).ok
    out = ledger.expire_due(T0 + 300)
    assert out.expired == ("r-a", "r-b")
    assert ledger.recall("expire@1700000000300") == out
    assert [r.reservation_id for r in ledger.reservations()] == ["r-d"]
    view = ledger.account("a")
    assert view is not None and (view.balance, view.reserved) == (990, 10)
    assert ledger.next_expiry() == T0 + 900


def test_many_closed_reservations_keep_the_expiry_index_small() -> None:
    ledger = make(balance=10**9)
    for i in range(1_000):
        assert ledger.reserve(
            f"r{i}", now_ms=T0, account_id="a", amount=1, expires_at_ms=T0 + i + 1
        ).ok
        assert ledger.void(f"v{i}", now_ms=T0, reservation_id=f"r{i}").ok
    assert len(ledger._expiry) <= 130
    assert ledger.reserve("last", now_ms=T0, account_id="a", amount=1, expires_at_ms=T0 + 5).ok
    assert ledger.expire_due(T0 + 10**6).expired == ("last",)


def test_snapshot_round_trip_keeps_state_and_idempotency() -> None:
    ledger = make(balance=100, credit_limit=7)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=30, expires_at_ms=T0 + 5).ok
    assert ledger.debit("d1", now_ms=T0 + 1, account_id="a", amount=500).code is (
        Code.INSUFFICIENT_FUNDS
    )
    data = ledger.snapshot()
    copy = Ledger()
    copy.restore(data)
    assert copy.snapshot() == data
    assert copy.account("a") == ledger.account("a")
    assert copy.reservation("r1") == ledger.reservation("r1")
    assert copy.clock == T0 + 1
    assert copy.debit("d1", now_ms=T0 + 2, account_id="a", amount=500).code is (
        Code.INSUFFICIENT_FUNDS
    )
    assert copy.expire_due(T0 + 5).expired == ("r1",)
    copy.check_invariants()


def test_restore_refuses_an_unknown_version() -> None:
    data = bytearray(make().snapshot())
    assert data[1] == 1  # array header, then the version
    data[1] = 99
    with pytest.raises(ValueError, match="version"):
        Ledger().restore(bytes(data))


def test_commands_round_trip_through_the_codec() -> None:
    commands: list[Command] = [
        CreateAccount(
            id="1",
            now_ms=T0,
            account_id="a",
            subscriptions=(SubscriberIdentity(type=2, data="sip:a@b"),),
            currency=978,
            credit_limit=5,
            balance=-3,
            status=AccountStatus.BARRED,
        ),
        Credit(id="2", now_ms=T0, account_id="a", amount=1),
        Debit(id="3", now_ms=T0, account_id="a", amount=2, allow_overdraft=True),
        SetStatus(id="4", now_ms=T0, account_id="a", status=AccountStatus.SUSPENDED),
        Reserve(id="5", now_ms=T0, account_id="a", amount=3, expires_at_ms=T0 + 1),
        Post(id="6", now_ms=T0, reservation_id="5", amount=4),
        Void(id="7", now_ms=T0, reservation_id="5"),
        Expire(id="8", now_ms=T0),
    ]
    for cmd in commands:
        assert decode_command(encode_command(cmd)) == cmd


def test_check_invariants_detects_a_broken_book() -> None:
    ledger = make(balance=100)
    assert ledger.reserve("r1", now_ms=T0, account_id="a", amount=5, expires_at_ms=T0 + 1).ok
    ledger._accounts["a"].reserved += 1
    with pytest.raises(AssertionError, match="reserved"):
        ledger.check_invariants()
    ledger._accounts["a"].reserved -= 1
    ledger._accounts["a"].balance += 1
    with pytest.raises(AssertionError, match="sum of balances"):
        ledger.check_invariants()
