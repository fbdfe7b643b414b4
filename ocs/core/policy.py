"""Service control by account state, and the low-balance thresholds (issue 15, items 1 and 2).

docs/charging.md, *Service control by account state*, explains it with worked numbers;
docs/protocol.md, *Extension: service control by account state*, has the AVPs.

An account's *state* is derived, never stored whole: ``barred`` and ``suspended`` come from its
`Account-Status` (the balance store's); otherwise the operator-defined state set with
`Account-State` (one of the catalog's `[status] states`), if any; otherwise the first derived
state a hook names (`PolicyBook.derived`: functions ``account id -> state name or None``, for
example ``on_loan`` from the loans engine); otherwise ``low_balance`` when the account's
headroom (available balance + credit limit) is at or below its inhibit threshold; otherwise
``active``. The catalog (`rating.policies`) maps a state to a policy per rating group or
service: allow, restrict, redirect, deny; what it does not name gets the default below.

What this module keeps per account (`AccountSettings`, only for accounts that have one): the
operator-defined state and the account's own thresholds. It is part of the core's snapshot.
Nothing here reads a clock; the charging core calls in with the state of the ledger.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from ocs.core.accounts import AccountStatus
from protocol.codes import FinalUnitAction as WireFinalUnitAction
from protocol.codes import RedirectAddressType as WireRedirectAddressType
from protocol.codes import ResultCode
from protocol.messages import FinalUnitIndication, MsccAnswer, RedirectServer, ServiceUnit
from rating import RatingGroup, Unit
from rating.model import FinalUnitAction
from rating.policies import (
    ACTIVE,
    BARRED,
    LOW_BALANCE,
    SUSPENDED,
    PolicyAction,
    ServicePolicy,
    StatusPolicies,
)

#: What a derived-state hook is: the account id -> the name of a state it is in, or None.
DerivedState = Callable[[str], str | None]

#: `Account-State` that clears the operator-defined state.
CLEAR_STATE = ACTIVE
#: `Inhibit-Threshold` / `Notify-Threshold` that gives the account the catalog's again.
CATALOG_THRESHOLD = -1

_ALLOW = ServicePolicy(action=PolicyAction.ALLOW)
_DENY = ServicePolicy(action=PolicyAction.DENY)


class AccountSettings(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """An account's own part of the policies (absent: none of them)."""

    state: str = ""  # operator-defined state ("" none)
    inhibit: int | None = None  # micro-units; None: the catalog's
    notify: int | None = None

    def empty(self) -> bool:
        return not self.state and self.inhibit is None and self.notify is None


class Mark(NamedTuple):
    """What the network elements were told about an account: its state, and whether its
    headroom is at or below its notification threshold."""

    state: str
    notified: bool


class Decision(NamedTuple):
    """What a state does to one rating group's grant (`PolicyBook.decide`)."""

    action: PolicyAction
    # RESTRICT / REDIRECT: the indication of the zero grant. ALLOW: the indication of a grant
    # cut at the inhibit threshold (None: the rating group's own, as without a threshold).
    fui: FinalUnitIndication | None = None
    # ALLOW: money kept back from the grant (the inhibit threshold), or 0
    floor: int = 0
    # ALLOW with a floor: the zero grant to answer instead of 4012 when nothing fits above the
    # floor (the low-balance policy restricts or redirects)
    fallback: FinalUnitIndication | None = None
    # DENY: the MSCC's Result-Code
    result_code: int = ResultCode.END_USER_SERVICE_DENIED
    # RESTRICT / REDIRECT / DENY decided by ``low_balance``: what allowances (offers) pay may
    # still be granted, money is not
    low: bool = False


_ALLOWED = Decision(PolicyAction.ALLOW)


def policy_fui(policy: ServicePolicy) -> FinalUnitIndication:
    """The Final-Unit-Indication of a restrict, redirect or deny policy (made once per distinct
    policy: the values are immutable; keyed by plain values, hashable in any build)."""
    server = policy.redirect_server
    return _fui(
        policy.action.value,
        policy.filter_ids,
        None if server is None else (int(server.address_type), server.address),
    )


@functools.cache
def _fui(
    action: str, filter_ids: tuple[str, ...], server: tuple[int, str] | None
) -> FinalUnitIndication:
    if action == PolicyAction.RESTRICT.value:
        return FinalUnitIndication(
            final_unit_action=WireFinalUnitAction.RESTRICT_ACCESS, filter_id=filter_ids
        )
    if action == PolicyAction.REDIRECT.value:
        assert server is not None
        return FinalUnitIndication(
            final_unit_action=WireFinalUnitAction.REDIRECT,
            redirect_server=RedirectServer(
                redirect_address_type=WireRedirectAddressType(server[0]),
                redirect_server_address=server[1],
            ),
        )
    return FinalUnitIndication(final_unit_action=WireFinalUnitAction.TERMINATE)


