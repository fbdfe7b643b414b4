"""The audit log of administration (docs/operations.md, *Logs*, `admin.operation`): one log
event for every administrative request the server answers, whatever its operation and outcome,
with who asked (the peer: its CER's Origin-Host), what (the operation, its Operation-Id, the
account, the amount and the other values it set) and the answer (Result-Code).

The node logs it once the journal holds the request durably (a group-commit callback), so a
line never tells of a request a crash then undid; a duplicate answered from the cache is
logged too, marked ``duplicate=True``. A CDR_ROTATE, which is not journaled, is logged when it
is answered. A CREATE_BULK is one line for its batch: `accounts` (how many),
`first_account`, `last_account`, `amount` (their opening balances together) and `refused`
(how many were refused); each account is in the journal (`ocs journal show`). Values come
from the decoded request: they are within the protocol's domains (strings longer than 256
characters are cut by the log processor).
"""

from __future__ import annotations

from typing import Any

import structlog

from protocol.messages import AMA, AMR, Answer

log = structlog.get_logger("ocs.audit")


def audit_fields(message: AMR) -> dict[str, Any]:
    """The values of an AMR the audit line names: the operation and account always, the
    others when the request carries them."""
    fields: dict[str, Any] = {
        "operation": message.account_operation.name,
        "account": message.account_id,
    }
    if message.operation_id is not None:
        fields["operation_id"] = message.operation_id
    if message.amount is not None:
        fields["amount"] = message.amount
    if message.credit_limit is not None:
        fields["credit_limit"] = message.credit_limit
    if message.account_status is not None:
        fields["status"] = message.account_status.name
    if message.currency_code is not None:
        fields["currency"] = message.currency_code
    if message.subscription_id:
        fields["identities"] = [
            f"{int(s.subscription_id_type)}:{s.subscription_id_data}"
            for s in message.subscription_id
        ]
    if message.session_id is not None:
        fields["session"] = message.session_id
    if message.offer_name is not None:  # SUBSCRIBE, UNSUBSCRIBE (offers)
        fields["offer"] = message.offer_name
    if message.group_account_id is not None:  # GROUP_JOIN (groups)
        fields["group"] = message.group_account_id
    if message.package_name is not None:  # GROUP_JOIN (groups)
        fields["package"] = message.package_name
    if message.period_start is not None:  # STATEMENT (groups)
        fields["period_start"] = message.period_start
    # status-policy: SET_STATUS, UPDATE (docs/protocol.md, service control by account state)
    if message.account_state is not None:
        fields["state"] = message.account_state
    if message.inhibit_threshold is not None:
        fields["inhibit_threshold"] = message.inhibit_threshold
    if message.notify_threshold is not None:
        fields["notify_threshold"] = message.notify_threshold
    if message.bulk_account:  # CREATE_BULK: one line for the batch
        batch = message.bulk_account
        fields["accounts"] = len(batch)
        fields["first_account"] = batch[0].account_id
        fields["last_account"] = batch[-1].account_id
        fields["amount"] = sum(a.amount or 0 for a in batch)
    return fields


def log_admin(
    message: AMR, *, peer: str, end_to_end: int, answer: Answer, duplicate: bool = False
) -> None:
    """Log one administrative request and its answer (`admin.operation`)."""
    fields = audit_fields(message)
    if isinstance(answer, AMA) and answer.bulk_result is not None:
        fields["refused"] = len(answer.bulk_result)
    log.info(
        "admin.operation",
        peer=peer,
        end_to_end=end_to_end,
        **fields,
        result_code=answer.result_code,
        duplicate=duplicate,
    )
