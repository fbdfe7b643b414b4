"""A hypothesis state machine over the ledger against a plain reference model.

Every rule predicts the outcome from the model and checks it; after every step the invariants
hold (``initial + credits - debits == sum of balances``, reserved == sum of open reservations)
and the ledger agrees with the model account by account. Repeats of any earlier operation id return
the first outcome and leave the state byte-for-byte unchanged; snapshot round trips are
indistinguishable from the original.

The money paths are aimed at, not left to chance: posts of nothing, of less than, exactly and
more than the reservation (into overdraft too), reserves and debits of exactly the headroom and
one more, expiry exactly at a reservation's ``expires_at_ms`` and a millisecond before. How
often each is reached is counted (hypothesis ``event()``; the totals of a run are printed with
``pytest -s``, see docs/testing.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

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
)

ACCOUNT_IDS = ["a", "b", "c", "d", "missing"]
# Operations mostly hit existing accounts.
TARGETS = st.sampled_from(["a", "a", "b", "b", "c", "missing"])
SUBSCRIBERS = ["100", "200", "300", "400"]
amounts = st.integers(min_value=1, max_value=600)
# Shared expiry times make several reservations fall due at once (and tie on expires_at_ms).
ttls = st.one_of(st.sampled_from([1_000, 2_000]), st.integers(1, 10_000))

#: How often each path was taken, over the whole run (printed by the fixture below with -s).
PATHS: Counter[str] = Counter()


def path(name: str) -> None:
    PATHS[name] += 1
    event(name)


@dataclass
class ModelAccount:
    balance: int
    limit: int
    status: AccountStatus
    initial: int
    reserved: int = 0
    credits: int = 0
    debits: int = 0


@dataclass(frozen=True)
class ModelReservation:
    account: str
    amount: int
    expires_at_ms: int
    owner: str


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.now = 1_700_000_000_000
        self.accounts: dict[str, ModelAccount] = {}
        self.subscribers: set[str] = set()
        self.open: dict[str, ModelReservation] = {}
        self.reservation_ids: list[str] = ["never-opened"]
        self.history: list[tuple[Command, LedgerOutcome]] = []
        self.seq = 0

    def next_id(self, prefix: str = "op") -> str:
        self.seq += 1
        return f"{prefix}{self.seq}"

    def run(self, cmd: Command, expected: LedgerOutcome) -> None:
        out = self.ledger.apply(cmd)
        assert out == expected, (cmd, out, expected)
        self.history.append((cmd, out))
        path(f"{type(cmd).__name__}: {out.code.name}{' (overdraft)' if out.overdraft else ''}")

    def create(self, account: str, sub: str, balance: int, limit: int) -> None:
        cmd = CreateAccount(
            id=self.next_id(),
            now_ms=self.now,
            account_id=account,
            subscriptions=(SubscriberIdentity(type=0, data=sub),),
            currency=978,
            credit_limit=limit,
            balance=balance,
        )
        if account in self.accounts:
            expected = Code.ACCOUNT_EXISTS
        elif sub in self.subscribers:
            expected = Code.SUBSCRIPTION_TAKEN
        else:
            expected = Code.OK
            self.accounts[account] = ModelAccount(
                balance=balance, limit=limit, status=AccountStatus.ACTIVE, initial=balance
            )
            self.subscribers.add(sub)
        self.run(cmd, LedgerOutcome(code=expected))

    @initialize(balance=st.integers(-50, 1_000), limit=st.integers(0, 300))
    def first_accounts(self, balance: int, limit: int) -> None:
        self.create("a", "100", balance, limit)
        self.create("b", "200", 500, 0)

    @rule(
        account=st.sampled_from(ACCOUNT_IDS),
        sub=st.sampled_from(SUBSCRIBERS),
        balance=st.integers(-100, 1_000),
        limit=st.integers(0, 300),
    )
    def create_account(self, account: str, sub: str, balance: int, limit: int) -> None:
        self.create(account, sub, balance, limit)

    @rule(account=TARGETS, amount=amounts)
    def credit(self, account: str, amount: int) -> None:
        cmd = Credit(id=self.next_id(), now_ms=self.now, account_id=account, amount=amount)
        acct = self.accounts.get(account)
        if acct is None:
            self.run(cmd, LedgerOutcome(code=Code.UNKNOWN_ACCOUNT))
            return
        acct.balance += amount
        acct.credits += amount
        self.run(cmd, LedgerOutcome(code=Code.OK))

    def charge(self, acct: ModelAccount, amount: int) -> LedgerOutcome:
        acct.balance -= amount
        acct.debits += amount
        return LedgerOutcome(code=Code.OK, overdraft=acct.balance < -acct.limit)

    @rule(account=TARGETS, amount=amounts, overdraft=st.booleans())
    def debit(self, account: str, amount: int, overdraft: bool) -> None:
        self.do_debit(account, amount, overdraft)

    def do_debit(self, account: str, amount: int, overdraft: bool) -> None:
        cmd = Debit(
            id=self.next_id(),
            now_ms=self.now,
            account_id=account,
            amount=amount,
            allow_overdraft=overdraft,
        )
        acct = self.accounts.get(account)
        if acct is None:
            self.run(cmd, LedgerOutcome(code=Code.UNKNOWN_ACCOUNT))
        elif not overdraft and acct.balance - acct.reserved - amount < -acct.limit:
            self.run(cmd, LedgerOutcome(code=Code.INSUFFICIENT_FUNDS))
        else:
            self.run(cmd, self.charge(acct, amount))

    @rule(
        account=TARGETS,
        status=st.sampled_from([AccountStatus.ACTIVE] * 3 + list(AccountStatus)),
    )
    def set_status(self, account: str, status: AccountStatus) -> None:
        cmd = SetStatus(id=self.next_id(), now_ms=self.now, account_id=account, status=status)
        acct = self.accounts.get(account)
        if acct is None:
            self.run(cmd, LedgerOutcome(code=Code.UNKNOWN_ACCOUNT))
            return
        acct.status = status
        self.run(cmd, LedgerOutcome(code=Code.OK))

    @rule(account=TARGETS, amount=amounts, ttl=ttls)
    def reserve(self, account: str, amount: int, ttl: int) -> None:
        self.do_reserve(account, amount, ttl)

    @rule(account=TARGETS, count=st.integers(2, 4), ttl=ttls)
    def reserve_several_alike(self, account: str, count: int, ttl: int) -> None:
        for _ in range(count):
            self.do_reserve(account, 1, ttl)

    @rule(account=TARGETS, extra=st.integers(-1, 1), ttl=ttls)
    def reserve_all_that_is_left(self, account: str, extra: int, ttl: int) -> None:
        path(f"reserve of the headroom {extra:+d}")
        acct = self.accounts.get(account)
        headroom = 0 if acct is None else acct.balance - acct.reserved + acct.limit
        self.do_reserve(account, max(1, headroom + extra), ttl)

    @rule(account=TARGETS, extra=st.integers(-1, 1))
    def debit_all_that_is_left(self, account: str, extra: int) -> None:
        path(f"debit of the headroom {extra:+d}")
        acct = self.accounts.get(account)
        headroom = 0 if acct is None else acct.balance - acct.reserved + acct.limit
        self.do_debit(account, max(1, headroom + extra), False)

    def do_reserve(self, account: str, amount: int, ttl: int) -> None:
        rid = self.next_id("r")
        owner = f"holder-of-{rid}" if len(self.reservation_ids) % 2 else ""  # owner is optional
        cmd = Reserve(
            id=rid,
            now_ms=self.now,
            account_id=account,
            amount=amount,
            expires_at_ms=self.now + ttl,
            owner=owner,
        )
        self.reservation_ids.append(rid)
        acct = self.accounts.get(account)
        if acct is None:
            expected = Code.UNKNOWN_ACCOUNT
        elif acct.status is not AccountStatus.ACTIVE:
            expected = Code.ACCOUNT_NOT_ACTIVE
        elif acct.balance - acct.reserved - amount < -acct.limit:
            expected = Code.INSUFFICIENT_FUNDS
        else:
            expected = Code.OK
            acct.reserved += amount
            self.open[rid] = ModelReservation(account, amount, self.now + ttl, owner)
        self.run(cmd, LedgerOutcome(code=expected))

    def pick_reservation(self, pick: int, known: bool) -> str:
        ids = sorted(self.open) if known and self.open else self.reservation_ids
        return ids[pick % len(ids)]

    @rule(pick=st.integers(0, 10**6), known=st.booleans(), amount=st.integers(0, 1_200))
    def post(self, pick: int, known: bool, amount: int) -> None:
        self.do_post(self.pick_reservation(pick, known), amount)

    # (one argument each: hypothesis picks rules with fewer arguments more often)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def post_against_the_reservation(self, data: st.DataObject) -> None:
        """Post nothing, less than, exactly or more than the reservation holds."""
        rid = self.pick_reservation(data.draw(st.integers(0, 10**6)), True)
        where = data.draw(st.sampled_from(["nothing", "less", "exactly", "more", "far more"]))
        part = data.draw(st.integers(0, 10**6))
        held = self.open[rid].amount
        amount = {
            "nothing": 0,
            "less": 1 + part % (held - 1) if held > 1 else 0,
            "exactly": held,
            "more": held + 1 + part % held,
            "far more": held + 1_000 + part % 10_000,
        }[where]
        self.do_post(rid, amount)

    def do_post(self, rid: str, amount: int) -> None:
        cmd = Post(id=self.next_id(), now_ms=self.now, reservation_id=rid, amount=amount)
        res = self.open.pop(rid, None)
        if res is None:
            self.run(cmd, LedgerOutcome(code=Code.UNKNOWN_RESERVATION))
            return
        path(
            "post of nothing"
            if amount == 0
            else "post below the reservation"
            if amount < res.amount
            else "post of exactly the reservation"
            if amount == res.amount
            else "post beyond the reservation"
        )
        acct = self.accounts[res.account]
        acct.reserved -= res.amount
        self.run(cmd, self.charge(acct, amount))

    @rule(pick=st.integers(0, 10**6), known=st.booleans())
    def void(self, pick: int, known: bool) -> None:
        rid = self.pick_reservation(pick, known)
        cmd = Void(id=self.next_id(), now_ms=self.now, reservation_id=rid)
        res = self.open.pop(rid, None)
        if res is None:
            self.run(cmd, LedgerOutcome(code=Code.UNKNOWN_RESERVATION))
            return
        self.accounts[res.account].reserved -= res.amount
        self.run(cmd, LedgerOutcome(code=Code.OK))

    @rule(elapsed=st.integers(0, 4_000))
    def expire(self, elapsed: int) -> None:
        self.do_expire(self.now + elapsed)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def expire_at_a_deadline(self, data: st.DataObject) -> None:
        """Time goes to exactly when a reservation falls due (or a millisecond before)."""
        rid = self.pick_reservation(data.draw(st.integers(0, 10**6)), True)
        due = self.open[rid].expires_at_ms - data.draw(st.sampled_from([0, 0, 1]))
        if due >= self.now:
            exact = due == self.open[rid].expires_at_ms
            path(f"expiry {'exactly at' if exact else 'a millisecond before'} a deadline")
        self.do_expire(max(self.now, due))

    def do_expire(self, now: int) -> None:
        self.now = now
        due = sorted(
            (r.expires_at_ms, rid) for rid, r in self.open.items() if r.expires_at_ms <= self.now
        )
        if not due:
            assert self.ledger.expire_due(self.now) == LedgerOutcome(code=Code.OK)
            return
        path(f"{len(due)} reservation(s) expired")
        owners = []
        for _, rid in due:
            res = self.open.pop(rid)
            self.accounts[res.account].reserved -= res.amount
            owners.append(res.owner)
        expected = LedgerOutcome(
            code=Code.OK, expired=tuple(rid for _, rid in due), expired_owners=tuple(owners)
        )
        self.run(Expire(id=self.next_id(), now_ms=self.now), expected)

    @rule(pick=st.integers(0, 10**6))
    def repeat(self, pick: int) -> None:
        cmd, first = self.history[pick % len(self.history)]
        before = self.ledger.snapshot()
        assert self.ledger.apply(cmd) == first
        assert self.ledger.snapshot() == before

    @rule()
    def snapshot_round_trip(self) -> None:
        data = self.ledger.snapshot()
        restored = Ledger()
        restored.restore(data)
        assert restored.snapshot() == data
        self.ledger = restored

    @invariant()
    def books_balance(self) -> None:
        self.ledger.check_invariants()
        assert self.ledger.account_count == len(self.accounts)
        for account_id, model in self.accounts.items():
            view = self.ledger.account(account_id)
            assert view is not None
            assert (view.balance, view.reserved, view.status) == (
                model.balance,
                model.reserved,
                model.status,
            )
            assert model.initial + model.credits - model.debits == model.balance
        models = self.accounts.values()
        assert self.ledger.totals() == Totals(
            initial=sum(m.initial for m in models),
            credits=sum(m.credits for m in models),
            debits=sum(m.debits for m in models),
        )
        assert {r.reservation_id for r in self.ledger.reservations()} == set(self.open)
        for account_id, model in self.accounts.items():
            held = sum(r.amount for r in self.open.values() if r.account == account_id)
            assert held == model.reserved


LedgerMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase


@pytest.fixture(autouse=True, scope="module")
def _print_paths() -> Iterator[None]:
    """With ``pytest -s``: how often the run reached each path."""
    PATHS.clear()
    yield
    print("\nmoney paths reached by the ledger machine in this run:")
    for name, count in sorted(PATHS.items()):
        print(f"  {count:6d}  {name}")
