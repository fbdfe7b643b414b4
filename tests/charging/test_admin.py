"""Administration refusals handled by the core (WIRE.md 8): they change nothing."""

from __future__ import annotations

import pytest

from protocol.codes import AccountOperation, CCRequestType
from protocol.limits import MAX_BALANCE
from tests.charging.conftest import EUR, PEAK, Harness, MiB, amr, ccr, mscc, rsu, usu

INITIAL, UPDATE, TERMINATION = (
    CCRequestType.INITIAL,
    CCRequestType.UPDATE,
    CCRequestType.TERMINATION,
)

SUB = "491700000001"


@pytest.mark.parametrize(
    ("operation", "key"),
    [
        (AccountOperation.CREDIT, "Amount"),
        (AccountOperation.DEBIT, "Amount"),
        (AccountOperation.SET_STATUS, "Account-Status"),
    ],
)
def test_key_the_operation_needs_missing_is_5005(
    h: Harness, operation: AccountOperation, key: str
) -> None:
    h.account("a", SUB, EUR)
    before = h.ledger.snapshot()
    answer = h.ama(amr(operation, "a"), PEAK + 1)
    assert answer.result_code == 5005 and answer.failed_avp == {key: None}
    assert answer.account is None
    assert h.ledger.snapshot() == before


@pytest.mark.parametrize("amount", [0, -5])
def test_amount_not_positive_is_5004(h: Harness, amount: int) -> None:
    h.account("a", SUB, EUR)
    answer = h.ama(amr(AccountOperation.CREDIT, "a", amount=amount), PEAK + 1)
    assert answer.result_code == 5004 and h.balance("a") == EUR


def test_unknown_account_is_5030(h: Harness) -> None:
    for operation in (AccountOperation.GET, AccountOperation.CREDIT):
        answer = h.ama(amr(operation, "ghost", amount=1), PEAK)
        assert answer.result_code == 5030 and answer.account is None


def test_the_id_memory_holds_operation_ids_not_the_cores_own_operations(h: Harness) -> None:
    """Reservations, posts, voids and event debits are applied once by the request's own
    duplicate rules; only operators' Operation-Ids take room in the ledger's bounded id memory,
    so a retried top-up is recognised for the whole retention time whatever the traffic."""
    h.account("a", SUB, 10 * EUR)
    remembered = h.ledger.remembered_count
    initial = ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB)
    update = ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),)))
    term = ccr("s", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),)))
    for i, message in enumerate((initial, update, term)):
        assert h.cca(message, PEAK + i * 1000).result_code == 2001
    assert h.ledger.remembered_count == remembered
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR, operation_id="topup-1"), PEAK + 5000)
    assert h.ledger.remembered_count == remembered + 1


def test_an_operation_id_names_one_operation(h: Harness) -> None:
    """A retry with the same Operation-Id gets the first outcome; the same id on another
    operation (here a debit after a credit) is refused with 5004 naming the Operation-Id,
    never answered 2001 with the outcome of something else."""
    h.account("a", SUB, 10 * EUR)
    credit = amr(AccountOperation.CREDIT, "a", amount=EUR, operation_id="op-1")
    assert h.ama(credit, PEAK).result_code == 2001
    assert h.ama(credit, PEAK + 1000).result_code == 2001  # a retry: applied once
    assert h.balance("a") == 11 * EUR
    debit = amr(AccountOperation.DEBIT, "a", amount=3 * EUR, operation_id="op-1")
    refused = h.ama(debit, PEAK + 2000)
    assert refused.result_code == 5004 and refused.failed_avp == {"Operation-Id": "op-1"}
    other_amount = amr(AccountOperation.CREDIT, "a", amount=2 * EUR, operation_id="op-1")
    assert h.ama(other_amount, PEAK + 3000).result_code == 5004
    assert h.balance("a") == 11 * EUR
    h.restart()  # what an Operation-Id names survives a restart
    assert h.ama(debit, PEAK + 4000).result_code == 5004
    assert h.ama(credit, PEAK + 5000).result_code == 2001 and h.balance("a") == 11 * EUR


def test_each_refusal_has_its_own_error_message_and_failed_avp(h: Harness) -> None:
    """Issue 12: a duplicate account and an identity held by another account both answered
    "invalid". Each cause has its own Error-Message (docs/protocol.md, *Administrative
    refusals*: its text before the colon is fixed) and a Failed-AVP naming the key; none
    changes an account."""
    h.account("a", SUB, EUR, credit_limit=0)
    h.ama(amr(AccountOperation.CREDIT, "a", amount=1, operation_id="op-1"), PEAK + 1)
    before = list(h.ledger.accounts())
    create = AccountOperation.CREATE
    cases = [
        (
            amr(create, "a"),
            5004,
            "an account with this Account-Id exists already",
            {"Account-Id": "a"},
        ),
        (
            amr(create, "b", subscriber=SUB),
            5004,
            f"the Subscription-Id belongs to another account: 0:{SUB} is held by account a",
            {"Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": SUB}]},
        ),
        (
            amr(AccountOperation.GET, "ghost"),
            5030,
            "no account has this Account-Id",
            {"Account-Id": "ghost"},
        ),
        (
            amr(AccountOperation.CREDIT, "a", amount=0),
            5004,
            "invalid value: the Amount must be positive",
            {"Amount": 0},
        ),
        (
            amr(AccountOperation.CREDIT, "a", amount=2, operation_id="op-1"),
            5004,
            "the Operation-Id names another operation",
            {"Operation-Id": "op-1"},
        ),
        (
            amr(AccountOperation.DEBIT, "a", amount=2 * EUR),
            4012,
            "not enough credit for the Amount",
            {"Amount": 2 * EUR},
        ),
        (
            amr(AccountOperation.DEBIT, "a"),
            5005,
            "a key this operation needs is missing: Amount",
            {"Amount": None},
        ),
        (
            amr(AccountOperation.TERMINATE_SESSION, "a", session_id="x;1"),
            5002,
            "the account has no open session with this Session-Id",
            {"Session-Id": "x;1"},
        ),
    ]
    messages = set()
    for i, (message, code, text, failed) in enumerate(cases):
        answer = h.ama(message, PEAK + 10 + i)
        assert (answer.result_code, answer.error_message, answer.failed_avp) == (
            code,
            text,
            failed,
        )
        assert answer.account is None
        messages.add(text.partition(":")[0])
    assert len(messages) == len(cases)  # distinct causes, distinct texts
    assert list(h.ledger.accounts()) == before


def test_a_credit_past_the_balance_bound_is_its_own_refusal(h: Harness) -> None:
    most = 10**15  # the largest Amount of one request (docs/protocol.md, Limits)
    h.account("a", SUB, most)
    for i in range(MAX_BALANCE // most + 1):
        answer = h.ama(amr(AccountOperation.CREDIT, "a", amount=most), PEAK + 1 + i)
        if answer.result_code != 2001:
            break
    assert (answer.result_code, answer.failed_avp) == (5004, {"Amount": most})
    assert answer.error_message == "the Amount would take the balance past its bound"
    assert h.balance("a") == (MAX_BALANCE // most) * most
