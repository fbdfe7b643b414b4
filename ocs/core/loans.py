"""Airtime-on-credit loans (docs/accounts.md, *A loan*; docs/protocol.md, *LOAN*).

The loan book of the charging core: per account, the loan balance (loan money not spent yet)
and the loans outstanding; and what the catalog's `[loan_policy]` (rating/loans.py) needs to
decide whether an account may borrow (the day it was created, its recent top-ups).
Deterministic and synchronous like the rest of the core: time is passed in.

How loan money lives in the ledger (the design, docs/accounts.md)
    The loan is a ledger `Credit` to the account (its operation id is the LOAN's), so the
    ledger's identity ``initial + credits - debits == sum of balances`` holds unchanged: the
    account's ledger balance is money + loan balance, and this book says how much of it is
    loan. Grants reserve against that one ledger balance (one two-phase reservation per grant,
    as always); what a posted charge took is split when it is posted, in the documented order
    of spending: money above the policy's threshold first, then the loan balance, then money
    at or below the threshold. So usage draws on the loan only when the money balance is at or
    below the threshold. The fee is owed, not taken: the debt is principal + fee. A top-up
    (CREDIT) repays first, oldest loan first, principal then fee, as a ledger `Debit` of
    what it repays (a repayment); the rest of the top-up stays money. The loan balance never
    exceeds the principal still owed: repaying principal turns as much unspent loan money into
    money (it is paid for).

Records
    Each loan and each repayment is a record of the CDR stream (numbered with the CDRs, so the
    stream stays gap-free): ``recordType`` "loan" with ``charge`` = minus the principal (money
    the account received), "loanRepayment" with ``charge`` = what it repaid (principal + fee).
    Over a loan's life they sum to its fee: the sum of ``charge`` over all records is still what
    the accounts lost to the operator, exactly.

Memory
    Only accounts that borrowed hold a `LoanAccount`. The creation day of every account is
    kept (one dict entry, the day number shared between accounts), and recent top-ups only
    while the policy asks for one (`topup_window_days`), at most `MAX_TOPUPS` per account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from ocs.core.accounts import AccountStatus
from ocs.core.charging_types import BookingRefused
from ocs.core.ledger import Code, Debit, Ledger
from ocs.core.outcomes import Outcome
from rating.loans import LoanPolicy

__all__ = [
    "DAY_MS",
    "MAX_TOPUPS",
    "Loan",
    "LoanAccount",
    "LoanBook",
    "LoanInvariantViolation",
    "LoanState",
    "Repayment",
    "money_available",
    "repay_from_topup",
    "repayment_plan",
    "spent_from_loan",
    "split_available",
    "take_loan",
]

DAY_MS: Final = 86_400_000
#: Recent top-ups kept per account for the policy's top-up condition (oldest dropped first).
MAX_TOPUPS: Final = 8


class Loan(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One loan outstanding (a loan fully repaid leaves the book; its records stay)."""

    loan_id: str
    at_ms: int  # when it was taken
    amount: int  # principal lent, micro-units
    fee: int
    principal_due: int
    fee_due: int
    repayments: int = 0  # repayment records written for it so far

    @property
    def due(self) -> int:
        return self.principal_due + self.fee_due


class LoanAccount(msgspec.Struct, kw_only=True, array_like=True):
    """An account that borrowed: its loan balance (unspent loan money, part of the ledger
    balance) and its loans outstanding, oldest first."""

    balance: int = 0
    loans: list[Loan] = []

    @property
    def owed(self) -> int:
        return sum(loan.due for loan in self.loans)

    @property
    def principal_owed(self) -> int:
        return sum(loan.principal_due for loan in self.loans)


class LoanState(msgspec.Struct, kw_only=True, array_like=True):
    """The book's part of a core snapshot (`CoreState.loans`, its msgpack encoding)."""

    seq: int = 0
    accounts: list[tuple[str, LoanAccount]] = []
    # (UTC day number, the accounts created that day): grouped, a tenth of the time and size of
    # a pair per account at 1,000,000 accounts
    created_days: list[tuple[int, list[str]]] = []
    topups: list[tuple[str, list[tuple[int, int]]]] = []  # (at_ms, amount), see `_note_topup`
    lent: int = 0  # principal lent, ever
    fees: int = 0  # fees owed, ever
    repaid_principal: int = 0
    repaid_fees: int = 0


