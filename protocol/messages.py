"""The message model: one frozen, keyword-only type per command and grouped AVP.

Field names are Python spellings of AVP names; `avp_name` maps them to the exact names of RFC
6733 / RFC 8506 / 3GPP TS 32.299 (`session_id` -> `Session-Id`, `host_ip_address` ->
`Host-IP-Address`). The model knows nothing of the body encoding: the MessagePack codec maps a
body keyed by AVP name to these types, and a binary-AVP codec can do the same with its
dictionary of AVP codes. The types are `msgspec.Struct`s, which are slotted and validate
field types and ranges on decode; `None` means "absent" and is never encoded.

`*[AVP]` (may occur more than once) is always a tuple on this side and an array on the wire.

Requests carry the static domains of `protocol.limits` (WIRE.md 1.1 section 2, "Limits") as
msgspec constraints: lengths of strings and arrays, usage per unit AVP, amounts, the
CC-Request-Number, Event-Timestamp. The codec answers a value outside them 5004 with
`Failed-AVP`. Answer-only types keep the plain AVP types: an answer's values come from the
server, whose own outputs are bounded where they are produced.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    CCSessionFailover,
    CheckBalanceResult,
    CommandCode,
    CounterUnit,
    CreditControlFailureHandling,
    DisconnectCause,
    Estimate,
    FinalUnitAction,
    LowBalanceIndication,
    MovementKind,
    OfferStatus,
    ReAuthRequestType,
    RedirectAddressType,
    ReportingReason,
    RequestedAction,
    SubscriptionIdType,
    TariffChangeUsage,
)
from protocol.limits import (
    MAX_ACCOUNT_ID_LENGTH,
    MAX_AMOUNT,
    MAX_BULK_ACCOUNTS,
    MAX_CURRENCY_CODE,
    MAX_HISTORY_PAGE,
    MAX_IDENTITY_LENGTH,
    MAX_LIST_LENGTH,
    MAX_MSCC,
    MAX_OFFER_NAME_LENGTH,
    MAX_OPERATION_ID_LENGTH,
    MAX_PACKAGE_NAME_LENGTH,
    MAX_REQUEST_NUMBER,
    MAX_SESSION_ID_LENGTH,
    MAX_STATE_NAME_LENGTH,
    MAX_SUBSCRIPTION_DATA_LENGTH,
    MAX_SUBSCRIPTION_IDS,
    MAX_TEXT_LENGTH,
    MAX_TIME_S,
    MAX_UNITS,
    MAX_USU,
)

Unsigned32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF)]
Unsigned64 = Annotated[int, msgspec.Meta(ge=0)]  # MessagePack ints stop at 2**64 - 1
Integer32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Integer64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Time = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # seconds since the Unix epoch
FailedAvp = dict[str, Any]

# The domains of request values (protocol.limits; docs/protocol.md, "Limits").
Identity = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_IDENTITY_LENGTH)]
SessionIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SESSION_ID_LENGTH)]
AccountIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ACCOUNT_ID_LENGTH)]
OperationIdText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_OPERATION_ID_LENGTH)]
SubscriptionData = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_SUBSCRIPTION_DATA_LENGTH)
]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
OfferNameText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_OFFER_NAME_LENGTH)]
Units = Annotated[int, msgspec.Meta(ge=0, le=MAX_UNITS)]  # a unit AVP of a unit map
TimeUnits = Annotated[int, msgspec.Meta(ge=0, le=min(MAX_UNITS, 0xFFFF_FFFF))]  # CC-Time
RequestNumber = Annotated[int, msgspec.Meta(ge=0, le=MAX_REQUEST_NUMBER)]
Amount = Annotated[int, msgspec.Meta(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
CreditLimit = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
CurrencyCode = Annotated[int, msgspec.Meta(ge=0, le=MAX_CURRENCY_CODE)]
EventTime = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_S)]  # Event-Timestamp
PackageNameText = Annotated[  # groups
    str, msgspec.Meta(min_length=1, max_length=MAX_PACKAGE_NAME_LENGTH)
]
# status-policy: Account-State and the thresholds of an AMR (-1: back to the catalog's)
StateName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STATE_NAME_LENGTH)]
Threshold = Annotated[int, msgspec.Meta(ge=-1, le=MAX_AMOUNT)]

_ACRONYMS = {"cc": "CC", "ip": "IP", "avp": "AVP", "aoc": "AoC"}


def avp_name(field: str) -> str:
    """`cc_request_type` -> `CC-Request-Type`: the AVP name of a model field."""
    return "-".join(_ACRONYMS.get(part, part.capitalize()) for part in field.split("_"))


class Avps(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename=avp_name):
    """Base of every message body and grouped AVP."""


class Message(Avps, frozen=True, kw_only=True):
    """A command's body. `COMMAND` and `IS_REQUEST` tie the type to the header."""

    COMMAND: ClassVar[CommandCode]
    IS_REQUEST: ClassVar[bool]


