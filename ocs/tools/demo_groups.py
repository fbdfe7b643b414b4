"""The demo's shared group: a group account owning the demo catalog's package "family", two
demo subscribers as its members (their sessions are then charged to the group), and at the end
their statements of the open month, checked against what the group lost.

Talks to the server as an operator tool would (AMR over the demo's connection)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from protocol.codes import AccountOperation
from protocol.messages import AMA
from rating import format_money

GROUP = "demo-family"
PACKAGE = "family"

Amr = Callable[..., Awaitable[AMA]]


async def make_group(amr: Amr, members: Sequence[str], balance: int) -> bool:
    """Create the group account and join `members` to it; False (and a line) on a refusal."""
    made = await amr(AccountOperation.CREATE, GROUP, amount=balance, currency_code=978)
    if made.result_code != 2001:
        print(f"demo: CREATE {GROUP} answered {made.result_code}", flush=True)
        return False
    for member in members:
        joined = await amr(
            AccountOperation.GROUP_JOIN,
            member,
            group_account_id=GROUP,
            package_name=PACKAGE,
            operation_id=f"demo-join-{member}",
        )
        if joined.result_code != 2001:
            print(f"demo: GROUP_JOIN {member} answered {joined.result_code}", flush=True)
            return False
    print(
        f"demo: group {GROUP} ({format_money(balance)} EUR, package {PACKAGE}) shared by "
        f"{', '.join(members)}",
        flush=True,
    )
    return True


async def check_statements(amr: Amr, members: Sequence[str], group_lost: int) -> bool:
    """Print the members' statements of the open month; True if their usage charges add up
    to what the group account lost (its members' usage is all it paid for)."""
    total = 0
    for member in members:
        answer = await amr(AccountOperation.STATEMENT, member)
        statement = answer.statement
        if answer.result_code != 2001 or statement is None:
            print(f"demo: STATEMENT {member} answered {answer.result_code}", flush=True)
            return False
        total += statement.usage_charge
        used = ", ".join(
            f"{s.service_name} {s.used_units} ({format_money(s.usage_charge)} EUR)"
            for s in statement.statement_service
        )
        print(f"demo: statement of {member} (month open): {used}", flush=True)
    ok = total == group_lost
    print(
        f"demo: group {GROUP} lost {format_money(group_lost)} EUR; its members' statements "
        f"charge {format_money(total)} EUR; group reconciles: {ok}",
        flush=True,
    )
    return ok