def default_policy(state: str, rg: RatingGroup) -> ServicePolicy:
    """The policy of a state for a rating group the catalog does not name: ``suspended`` and
    ``barred`` deny; ``low_balance`` does what the rating group does when its money runs out
    (its `final_unit_action`: terminate = deny, redirect, restrict_access = restrict); every
    other state allows."""
    if state in (SUSPENDED, BARRED):
        return _DENY
    if state != LOW_BALANCE or rg.grant is None:
        return _ALLOW
    grant = rg.grant
    if grant.final_unit_action is FinalUnitAction.REDIRECT:
        return ServicePolicy(action=PolicyAction.REDIRECT, redirect_server=grant.redirect_server)
    if grant.final_unit_action is FinalUnitAction.RESTRICT_ACCESS:
        return ServicePolicy(action=PolicyAction.RESTRICT, filter_ids=grant.filter_ids)
    return _DENY


_UNIT_FIELD = {
    Unit.OCTETS: "cc_total_octets",
    Unit.SECONDS: "cc_time",
    Unit.UNITS: "cc_service_specific_units",
}


def zero_grant(rg: RatingGroup, fui: FinalUnitIndication) -> MsccAnswer:
    """The answer of a restricted or redirected rating group (RFC 8506 5.6, immediate graceful
    service termination): 2001 with zero units granted and the Final-Unit-Indication, so the
    network element applies the action at once; it asks again after the Validity-Time (or when
    a RAR asks it to, after a top-up or a change of state). Nothing is reserved."""
    return MsccAnswer(
        rating_group=rg.id,
        result_code=ResultCode.SUCCESS,
        granted_service_unit=ServiceUnit(**{_UNIT_FIELD[rg.unit]: 0}),
        validity_time=rg.grant.validity_time if rg.grant is not None else None,
        final_unit_indication=fui,
    )


