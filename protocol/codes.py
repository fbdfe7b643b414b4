"""Codes of the wire protocol: commands, applications, flags, result codes and AVP enumerations.

Values come from WIRE.md, RFC 6733, RFC 8506 and 3GPP TS 32.299.
"""

from __future__ import annotations

import enum
from typing import Final

VERSION = 0x4D  # "M": MessagePack body (WIRE.md section 1)
VERSION_DIAMETER = 0x01  # standard Diameter: a body of binary AVPs (RFC 6733 section 4)
# the body encodings by the name the tools' `--encoding` gives them (WIRE.md 1.1)
ENCODING_BY_NAME: Final = {"msgpack": VERSION, "diameter": VERSION_DIAMETER}
HEADER_LENGTH = 20
DEFAULT_MAX_MESSAGE_LENGTH = 65_536
MAX_ENCODABLE_LENGTH = 0xFFFFFF
DEFAULT_PORT = 3868
RELAY_APPLICATION_ID = 0xFFFFFFFF


class Flag(enum.IntFlag):
    REQUEST = 0x80
    PROXIABLE = 0x40
    ERROR = 0x20
    RETRANSMIT = 0x10


RESERVED_FLAG_BITS = 0x0F
# The same bits as plain ints, for the per-message path (IntFlag operators are slow).
FLAG_R: Final = 0x80
FLAG_P: Final = 0x40
FLAG_E: Final = 0x20
FLAG_T: Final = 0x10


class CommandCode(enum.IntEnum):
    CAPABILITIES_EXCHANGE = 257
    RE_AUTH = 258
    CREDIT_CONTROL = 272
    ABORT_SESSION = 274
    DEVICE_WATCHDOG = 280
    DISCONNECT_PEER = 282
    ACCOUNT_MANAGEMENT = 9001


class ApplicationId(enum.IntEnum):
    BASE = 0
    CREDIT_CONTROL = 4
    ADMINISTRATION = 0x4F435341  # "OCSA"


class ResultCode(enum.IntEnum):
    # 2xxx success
    SUCCESS = 2001
    LIMITED_SUCCESS = 2002
    # 3xxx protocol errors (answered with the E flag)
    COMMAND_UNSUPPORTED = 3001
    UNABLE_TO_DELIVER = 3002
    REALM_NOT_SERVED = 3003
    TOO_BUSY = 3004
    LOOP_DETECTED = 3005
    REDIRECT_INDICATION = 3006
    APPLICATION_UNSUPPORTED = 3007
    INVALID_HDR_BITS = 3008
    INVALID_AVP_BITS = 3009
    UNKNOWN_PEER = 3010
    # 4xxx transient failures
    AUTHENTICATION_REJECTED = 4001
    END_USER_SERVICE_DENIED = 4010
    CREDIT_CONTROL_NOT_APPLICABLE = 4011
    CREDIT_LIMIT_REACHED = 4012
    # 5xxx permanent failures
    AVP_UNSUPPORTED = 5001
    UNKNOWN_SESSION_ID = 5002
    AUTHORIZATION_REJECTED = 5003
    INVALID_AVP_VALUE = 5004
    MISSING_AVP = 5005
    RESOURCES_EXCEEDED = 5006
    CONTRADICTING_AVPS = 5007
    AVP_NOT_ALLOWED = 5008
    AVP_OCCURS_TOO_MANY_TIMES = 5009
    NO_COMMON_APPLICATION = 5010
    UNSUPPORTED_VERSION = 5011
    UNABLE_TO_COMPLY = 5012
    INVALID_BIT_IN_HEADER = 5013
    INVALID_AVP_LENGTH = 5014
    INVALID_MESSAGE_LENGTH = 5015
    USER_UNKNOWN = 5030
    RATING_FAILED = 5031

    @property
    def is_protocol_error(self) -> bool:
        """3xxx answers carry the E flag (RFC 6733 section 7.1.3)."""
        return is_protocol_error(self)


def is_protocol_error(result_code: int) -> bool:
    """3xxx answers carry the E flag (RFC 6733 section 7.1.3)."""
    return 3000 <= result_code < 4000


class DisconnectCause(enum.IntEnum):
    REBOOTING = 0
    BUSY = 1
    DO_NOT_WANT_TO_TALK_TO_YOU = 2


class CCRequestType(enum.IntEnum):
    INITIAL = 1
    UPDATE = 2
    TERMINATION = 3
    EVENT = 4


class RequestedAction(enum.IntEnum):
    DIRECT_DEBITING = 0
    REFUND_ACCOUNT = 1
    CHECK_BALANCE = 2
    PRICE_ENQUIRY = 3


class SubscriptionIdType(enum.IntEnum):
    END_USER_E164 = 0
    END_USER_IMSI = 1
    END_USER_SIP_URI = 2
    END_USER_NAI = 3
    END_USER_PRIVATE = 4


class ReportingReason(enum.IntEnum):
    THRESHOLD = 0
    QHT = 1
    FINAL = 2
    QUOTA_EXHAUSTED = 3
    VALIDITY_TIME = 4
    OTHER_QUOTA_TYPE = 5
    RATING_CONDITION_CHANGE = 6
    FORCED_REAUTHORISATION = 7
    POOL_EXHAUSTED = 8
    LINKED_USAGE = 100  # WIRE.md section 5.6 extension


