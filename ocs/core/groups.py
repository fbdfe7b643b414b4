"""Shared group packages: membership, per-member usage, caps, the period's fee and its apportioning.

Deterministic and synchronous like the rest of the core (time is passed in). A *group account*
is an ordinary account that owns a package of the catalog (`rating.packages.Package`); *member*
accounts join it (GROUP_JOIN) and leave it (GROUP_LEAVE) at the time of their request. While an
account is a member, the usage of its subscribers' sessions is reserved on and charged to the
group account's money (the charging core asks `payer`), limited by the package's per-member
cap; each charge is recorded here per member, service and period. When a period ends (a TICK at
or after its end instant, `MAX_CLOSES_PER_TICK` groups at most; or a request concerning the
group after it; dated at the instant), the package fee is
debited from the group account through the ledger (operation id
``group-fee|<group>|<period start ms>``: applied once), apportioned between the members
(`rating.packages.apportion`), written as an ``apportionment`` record in the CDR stream, and
kept as one statement per member (STATEMENT).

Rules (docs/accounts.md, *Shared group packages*):

- Members of a period: every account that was a member at some time during it. Usage counts
  as used (what was charged to the group while it was a member, in the period the charge was
  made); the equal split of an unused service is in proportion to each member's time of
  membership during the period (members the whole period share equally).
- The catalog in force at the period's end decides the fee and the shares. A package no longer
  in the catalog, a period without members, or a group account that is gone ends the group:
  nothing is charged for that period and the group is dissolved (its members are free).
- A group whose members all left is charged for the period they were members in, then
  dissolved.

The state is one `Group` per group account and the member -> group index; statements are kept
for the last `MAX_STATEMENTS` periods of each member. Snapshots hold `GroupsState`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ocs.core.ledger import Code, Debit, Ledger
from rating.model import Catalog
from rating.packages import Package, apportion
from rating.periods import next_boundary, period_bounds

#: Statements kept per member (the most recent periods).
MAX_STATEMENTS: Final = 24
#: Periods one tick closes at most (docs/benchmarks.md, *Shared group packages*: 0.15-0.35 ms each,
#: pure build); more due at once are closed by the following ticks, a second apart.
MAX_CLOSES_PER_TICK: Final = 256


class Group(msgspec.Struct, kw_only=True, array_like=True):
    """A group account's package and its current period."""

    group_id: str
    package: str
    anchor_ms: int  # the first join: the periods' anchor (rating/periods.py)
    start_ms: int  # the current period: [start_ms, end_ms)
    end_ms: int
    members: dict[str, int] = {}  # current member -> joined at (ms)
    # time of membership during the current period, of intervals already closed (leaves)
    presence_ms: dict[str, int] = {}
    # member -> service name -> [units, money charged] in the current period
    usage: dict[str, dict[str, list[int]]] = {}


class StatementLine(msgspec.Struct, kw_only=True, array_like=True):
    service: str
    units: int
    charge: int  # money charged for usage of the service (micro-units)
    share: int  # the member's share of the service's part of the fee (micro-units)


class Statement(msgspec.Struct, kw_only=True, array_like=True):
    """One member's statement of one period of a group."""

    group_id: str
    package: str
    start_ms: int
    end_ms: int
    lines: list[StatementLine]
    share: int | None  # None: the period is still open (no share yet)
    record: int = 0  # recordSequenceNumber of the apportionment record (0: open period)


