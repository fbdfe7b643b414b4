"""Business outcomes of charging and administration, and the one table that maps them to the
wire: each outcome's Result-Code and, for administration, the `Error-Message` of the answer
(docs/protocol.md, *Administrative refusals*). The core returns these values; only this table
turns them into wire codes and texts."""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from protocol.codes import ResultCode


class Outcome(enum.Enum):
    OK = "ok"
    # credit control (per MSCC or whole request)
    CREDIT_LIMIT_REACHED = "credit-limit-reached"  # nothing can be granted or debited
    NOT_APPLICABLE = "not-applicable"  # zero-rated rating group
    RATING_FAILED = "rating-failed"  # rating group unknown to the service
    USER_UNKNOWN = "user-unknown"  # no account for the Subscription-Id
    SERVICE_DENIED = "service-denied"  # account not ACTIVE
    UNKNOWN_SESSION = "unknown-session"
    BAD_REQUEST_NUMBER = "bad-request-number"  # CC-Request-Number out of sequence
    SESSION_EXISTS = "session-exists"  # INITIAL for an open session
    FOREIGN_SESSION_ID = "foreign-session-id"  # Session-Id not beginning with the peer's name
    SESSION_LIMIT = "session-limit"  # INITIAL from a peer with its limit of open sessions
    # administration
    UNKNOWN_ACCOUNT = "unknown-account"
    ACCOUNT_EXISTS = "account-exists"  # CREATE of an existing Account-Id
    IDENTITY_TAKEN = "identity-taken"  # CREATE with a Subscription-Id of another account
    INVALID = "invalid"  # a value outside its domain (an amount not positive, ...)
    INVALID_MSISDN = "invalid-msisdn"  # CREATE with an E.164 identity not 1 to 15 digits
    INVALID_IMSI = "invalid-imsi"  # CREATE with an IMSI not 5 to 15 digits
    FOREIGN_CURRENCY = "foreign-currency"  # CREATE in a currency that is not the catalog's
    BALANCE_BOUND = "balance-bound"  # CREDIT/DEBIT would take the balance past its bound
    INSUFFICIENT_FUNDS = "insufficient-funds"  # administrative DEBIT refused
    MISSING_AVP = "missing-avp"  # a key the operation needs (Amount, Account-Status) is absent
    OPERATION_ID_REUSED = "operation-id-reused"  # an Operation-Id already names another operation
    ACCOUNT_IN_USE = "account-in-use"  # CLOSE of an account with open sessions
    NOT_SETTLED = "not-settled"  # CLOSE of an account whose balance is not zero
    NO_HOLDER = "no-holder"  # SEARCH for a Subscription-Id no account holds
    # offers (docs/protocol.md, Extension: offers)
    UNKNOWN_OFFER = "unknown-offer"  # SUBSCRIBE to an Offer-Name the catalog does not have
    OFFER_HELD = "offer-held"  # SUBSCRIBE to an offer the account holds already
    OFFER_NOT_HELD = "offer-not-held"  # UNSUBSCRIBE from an offer the account does not hold
    OFFER_IN_USE = "offer-in-use"  # UNSUBSCRIBE while open grants hold units of the offer
    # loans (ocs/core/loans.py, docs/protocol.md LOAN)
    LOAN_NOT_OFFERED = "loan-not-offered"  # LOAN while the catalog has no loan policy
    LOAN_AMOUNT = "loan-amount"  # LOAN of an Amount the loan policy does not offer
    LOAN_REFUSED = "loan-refused"  # LOAN the policy's eligibility refuses (detail says why)
    LOAN_OUTSTANDING = "loan-outstanding"  # CLOSE of an account that owes a loan
    # groups (docs/protocol.md, "Extension: shared group packages")
    UNKNOWN_GROUP = "unknown-group"  # GROUP_JOIN naming a Group-Account-Id no account has
    UNKNOWN_PACKAGE = "unknown-package"  # GROUP_JOIN with a Package-Name not in the catalog
    PACKAGE_MISMATCH = "package-mismatch"  # GROUP_JOIN naming another package than the group's
    IN_ANOTHER_GROUP = "in-another-group"  # GROUP_JOIN of a member of another group
    GROUP_NESTED = "group-nested"  # a group joining a group, a member owning one, or itself
    NOT_A_MEMBER = "not-a-member"  # GROUP_LEAVE of an account in no group
    NO_STATEMENT = "no-statement"  # STATEMENT of a period the account has none for
    GROUP_IN_USE = "group-in-use"  # CLOSE of a group member or of a group account


class Wire(NamedTuple):
    """How an outcome is answered: its Result-Code and, in an administration answer, its
    `Error-Message` (the core may add a detail after a colon)."""

    result_code: ResultCode
    error_message: str | None = None


