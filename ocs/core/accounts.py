"""Account values of the balance store: status, subscription identities, the internal account
record and its public read model.

Money is int micro-units (1,000,000 = one unit of the currency). Nothing here reads a clock or
touches a file.
"""

from __future__ import annotations

import enum

import msgspec

from protocol.codes import AccountStatus  # `Account-Status` of WIRE.md section 8 (one type)

__all__ = [
    "AccountRecord",
    "AccountStatus",
    "AccountView",
    "SubscriberIdentity",
    "SubscriptionType",
    "subscription_from_key",
    "subscription_key",
]


class SubscriptionType(enum.IntEnum):
    """`Subscription-Id-Type` of WIRE.md section 5.1."""

    E164 = 0
    IMSI = 1
    SIP_URI = 2
    NAI = 3
    PRIVATE = 4


class SubscriberIdentity(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One subscription identity; it resolves to exactly one account."""

    type: int
    data: str


def subscription_key(sub_type: int, data: str) -> str:
    """The key of the subscription index: ``"<type>:<data>"`` (the type is one digit).

    One string per identity keeps the index small: the same object is the dict key and the
    account's reference to its identity.
    """
    return f"{sub_type}:{data}"


def subscription_from_key(key: str) -> SubscriberIdentity:
    return SubscriberIdentity(type=int(key[0]), data=key[2:])


class AccountRecord(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """The store's mutable record of one account (internal; readers get an `AccountView`).

    Seven slots, `gc=False` and no per-instance dict keep it at 80 bytes: it only ever
    references ints, strings and a tuple of strings, so it can never be part of a reference
    cycle. The credit/debit totals that prove the books balance are kept per ledger, not per
    account (see `Ledger.totals`).

    Invariant (checked by `Ledger.check_invariants`): ``reserved == sum(open reservations)``.
    """

    account_id: str
    status: AccountStatus
    currency: int
    credit_limit: int
    balance: int
    reserved: int
    # subscription_key() strings, shared with the ledger's subscription index.
    subscriptions: tuple[str, ...]

    def view(self) -> AccountView:
        return AccountView(
            account_id=self.account_id,
            status=self.status,
            currency=self.currency,
            credit_limit=self.credit_limit,
            balance=self.balance,
            reserved=self.reserved,
            subscriptions=tuple(subscription_from_key(k) for k in self.subscriptions),
        )


class AccountView(msgspec.Struct, frozen=True, kw_only=True):
    """A consistent, immutable copy of one account.

    `balance` is the posted balance (credits and charges applied); `reserved` what open
    reservations hold. The administration `Balance` of WIRE.md section 8 is `available`
    (``balance - reserved``), its `Reserved` is `reserved`.
    """

    account_id: str
    status: AccountStatus
    currency: int
    credit_limit: int
    balance: int
    reserved: int
    subscriptions: tuple[SubscriberIdentity, ...]

    @property
    def available(self) -> int:
        """What is left after reservations (the AMA `Balance`)."""
        return self.balance - self.reserved

    @property
    def headroom(self) -> int:
        """The most that can still be reserved or debited: ``available + credit_limit``."""
        return self.balance - self.reserved + self.credit_limit
