"""The catalog's `[status]` section: service control by account state, and the low-balance
thresholds (docs/catalog.md, *`[status]`*).

An account is in one *state* at a time (derived by the charging core, `ocs.core.policy`):
``active``, ``low_balance``, ``on_loan``, ``suspended``, ``barred``, or a state the operator
defines here. For each state the catalog says what happens to a rating group's service:
``allow`` (grant as usual), ``restrict`` (Final-Unit-Indication RESTRICT_ACCESS with
`Filter-Id`s), ``redirect`` (Final-Unit-Indication REDIRECT to a `Redirect-Server`, a top-up
page) or ``deny``. An entry names a state and, optionally, the rating groups or the services
(Service-Context-Ids) it is for; the most specific entry wins (rating group, then service, then
the state's entry without either), then the built-in default (`default_action`).

Pure: parsed from the TOML table, never reading a file; money as exact micro-units.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from rating.errors import CatalogError
from rating.model import Catalog, RedirectAddressType, RedirectServer
from rating.money import parse_money
from rating.values import at as _at
from rating.values import check_keys as _keys
from rating.values import list_of as _list
from rating.values import table as _table
from rating.values import text as _str

#: The states the core derives itself (`ocs.core.policy`); the catalog may give them policies
#: but may not define a state of these names.
ACTIVE: Final = "active"
LOW_BALANCE: Final = "low_balance"
ON_LOAN: Final = "on_loan"
SUSPENDED: Final = "suspended"
BARRED: Final = "barred"
BUILTIN_STATES: Final = (ACTIVE, LOW_BALANCE, ON_LOAN, SUSPENDED, BARRED)

#: The longest state name (protocol.limits.MAX_STATE_NAME_LENGTH is the same bound on the wire).
MAX_STATE_NAME: Final = 64
_MAX_U32: Final = 2**32 - 1
#: The largest threshold (protocol.limits.MAX_AMOUNT, 10^15 micro-units).
MAX_THRESHOLD: Final = 10**15


class PolicyAction(enum.Enum):
    """What a state does to a rating group's service. The value is the catalog spelling."""

    ALLOW = "allow"
    RESTRICT = "restrict"
    REDIRECT = "redirect"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePolicy:
    action: PolicyAction
    filter_ids: tuple[str, ...] = ()  # RESTRICT
    redirect_server: RedirectServer | None = None  # REDIRECT


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusPolicies:
    """The parsed `[status]` section (an empty one when the catalog has none)."""

    states: tuple[str, ...] = ()
    """Operator-defined state names (set per account with SET_STATUS/UPDATE `Account-State`)."""
    inhibit_threshold: int | None = None
    """Micro-units: at or below this headroom an account is ``low_balance``; grants are cut so
    that this much stays (None: no threshold unless the account has its own)."""
    notify_threshold: int | None = None
    """Micro-units: at or below this headroom answers carry `Low-Balance-Indication`, and
    crossing it re-authorises the account's other sessions (None: none)."""
    by_group: Mapping[tuple[str, int], ServicePolicy] = field(
        default_factory=lambda: MappingProxyType({})
    )
    by_service: Mapping[tuple[str, str], ServicePolicy] = field(
        default_factory=lambda: MappingProxyType({})
    )
    by_state: Mapping[str, ServicePolicy] = field(default_factory=lambda: MappingProxyType({}))
    named: frozenset[str] = frozenset()
    """The states some entry names (the others take the defaults without a look-up)."""
    defined: bool = False
    """Whether the catalog has a `[status]` section with anything in it."""

    def policy(self, state: str, context_id: str, rating_group: int) -> ServicePolicy | None:
        """The catalog's policy for a state and a rating group of a service, the most specific
        entry first; None: the built-in default applies."""
        if state not in self.named:
            return None
        found = self.by_group.get((state, rating_group))
        if found is None:
            found = self.by_service.get((state, context_id))
        if found is None:
            found = self.by_state.get(state)
        return found