_STATE_ENCODER: Final = msgspec.msgpack.Encoder()
_STATE_DECODER: Final = msgspec.msgpack.Decoder(LoanState)


class LoanInvariantViolation(AssertionError):
    """The loan book disagrees with itself or with the ledger (a bug)."""


@dataclass(frozen=True, slots=True)
class Repayment:
    """What one top-up repays of one loan."""

    loan: Loan
    principal: int
    fee: int


# --- the arithmetic (pure functions: the property tests drive them directly) -----------------


def split_available(
    balance: int, reserved: int, loan_balance: int, threshold: int
) -> tuple[int, int]:
    """(money available, loan available): the ledger's ``balance - reserved`` split by the
    order of spending (money above `threshold`, then the loan, then money at or below it), the
    reservations counted as drawn in that order. They sum to ``balance - reserved``."""
    money = balance - loan_balance
    above = max(0, money - threshold)
    held_by_loan = min(loan_balance, max(0, reserved - above))
    return money - (reserved - held_by_loan), loan_balance - held_by_loan


def spent_from_loan(balance_before: int, loan_balance: int, charge: int, threshold: int) -> int:
    """How much of a `charge` posted against a ledger balance of `balance_before` (money +
    loan) the loan balance pays: what money above `threshold` cannot pay, at most the loan
    balance."""
    above = max(0, balance_before - loan_balance - threshold)
    return min(loan_balance, max(0, charge - above))


def repayment_plan(loans: list[Loan], amount: int) -> list[Repayment]:
    """What a top-up of `amount` repays: oldest loan first, principal then fee, each part at
    most what is owed; the plan's total is ``min(amount, owed)``. Changes nothing."""
    plan: list[Repayment] = []
    left = amount
    for loan in loans:
        if left <= 0:
            break
        principal = min(left, loan.principal_due)
        left -= principal
        fee = min(left, loan.fee_due)
        left -= fee
        if principal or fee:
            plan.append(Repayment(loan, principal, fee))
    return plan


# --- the book ----------------------------------------------------------------------------------