class Request(Message, frozen=True, kw_only=True):
    IS_REQUEST: ClassVar[bool] = True
    origin_host: Identity
    origin_realm: Identity


class Answer(Message, frozen=True, kw_only=True):
    """Every answer: `Result-Code`, `Origin-Host`, `Origin-Realm`, and on failure the error
    AVPs. Command-specific keys are optional on the answer types so that a 3xxx answer, which
    carries only these, decodes as the command's answer type too."""

    IS_REQUEST: ClassVar[bool] = False
    result_code: Unsigned32
    origin_host: str
    origin_realm: str
    error_message: str | None = None
    failed_avp: FailedAvp | None = None


# --- grouped AVPs -----------------------------------------------------------------------------


class SubscriptionId(Avps, frozen=True, kw_only=True):
    subscription_id_type: SubscriptionIdType
    subscription_id_data: SubscriptionData


class ServiceUnit(Avps, frozen=True, kw_only=True):
    """Requested-Service-Unit / Granted-Service-Unit: a unit map (WIRE.md 5.1). Each unit AVP
    is at most `MAX_UNITS`, in a request and in a grant alike."""

    cc_time: TimeUnits | None = None
    cc_total_octets: Units | None = None
    cc_input_octets: Units | None = None
    cc_output_octets: Units | None = None
    cc_service_specific_units: Units | None = None


class UsedServiceUnit(Avps, frozen=True, kw_only=True):
    cc_time: TimeUnits | None = None
    cc_total_octets: Units | None = None
    cc_input_octets: Units | None = None
    cc_output_octets: Units | None = None
    cc_service_specific_units: Units | None = None
    tariff_change_usage: TariffChangeUsage | None = None
    reporting_reason: ReportingReason | None = None


class MsccRequest(Avps, frozen=True, kw_only=True):
    """Multiple-Services-Credit-Control in a CCR."""

    rating_group: Unsigned32
    service_identifier: Unsigned32 | None = None
    requested_service_unit: ServiceUnit | None = None
    used_service_unit: (
        Annotated[tuple[UsedServiceUnit, ...], msgspec.Meta(max_length=MAX_USU)] | None
    ) = None
    reporting_reason: ReportingReason | None = None


class RedirectServer(Avps, frozen=True, kw_only=True):
    redirect_address_type: RedirectAddressType
    redirect_server_address: str


class FinalUnitIndication(Avps, frozen=True, kw_only=True):
    final_unit_action: FinalUnitAction
    redirect_server: RedirectServer | None = None
    filter_id: tuple[str, ...] | None = None


class MsccAnswer(Avps, frozen=True, kw_only=True):
    """Multiple-Services-Credit-Control in a CCA."""

    rating_group: Unsigned32
    result_code: Unsigned32
    granted_service_unit: ServiceUnit | None = None
    validity_time: Unsigned32 | None = None
    volume_quota_threshold: Unsigned64 | None = None
    time_quota_threshold: Unsigned32 | None = None
    unit_quota_threshold: Unsigned64 | None = None
    quota_holding_time: Unsigned32 | None = None
    final_unit_indication: FinalUnitIndication | None = None
    tariff_time_change: Time | None = None
    linked_rating_group: tuple[Unsigned32, ...] | None = None
    service_identifier: Unsigned32 | None = None
    # extension (docs/protocol.md "Load-modulated prices"): the band the grant or quote is in
    load_band: str | None = None
    load_factor: str | None = None
    low_balance_indication: LowBalanceIndication | None = None  # status-policy extension