NO_POLICIES: Final = StatusPolicies()


def status_policies(catalog: Catalog) -> StatusPolicies:
    """The catalog's `[status]` section (an empty one if it has none)."""
    found = catalog.status
    return NO_POLICIES if found is None else found


# -- parsing ---------------------------------------------------------------------------------

_STATUS_KEYS: Final = ("states", "inhibit_threshold", "notify_threshold", "policies")
_POLICY_KEYS: Final = (
    "state",
    "action",
    "rating_groups",
    "services",
    "filter_ids",
    "redirect_server",
    "redirect_address_type",
)
_REDIRECT_TYPES: Final = {
    "ipv4": RedirectAddressType.IPV4_ADDRESS,
    "ipv6": RedirectAddressType.IPV6_ADDRESS,
    "url": RedirectAddressType.URL,
    "sip_uri": RedirectAddressType.SIP_URI,
}
_ACTIONS: Final = {a.value: a for a in PolicyAction}


def _threshold(value: object, path: str) -> int:
    if not isinstance(value, str):
        raise CatalogError(path, 'money is a decimal string of currency units, e.g. "1.50"')
    if value.startswith("-"):
        raise CatalogError(path, f"must not be negative, got {value!r}")
    try:
        amount = parse_money(value)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None
    if amount > MAX_THRESHOLD:
        raise CatalogError(path, f"must be at most {MAX_THRESHOLD} micro-units")
    return amount


def _state_name(value: object, path: str) -> str:
    name = _str(value, path)
    if not name or len(name) > MAX_STATE_NAME or not name.isascii() or not name.isprintable():
        raise CatalogError(
            path, f"a state name is 1 to {MAX_STATE_NAME} printable ASCII characters"
        )
    return name


def _service_policy(table: Mapping[str, object], path: str, state: str) -> ServicePolicy:
    if "action" not in table:
        raise CatalogError(_at(path, "action"), f"missing (one of: {', '.join(_ACTIONS)})")
    name = _str(table["action"], _at(path, "action"))
    action = _ACTIONS.get(name)
    if action is None:
        raise CatalogError(
            _at(path, "action"), f"unknown action {name!r} (allowed: {', '.join(_ACTIONS)})"
        )
    if action is PolicyAction.ALLOW and state in (SUSPENDED, BARRED):
        # the balance store reserves nothing for an account that is not ACTIVE
        raise CatalogError(_at(path, "action"), f'"allow" is not possible for {state!r}')
    filter_ids: tuple[str, ...] = ()
    if action is PolicyAction.RESTRICT:
        raw = _list(table.get("filter_ids"), _at(path, "filter_ids"))
        if not raw:
            raise CatalogError(_at(path, "filter_ids"), 'required with action "restrict"')
        filter_ids = tuple(_str(f, f"{_at(path, 'filter_ids')}[{j}]") for j, f in enumerate(raw))
    elif "filter_ids" in table:
        raise CatalogError(_at(path, "filter_ids"), 'only allowed with action "restrict"')
    redirect = None
    if action is PolicyAction.REDIRECT:
        address = _str(table.get("redirect_server"), _at(path, "redirect_server"))
        if not address:
            raise CatalogError(_at(path, "redirect_server"), 'required with action "redirect"')
        kind = _str(table.get("redirect_address_type", "url"), _at(path, "redirect_address_type"))
        if kind not in _REDIRECT_TYPES:
            raise CatalogError(
                _at(path, "redirect_address_type"),
                f"unknown type {kind!r} (allowed: {', '.join(_REDIRECT_TYPES)})",
            )
        redirect = RedirectServer(address_type=_REDIRECT_TYPES[kind], address=address)
    else:
        for key in ("redirect_server", "redirect_address_type"):
            if key in table:
                raise CatalogError(_at(path, key), 'only allowed with action "redirect"')
    return ServicePolicy(action=action, filter_ids=filter_ids, redirect_server=redirect)


