"""Subscription identities checked and normalised when an account is created
(docs/protocol.md, *Identities at CREATE*).

An E.164 number (MSISDN) is 1 to 15 ASCII digits; a leading ``+`` is accepted and removed, so
``+491700000001`` and ``491700000001`` name the same subscriber. An IMSI is 5 to 15 ASCII
digits. Other types (SIP URI, NAI, private) are kept as received. Pure: no clock, no I/O.
"""

from __future__ import annotations

from typing import Final

from ocs.core.accounts import SubscriberIdentity, SubscriptionType
from ocs.core.outcomes import Outcome

__all__ = ["MAX_E164_DIGITS", "MAX_IMSI_DIGITS", "MIN_IMSI_DIGITS", "normalise_identity"]

MAX_E164_DIGITS: Final = 15  # ITU-T E.164: at most 15 digits
MIN_IMSI_DIGITS: Final = 5  # MCC (3) + MNC (2), the shortest prefix that names a network
MAX_IMSI_DIGITS: Final = 15  # 3GPP TS 23.003: at most 15 digits


def _digits(text: str) -> bool:
    # str.isdigit alone accepts non-ASCII digits ("٣", "²"): the domain is 0-9 only
    return text.isascii() and text.isdigit()


def normalise_identity(identity: SubscriberIdentity) -> SubscriberIdentity | Outcome:
    """The identity as the account will hold it, or the outcome refusing it."""
    data = identity.data
    if identity.type == SubscriptionType.E164:
        number = data[1:] if data.startswith("+") else data
        if not (_digits(number) and 1 <= len(number) <= MAX_E164_DIGITS):
            return Outcome.INVALID_MSISDN
        return identity if number == data else SubscriberIdentity(type=identity.type, data=number)
    if identity.type == SubscriptionType.IMSI and not (
        _digits(data) and MIN_IMSI_DIGITS <= len(data) <= MAX_IMSI_DIGITS
    ):
        return Outcome.INVALID_IMSI
    return identity