class UnitValue(Avps, frozen=True, kw_only=True):
    value_digits: Integer64
    exponent: Integer32 | None = None


class CostInformation(Avps, frozen=True, kw_only=True):
    unit_value: UnitValue
    currency_code: Unsigned32
    cost_unit: str | None = None


class RemainingBalance(Avps, frozen=True, kw_only=True):
    unit_value: UnitValue
    currency_code: Unsigned32


class OfferBalance(Avps, frozen=True, kw_only=True):
    """One unit balance of an offer the account holds (docs/protocol.md, *Extension: offers*):
    the units left and held, in the unit of its rating groups, and when they expire."""

    offer_name: str
    allowance_name: str
    allowance_rating_group: tuple[Unsigned32, ...]
    allowance_units: Unsigned64
    allowance_reserved: Unsigned64
    offer_status: OfferStatus
    balance_expiry: Time | None = None  # absent: never (an offer of period "once")


class Loan(Avps, frozen=True, kw_only=True):
    """One loan outstanding, in the `Account` map of an account that borrowed (docs/protocol.md,
    LOAN). Money in micro-units."""

    loan_id: str
    loan_amount: Integer64
    loan_fee: Integer64
    loan_time: Time
    loan_principal_due: Integer64
    loan_fee_due: Integer64


class UsageCounter(Avps, frozen=True, kw_only=True):
    """A usage counter of an account (docs/protocol.md, *Extension: usage counters*): in an
    AMA's `Account` (GET), and in a RAR sent because the counter crossed a threshold. Its
    value in its unit (micro-units for money) over the period [Start-Time, Stop-Time) (no
    Stop-Time: never reset; neither: not used yet), and the highest threshold crossed in it."""

    counter_name: str
    counter_unit: CounterUnit
    counter_value: Unsigned64
    start_time: Time | None = None
    stop_time: Time | None = None
    counter_threshold: Unsigned64 | None = None


class Account(Avps, frozen=True, kw_only=True):
    """The `Account` map of an AMA (WIRE.md section 8). Money in micro-units."""

    account_id: str
    account_status: AccountStatus
    balance: Integer64
    reserved: Integer64
    credit_limit: Integer64
    currency_code: Unsigned32
    subscription_id: tuple[SubscriptionId, ...]
    session_count: Unsigned32
    offer_balance: tuple[OfferBalance, ...] | None = None  # offers (docs/protocol.md)
    # loans (docs/protocol.md, LOAN): present only for an account that borrowed; `balance` is
    # then the money alone, `loan_balance` the loan money available
    loan_balance: Integer64 | None = None
    loan: tuple[Loan, ...] | None = None
    # status-policy (docs/protocol.md, *Extension: service control by account state*)
    account_state: str | None = None
    inhibit_threshold: Integer64 | None = None
    notify_threshold: Integer64 | None = None
    usage_counter: tuple[UsageCounter, ...] | None = None  # docs/protocol.md, usage counters


class Catalog(Avps, frozen=True, kw_only=True):
    """The `Catalog` map of an AMA answering CATALOG_SHOW (docs/protocol.md): the catalog in
    force, its SHA-256 (hex, of its text as UTF-8), since when (absent: put in force before
    the server recorded it) and its text (absent: too long for one message)."""

    catalog_name: str
    catalog_digest: str
    catalog_since: Time | None = None
    catalog_source: str | None = None


class StatementService(Avps, frozen=True, kw_only=True):
    """One service of a `Statement` (groups; docs/protocol.md, STATEMENT): units used,
    money charged for them, the member's share of the service's part of the fee."""

    service_name: str
    used_units: Unsigned64
    usage_charge: Integer64
    share: Integer64 | None = None


class Statement(Avps, frozen=True, kw_only=True):
    """The `Statement` map of an AMA answering STATEMENT (groups; docs/protocol.md): a
    member's period of a group package. `Share` is absent while the period is open."""

    group_account_id: str
    package_name: str
    period_start: Time
    period_end: Time
    statement_service: tuple[StatementService, ...]
    usage_charge: Integer64
    share: Integer64 | None = None