def parse_status(
    value: object, path: str, rating_groups: Collection[int], services: Collection[str]
) -> StatusPolicies:
    """Parse `[status]` (called by `rating.catalog.parse_catalog` with the catalog's rating
    group ids and Service-Context-Ids, which the entries may name)."""
    table = _table(value, path)
    _keys(table, path, _STATUS_KEYS)
    states: list[str] = []
    sp = _at(path, "states")
    for j, item in enumerate(_list(table.get("states", []), sp)):
        name = _state_name(item, f"{sp}[{j}]")
        if name in BUILTIN_STATES:
            raise CatalogError(f"{sp}[{j}]", f"{name!r} is a built-in state")
        if name in states:
            raise CatalogError(f"{sp}[{j}]", f"state {name!r} listed twice")
        states.append(name)
    inhibit = notify = None
    if "inhibit_threshold" in table:
        inhibit = _threshold(table["inhibit_threshold"], _at(path, "inhibit_threshold"))
    if "notify_threshold" in table:
        notify = _threshold(table["notify_threshold"], _at(path, "notify_threshold"))
    known = (*BUILTIN_STATES, *states)
    by_group: dict[tuple[str, int], ServicePolicy] = {}
    by_service: dict[tuple[str, str], ServicePolicy] = {}
    by_state: dict[str, ServicePolicy] = {}
    pp = _at(path, "policies")
    for i, raw in enumerate(_list(table.get("policies", []), pp)):
        at = f"{pp}[{i}]"
        entry = _table(raw, at)
        _keys(entry, at, _POLICY_KEYS)
        if "state" not in entry:
            raise CatalogError(_at(at, "state"), "missing")
        state = _state_name(entry["state"], _at(at, "state"))
        if state not in known:
            raise CatalogError(
                _at(at, "state"), f"unknown state {state!r} (known: {', '.join(known)})"
            )
        policy = _service_policy(entry, at, state)
        if "rating_groups" in entry and "services" in entry:
            raise CatalogError(at, "name rating_groups or services, not both")
        if "rating_groups" in entry:
            gp = _at(at, "rating_groups")
            for j, item in enumerate(_list(entry["rating_groups"], gp)):
                if isinstance(item, bool) or not isinstance(item, int) or item not in rating_groups:
                    raise CatalogError(f"{gp}[{j}]", f"unknown rating group {item!r}")
                if (state, item) in by_group:
                    raise CatalogError(f"{gp}[{j}]", f"a second policy for {state!r} and {item}")
                by_group[(state, item)] = policy
        elif "services" in entry:
            vp = _at(at, "services")
            for j, item in enumerate(_list(entry["services"], vp)):
                context = _str(item, f"{vp}[{j}]")
                if context not in services:
                    raise CatalogError(f"{vp}[{j}]", f"unknown service {context!r}")
                if (state, context) in by_service:
                    raise CatalogError(f"{vp}[{j}]", f"a second policy for {state!r} and {context}")
                by_service[(state, context)] = policy
        else:
            if state in by_state:
                raise CatalogError(at, f"a second policy for every service in {state!r}")
            by_state[state] = policy
    named = frozenset([s for s, _ in by_group] + [s for s, _ in by_service] + list(by_state))
    return StatusPolicies(
        states=tuple(states),
        inhibit_threshold=inhibit,
        notify_threshold=notify,
        by_group=MappingProxyType(by_group),
        by_service=MappingProxyType(by_service),
        by_state=MappingProxyType(by_state),
        named=named,
        defined=bool(states or inhibit is not None or notify is not None or named),
    )


__all__ = [
    "ACTIVE",
    "BARRED",
    "BUILTIN_STATES",
    "LOW_BALANCE",
    "MAX_STATE_NAME",
    "NO_POLICIES",
    "ON_LOAN",
    "SUSPENDED",
    "PolicyAction",
    "ServicePolicy",
    "StatusPolicies",
    "parse_status",
    "status_policies",
]
