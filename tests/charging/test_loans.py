"""Airtime-on-credit loans in the charging core (ocs/core/loans.py; docs/accounts.md "A loan",
docs/protocol.md LOAN): the worked example to the micro-unit, eligibility, repayments, records,
idempotency, replay and restart; property tests of the repayment arithmetic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.core.charging import ChargingCore
from ocs.core.ledger import Ledger
from ocs.core.loans import (
    DAY_MS,
    Loan,
    repayment_plan,
    spent_from_loan,
    split_available,
)
from protocol.codes import AccountOperation
from protocol.messages import AMA
from rating import CatalogError, parse_catalog
from tests.charging.conftest import (
    DEMO,
    EUR,
    INITIAL,
    PEAK,
    TERMINATION,
    VOICE,
    Harness,
    amr,
    ccr,
    mscc,
    only,
    rsu,
    usu,
)

CENT = EUR // 100
LOAN = AccountOperation.LOAN
SUB = "491700000042"


def loan_catalog(policy: str) -> str:
    """The demo catalog with another `[loan_policy]`."""
    head = DEMO.split("[loan_policy]")[0]
    return f"{head}[loan_policy]\n{policy}\n"


def checked(h: Harness) -> None:
    h.ledger.check_invariants()
    balances = {a.account_id: a.balance for a in h.ledger.accounts()}
    h.core.loans.check_invariants(balances)
    h.assert_replays()


@pytest.fixture
def h() -> Iterator[Harness]:
    """A core on the demo catalog (its loan policy: 1, 2 or 5 EUR, fee 10 % rounded up,
    threshold 0.50 EUR, one loan at a time); the books and the loan book checked after."""
    harness = Harness()
    yield harness
    checked(harness)


def get(h: Harness, account_id: str, now_ms: int = PEAK) -> AMA:
    answer = h.ama(amr(AccountOperation.GET, account_id), now_ms)
    assert answer.result_code == 2001 and answer.account is not None
    return answer


def call(h: Harness, name: str, seconds: int, now_ms: int = PEAK, *, used: int = 0) -> None:
    """A voice call granted `seconds` (and using them, or `used`) on a weekday (demo RG 40:
    0.05 EUR setup fee, the first minute whole, then 0.001 EUR a second)."""
    used = used or seconds
    sid = f"upf1.test.local;{name}"
    ask = mscc(40, ask=rsu(seconds=seconds))
    first = h.cca(ccr(sid, INITIAL, 0, ask, subscriber=SUB, service=VOICE), now_ms)
    assert only(first).result_code == 2001, first
    granted = only(first).granted_service_unit
    assert granted is not None and granted.cc_time == seconds
    end = ccr(sid, TERMINATION, 1, mscc(40, used=(usu(seconds=used),)), service=VOICE)
    assert h.cca(end, now_ms + used * 1000).result_code == 2001


def test_the_worked_example_of_docs_accounts(h: Harness) -> None:
    """docs/accounts.md, "A loan", to the micro-unit."""
    h.account("a", SUB, 20 * CENT)  # 0.20 EUR
    taken = h.ama(amr(LOAN, "a", amount=2 * EUR, operation_id="loan-1"), PEAK)
    assert taken.result_code == 2001, taken
    account = taken.account
    assert account is not None
    # money 0.20 EUR; loan balance 2.00 EUR; owed 2.00 + fee ceil(2.00 x 0.1) = 0.20
    assert account.balance == 200_000 and account.loan_balance == 2_000_000
    assert account.loan is not None and len(account.loan) == 1
    loan = account.loan[0]
    assert (loan.loan_amount, loan.loan_fee) == (2_000_000, 200_000)
    assert (loan.loan_principal_due, loan.loan_fee_due) == (2_000_000, 200_000)
    assert loan.loan_time == PEAK // 1000
    # the ledger holds money + loan: 0.20 + 2.00
    assert h.balance("a") == 2_200_000

    # a call of 1,950 s: 0.05 setup + 1,950 x 0.001 = 2.00 EUR; money (0.20) is at or below
    # the threshold (0.50), so the loan pays it all: 2.00 - 2.00 = 0
    call(h, "c1", 1_950)
    after_call = get(h, "a").account
    assert after_call is not None
    assert after_call.balance == 200_000 and after_call.loan_balance == 0
    assert h.balance("a") == 200_000

    # the next top-up, 10 EUR: repays 2.00 principal + 0.20 fee = 2.20; the rest, 7.80, is money
    topup = h.ama(amr(AccountOperation.CREDIT, "a", amount=10 * EUR, operation_id="t1"), PEAK + 1)
    assert topup.result_code == 2001
    final = topup.account
    assert final is not None
    assert final.balance == 200_000 + 7_800_000 == 8_000_000
    assert final.loan_balance is None and final.loan is None  # nothing owed any more

    records = [r for r in h.cdrs() if r["accountId"] == "a"]
    kinds = [(r["recordType"], r["charge"]) for r in records]
    assert kinds == [("loan", -2_000_000), ("session", 2_000_000), ("loanRepayment", 2_200_000)]
    repayment = records[-1]
    assert repayment["principalRepaid"] == 2_000_000 and repayment["feeRepaid"] == 200_000
    assert repayment["principalOutstanding"] == 0 and repayment["feeOutstanding"] == 0
    assert repayment["loanId"] == records[0]["loanId"] == "loan-1"
    # the records say what the account lost to the operator: 0.20 + 10 - 8.00 = 2.20 (the
    # call's 2.00 and the fee's 0.20)
    assert sum(c for _, c in kinds) == 200_000 + 10 * EUR - 8 * EUR
    seqs = [seq for seq, _ in h.cdr_lines]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free with the CDRs


def test_a_top_up_repays_partially_principal_first(h: Harness) -> None:
    h.account("a", SUB, 0)
    assert h.ama(amr(LOAN, "a", amount=5 * EUR), PEAK).result_code == 2001  # fee 0.50
    # 1 EUR repays 1 EUR of principal; the loan balance stays at most the principal owed (4)
    topup = h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 1).account
    assert topup is not None and topup.loan is not None
    assert (topup.loan[0].loan_principal_due, topup.loan[0].loan_fee_due) == (4 * EUR, 500_000)
    # ledger 5 + 1 - 1 = 5; loan balance min(5, 4) = 4; money 1 (paid for)
    assert h.balance("a") == 5 * EUR and topup.loan_balance == 4 * EUR and topup.balance == EUR
    # 4.30 repays 4 of principal and 0.30 of fee
    topup = h.ama(amr(AccountOperation.CREDIT, "a", amount=430 * CENT), PEAK + 2).account
    assert topup is not None and topup.loan is not None
    assert (topup.loan[0].loan_principal_due, topup.loan[0].loan_fee_due) == (0, 200_000)
    assert topup.loan_balance == 0 and topup.balance == 5 * EUR
    # 3 repays the last 0.20 of fee; 2.80 stay
    topup = h.ama(amr(AccountOperation.CREDIT, "a", amount=3 * EUR), PEAK + 3).account
    assert topup is not None and topup.loan is None and topup.balance == 780 * CENT
    repaid = [(r["principalRepaid"], r["feeRepaid"]) for r in h.cdrs() if "feeRepaid" in r]
    assert repaid == [(EUR, 0), (4 * EUR, 300_000), (0, 200_000)]
    assert [r["localSequenceNumber"] for r in h.cdrs() if r["recordType"] != "session"] == [
        1,
        2,
        3,
        4,
    ]


def test_usage_draws_on_money_above_the_threshold_first(h: Harness) -> None:
    h.account("a", SUB, 40 * CENT)
    assert h.ama(amr(LOAN, "a", amount=EUR), PEAK).result_code == 2001
    # a top-up of 3 repays the 1.10 and leaves 1.90; the unspent 1.00 of loan is paid for:
    # money 0.40 + 1.00 + 1.90 = 3.30 (no loan left)
    h.ama(amr(AccountOperation.CREDIT, "a", amount=3 * EUR), PEAK + 1)
    assert h.core.loans.account("a") is None and h.balance("a") == 330 * CENT
    assert h.ama(amr(LOAN, "a", amount=EUR), PEAK + 2).result_code == 5012  # 3.30 > 0.50
    # spend down to 0.30: 0.05 + 1,950 s = 2.00, then 0.05 + 950 s = 1.00
    call(h, "c1", 1_950, PEAK + 10_000)
    call(h, "c0", 950, PEAK + 2_000_000)
    assert get(h, "a").account.balance == 30 * CENT  # type: ignore[union-attr]
    assert h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 3_000_000).result_code == 2001
    # money 0.30 + loan 2.00; a call of 0.05 + 60 s (the first minute whole) = 0.11: the loan
    # pays it (money is at or below the threshold): money 0.30, loan 1.89
    call(h, "c2", 60, PEAK + 3_100_000)
    account = get(h, "a", PEAK + 3_200_000).account
    assert account is not None and account.balance == 30 * CENT
    assert account.loan_balance == 189 * CENT


def test_the_threshold_counts_reservations_and_the_loan_pays_grants(h: Harness) -> None:
    h.account("a", SUB, 20 * CENT)
    assert h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK).result_code == 2001
    sid = "upf1.test.local;held"
    # 2.20 can pay 0.05 + 2,150 s at most
    ask = mscc(40, ask=rsu(seconds=3_000))
    first = h.cca(ccr(sid, INITIAL, 0, ask, subscriber=SUB, service=VOICE), PEAK)
    granted = only(first).granted_service_unit
    assert granted is not None and granted.cc_time == 2_150
    held = get(h, "a").account
    # the reservation is counted against the loan first (money is below the threshold)
    assert held is not None and held.reserved == 2_200_000
    assert held.loan_balance == 0 and held.balance == 0


def test_eligibility_in_the_documented_order() -> None:
    h = Harness(
        catalog=loan_catalog(
            'amounts = ["2.00"]\nfee = "0.25"\nthreshold = "1.00"\n'
            "min_account_age_days = 7\n"
            'min_topup = "5.00"\ntopup_window_days = 30\n'
            'max_outstanding_amount = "3.00"'
        )
    )
    h.account("a", SUB, 0, now_ms=PEAK)
    refused = h.ama(amr(LOAN, "a", amount=3 * EUR), PEAK)
    assert refused.result_code == 5004 and refused.failed_avp == {"Amount": 3 * EUR}
    assert h.ama(amr(LOAN, "nobody", amount=2 * EUR), PEAK).result_code == 5030
    too_young = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 6 * DAY_MS)
    assert too_young.result_code == 5012 and "younger than 7 days" in (
        too_young.error_message or ""
    )
    no_topup = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 7 * DAY_MS)
    assert no_topup.result_code == 5012 and "top-up" in (no_topup.error_message or "")
    # a 5 EUR top-up then spending it down below the threshold
    h.ama(amr(AccountOperation.CREDIT, "a", amount=5 * EUR), PEAK + 7 * DAY_MS)
    above = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 7 * DAY_MS + 1)
    assert above.result_code == 5012 and "above the loan threshold" in (above.error_message or "")
    h.ama(amr(AccountOperation.DEBIT, "a", amount=4 * EUR), PEAK + 7 * DAY_MS + 2)
    ok = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 7 * DAY_MS + 3)
    assert ok.result_code == 2001, ok
    # owed 2.25; another would make 4.50 > 3.00
    again = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 7 * DAY_MS + 4)
    assert again.result_code == 5012 and "above 3000000" in (again.error_message or "")
    # 31 days after the top-up it no longer counts
    h.ama(amr(AccountOperation.CREDIT, "a", amount=225 * CENT), PEAK + 8 * DAY_MS)  # repaid
    # ledger 1 + 2 + 2.25 - 2.25 = 3.00, all money now (the loan is repaid): spend 2.00
    h.ama(amr(AccountOperation.DEBIT, "a", amount=2 * EUR), PEAK + 8 * DAY_MS + 1)
    late = h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK + 38 * DAY_MS)
    assert late.result_code == 5012 and "top-up" in (late.error_message or "")
    checked(h)


def test_one_loan_at_a_time_and_no_loan_without_a_policy(h: Harness) -> None:
    h.account("a", SUB, 0)
    assert h.ama(amr(LOAN, "a", amount=EUR), PEAK).result_code == 2001
    # money 0 (the loan is not money): still at the threshold, but one loan is outstanding
    second = h.ama(amr(LOAN, "a", amount=EUR), PEAK + 1)
    assert second.result_code == 5012 and "1 loan(s) outstanding" in (second.error_message or "")
    bare = Harness(catalog=DEMO.split("[loan_policy]")[0].rstrip().rsplit("\n# ---", 1)[0])
    bare.account("b", "491700000043", 0)
    refused = bare.ama(amr(LOAN, "b", amount=EUR), PEAK)
    assert refused.result_code == 5012 and refused.error_message == "the catalog offers no loans"
    checked(bare)


def test_a_loan_is_applied_once_under_its_operation_id(h: Harness) -> None:
    h.account("a", SUB, 0)
    first = h.ama(amr(LOAN, "a", amount=EUR, operation_id="L1"), PEAK)
    again = h.ama(amr(LOAN, "a", amount=EUR, operation_id="L1"), PEAK + 1)
    assert first.result_code == again.result_code == 2001
    assert h.balance("a") == EUR and len(h.core.loans.account("a").loans) == 1  # type: ignore[union-attr]
    other = h.ama(amr(LOAN, "a", amount=2 * EUR, operation_id="L1"), PEAK + 2)
    assert other.result_code == 5004 and other.failed_avp == {"Operation-Id": "L1"}
    # a top-up retried under its Operation-Id repays once
    h.ama(amr(AccountOperation.CREDIT, "a", amount=5 * EUR, operation_id="T1"), PEAK + 3)
    h.ama(amr(AccountOperation.CREDIT, "a", amount=5 * EUR, operation_id="T1"), PEAK + 4)
    assert h.balance("a") == EUR + 5 * EUR - 110 * CENT
    assert len([r for r in h.cdrs() if r["recordType"] == "loanRepayment"]) == 1


def test_the_loan_pays_usage_only_and_a_debtor_cannot_close(h: Harness) -> None:
    h.account("a", SUB, 30 * CENT)
    assert h.ama(amr(LOAN, "a", amount=EUR), PEAK).result_code == 2001
    debit = h.ama(amr(AccountOperation.DEBIT, "a", amount=50 * CENT), PEAK + 1)
    assert debit.result_code == 4012 and "loan pays charges only" in (debit.error_message or "")
    assert h.ama(amr(AccountOperation.DEBIT, "a", amount=30 * CENT), PEAK + 2).result_code == 2001
    # granted 0.05 + 950 s = 1.00 (all there is), used 1,050 s: 0.05 + 1.05 = 1.10
    call(h, "c", 950, PEAK + 10, used=1_050)
    # the loan pays 1.00, money 0.10 (usage beyond the grant is charged all the same)
    assert h.balance("a") == -10 * CENT
    closing = h.ama(amr(AccountOperation.CLOSE, "a"), PEAK + 2_000_000)
    assert closing.result_code == 5012  # the balance is not zero (-0.10) and 1.10 is owed
    h.ama(amr(AccountOperation.CREDIT, "a", amount=120 * CENT), PEAK + 2_000_001)
    assert h.balance("a") == 0 and h.core.loans.owed("a") == 0
    assert h.ama(amr(AccountOperation.CLOSE, "a"), PEAK + 2_000_002).result_code == 2001


def test_a_debtor_with_a_zero_balance_cannot_close(h: Harness) -> None:
    h.account("a", SUB, 0)
    assert h.ama(amr(LOAN, "a", amount=EUR), PEAK).result_code == 2001
    call(h, "c", 950, PEAK + 10)  # 0.05 + 950 s = 1.00: the ledger balance is 0, 1.10 owed
    assert h.balance("a") == 0
    closing = h.ama(amr(AccountOperation.CLOSE, "a"), PEAK + 2_000_000)
    assert closing.result_code == 5012 and closing.error_message == "the account owes a loan"


def test_loans_survive_a_restart_from_snapshots(h: Harness) -> None:
    h.account("a", SUB, 20 * CENT)
    h.ama(amr(LOAN, "a", amount=2 * EUR), PEAK)
    before = get(h, "a").account
    h.restart()
    assert get(h, "a", PEAK + 1).account == before
    assert h.core.loans.seq == 1
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 2)
    assert h.core.loans.account("a").loans[0].principal_due == EUR  # type: ignore[union-attr]


def test_a_snapshot_of_layout_4_restores_with_no_loans() -> None:
    import msgspec

    from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER

    ledger = Ledger()
    core = ChargingCore(ledger, DEMO)
    state = STATE_DECODER.decode(core.snapshot())
    old = msgspec.structs.replace(state, layout=4)
    raw = msgspec.msgpack.decode(STATE_ENCODER.encode(old))
    fresh = ChargingCore(Ledger(), DEMO)
    from ocs.core.charging_types import CoreState

    loans = CoreState.__struct_fields__.index("loans")
    fresh.restore(msgspec.msgpack.encode(raw[:loans]))  # written without `loans` (nor later)
    assert fresh.loans.seq == 0 and fresh.loans.accounts == {}


# --- the catalog -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ("amounts = []", "loan_policy.amounts"),
        ('amounts = ["2.00", "1.00"]', "loan_policy.amounts[1]"),
        ("amounts = [2]", "loan_policy.amounts[0]"),
        ('amounts = ["1.00"]\nfee_ratio = "0.1"', "loan_policy.fee_rounding"),
        (
            'amounts = ["1.00"]\nfee_ratio = "0.1"\nfee_rounding = "down"',
            "loan_policy.fee_rounding",
        ),
        ('amounts = ["1.00"]\nfee = "0.1"\nfee_ratio = "0.1"', "loan_policy.fee_ratio"),
        ('amounts = ["1.00"]\nmin_topup = "5.00"', "loan_policy.topup_window_days"),
        ('amounts = ["1.00"]\nmax_outstanding = 0', "loan_policy.max_outstanding"),
        ('amounts = ["1.00"]\nlimit = 1', "loan_policy.limit"),
    ],
)
def test_bad_loan_policies_name_the_key(policy: str, path: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(loan_catalog(policy))
    assert info.value.path == path


def test_a_fee_ratio_rounds_up() -> None:
    policy = parse_catalog(
        loan_catalog('amounts = ["0.000007"]\nfee_ratio = "1/3"\nfee_rounding = "up"')
    ).loan_policy
    assert policy is not None and policy.fee_for(7) == 3  # 7/3 = 2.33 -> 3


# --- properties of the arithmetic ----------------------------------------------------------------

money = st.integers(min_value=0, max_value=10**15)


@st.composite
def loans(draw: st.DrawFn) -> list[Loan]:
    out = []
    for n in range(draw(st.integers(min_value=0, max_value=5))):
        amount = draw(st.integers(min_value=1, max_value=10**12))
        fee = draw(st.integers(min_value=0, max_value=10**11))
        out.append(
            Loan(
                loan_id=f"loan-{n}",
                at_ms=n,
                amount=amount,
                fee=fee,
                principal_due=draw(st.integers(min_value=0, max_value=amount)),
                fee_due=draw(st.integers(min_value=0, max_value=fee)),
            )
        )
    return out


@given(loans(), money)
def test_a_repayment_never_takes_more_than_owed_and_sums_exactly(
    book: list[Loan], amount: int
) -> None:
    owed = sum(loan.due for loan in book)
    plan = repayment_plan(book, amount)
    total = sum(p.principal + p.fee for p in plan)
    assert total == min(amount, owed)
    for part in plan:
        assert 0 <= part.principal <= part.loan.principal_due
        assert 0 <= part.fee <= part.loan.fee_due
        assert part.principal + part.fee > 0
    # oldest first, principal before fee: a part is left unpaid only once the money ran out
    for i, part in enumerate(plan[:-1]):
        assert part.principal == part.loan.principal_due and part.fee == part.loan.fee_due, i
    if plan and plan[-1].fee:
        assert plan[-1].principal == plan[-1].loan.principal_due


@given(money, money, money, money)
def test_the_split_of_available_sums_to_the_ledgers(
    balance: int, reserved: int, loan: int, threshold: int
) -> None:
    loan = min(loan, balance)
    reserved = min(reserved, balance)
    money_left, loan_left = split_available(balance, reserved, loan, threshold)
    assert money_left + loan_left == balance - reserved
    assert 0 <= loan_left <= loan


@given(money, money, money, money)
def test_the_loan_pays_only_what_money_above_the_threshold_cannot(
    balance: int, loan: int, charge: int, threshold: int
) -> None:
    loan = min(loan, balance)
    part = spent_from_loan(balance, loan, charge, threshold)
    assert 0 <= part <= min(loan, charge)
    money = balance - loan
    if money <= threshold:  # at or below the threshold: the loan pays first
        assert part == min(loan, charge)
    else:  # above: only what the money above the threshold does not cover
        assert part == min(loan, max(0, charge - (money - threshold)))


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.integers(1, 20_000_000)),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=20_000_000),
    st.integers(min_value=1, max_value=30),
)
def test_the_top_up_condition_is_decided_as_on_the_whole_history(
    topups: list[tuple[int, int]], min_topup: int, window_days: int
) -> None:
    """The book keeps only the top-ups no later one is at least as large as (at most 8): for
    the policy's amount and window it decides as the whole history would (when the dominance
    leaves at most 8)."""
    from ocs.core.loans import LoanBook
    from rating.loans import LoanPolicy

    policy = LoanPolicy(
        amounts=(EUR,), threshold=10**15, min_topup=min_topup, topup_window_days=window_days
    )
    book = LoanBook()
    history: list[tuple[int, int]] = []
    at = PEAK
    for days, amount in sorted(topups):
        at = max(at, PEAK + days * DAY_MS)
        book.topped_up("a", amount, at, policy)
        history.append((at, amount))
    now = at + DAY_MS // 2
    horizon = now - window_days * DAY_MS
    window = [a for t, a in history if t >= horizon]
    # the top-ups no later one is at least as large as: what the book keeps, 8 at most
    kept = [a for i, a in enumerate(window) if all(b < a for b in window[i + 1 :])]
    if len(kept) > 8:
        return  # the documented bound: the oldest (largest) are forgotten
    expected = any(a >= min_topup for a in window)
    why = book.refusal("a", EUR, 0, now, policy, 0)
    assert (why is None) == expected, (why, window)


def test_an_offer_fee_is_a_charge_the_loan_pays_below_the_threshold() -> None:
    """Regression (loans merged with offers): an offer's fee taken while the account held loan
    money was booked as money alone, leaving the money balance at -14.80 beside 20.00 of loan
    money. A fee is a charge like usage: it is split in the order of spending."""
    import msgspec

    h = Harness(catalog=loan_catalog('amounts = ["20.00"]\nfee = "1.00"\nthreshold = "0.50"'))
    h.account("a", SUB, 20 * CENT)
    assert h.ama(amr(LOAN, "a", amount=20 * EUR), PEAK).result_code == 2001
    subscribe = msgspec.structs.replace(
        amr(AccountOperation.SUBSCRIBE, "a", operation_id="S1"), offer_name="bundle-15"
    )
    assert h.ama(subscribe, PEAK + 1).result_code == 2001
    # ledger 0.20 + 20.00 - 15.00 = 5.20; money 0.20 is at or below 0.50: the loan pays the
    # 15.00 fee (20.00 - 15.00 = 5.00 left), money stays 0.20
    account = get(h, "a", PEAK + 2).account
    assert account is not None
    assert (account.balance, account.loan_balance) == (20 * CENT, 5 * EUR)
    checked(h)
