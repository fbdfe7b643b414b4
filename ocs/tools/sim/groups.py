"""A shared group for the simulators (``--group-members N``): after provisioning, a group
account owning a catalog package (``--group-package``, default the demo catalog's "family")
and the first N subscribers as its members, so that their usage is charged to the group
(docs/accounts.md). The reconciliation is unchanged: the CDRs of a member's sessions still name
its subscriber and session, only the account that paid differs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from protocol.codes import AccountOperation, ResultCode
from protocol.messages import AMR

if TYPE_CHECKING:
    from ocs.tools.sim.runtime import SimRuntime, Subscriber


def group_account_id(members: Sequence[Subscriber]) -> str:
    return f"sim-group-{members[0].msisdn}"


async def share(rt: SimRuntime, members: Sequence[Subscriber]) -> None:
    """Create the group account (the members' balance each, together) and join `members`
    (an account or a membership that exists already, from an earlier run, is kept)."""
    group = group_account_id(members)
    steps = [
        AMR(
            origin_host=rt.config.origin_host,
            origin_realm=rt.config.origin_realm,
            account_operation=AccountOperation.CREATE,
            account_id=group,
            amount=rt.config.balance * len(members),
        )
    ]
    steps += [
        AMR(
            origin_host=rt.config.origin_host,
            origin_realm=rt.config.origin_realm,
            account_operation=AccountOperation.GROUP_JOIN,
            account_id=sub.account_id,
            group_account_id=group,
            package_name=rt.config.group_package,
            operation_id=f"{group}-join-{sub.account_id}",
        )
        for sub in members
    ]
    for request in steps:
        delivery = await rt.call(request)
        rt.stats.requests["AMR"] += 1
        rt.stats.answer(delivery, admin=True)
        answer = delivery.answer
        what = f"{request.account_operation.name} {request.account_id}"
        if answer is None:
            raise RuntimeError(f"{what}: no answer")
        exists = request.account_operation is AccountOperation.CREATE and (
            answer.result_code == ResultCode.INVALID_AVP_VALUE
        )
        if answer.result_code != ResultCode.SUCCESS and not exists:
            raise RuntimeError(f"{what}: {answer.result_code} {answer.error_message or ''}")