class GroupsState(msgspec.Struct, kw_only=True, array_like=True):
    groups: list[Group] = []
    statements: list[tuple[str, list[Statement]]] = []


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a group operation is refused: an outcome name (ocs.core.outcomes.Outcome), the key
    at fault, its value."""

    outcome: str
    key: str
    value: Any
    detail: str = ""


#: Writes one record of the CDR stream (the core numbers it and adds the fields every record
#: has): the record, the start and end (ms) of its period -> its recordSequenceNumber.
RecordWriter = Callable[[dict[str, Any], int, int], int]


class Groups:
    """The groups of a core (owned by `ChargingCore`, in its snapshots)."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.member_of: dict[str, str] = {}  # current member -> its group
        self.statements: dict[str, list[Statement]] = {}  # member -> oldest first
        # (period end ms, group id) of every group, lazily: an entry whose group is gone or
        # has another end is stale and skipped (`due_ms`, `close_due`)
        self._ends: list[tuple[int, str]] = []

    # --- queries --------------------------------------------------------------------------

    def payer(self, account_id: str) -> str:
        """The account that pays for `account_id`'s usage now: its group, or itself."""
        return self.member_of.get(account_id, account_id)

    def is_group(self, account_id: str) -> bool:
        return account_id in self.groups

    def in_group(self, account_id: str) -> bool:
        """Whether the account is a member now, or a group account (until its last period is
        over): CLOSE waits."""
        return account_id in self.member_of or account_id in self.groups

    def due_ms(self) -> int | None:
        """The earliest period end (ms), if any group exists."""
        ends = self._ends
        while ends:
            end, group_id = ends[0]
            group = self.groups.get(group_id)
            if group is not None and group.end_ms == end:
                return end
            heapq.heappop(ends)  # stale
        return None

    def cap_left(self, catalog: Catalog, group_id: str, member_id: str) -> int | None:
        """What the member may still be charged this period under the package's cap (None:
        no cap), before what its open grants on the group hold."""
        group = self.groups.get(group_id)
        if group is None:
            return None
        package = catalog.packages.get(group.package)
        if package is None or package.member_cap is None:
            return None
        charged = sum(line[1] for line in group.usage.get(member_id, {}).values())
        return package.member_cap - charged

    # --- membership -------------------------------------------------------------------------

    def join(
        self,
        now_ms: int,
        catalog: Catalog,
        member_id: str,
        group_id: str,
        package_name: str | None,
    ) -> Refusal | None:
        """`member_id` joins `group_id` at `now_ms` (the group is made on its first join, with
        `package_name`); None on success (also when it is a member already)."""
        if member_id == group_id:
            return Refusal(
                outcome="GROUP_NESTED", key="Group-Account-Id", value=group_id,
                detail="an account cannot join itself",
            )  # fmt: skip
        current = self.member_of.get(member_id)
        if current == group_id:
            return self._package_mismatch(group_id, package_name)
        if current is not None:
            return Refusal(
                outcome="IN_ANOTHER_GROUP", key="Account-Id", value=member_id,
                detail=f"it is a member of {current}",
            )  # fmt: skip
        if member_id in self.groups:
            return Refusal(
                outcome="GROUP_NESTED", key="Account-Id", value=member_id,
                detail="a group account cannot be a member",
            )  # fmt: skip
        if group_id in self.member_of:
            return Refusal(
                outcome="GROUP_NESTED", key="Group-Account-Id", value=group_id,
                detail="a member cannot be a group account",
            )  # fmt: skip
        group = self.groups.get(group_id)
        if group is None:
            if package_name is None:
                return Refusal(outcome="MISSING_AVP", key="Package-Name", value=None)
            package = catalog.packages.get(package_name)
            if package is None:
                return Refusal(outcome="UNKNOWN_PACKAGE", key="Package-Name", value=package_name)
            start, end = period_bounds(package.period, now_ms, now_ms, catalog.timezone)
            assert end is not None  # packages are never ONCE (rating/packages.py)
            group = Group(
                group_id=group_id,
                package=package_name,
                anchor_ms=now_ms,
                start_ms=start,
                end_ms=end,
                members={},
                presence_ms={},
                usage={},
            )
            self.groups[group_id] = group
            heapq.heappush(self._ends, (end, group_id))
        else:
            refused = self._package_mismatch(group_id, package_name)
            if refused is not None:
                return refused
        group.members[member_id] = now_ms
        self.member_of[member_id] = group_id
        return None

    def _package_mismatch(self, group_id: str, package_name: str | None) -> Refusal | None:
        group = self.groups[group_id]
        if package_name is not None and package_name != group.package:
            return Refusal(
                outcome="PACKAGE_MISMATCH", key="Package-Name", value=package_name,
                detail=f"the group owns {group.package}",
            )  # fmt: skip
        return None

    def leave(self, now_ms: int, member_id: str) -> Refusal | None:
        group_id = self.member_of.pop(member_id, None)
        if group_id is None:
            return Refusal(outcome="NOT_A_MEMBER", key="Account-Id", value=member_id)
        group = self.groups[group_id]
        joined = group.members.pop(member_id)
        since = max(joined, group.start_ms)
        group.presence_ms[member_id] = group.presence_ms.get(member_id, 0) + max(0, now_ms - since)
        return None

    # --- usage ------------------------------------------------------------------------------

    def record_usage(
        self,
        catalog: Catalog,
        group_id: str,
        member_id: str,
        rating_group: int,
        units: int,
        charge: int,
    ) -> None:
        """Usage of `member_id` charged to `group_id` (per service of the package; a rating
        group in no service of the package counts in the service ``"other"``, which has no
        share of the fee)."""
        group = self.groups.get(group_id)
        if group is None or (not units and not charge):
            return
        package = catalog.packages.get(group.package)
        service = package.service_of(rating_group) if package is not None else None
        name = service.name if service is not None else "other"
        mine = group.usage.get(member_id)
        if mine is None:
            mine = group.usage[member_id] = {}
        line = mine.get(name)
        if line is None:
            mine[name] = [units, charge]
        else:
            line[0] += units
            line[1] += charge

    # --- period ends ------------------------------------------------------------------------

    def close_due(
        self,
        now_ms: int,
        catalog: Catalog,
        ledger: Ledger,
        write: RecordWriter,
        limit: int | None = None,
    ) -> None:
        """Close the periods that ended at or before `now_ms`, in order of (end, group id),
        each dated at its end; at most `limit` of them (the rest stay due: the next tick goes
        on, so one input never holds the loop for every group of a busy midnight)."""
        for _ in range(MAX_CLOSES_PER_TICK if limit is None else limit):
            end = self.due_ms()
            if end is None or end > now_ms:
                return
            _, group_id = heapq.heappop(self._ends)
            self._close_period(self.groups[group_id], catalog, ledger, write)

    def close_group(
        self,
        group_id: str,
        now_ms: int,
        catalog: Catalog,
        ledger: Ledger,
        write: RecordWriter,
    ) -> None:
        """Close the periods of one group that ended at or before `now_ms` (before a request
        that concerns it, should it come before the tick that would have)."""
        group = self.groups.get(group_id)
        while group is not None and group.end_ms <= now_ms:
            self._close_period(group, catalog, ledger, write)
            group = self.groups.get(group_id)

    def _close_period(
        self, group: Group, catalog: Catalog, ledger: Ledger, write: RecordWriter
    ) -> None:
        end = group.end_ms
        presence = dict(group.presence_ms)
        for member, joined in group.members.items():
            presence[member] = presence.get(member, 0) + max(0, end - max(joined, group.start_ms))
        for member in group.usage:  # charged while a member: a member of the period
            presence.setdefault(member, 0)
        package = catalog.packages.get(group.package)
        alive = ledger.standing(group.group_id) is not None
        if package is not None and presence and alive:
            self._apportion(group, package, presence, catalog, ledger, write)
        if package is None or not group.members or not alive:
            self._dissolve(group)
            return
        nxt = next_boundary(package.period, group.anchor_ms, end, catalog.timezone)
        assert nxt is not None
        group.start_ms, group.end_ms = end, nxt
        heapq.heappush(self._ends, (nxt, group.group_id))
        group.presence_ms = {}
        group.usage = {}

    def _apportion(
        self,
        group: Group,
        package: Package,
        presence: dict[str, int],
        catalog: Catalog,
        ledger: Ledger,
        write: RecordWriter,
    ) -> None:
        end = group.end_ms
        fee = package.fee
        refused = ""
        if fee:
            outcome = ledger.apply(
                Debit(
                    id=f"group-fee|{group.group_id}|{group.start_ms}",
                    now_ms=end,
                    account_id=group.group_id,
                    amount=fee,
                    allow_overdraft=True,  # the fee is owed, as usage beyond a grant is
                )
            )
            if outcome.code is not Code.OK:
                refused, fee = outcome.code.name, 0
        units = {
            m: {name: line[0] for name, line in services.items()}
            for m, services in group.usage.items()
        }
        shares = apportion(package, units, presence) if fee else {m: {} for m in presence}
        names = [s.name for s in package.services]
        statements: dict[str, Statement] = {}
        members_json: list[dict[str, Any]] = []
        for member in sorted(presence):
            used = group.usage.get(member, {})
            lines = [
                StatementLine(
                    service=name,
                    units=used.get(name, [0, 0])[0],
                    charge=used.get(name, [0, 0])[1],
                    share=shares[member].get(name, 0),
                )
                for name in names + sorted(n for n in used if n not in names)
            ]
            total = sum(line.share for line in lines)
            statements[member] = Statement(
                group_id=group.group_id,
                package=package.name,
                start_ms=group.start_ms,
                end_ms=end,
                lines=lines,
                share=total,
            )
            members_json.append(
                {
                    "accountId": member,
                    "membershipMs": presence[member],
                    "services": [
                        {
                            "service": line.service,
                            "units": line.units,
                            "usageCharge": line.charge,
                            "share": line.share,
                        }
                        for line in lines
                    ],
                    "share": total,
                }
            )
        record: dict[str, Any] = {
            "recordType": "apportionment",
            "accountId": group.group_id,
            "packageName": package.name,
            "charge": fee,
            "currencyCode": catalog.currency.code,
            "apportionment": members_json,
        }
        if refused:
            record["feeRefused"] = refused
        seq = write(record, group.start_ms, end)
        for member, statement in statements.items():
            statement.record = seq
            kept = self.statements.setdefault(member, [])
            kept.append(statement)
            if len(kept) > MAX_STATEMENTS:
                del kept[0]

    def _dissolve(self, group: Group) -> None:
        for member in group.members:
            del self.member_of[member]
        del self.groups[group.group_id]

    # --- statements -------------------------------------------------------------------------

    def statement(self, catalog: Catalog, member_id: str, at_ms: int | None) -> Statement | None:
        """The member's statement of the period holding `at_ms` (None: its latest closed
        period, else its open one): closed periods from the kept statements, the open period
        of its group (usage so far, no share yet)."""
        kept = self.statements.get(member_id, [])
        if at_ms is None:
            if kept:
                return kept[-1]
        else:
            for statement in reversed(kept):
                if statement.start_ms <= at_ms < statement.end_ms:
                    return statement
        group_id = self.member_of.get(member_id)
        group = self.groups.get(group_id) if group_id is not None else None
        if group is None:  # a former member with usage in a group's open period
            group = next((g for g in self.groups.values() if member_id in g.usage), None)
        if group is None:
            return None
        if at_ms is not None and not group.start_ms <= at_ms < group.end_ms:
            return None
        used = group.usage.get(member_id, {})
        package = catalog.packages.get(group.package)
        names = [s.name for s in package.services] if package is not None else []
        return Statement(
            group_id=group.group_id,
            package=group.package,
            start_ms=group.start_ms,
            end_ms=group.end_ms,
            lines=[
                StatementLine(
                    service=name,
                    units=used.get(name, [0, 0])[0],
                    charge=used.get(name, [0, 0])[1],
                    share=0,
                )
                for name in names + sorted(n for n in used if n not in names)
            ],
            share=None,
        )

    # --- snapshots --------------------------------------------------------------------------

    def state(self) -> GroupsState:
        return GroupsState(
            groups=list(self.groups.values()),
            statements=list(self.statements.items()),
        )

    def restore(self, state: GroupsState | None) -> None:
        self.groups = {}
        self.member_of = {}
        self.statements = {}
        self._ends = []
        if state is None:
            return
        for group in state.groups:
            self.groups[group.group_id] = group
            for member in group.members:
                self.member_of[member] = group.group_id
        self._ends = sorted((g.end_ms, g.group_id) for g in state.groups)
        self.statements = dict(state.statements)