class Movement(Avps, frozen=True, kw_only=True):
    """One `Movement` of an AMA answering HISTORY (docs/protocol.md, *Extension: history*):
    its number for the account, when (`Event-Timestamp`), what, the change of the money
    balance (`Amount`, micro-units, negative for a charge), and as the case needs the units and
    their rating group, the CDR's `recordSequenceNumber` and the Operation-Id."""

    movement_sequence: Unsigned64
    event_timestamp: Time
    movement_kind: MovementKind
    amount: Integer64
    movement_units: Unsigned64 | None = None
    rating_group: Unsigned32 | None = None
    movement_record: Unsigned64 | None = None
    operation_id: str | None = None


class BulkAccount(Avps, frozen=True, kw_only=True):
    """One account of a CREATE_BULK (docs/protocol.md, *Extension: bulk create*): the keys
    of a CREATE."""

    account_id: AccountIdText
    subscription_id: (
        Annotated[tuple[SubscriptionId, ...], msgspec.Meta(max_length=MAX_SUBSCRIPTION_IDS)] | None
    ) = None
    amount: Amount | None = None
    credit_limit: CreditLimit | None = None
    currency_code: CurrencyCode | None = None


class BulkResult(Avps, frozen=True, kw_only=True):
    """A refused account of a CREATE_BULK: its Account-Id, the Result-Code and Error-Message
    (the fixed text) a CREATE of it would have been answered."""

    account_id: str
    result_code: Unsigned32
    error_message: str | None = None


# --- base protocol (application 0) ------------------------------------------------------------


