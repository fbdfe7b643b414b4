"""Administration refusals handled by the core (WIRE.md 8): they change nothing."""

from __future__ import annotations

import pytest

from protocol.codes import AccountOperation
from tests.charging.conftest import EUR, PEAK, Harness, amr

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