OUTCOMES: Final[dict[Outcome, Wire]] = {
    Outcome.OK: Wire(ResultCode.SUCCESS),
    Outcome.CREDIT_LIMIT_REACHED: Wire(ResultCode.CREDIT_LIMIT_REACHED),
    Outcome.NOT_APPLICABLE: Wire(ResultCode.CREDIT_CONTROL_NOT_APPLICABLE),
    Outcome.RATING_FAILED: Wire(ResultCode.RATING_FAILED),
    Outcome.USER_UNKNOWN: Wire(ResultCode.USER_UNKNOWN),
    Outcome.SERVICE_DENIED: Wire(ResultCode.END_USER_SERVICE_DENIED),
    Outcome.UNKNOWN_SESSION: Wire(
        ResultCode.UNKNOWN_SESSION_ID, "the account has no open session with this Session-Id"
    ),
    Outcome.BAD_REQUEST_NUMBER: Wire(ResultCode.INVALID_AVP_VALUE),
    Outcome.SESSION_EXISTS: Wire(ResultCode.INVALID_AVP_VALUE),
    Outcome.FOREIGN_SESSION_ID: Wire(ResultCode.INVALID_AVP_VALUE),
    Outcome.SESSION_LIMIT: Wire(ResultCode.RESOURCES_EXCEEDED),
    Outcome.UNKNOWN_ACCOUNT: Wire(ResultCode.USER_UNKNOWN, "no account has this Account-Id"),
    Outcome.ACCOUNT_EXISTS: Wire(
        ResultCode.INVALID_AVP_VALUE, "an account with this Account-Id exists already"
    ),
    Outcome.IDENTITY_TAKEN: Wire(
        ResultCode.INVALID_AVP_VALUE, "the Subscription-Id belongs to another account"
    ),
    Outcome.INVALID: Wire(ResultCode.INVALID_AVP_VALUE, "invalid value"),
    Outcome.INVALID_MSISDN: Wire(
        ResultCode.INVALID_AVP_VALUE,
        "an E.164 Subscription-Id must be 1 to 15 digits (a leading + is removed)",
    ),
    Outcome.INVALID_IMSI: Wire(
        ResultCode.INVALID_AVP_VALUE, "an IMSI Subscription-Id must be 5 to 15 digits"
    ),
    Outcome.FOREIGN_CURRENCY: Wire(
        ResultCode.INVALID_AVP_VALUE, "the Currency-Code is not the catalog's currency"
    ),
    Outcome.BALANCE_BOUND: Wire(
        ResultCode.INVALID_AVP_VALUE, "the Amount would take the balance past its bound"
    ),
    Outcome.INSUFFICIENT_FUNDS: Wire(
        ResultCode.CREDIT_LIMIT_REACHED, "not enough credit for the Amount"
    ),
    Outcome.MISSING_AVP: Wire(ResultCode.MISSING_AVP, "a key this operation needs is missing"),
    Outcome.OPERATION_ID_REUSED: Wire(
        ResultCode.INVALID_AVP_VALUE, "the Operation-Id names another operation"
    ),
    Outcome.ACCOUNT_IN_USE: Wire(ResultCode.UNABLE_TO_COMPLY, "the account has open sessions"),
    Outcome.NOT_SETTLED: Wire(ResultCode.UNABLE_TO_COMPLY, "the account's balance is not zero"),
    Outcome.NO_HOLDER: Wire(ResultCode.USER_UNKNOWN, "no account holds this Subscription-Id"),
    Outcome.UNKNOWN_OFFER: Wire(ResultCode.INVALID_AVP_VALUE, "the catalog has no such offer"),
    Outcome.OFFER_HELD: Wire(ResultCode.INVALID_AVP_VALUE, "the account holds this offer already"),
    Outcome.OFFER_NOT_HELD: Wire(
        ResultCode.INVALID_AVP_VALUE, "the account does not hold this offer"
    ),
    Outcome.OFFER_IN_USE: Wire(ResultCode.UNABLE_TO_COMPLY, "open grants hold units of this offer"),
    Outcome.LOAN_NOT_OFFERED: Wire(ResultCode.UNABLE_TO_COMPLY, "the catalog offers no loans"),
    Outcome.LOAN_AMOUNT: Wire(
        ResultCode.INVALID_AVP_VALUE, "the Amount is not one the loan policy offers"
    ),
    Outcome.LOAN_REFUSED: Wire(ResultCode.UNABLE_TO_COMPLY, "the account may not take this loan"),
    Outcome.LOAN_OUTSTANDING: Wire(ResultCode.UNABLE_TO_COMPLY, "the account owes a loan"),
    # groups
    Outcome.UNKNOWN_GROUP: Wire(ResultCode.USER_UNKNOWN, "no account has this Group-Account-Id"),
    Outcome.UNKNOWN_PACKAGE: Wire(
        ResultCode.INVALID_AVP_VALUE, "the catalog has no package of this Package-Name"
    ),
    Outcome.PACKAGE_MISMATCH: Wire(
        ResultCode.INVALID_AVP_VALUE, "the group account owns another package"
    ),
    Outcome.IN_ANOTHER_GROUP: Wire(
        ResultCode.INVALID_AVP_VALUE, "the account is a member of another group"
    ),
    Outcome.GROUP_NESTED: Wire(
        ResultCode.INVALID_AVP_VALUE, "groups do not nest: a member is not a group account"
    ),
    Outcome.NOT_A_MEMBER: Wire(ResultCode.INVALID_AVP_VALUE, "the account is in no group"),
    Outcome.NO_STATEMENT: Wire(
        ResultCode.INVALID_AVP_VALUE, "the account has no statement for this period"
    ),
    Outcome.GROUP_IN_USE: Wire(
        ResultCode.UNABLE_TO_COMPLY,
        "the account is a group member or a group account (members leave first; a group "
        "account closes after its last period)",
    ),
}

# the Result-Codes alone (read once by the core for its per-MSCC answers)
RESULT_CODE: Final[dict[Outcome, ResultCode]] = {o: w.result_code for o, w in OUTCOMES.items()}


def result_code(outcome: Outcome) -> int:
    return int(RESULT_CODE[outcome])


def error_message(outcome: Outcome, detail: str = "") -> str | None:
    """The `Error-Message` of an administration answer with `outcome` (None for success),
    with ``detail`` after a colon."""
    text = OUTCOMES[outcome].error_message
    if text is None or not detail:
        return text
    return f"{text}: {detail}"