class CER(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.CAPABILITIES_EXCHANGE
    host_ip_address: Annotated[tuple[Text, ...], msgspec.Meta(max_length=MAX_LIST_LENGTH)]
    vendor_id: Unsigned32
    product_name: Text
    auth_application_id: Annotated[tuple[Unsigned32, ...], msgspec.Meta(max_length=MAX_LIST_LENGTH)]
    origin_state_id: Unsigned32 | None = None
    firmware_revision: Unsigned32 | None = None


class CEA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.CAPABILITIES_EXCHANGE
    host_ip_address: tuple[str, ...] | None = None
    vendor_id: Unsigned32 | None = None
    product_name: str | None = None
    auth_application_id: tuple[Unsigned32, ...] | None = None
    origin_state_id: Unsigned32 | None = None
    firmware_revision: Unsigned32 | None = None


class DWR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.DEVICE_WATCHDOG
    origin_state_id: Unsigned32 | None = None


class DWA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.DEVICE_WATCHDOG
    origin_state_id: Unsigned32 | None = None


class DPR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.DISCONNECT_PEER
    disconnect_cause: DisconnectCause


class DPA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.DISCONNECT_PEER


# --- credit control (application 4) -----------------------------------------------------------


class CCR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.CREDIT_CONTROL
    session_id: SessionIdText
    destination_realm: Identity
    auth_application_id: Literal[4]
    service_context_id: Text
    cc_request_type: CCRequestType
    cc_request_number: RequestNumber
    destination_host: Identity | None = None
    user_name: Text | None = None
    origin_state_id: Unsigned32 | None = None
    termination_cause: Unsigned32 | None = None
    requested_action: RequestedAction | None = None
    event_timestamp: EventTime | None = None
    subscription_id: (
        Annotated[tuple[SubscriptionId, ...], msgspec.Meta(max_length=MAX_SUBSCRIPTION_IDS)] | None
    ) = None
    multiple_services_credit_control: (
        Annotated[tuple[MsccRequest, ...], msgspec.Meta(max_length=MAX_MSCC)] | None
    ) = None
    aoc_request_type: AoCRequestType | None = None
    estimate: Estimate | None = None  # extension (docs/protocol.md "Estimate")
    # opaque: the codec checks its domain (protocol.codec, MAX_OPAQUE_*)
    service_information: dict[str, Any] | None = None


class CCA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.CREDIT_CONTROL
    session_id: str | None = None
    auth_application_id: Unsigned32 | None = None
    cc_request_type: CCRequestType | None = None
    cc_request_number: Unsigned32 | None = None
    multiple_services_credit_control: tuple[MsccAnswer, ...] | None = None
    cost_information: CostInformation | None = None
    remaining_balance: RemainingBalance | None = None
    check_balance_result: CheckBalanceResult | None = None
    credit_control_failure_handling: CreditControlFailureHandling | None = None
    cc_session_failover: CCSessionFailover | None = None


class RAR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.RE_AUTH
    session_id: SessionIdText
    destination_realm: Identity
    destination_host: Identity
    auth_application_id: Unsigned32
    re_auth_request_type: ReAuthRequestType
    rating_group: tuple[Unsigned32, ...] | None = None  # as many as the session holds
    # the counters whose threshold this RAR is for (docs/protocol.md, usage counters)
    usage_counter: tuple[UsageCounter, ...] | None = None


class RAA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.RE_AUTH
    session_id: str | None = None


class ASR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.ABORT_SESSION
    session_id: SessionIdText
    destination_realm: Identity
    destination_host: Identity
    auth_application_id: Unsigned32


class ASA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.ABORT_SESSION
    session_id: str | None = None


# --- administration (application 0x4F435341) --------------------------------------------------


class AMR(Request, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.ACCOUNT_MANAGEMENT
    account_operation: AccountOperation
    account_id: AccountIdText
    subscription_id: (
        Annotated[tuple[SubscriptionId, ...], msgspec.Meta(max_length=MAX_SUBSCRIPTION_IDS)] | None
    ) = None
    amount: Amount | None = None
    currency_code: CurrencyCode | None = None
    credit_limit: CreditLimit | None = None
    account_status: AccountStatus | None = None
    operation_id: OperationIdText | None = None
    session_id: SessionIdText | None = None  # TERMINATE_SESSION (docs/protocol.md)
    # HISTORY (docs/protocol.md): how many movements at most, and below which number
    history_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_HISTORY_PAGE)] | None = None
    history_before: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    # CREATE_BULK (docs/protocol.md): the accounts to create, each as a CREATE
    bulk_account: (
        Annotated[tuple[BulkAccount, ...], msgspec.Meta(min_length=1, max_length=MAX_BULK_ACCOUNTS)]
        | None
    ) = None
    offer_name: OfferNameText | None = None  # SUBSCRIBE, UNSUBSCRIBE (docs/protocol.md)
    # groups: GROUP_JOIN, STATEMENT (docs/protocol.md, "Extension: shared group packages")
    group_account_id: AccountIdText | None = None
    package_name: PackageNameText | None = None
    period_start: EventTime | None = None
    # status-policy: SET_STATUS, UPDATE (docs/protocol.md, *Extension: service control by
    # account state*)
    account_state: StateName | None = None
    inhibit_threshold: Threshold | None = None
    notify_threshold: Threshold | None = None


class AMA(Answer, frozen=True, kw_only=True):
    COMMAND: ClassVar[CommandCode] = CommandCode.ACCOUNT_MANAGEMENT
    account: Account | None = None
    cdr_file: str | None = None  # CDR_ROTATE: the name of the file it completed (docs/protocol.md)
    catalog: Catalog | None = None  # CATALOG_SHOW (docs/protocol.md)
    listed_account_id: tuple[str, ...] | None = None  # LIST (docs/protocol.md)
    statement: Statement | None = None  # STATEMENT (docs/protocol.md; groups)
    # HISTORY (docs/protocol.md): how many movements the account ever had; the page, newest first
    movement_count: Unsigned64 | None = None
    movement: tuple[Movement, ...] | None = None
    # CREATE_BULK (docs/protocol.md): the accounts refused, in the request's order
    bulk_result: tuple[BulkResult, ...] | None = None


class ErrorAnswer(Answer, frozen=True, kw_only=True):
    """An answer carrying only what a 3xxx answer may (WIRE.md section 3); also used for
    requests that failed validation, under the request's Command-Code."""

    COMMAND: ClassVar[CommandCode]  # taken from the request header, not the type
    session_id: str | None = None


REQUEST_TYPES: tuple[type[Request], ...] = (CER, DWR, DPR, CCR, RAR, ASR, AMR)
ANSWER_TYPES: tuple[type[Answer], ...] = (CEA, DWA, DPA, CCA, RAA, ASA, AMA)
