"""Random sequences of loans, top-ups, debits, calls, expiry ticks and restarts (from
snapshots) against the charging core, with the books checked after every step:

* the ledger's identity and the loan book's invariants (`0 <= loan balance <= principal owed`,
  lent - repaid == owed, for principal and fees);
* per account, what was put in (opening balance + administrative credits - administrative
  debits) == the ledger balance + the sum of its records' `charge` (every call is closed by
  the step that opened it, so nothing is held);
* the split of GET: `Balance + Loan-Balance + Reserved` == the ledger balance;
* at the end, replaying every journaled input from nothing gives the same state and the same
  numbered records (loan and repayment records included)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol.codes import AccountOperation
from tests.charging.conftest import (
    INITIAL,
    PEAK,
    TERMINATION,
    VOICE,
    Harness,
    amr,
    ccr,
    mscc,
    rsu,
    usu,
)

ACCOUNTS = ("a", "b")
SUBS = {"a": "491700000071", "b": "491700000072"}


@dataclass(frozen=True)
class Step:
    kind: str  # loan, credit, debit, call, restart, tick
    account: str
    amount: int  # micro-units (loan, credit, debit) or seconds (call)
    extra: int = 0  # call: seconds used beyond or below the grant
    minutes: int = 1  # time passing before the step


steps = st.builds(
    Step,
    kind=st.sampled_from(
        ["loan", "loan", "loan", "credit", "debit", "call", "call", "restart", "tick"]
    ),
    account=st.sampled_from(ACCOUNTS),
    amount=st.one_of(
        st.sampled_from([1_000_000, 2_000_000, 5_000_000]),
        st.integers(min_value=1, max_value=1_500_000),
    ),
    extra=st.integers(min_value=-200, max_value=200),
    minutes=st.integers(min_value=1, max_value=120),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=10, max_size=30), st.integers(min_value=0, max_value=600_000))
def test_loans_keep_the_books(sequence: list[Step], opening: int) -> None:
    h = Harness()
    put_in: dict[str, int] = {}
    now = PEAK
    for account in ACCOUNTS:
        h.account(account, SUBS[account], opening, now_ms=now)
        put_in[account] = opening
    for n, step in enumerate(sequence):
        now += step.minutes * 60_000
        account = step.account
        if step.kind == "loan":
            h.ama(
                amr(AccountOperation.LOAN, account, amount=step.amount, operation_id=f"L{n}"), now
            )
        elif step.kind in ("credit", "debit"):
            op = AccountOperation.CREDIT if step.kind == "credit" else AccountOperation.DEBIT
            answer = h.ama(amr(op, account, amount=step.amount, operation_id=f"M{n}"), now)
            if answer.result_code == 2001:
                put_in[account] += step.amount if step.kind == "credit" else -step.amount
        elif step.kind == "call":
            seconds = 1 + step.amount % 3_000
            sid = f"upf1.test.local;call-{n}"
            ask = mscc(40, ask=rsu(seconds=seconds))
            h.cca(ccr(sid, INITIAL, 0, ask, subscriber=SUBS[account], service=VOICE), now)
            used = max(0, seconds + step.extra)
            end = ccr(sid, TERMINATION, 1, mscc(40, used=(usu(seconds=used),)), service=VOICE)
            h.cca(end, now + used * 1000)
            now += used * 1000
        elif step.kind == "restart":
            h.restart()
        else:
            h.tick(now)
        h.ledger.check_invariants()
        balances = {a.account_id: a.balance for a in h.ledger.accounts()}
        h.core.loans.check_invariants(balances)
        records = h.cdrs()
        for acct in ACCOUNTS:
            charged = sum(r["charge"] for r in records if r["accountId"] == acct)
            assert put_in[acct] == balances[acct] + charged, (acct, step)
            got = h.ama(amr(AccountOperation.GET, acct), now).account
            assert got is not None
            assert got.balance + (got.loan_balance or 0) + got.reserved == balances[acct]
            assert got.reserved == 0
    seqs = [seq for seq, _ in h.cdr_lines]
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = {r["recordType"] for r in h.cdrs()}
    event(f"loans: {'loan' in kinds}, repayments: {'loanRepayment' in kinds}")
    h.assert_replays()