class PolicyBook:
    """The accounts' own settings and the derivation of states (owned by the charging core)."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountSettings] = {}
        # Derived states, (name, function), tried in order after the operator-defined state
        # (see the module doc): the charging core adds `on_loan` (a loan owed, ocs/core/loans.py).
        self.derived: list[tuple[str, DerivedState]] = []

    def in_force(self, policies: StatusPolicies) -> bool:
        """Whether anything of this module can change an answer (else the core skips it)."""
        return policies.defined or bool(self.accounts)

    def _derives(self, policies: StatusPolicies) -> bool:
        """Whether a derived state matters: the catalog names one in a policy."""
        return any(name in policies.named for name, _ in self.derived)

    # --- per account -----------------------------------------------------------------------

    def thresholds(
        self, policies: StatusPolicies, account_id: str
    ) -> tuple[int | None, int | None]:
        """The account's (inhibit, notify) thresholds: its own, else the catalog's."""
        own = self.accounts.get(account_id)
        inhibit = own.inhibit if own is not None and own.inhibit is not None else None
        notify = own.notify if own is not None and own.notify is not None else None
        if inhibit is None:
            inhibit = policies.inhibit_threshold
        if notify is None:
            notify = policies.notify_threshold
        return inhibit, notify

    def state(
        self,
        policies: StatusPolicies,
        account_id: str,
        status: AccountStatus,
        headroom: int,
        inhibit: int | None = None,
    ) -> str:
        """The account's state (module doc: status, operator, derived, low balance, active).
        `inhibit`: its inhibit threshold, if the caller has it (else looked up)."""
        if status is AccountStatus.BARRED:
            return BARRED
        if status is AccountStatus.SUSPENDED:
            return SUSPENDED
        own = self.accounts.get(account_id)
        if own is not None and own.state and own.state in policies.states:
            return own.state  # (a state the catalog no longer defines is ignored)
        for _, derive in self.derived:
            name = derive(account_id)
            if name:
                return name
        if inhibit is None:
            inhibit = self.thresholds(policies, account_id)[0]
        if inhibit is not None and headroom <= inhibit:
            return LOW_BALANCE
        return ACTIVE

    def may_change(self, policies: StatusPolicies, account_id: str) -> bool:
        """Whether money can change the account's state or notification level (it has a
        threshold, or a derived state may depend on it): else a request that only moves money
        needs no look before and after."""
        if self._derives(policies):
            return True
        if policies.inhibit_threshold is not None or policies.notify_threshold is not None:
            return True
        own = self.accounts.get(account_id)
        return own is not None and (own.inhibit is not None or own.notify is not None)

    def mark(
        self, policies: StatusPolicies, account_id: str, status: AccountStatus, headroom: int
    ) -> Mark:
        inhibit, notify = self.thresholds(policies, account_id)
        return Mark(
            self.state(policies, account_id, status, headroom, inhibit),
            notify is not None and headroom <= notify,
        )

    def refused(self, policies: StatusPolicies, state: str | None) -> str | None:
        """Why an `Account-State` cannot be set (None: it can): only the catalog's states, and
        "active" (no operator-defined state)."""
        if state is None or state == CLEAR_STATE or state in policies.states:
            return None
        known = ", ".join((CLEAR_STATE, *policies.states))
        return f"the Account-State is not one the catalog defines: {state!r} (known: {known})"

    def apply(
        self, account_id: str, state: str | None, inhibit: int | None, notify: int | None
    ) -> None:
        """Set what an AMR carries (each None: unchanged)."""
        entry = self.accounts.get(account_id)
        if entry is None:
            entry = AccountSettings()
        if state is not None:
            entry.state = "" if state == CLEAR_STATE else state
        if inhibit is not None:
            entry.inhibit = None if inhibit == CATALOG_THRESHOLD else inhibit
        if notify is not None:
            entry.notify = None if notify == CATALOG_THRESHOLD else notify
        if entry.empty():
            self.accounts.pop(account_id, None)
        else:
            self.accounts[account_id] = entry

    def forget(self, account_id: str) -> None:
        """The account was closed."""
        self.accounts.pop(account_id, None)

    # --- decisions -------------------------------------------------------------------------

    def policy(
        self, policies: StatusPolicies, state: str, context_id: str, rg: RatingGroup
    ) -> ServicePolicy:
        found = policies.policy(state, context_id, rg.id)
        return found if found is not None else default_policy(state, rg)

    def decide(
        self,
        policies: StatusPolicies,
        account_id: str,
        status: AccountStatus,
        headroom: int,
        context_id: str,
        rg: RatingGroup,
    ) -> Decision:
        """What the account's state does to a grant of `rg` (for a headroom of `headroom`)."""
        inhibit = self.thresholds(policies, account_id)[0]
        state = self.state(policies, account_id, status, headroom, inhibit)
        policy = self.policy(policies, state, context_id, rg)
        action = policy.action
        if action is PolicyAction.DENY:
            code = (
                ResultCode.CREDIT_LIMIT_REACHED
                if state == LOW_BALANCE
                else ResultCode.END_USER_SERVICE_DENIED
            )
            return Decision(action, result_code=code, low=state == LOW_BALANCE)
        if action is not PolicyAction.ALLOW:
            return Decision(action, fui=policy_fui(policy), low=state == LOW_BALANCE)
        if inhibit is None or state == LOW_BALANCE:
            return _ALLOWED
        low = self.policy(policies, LOW_BALANCE, context_id, rg)
        if low.action is PolicyAction.ALLOW:
            return _ALLOWED
        fallback = policy_fui(low) if low.action is not PolicyAction.DENY else None
        return Decision(action, fui=policy_fui(low), floor=inhibit, fallback=fallback)

    def denies_all(
        self,
        policies: StatusPolicies,
        state: str,
        context_id: str,
        groups: tuple[RatingGroup, ...],
    ) -> bool:
        """Whether `state` denies every one of `groups` (none: whether it denies by default)."""
        if not groups:
            found = policies.by_service.get((state, context_id)) or policies.by_state.get(state)
            if found is not None:
                return found.action is PolicyAction.DENY
            return state in (SUSPENDED, BARRED)
        return all(
            self.policy(policies, state, context_id, rg).action is PolicyAction.DENY
            for rg in groups
        )

    # --- snapshot --------------------------------------------------------------------------

    def snapshot(self) -> list[tuple[str, str, int | None, int | None]]:
        """(account id, operator-defined state, inhibit, notify), by account id."""
        return [(a, s.state, s.inhibit, s.notify) for a, s in sorted(self.accounts.items())]

    def restore(self, entries: list[tuple[str, str, int | None, int | None]]) -> None:
        self.accounts = {
            a: AccountSettings(state=state, inhibit=inhibit, notify=notify)
            for a, state, inhibit, notify in entries
        }


__all__ = [
    "CATALOG_THRESHOLD",
    "CLEAR_STATE",
    "AccountSettings",
    "Decision",
    "DerivedState",
    "Mark",
    "PolicyBook",
    "default_policy",
    "policy_fui",
    "zero_grant",
]
