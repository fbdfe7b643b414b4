"""Business outcomes of charging and administration, and the one table that maps them to
Result-Codes. The core returns these values; only `result_code` turns them into wire codes."""

from __future__ import annotations

import enum
from typing import Final

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
    INVALID = "invalid"  # CREATE of an existing account, a taken identity, a bad value
    INSUFFICIENT_FUNDS = "insufficient-funds"  # administrative DEBIT refused
    MISSING_AVP = "missing-avp"  # a key the operation needs (Amount, Account-Status) is absent
    OPERATION_ID_REUSED = "operation-id-reused"  # an Operation-Id already names another operation


RESULT_CODE: Final[dict[Outcome, ResultCode]] = {
    Outcome.OK: ResultCode.SUCCESS,
    Outcome.CREDIT_LIMIT_REACHED: ResultCode.CREDIT_LIMIT_REACHED,
    Outcome.NOT_APPLICABLE: ResultCode.CREDIT_CONTROL_NOT_APPLICABLE,
    Outcome.RATING_FAILED: ResultCode.RATING_FAILED,
    Outcome.USER_UNKNOWN: ResultCode.USER_UNKNOWN,
    Outcome.SERVICE_DENIED: ResultCode.END_USER_SERVICE_DENIED,
    Outcome.UNKNOWN_SESSION: ResultCode.UNKNOWN_SESSION_ID,
    Outcome.BAD_REQUEST_NUMBER: ResultCode.INVALID_AVP_VALUE,
    Outcome.SESSION_EXISTS: ResultCode.INVALID_AVP_VALUE,
    Outcome.FOREIGN_SESSION_ID: ResultCode.INVALID_AVP_VALUE,
    Outcome.SESSION_LIMIT: ResultCode.RESOURCES_EXCEEDED,
    Outcome.UNKNOWN_ACCOUNT: ResultCode.USER_UNKNOWN,
    Outcome.INVALID: ResultCode.INVALID_AVP_VALUE,
    Outcome.INSUFFICIENT_FUNDS: ResultCode.CREDIT_LIMIT_REACHED,
    Outcome.MISSING_AVP: ResultCode.MISSING_AVP,
    Outcome.OPERATION_ID_REUSED: ResultCode.INVALID_AVP_VALUE,
}


def result_code(outcome: Outcome) -> int:
    return int(RESULT_CODE[outcome])