class TariffChangeUsage(enum.IntEnum):
    UNIT_BEFORE_TARIFF_CHANGE = 0
    UNIT_AFTER_TARIFF_CHANGE = 1
    UNIT_INDETERMINATE = 2


class FinalUnitAction(enum.IntEnum):
    TERMINATE = 0
    REDIRECT = 1
    RESTRICT_ACCESS = 2


class RedirectAddressType(enum.IntEnum):
    IPV4_ADDRESS = 0
    IPV6_ADDRESS = 1
    URL = 2
    SIP_URI = 3


class AoCRequestType(enum.IntEnum):
    NOT_REQUESTED = 0
    FULL = 1
    COST_ONLY = 2
    TARIFF_ONLY = 3


class Estimate(enum.IntEnum):
    """The `Estimate` extension AVP of a CCR (docs/protocol.md "Estimate")."""

    NOT_ESTIMATE = 0
    ESTIMATE = 1


class OfferStatus(enum.IntEnum):
    """`Offer-Status` of an `Offer-Balance` (docs/protocol.md, *Extension: offers*)."""

    ACTIVE = 0
    SUSPENDED = 1  # its renewal fee was not paid (or the catalog dropped the offer)


class CheckBalanceResult(enum.IntEnum):
    ENOUGH_CREDIT = 0
    NO_CREDIT = 1


class ReAuthRequestType(enum.IntEnum):
    AUTHORIZE_ONLY = 0
    AUTHORIZE_AUTHENTICATE = 1


class CreditControlFailureHandling(enum.IntEnum):
    TERMINATE = 0
    CONTINUE = 1
    RETRY_AND_TERMINATE = 2


class CCSessionFailover(enum.IntEnum):
    FAILOVER_NOT_SUPPORTED = 0
    FAILOVER_SUPPORTED = 1


class TerminationCause(enum.IntEnum):
    """RFC 6733 section 8.15. The wire accepts any Unsigned32 here (WIRE.md: "int")."""

    LOGOUT = 1
    SERVICE_NOT_PROVIDED = 2
    BAD_ANSWER = 3
    ADMINISTRATIVE = 4
    LINK_BROKEN = 5
    AUTH_EXPIRED = 6
    USER_MOVED = 7
    SESSION_TIMEOUT = 8


class AccountOperation(enum.IntEnum):
    CREATE = 1
    GET = 2
    CREDIT = 3
    DEBIT = 4
    SET_STATUS = 5
    TERMINATE_SESSION = 6  # extension (docs/protocol.md): close a session as supervision does
    CATALOG_SHOW = 7  # extension (docs/protocol.md): the catalog in force
    CDR_ROTATE = 9  # extension (docs/protocol.md): close the current CDR file now
    UPDATE = 10  # extension (docs/protocol.md): status, credit limit, identities
    CLOSE = 11  # extension (docs/protocol.md): remove a settled account without sessions
    LIST = 12  # extension (docs/protocol.md): Account-Ids in order, a page at a time
    SEARCH = 13  # extension (docs/protocol.md): the account holding a Subscription-Id
    SUBSCRIBE = 14  # extension (docs/protocol.md, offers): take an offer of the catalog
    UNSUBSCRIBE = 15  # extension (docs/protocol.md, offers): give an offer up
    LOAN = 20  # extension (docs/protocol.md, LOAN): take an airtime loan (ocs/core/loans.py)
    GROUP_JOIN = 17  # extension (docs/protocol.md): a member joins a group account's package
    GROUP_LEAVE = 18  # extension (docs/protocol.md): a member leaves its group
    STATEMENT = 19  # extension (docs/protocol.md): a member's statement of a period
    HISTORY = 22  # extension (docs/protocol.md): the account's last movements of money and units
    CREATE_BULK = 23  # extension (docs/protocol.md): up to 128 CREATEs in one request


class MovementKind(enum.IntEnum):
    """`Movement-Kind` of a HISTORY answer (docs/protocol.md, *Extension: history*)."""

    OPENING = 1  # CREATE's initial balance
    CHARGE = 2  # usage charged (a CDR: session or DIRECT_DEBITING event)
    REFUND = 3  # REFUND_ACCOUNT event (a CDR with a negative charge)
    CREDIT = 4  # administrative CREDIT (a top-up)
    DEBIT = 5  # administrative DEBIT
    FEE = 6  # an offer's fee at its renewal
    RENEWAL = 7  # an offer's allowances renewed (units)
    LOAN = 8  # a loan's principal credited
    LOAN_FEE = 9  # a loan's fee
    REPAYMENT = 10  # a top-up's part that repaid a loan
    APPORTIONMENT = 11  # a member's share of a group package's fee
    UNIT_DRAW = 12  # units drawn from an allowance


class AccountStatus(enum.IntEnum):
    ACTIVE = 0
    SUSPENDED = 1
    BARRED = 2


class LowBalanceIndication(enum.IntEnum):
    """The `Low-Balance-Indication` extension AVP of a CCA (docs/protocol.md, *Extension:
    service control by account state*): the account's headroom is at or below its notification
    threshold, or at or below its inhibit threshold."""

    NOTIFY_THRESHOLD_REACHED = 0
    INHIBIT_THRESHOLD_REACHED = 1


class CounterUnit(enum.IntEnum):
    """`Counter-Unit` of a `Usage-Counter` (docs/protocol.md, *Extension: usage counters*)."""

    MONEY = 0  # micro-units
    OCTETS = 1
    SECONDS = 2
    UNITS = 3  # service-specific units
