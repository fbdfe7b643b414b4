"""CREATE_BULK (docs/protocol.md, *Extension: bulk create*): up to `MAX_BULK_ACCOUNTS`
CREATEs in one administrative request, for provisioning (`ocs account import`).

Each `Bulk-Account` is applied as the CREATE of the same keys would be, with the same checks
(identities, currency, an existing Account-Id, an identity another account holds), atomically
and independently of the others: a refused account changes nothing and the next ones are
created all the same. The whole request is one journaled input, so replay creates the same
accounts; if the core raised on it (a bug), the node undoes the whole input and answers 5012
(docs/durability.md, *Atomic inputs*), so the batch is then created in full or not at all.

The answer lists only the refused accounts (`Bulk-Result`: Account-Id, the Result-Code and the
fixed `Error-Message` of the CREATE's refusal, without its detail, so that the answer of 128
refusals stays within a message); the accounts not listed were created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ocs.core.outcomes import Outcome, error_message, result_code
from protocol.codes import AccountOperation
from protocol.messages import AMR, BulkResult

__all__ = ["create_bulk"]

#: (outcome, Failed-AVP, detail) of one administrative operation (`ChargingCore._admin`)
Create = Callable[[AMR], tuple[Outcome, dict[str, Any] | None, str]]


def create_bulk(amr: AMR, create: Create) -> tuple[BulkResult, ...]:
    """Apply each `Bulk-Account` of `amr` through `create` (the core's CREATE), in order; the
    refused ones."""
    refused: list[BulkResult] = []
    for entry in amr.bulk_account or ():
        one = AMR(
            origin_host=amr.origin_host,
            origin_realm=amr.origin_realm,
            account_operation=AccountOperation.CREATE,
            account_id=entry.account_id,
            subscription_id=entry.subscription_id,
            amount=entry.amount,
            credit_limit=entry.credit_limit,
            currency_code=entry.currency_code,
        )
        outcome = create(one)[0]
        if outcome is not Outcome.OK:
            refused.append(
                BulkResult(
                    account_id=entry.account_id,
                    result_code=result_code(outcome),
                    error_message=error_message(outcome),
                )
            )
    return tuple(refused)