class LoanBook:
    """Per account: loan balance, loans outstanding, creation day, recent top-ups."""

    def __init__(self) -> None:
        self.seq = 0  # loans made so far (their ids: "loan-<seq>")
        self.accounts: dict[str, LoanAccount] = {}
        self.created_days: dict[str, int] = {}
        self.topups: dict[str, list[tuple[int, int]]] = {}
        self.lent = 0
        self.fees = 0
        self.repaid_principal = 0
        self.repaid_fees = 0
        self._days: dict[int, int] = {}  # day numbers shared between accounts

    # -- what the core tells the book

    def created(self, account_id: str, now_ms: int) -> None:
        day = now_ms // DAY_MS
        self.created_days[account_id] = self._days.setdefault(day, day)

    def closed(self, account_id: str) -> None:
        self.created_days.pop(account_id, None)
        self.topups.pop(account_id, None)
        self.accounts.pop(account_id, None)

    def topped_up(
        self, account_id: str, amount: int, now_ms: int, policy: LoanPolicy | None
    ) -> None:
        """Remember a top-up while the policy has a top-up condition. The list keeps only
        top-ups no later one is at least as large as (amounts decrease from oldest to newest):
        for any amount and window, the condition is decided on it as on the whole history."""
        if policy is None or not policy.topup_window_days:
            return
        entries = self.topups.get(account_id)
        if entries is None:
            entries = self.topups[account_id] = []
        horizon = now_ms - policy.topup_window_days * DAY_MS
        entries[:] = [(at, a) for at, a in entries if a > amount and at >= horizon]
        entries.append((now_ms, amount))
        del entries[:-MAX_TOPUPS]

    def spent(self, account_id: str, charge: int, balance_after: int, threshold: int) -> int:
        """A charge was posted (usage): take its loan part from the loan balance; returns it."""
        account = self.accounts.get(account_id)
        if account is None or account.balance <= 0 or charge <= 0:
            return 0
        part = spent_from_loan(balance_after + charge, account.balance, charge, threshold)
        account.balance -= part
        return part

    # -- reading

    def account(self, account_id: str) -> LoanAccount | None:
        return self.accounts.get(account_id)

    def loan_balance(self, account_id: str) -> int:
        account = self.accounts.get(account_id)
        return 0 if account is None else account.balance

    def owed(self, account_id: str) -> int:
        account = self.accounts.get(account_id)
        return 0 if account is None else account.owed

    def refusal(
        self,
        account_id: str,
        amount: int,
        fee: int,
        now_ms: int,
        policy: LoanPolicy,
        money_available: int,
    ) -> str | None:
        """Why the account may not take a loan of `amount` now, or None (the policy's
        eligibility, in the documented order)."""
        if money_available > policy.threshold:
            return f"the balance {money_available} is above the loan threshold {policy.threshold}"
        if policy.min_account_age_days:
            created = self.created_days.get(account_id)
            # an account created before this build recorded creation days counts as old enough
            if created is not None and now_ms // DAY_MS - created < policy.min_account_age_days:
                return f"the account is younger than {policy.min_account_age_days} days"
        if policy.topup_window_days:
            horizon = now_ms - policy.topup_window_days * DAY_MS
            recent = [a for at, a in self.topups.get(account_id, ()) if at >= horizon]
            if not recent or max(recent) < policy.min_topup:
                return (
                    f"no top-up of at least {policy.min_topup} in the last "
                    f"{policy.topup_window_days} days"
                )
        account = self.accounts.get(account_id)
        loans = account.loans if account is not None else []
        if policy.max_outstanding is not None and len(loans) + 1 > policy.max_outstanding:
            return f"{len(loans)} loan(s) outstanding, the policy allows {policy.max_outstanding}"
        owed = account.owed if account is not None else 0
        most = policy.max_outstanding_amount
        if most is not None and owed + amount + fee > most:
            return f"{owed} owed; with this loan {owed + amount + fee}, above {most}"
        return None

    # -- changes

    def lend(self, account_id: str, amount: int, fee: int, now_ms: int) -> Loan:
        """Record a loan (the caller credited the ledger with `amount`)."""
        self.seq += 1
        loan = Loan(
            loan_id=f"loan-{self.seq}",
            at_ms=now_ms,
            amount=amount,
            fee=fee,
            principal_due=amount,
            fee_due=fee,
        )
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = LoanAccount(balance=0, loans=[])
        account.loans.append(loan)
        account.balance += amount
        self.lent += amount
        self.fees += fee
        return loan

    def plan(self, account_id: str, amount: int) -> list[Repayment]:
        account = self.accounts.get(account_id)
        return [] if account is None else repayment_plan(account.loans, amount)

    def repay(self, account_id: str, plan: list[Repayment]) -> None:
        """Apply a repayment plan (the caller debited the ledger with its total)."""
        account = self.accounts[account_id]
        for part in plan:
            loan = part.loan
            loan.principal_due -= part.principal
            loan.fee_due -= part.fee
            loan.repayments += 1
            self.repaid_principal += part.principal
            self.repaid_fees += part.fee
        account.loans = [loan for loan in account.loans if loan.due]
        # repaid principal is paid-for money: the loan balance never exceeds what is owed of it
        account.balance = min(account.balance, account.principal_owed)
        if not account.loans and not account.balance:
            del self.accounts[account_id]

    # -- invariants

    def check_invariants(self, balances: dict[str, int]) -> None:
        """`balances`: the ledger balance of every account. Raises `LoanInvariantViolation`."""
        principal = fees = 0
        for account_id, account in self.accounts.items():
            if account_id not in balances:
                raise LoanInvariantViolation(f"{account_id!r}: loans of an unknown account")
            if not 0 <= account.balance <= account.principal_owed:
                raise LoanInvariantViolation(
                    f"{account_id!r}: loan balance {account.balance} outside "
                    f"0..{account.principal_owed}"
                )
            for loan in account.loans:
                if not (0 <= loan.principal_due <= loan.amount and 0 <= loan.fee_due <= loan.fee):
                    raise LoanInvariantViolation(f"{loan.loan_id}: dues out of range")
                if not loan.due:
                    raise LoanInvariantViolation(f"{loan.loan_id}: repaid but still listed")
                principal += loan.principal_due
                fees += loan.fee_due
        if self.lent - self.repaid_principal != principal:
            raise LoanInvariantViolation(
                f"lent {self.lent} - repaid {self.repaid_principal} != owed principal {principal}"
            )
        if self.fees - self.repaid_fees != fees:
            raise LoanInvariantViolation(
                f"fees {self.fees} - repaid {self.repaid_fees} != owed fees {fees}"
            )

    # -- snapshots

    def snapshot(self) -> bytes:
        return _STATE_ENCODER.encode(
            LoanState(
                seq=self.seq,
                accounts=list(self.accounts.items()),
                created_days=_by_day(self.created_days),
                topups=list(self.topups.items()),
                lent=self.lent,
                fees=self.fees,
                repaid_principal=self.repaid_principal,
                repaid_fees=self.repaid_fees,
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace the state with a `snapshot`'s; ``b""`` (a snapshot of a build before loans):
        an empty book."""
        state = _STATE_DECODER.decode(data) if data else LoanState()
        self.seq = state.seq
        self.accounts = dict(state.accounts)
        self._days = {}
        created: dict[str, int] = {}
        for day, ids in state.created_days:
            created.update(dict.fromkeys(ids, self._days.setdefault(day, day)))
        self.created_days = created
        self.topups = {a: list(entries) for a, entries in state.topups}
        self.lent = state.lent
        self.fees = state.fees
        self.repaid_principal = state.repaid_principal
        self.repaid_fees = state.repaid_fees


def _by_day(created_days: dict[str, int]) -> list[tuple[int, list[str]]]:
    grouped: dict[int, list[str]] = {}
    for account_id, day in created_days.items():
        ids = grouped.get(day)
        if ids is None:
            ids = grouped[day] = []
        ids.append(account_id)
    return sorted(grouped.items())


# --- records of the CDR stream ------------------------------------------------------------------


def loan_record(
    loan: Loan, account_id: str, subscriber: str, node_id: str, currency: int, when: str
) -> dict[str, Any]:
    """The "loan" record (without its `recordSequenceNumber`)."""
    return {
        "recordType": "loan",
        "sessionId": loan.loan_id,
        "accountId": account_id,
        "servedSubscriber": subscriber,
        "nodeId": node_id,
        "localSequenceNumber": 1,
        "recordOpeningTime": when,
        "recordClosingTime": when,
        "causeForRecordClosing": "normalRelease",
        "listOfMultipleUnitUsage": [],
        "charge": -loan.amount,
        "currencyCode": currency,
        "loanId": loan.loan_id,
        "loanAmount": loan.amount,
        "loanFee": loan.fee,
    }


def repayment_record(
    part: Repayment, account_id: str, subscriber: str, node_id: str, currency: int, when: str
) -> dict[str, Any]:
    """A "loanRepayment" record (after `LoanBook.repay`: the dues are what is left)."""
    loan = part.loan
    return {
        "recordType": "loanRepayment",
        "sessionId": loan.loan_id,
        "accountId": account_id,
        "servedSubscriber": subscriber,
        "nodeId": node_id,
        "localSequenceNumber": 1 + loan.repayments,
        "recordOpeningTime": when,
        "recordClosingTime": when,
        "causeForRecordClosing": "normalRelease",
        "listOfMultipleUnitUsage": [],
        "charge": part.principal + part.fee,
        "currencyCode": currency,
        "loanId": loan.loan_id,
        "principalRepaid": part.principal,
        "feeRepaid": part.fee,
        "principalOutstanding": loan.principal_due,
        "feeOutstanding": loan.fee_due,
    }


# --- administration: LOAN and the repayment of a top-up (called by ChargingCore._admin) -------

#: An administrative outcome as `ChargingCore._admin` returns it: (outcome, Failed-AVP, detail).
AdminResult = tuple[Outcome, dict[str, Any] | None, str]
Emit = Callable[[dict[str, Any]], None]


def _subscriber(ledger: Ledger, account_id: str) -> str:
    view = ledger.account(account_id)
    if view is None or not view.subscriptions:
        return ""
    return view.subscriptions[0].data


def money_available(book: LoanBook, ledger: Ledger, account_id: str, threshold: int) -> int:
    """The account's money after reservations (its GET `Balance`), loan money left out."""
    view = ledger.account(account_id)
    if view is None:
        return 0
    loan = book.loan_balance(account_id)
    if not loan:
        return view.available
    return split_available(view.balance, view.reserved, loan, threshold)[0]


def take_loan(
    book: LoanBook,
    ledger: Ledger,
    policy: LoanPolicy | None,
    *,
    now_ms: int,
    account_id: str,
    amount: int | None,
    op_id: str,
    node_id: str,
    currency: int,
    when: str,
    emit: Emit,
) -> AdminResult:
    """LOAN (docs/protocol.md): refused, or the principal credited to the ledger under
    `op_id`, the loan recorded, and its "loan" record emitted."""
    if policy is None:
        return Outcome.LOAN_NOT_OFFERED, {"Account-Operation": 20}, ""
    if amount is None:
        return Outcome.MISSING_AVP, {"Amount": None}, "Amount"
    if amount not in policy.amounts:
        offered = ", ".join(str(a) for a in policy.amounts)
        return Outcome.LOAN_AMOUNT, {"Amount": amount}, f"offered: {offered}"
    standing = ledger.standing(account_id)
    if standing is None:
        return Outcome.UNKNOWN_ACCOUNT, {"Account-Id": account_id}, ""
    if standing[0] is not AccountStatus.ACTIVE:
        return Outcome.LOAN_REFUSED, {"Account-Id": account_id}, "the account is not active"
    fee = policy.fee_for(amount)
    money = money_available(book, ledger, account_id, policy.threshold)
    why = book.refusal(account_id, amount, fee, now_ms, policy, money)
    if why is not None:
        return Outcome.LOAN_REFUSED, {"Account-Id": account_id}, why
    outcome = ledger.credit(op_id, now_ms=now_ms, account_id=account_id, amount=amount)
    if outcome.code is Code.LIMIT_EXCEEDED:
        return Outcome.BALANCE_BOUND, {"Amount": amount}, ""
    if not outcome.ok:
        return Outcome.INVALID, {"Amount": amount}, outcome.detail
    loan = book.lend(account_id, amount, fee, now_ms)
    subscriber = _subscriber(ledger, account_id)
    emit(loan_record(loan, account_id, subscriber, node_id, currency, when))
    return Outcome.OK, None, ""


def repay_from_topup(
    book: LoanBook,
    ledger: Ledger,
    *,
    now_ms: int,
    account_id: str,
    amount: int,
    op_id: str,
    node_id: str,
    currency: int,
    when: str,
    emit: Emit,
) -> int:
    """A top-up of `amount` was credited under `op_id`: repay what it can of the account's
    loans (one ledger debit, ``<op_id>|repay``), emit a "loanRepayment" record per loan it
    touched; returns what it repaid."""
    plan = book.plan(account_id, amount)
    total = sum(part.principal + part.fee for part in plan)
    if not total:
        return 0
    # funded by the credit just made: the balance ends at least where it was before the top-up
    outcome = ledger.apply(
        Debit(
            id=f"{op_id}|repay",
            now_ms=now_ms,
            account_id=account_id,
            amount=total,
            allow_overdraft=True,
        ),
        internal=True,
    )
    if not outcome.ok:  # cannot happen (see above): fail the input whole
        raise BookingRefused(f"repayment of {total}: {outcome.code.name}")
    book.repay(account_id, plan)
    subscriber = _subscriber(ledger, account_id)
    for part in plan:
        emit(repayment_record(part, account_id, subscriber, node_id, currency, when))
    return total
