"""The charging core: credit-control sessions, events and administration (WIRE.md 5-9).

Synchronous and deterministic: every input carries its time (int ms since the epoch) and the
core never reads a clock or touches a file. The I/O edge journals each input it processed
(`Input`; not a duplicate answered from the cache) before releasing its answer; after a crash,
`replay` feeds the same inputs
through the same code and rebuilds exactly the same sessions, reservations, duplicate cache
and CDRs (with the same sequence numbers). What the core produces besides answers is drained
by the edge: `take_cdrs()` (numbered JSON lines for the CDR files) and `take_actions()`
(RAR/ASR to send).

Money: reservations are two-phase transfers in the ledger (reserve before the grant is
answered; post what was used, even beyond the grant; void what is left). Every posted charge
lands in exactly one CDR container, so the sum of CDR charges is what the accounts lost.

Domains (`protocol.limits`, docs/protocol.md "Limits"): the codec bounds each value; the core
refuses, before anything changes, what would accumulate past a bound (a report's charge past
one operation, a session's charge, an account's balance) and an `Event-Timestamp` outside the
window around `now_ms` (journaled, so replay decides the same). A report's charge is bounded
from the catalog before it is rated (`_charge_bound`), so the check needs no state change.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Final

import msgspec

from ocs.core.accounts import AccountStatus, AccountView, SubscriberIdentity, SubscriptionType
from ocs.core.bulk import create_bulk
from ocs.core.charging_types import (
    CDR_ENCODER,
    CORE_LAYOUT,
    DEFAULT_REFUND_WINDOW_S,
    MAX_REFUND_WINDOW_S,
    REQUEST_KINDS,
    STATE_DECODER,
    STATE_ENCODER,
    Action,
    ActionKind,
    BookingRefused,
    CachedAnswer,
    Container,
    CoreState,
    Grant,
    Input,
    InputKind,
    RefundableDebit,
    Result,
    Session,
    SessionsView,
    Settings,
    decode_input,
    decode_settings,
    encode_input,
    pack_session,
    settings_input,
    unpack_session,
)
from ocs.core.counters import UsageCounters, counter_views, legacy_counter, notify
from ocs.core.due import DueSet
from ocs.core.groups import Groups
from ocs.core.history import History, history_page, record_cdr
from ocs.core.identities import normalise_identity
from ocs.core.iot import IotGrant, IotProfile
from ocs.core.ledger import Code, Credit, Debit, Ledger, Post, Reserve, Void
from ocs.core.ledger_types import CreateAccount, LedgerOutcome, command_problem
from ocs.core.load import LoadDecision, LoadPricing
from ocs.core.loans import (  # loans (ocs/core/loans.py)
    LoanBook,
    money_available,
    repay_from_topup,
    split_available,
    take_loan,
)
from ocs.core.offers import (  # offers (docs/charging.md, Allowances)
    MAX_SUBSCRIPTIONS_PER_ACCOUNT,
    HoldPart,
    OfferBook,
    Renewal,
)
from ocs.core.outcomes import Outcome, error_message, result_code
from ocs.core.policy import Mark, PolicyBook, policy_fui, zero_grant  # status-policy
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    HEADER_LENGTH,
    MAX_ENCODABLE_LENGTH,
    AccountOperation,
    AoCRequestType,
    CCRequestType,
    CheckBalanceResult,
    CommandCode,
    Estimate,
    LowBalanceIndication,  # status-policy
    MovementKind,
    OfferStatus,
    RedirectAddressType,
    RequestedAction,
    SubscriptionIdType,
    TariffChangeUsage,
)
from protocol.codes import AccountStatus as WireAccountStatus
from protocol.codes import FinalUnitAction as WireFinalUnitAction
from protocol.limits import (
    EVENT_TIMESTAMP_FUTURE_S,
    EVENT_TIMESTAMP_PAST_S,
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_CONTAINERS,
    MAX_SESSION_CHARGE,
    MAX_SESSIONS_PER_PEER,
    MAX_TOMBSTONES_PER_PEER,
    MAX_UNITS,
)
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    Account,
    Answer,
    CostInformation,
    FinalUnitIndication,
    MsccAnswer,
    MsccRequest,
    OfferBalance,
    RedirectServer,
    RemainingBalance,
    ServiceUnit,
    StatementService,
    UnitValue,
    UsageCounter,
    UsedServiceUnit,
)
from protocol.messages import Catalog as CatalogInForce
from protocol.messages import Loan as WireLoan
from protocol.messages import Statement as WireStatement
from protocol.messages import SubscriptionId as WireSubscriptionId
from rating import (
    Catalog,
    Promotion,
    RatingGroup,
    Unit,
    affordable,
    div_ceil,
    next_tariff_change,
    parse_catalog,
    price,
    price_at,
    price_dearest,
    price_event,
    unit_value,
)
from rating.catalog import with_promotions  # offers: price modifiers
from rating.policies import (  # status-policy
    ACTIVE,
    BARRED,
    LOW_BALANCE,
    ON_LOAN,
    SUSPENDED,
    PolicyAction,
    ServicePolicy,
    status_policies,
)
from rating.tariff import Tariff

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW_MS",
    "DEFAULT_MAX_CACHED_PER_PEER",
    "DEFAULT_MIN_TCC_S",
    "DEFAULT_REFUND_WINDOW_S",
    "MAX_REFUNDABLE_PER_GROUP",
    "MAX_REFUND_WINDOW_S",
    "MS",
    "REQUEST_KINDS",
    "RESERVATION_SLACK_S",
    "Action",
    "ActionKind",
    "BookingRefused",
    "ChargingCore",
    "Container",
    "Grant",
    "Input",
    "InputKind",
    "Result",
    "Session",
    "SessionsView",
    "Settings",
    "catalog_digest",
    "decode_input",
    "encode_input",
    "iso_ms",
    "names_peer",
    "pack_session",
    "settings_input",
    "unit_map",
    "units_of",
    "unpack_session",
]

MS: Final = 1000
_ONE: Final = Fraction(1)  # the factor of a price that ignores load


def catalog_digest(text: str) -> str:
    """A catalog's digest: the SHA-256 of its text as UTF-8, in hex (what `sha256sum` prints
    for the file, when it has Unix line ends). Equal digests, equal catalogs."""
    return hashlib.sha256(text.encode()).hexdigest()


DEFAULT_DUPLICATE_WINDOW_MS: Final = 4 * 60 * MS  # WIRE.md section 6: at least 4 minutes
# The most answers one peer keeps in the duplicate cache (docs/operations.md): beyond it, that
# peer's oldest is forgotten. 2**20 answers keep the whole window for a peer sending up to
# ~4,400 requests/s; a peer sending more keeps its last 2**20 (its oldest duplicates are then
# processed again), and no peer can pin more than that (~0.5-0.75 GB) however fast it sends.
DEFAULT_MAX_CACHED_PER_PEER: Final = 1 << 20
DEFAULT_MIN_TCC_S: Final = 120  # Tcc of a session that holds no grant
RESERVATION_SLACK_S: Final = 60
#: Refundable debits kept per (account, rating group); beyond it the two oldest are merged
#: (see `ChargingCore._record_debit`): the memory of debits is bounded per account.
MAX_REFUNDABLE_PER_GROUP: Final = 1024

# Result-Codes of the outcomes used per MSCC, looked up once (ocs.core.outcomes.RESULT_CODE).
_RC_CREDIT_LIMIT_REACHED: Final = result_code(Outcome.CREDIT_LIMIT_REACHED)
_RC_NOT_APPLICABLE: Final = result_code(Outcome.NOT_APPLICABLE)
_RC_OK: Final = result_code(Outcome.OK)
_RC_RATING_FAILED: Final = result_code(Outcome.RATING_FAILED)
_RC_SERVICE_DENIED: Final = result_code(Outcome.SERVICE_DENIED)

# An administrative request's outcome, the `Failed-AVP` of a refusal (None on success) and a
# detail for its `Error-Message` ("" for none): `ChargingCore._admin`.
AdminResult = tuple[Outcome, dict[str, Any] | None, str]
_ADMIN_OK: Final[AdminResult] = (Outcome.OK, None, "")
# LIST answers at most this many Account-Ids (docs/protocol.md, LIST)
LIST_PAGE: Final = 100
# A CREATE the ledger refused: the AMR key its static check names (`command_problem`'s text).
_CREATE_KEYS: Final = (
    ("account_id", "Account-Id"),
    ("currency", "Currency-Code"),
    ("credit_limit", "Credit-Limit"),
    ("balance", "Amount"),
    ("subscription", "Subscription-Id"),
)
# `Enum.value` is a descriptor call: the unit names of containers, looked up once
_OCTETS: Final = Unit.OCTETS.value
_SECONDS: Final = Unit.SECONDS.value
_UNITS: Final = Unit.UNITS.value


def units_of(unit_map: ServiceUnit | UsedServiceUnit, unit: Unit) -> int | None:
    """The amount of `unit` in a unit map; octets fall back to input + output."""
    if unit is Unit.OCTETS:
        if unit_map.cc_total_octets is not None:
            return unit_map.cc_total_octets
        if unit_map.cc_input_octets is None and unit_map.cc_output_octets is None:
            return None
        return (unit_map.cc_input_octets or 0) + (unit_map.cc_output_octets or 0)
    if unit is Unit.SECONDS:
        return unit_map.cc_time
    return unit_map.cc_service_specific_units


def unit_map(unit: Unit, amount: int) -> ServiceUnit:
    if unit is Unit.OCTETS:
        return ServiceUnit(cc_total_octets=amount)
    if unit is Unit.SECONDS:
        return ServiceUnit(cc_time=amount)
    return ServiceUnit(cc_service_specific_units=amount)


_ISO_SECOND: list[tuple[int, str]] = [(-1, "")]  # the last second formatted


def iso_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, from int ms (no float). The formatted second is
    cached: the records of one batch share it, and strftime is the costly part."""
    second = ms // MS
    cached_second, text = _ISO_SECOND[0]
    if cached_second != second:
        text = f"{datetime.fromtimestamp(second, tz=UTC):%Y-%m-%dT%H:%M:%S}"
        _ISO_SECOND[0] = (second, text)
    return text + _MS_SUFFIX[ms % MS]


_MS_SUFFIX: Final = [f".{n:03d}Z" for n in range(MS)]  # ".000Z" ... ".999Z"


def _subscriber(subs: Iterable[WireSubscriptionId]) -> str:
    for sub in subs:
        return sub.subscription_id_data
    return ""


def names_peer(session_id: str, origin_host: str) -> bool:
    """Whether a Session-Id begins with the peer's Origin-Host (RFC 6733 section 8.8, WIRE.md
    5.3): `<host>;...`, or exactly `<host>`."""
    n = len(origin_host)
    return session_id.startswith(origin_host) and (len(session_id) == n or session_id[n] == ";")


class ChargingCore:
    """Sessions, events, administration, duplicates, supervision, CDR records."""

    def __init__(
        self,
        ledger: Ledger,
        catalog_text: str,
        *,
        origin_host: str = "ocs.test.local",
        origin_realm: str = "test.local",
        duplicate_window_ms: int = DEFAULT_DUPLICATE_WINDOW_MS,
        min_tcc_s: int = DEFAULT_MIN_TCC_S,
        max_cached_per_peer: int = DEFAULT_MAX_CACHED_PER_PEER,
        max_sessions_per_peer: int = MAX_SESSIONS_PER_PEER,
        max_tombstones_per_peer: int = MAX_TOMBSTONES_PER_PEER,
    ) -> None:
        if duplicate_window_ms < DEFAULT_DUPLICATE_WINDOW_MS:
            raise ValueError("the duplicate window is never less than 4 minutes (WIRE.md 6)")
        if max_cached_per_peer < 1:
            raise ValueError("a peer keeps at least one cached answer")
        self.ledger = ledger
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.duplicate_window_ms = duplicate_window_ms
        self.min_tcc_s = min_tcc_s
        self.max_cached_per_peer = max_cached_per_peer
        self.max_sessions_per_peer = max_sessions_per_peer
        self.max_tombstones_per_peer = max_tombstones_per_peer
        self.catalog_text = catalog_text
        self.catalog: Catalog = parse_catalog(catalog_text)
        self._links_cache: dict[tuple[str, int], tuple[int, ...]] = {}
        # rating group id -> its dearest rate (num, den) in the catalog, see `_charge_bound`
        self._dearest: dict[int, tuple[int, int]] = {}
        # open sessions by Session-Id: a `Session`, or its packed bytes when idle
        self._sessions: dict[str, Session | bytes] = {}
        # account id -> its open session's id, or a set of ids when it has several
        self._by_account: dict[str, str | set[str]] = {}
        self.usage: dict[str, int] = {}  # money charged per account (usage thresholds)
        self._operations: dict[str, str] = {}  # Operation-Id -> the operation it names
        self.cdr_seq = 0
        self._reservation_seq = 0
        # the open sessions that are estimates (docs/protocol.md "Estimate")
        self._estimates: set[str] = set()
        # The duplicate cache (see `_remember`): answers by (peer, End-to-End-Id), in the order
        # they were given; the peer of each, in that order (for expiry); each peer's keys, in
        # that order (for its bound); and per peer how many of the first entries of
        # `_seen_order` for it stand for answers its bound already dropped.
        self._seen: dict[tuple[str, int], CachedAnswer] = {}
        self._seen_order: deque[str] = deque()
        self._peer_seen: dict[str, deque[tuple[str, int]]] = {}
        self._peer_dropped: dict[str, int] = {}
        # closed sessions, for the duplicate window: (closed at ms, number, CCA body, owner)
        self._closed: dict[str, tuple[int, int, bytes, str]] = {}
        self._closed_order: deque[str] = deque()
        # per peer (Origin-Host): how many sessions it holds open, and its tombstones in the
        # order they were made (for its bound, `max_tombstones_per_peer`)
        self._peer_sessions: dict[str, int] = {}
        self._peer_tombstones: dict[str, deque[str]] = {}
        # (Origin-Host, Session-Id) of an EVENT -> its answer, also in `_seen` (WIRE.md 6)
        self._events: dict[tuple[str, str], CachedAnswer] = {}
        # refunds (WIRE.md 5.4): per (account id, rating group) what DIRECT_DEBITING took and
        # was not refunded yet, oldest first; each such pair is scheduled in `_refund_due` at
        # the second its oldest entry leaves the window (`_refund_expiry_s`)
        self.refund_window_s = DEFAULT_REFUND_WINDOW_S  # changed by a SETTINGS input only
        self._refundable: dict[tuple[str, int], list[RefundableDebit]] = {}
        self._refund_due: DueSet[tuple[str, int]] = DueSet()
        # supervision: every open session's id under its Tcc deadline (s), see `_deadline`
        self._deadlines: DueSet[str] = DueSet()
        self._cdrs: list[tuple[int, bytes]] = []
        self._actions: list[Action] = []
        self._closed_now: list[str] = []
        # whether the journal (or a snapshot) holds the catalog in force: replay must not
        # depend on the file configured today
        self.catalog_journaled = False
        # when the catalog in force was put in force (its CATALOG input); None while it is
        # the one the core was built with, or when a snapshot of an older build did not say
        self.catalog_since_ms: int | None = None
        # --- history (ocs/core/history.py): every account's last movements of money and units
        self.history = History()
        # offers: subscriptions, unit balances and unit holds (ocs/core/offers.py); rating
        # groups with the price modifiers of offers, by (id, modifiers), per catalog
        self.offers = OfferBook()
        self._variants: dict[tuple[int, tuple[Promotion, ...]], RatingGroup] = {}
        # loans: loan balances, loans outstanding, eligibility data (ocs/core/loans.py)
        self.loans = LoanBook()
        # groups: shared group packages (ocs/core/groups.py)
        self.groups = Groups()
        # load-modulated prices (ocs/core/load.py): the band in force, recent grants
        self.load_pricing = LoadPricing(self.catalog)
        # status-policy: service control by account state, thresholds (ocs/core/policy.py)
        self.policy = PolicyBook()
        self.policy.derived.append((ON_LOAN, self._on_loan))  # a loan owed: `on_loan`
        # IoT low-signalling profile (ocs/core/iot.py): device classes of sessions, counts
        self.iot = IotProfile()
        # usage counters across sessions, per account (ocs/core/counters.py)
        self.counters = UsageCounters()

    # --- outputs -------------------------------------------------------------------------------

    def take_cdrs(self) -> list[tuple[int, bytes]]:
        cdrs, self._cdrs = self._cdrs, []
        return cdrs

    def take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def take_closed(self) -> list[str]:
        """Session ids closed since the last call (the edge forgets their routes)."""
        closed, self._closed_now = self._closed_now, []
        return closed

    # --- sessions ------------------------------------------------------------------------------

    @property
    def sessions(self) -> SessionsView:
        """The open sessions (read-only; packed ones are unpacked as copies)."""
        return SessionsView(self._sessions)

    def has_session(self, sid: str) -> bool:
        return sid in self._sessions

    def session_owner(self, sid: str) -> str | None:
        """The peer (Origin-Host) that opened the open session `sid`; None if it is not open."""
        session = self._sessions.get(sid)
        if session is None:
            return None
        if isinstance(session, Session):
            return session.origin_host
        return unpack_session(session).origin_host  # a copy: it stays packed

    def _session_of(self, sid: str, owner: str | None) -> Session | None:
        """The open session `sid`, unpacked for use (it is packed again once idle), if it
        belongs to the peer `owner` (None: to any peer); else None, and a packed session stays
        packed."""
        session = self._sessions.get(sid)
        if session is None:
            return None
        if not isinstance(session, Session):
            unpacked = unpack_session(session)
            if owner is not None and unpacked.origin_host != owner:
                return None
            self._sessions[sid] = unpacked
            return unpacked
        if owner is not None and session.origin_host != owner:
            return None
        return session

    def _peek(self, sid: str) -> Session | None:
        """The open session `sid` to read only (a packed one stays packed)."""
        session = self._sessions.get(sid)
        if session is None or isinstance(session, Session):
            return session
        return unpack_session(session)

    def _account_sessions(self, account_id: str) -> list[str]:
        """The ids of the account's open sessions, sorted."""
        ids = self._by_account.get(account_id)
        if ids is None:
            return []
        return [ids] if isinstance(ids, str) else sorted(ids)

    def _link_account(self, account_id: str, sid: str) -> None:
        ids = self._by_account.get(account_id)
        if ids is None:
            self._by_account[account_id] = sid
        elif isinstance(ids, str):
            if ids != sid:
                self._by_account[account_id] = {ids, sid}
        else:
            ids.add(sid)

    def _unlink_account(self, account_id: str, sid: str) -> None:
        ids = self._by_account.get(account_id)
        if ids is None:
            return
        if isinstance(ids, str):
            if ids == sid:
                del self._by_account[account_id]
            return
        ids.discard(sid)
        if len(ids) == 1:
            self._by_account[account_id] = next(iter(ids))
        elif not ids:
            del self._by_account[account_id]

    def _pack_if_idle(self, sid: str, at_ms: int) -> None:
        """Pack the session if it processed nothing after `at_ms` (an answer that just left
        the duplicate cache): a decision on the state alone, so replay packs the same ones."""
        session = self._sessions.get(sid)
        if isinstance(session, Session) and session.last_ms <= at_ms:
            self._sessions[sid] = pack_session(session)

    # --- inputs --------------------------------------------------------------------------------

    def apply(self, record: Input) -> Result | None:
        """Apply one journaled input (live or in replay)."""
        kind = record.kind
        if kind in REQUEST_KINDS:
            message = decode_body(record.command, True, record.body)
            if isinstance(message, CCR):
                return self.handle_ccr(
                    record.now_ms,
                    record.origin_host,
                    record.end_to_end,
                    message,
                    peer_rules=kind is not InputKind.REQUEST_1_0,
                )
            assert isinstance(message, AMR)
            return self.handle_amr(
                record.now_ms,
                record.origin_host,
                record.end_to_end,
                message,
                identity_rules=kind is InputKind.REQUEST,
            )
        if record.kind is InputKind.TICK:
            self.tick(record.now_ms)
            return None
        if record.kind is InputKind.SETTINGS:
            self._apply_settings(decode_settings(record.body))
            return None
        self.load_catalog(record.body.decode())
        self.catalog_journaled = True
        self.catalog_since_ms = record.now_ms
        return None

    def handle_ccr(
        self,
        now_ms: int,
        origin_host: str,
        end_to_end: int,
        ccr: CCR,
        *,
        peer_rules: bool = True,
    ) -> Result:
        """A CCR from the peer `origin_host` (the Origin-Host of its capabilities exchange).
        `peer_rules=False` only replays an input journaled before sessions had owners
        (`InputKind.REQUEST_1_0`): no Session-Id prefix, any peer may continue any session."""
        cached = self._duplicate(now_ms, origin_host, end_to_end)
        if cached is not None:
            return cached
        kind = ccr.cc_request_type
        owner = origin_host if peer_rules else None
        session: Session | None = None
        close = False
        event_sid = ""
        repeat = (
            self._event_repeat(now_ms, origin_host, ccr.session_id)
            if kind is CCRequestType.EVENT
            else None
        )
        foreign = (
            repeat is None
            and owner is not None
            and (kind is CCRequestType.INITIAL or kind is CCRequestType.EVENT)
            and not names_peer(ccr.session_id, owner)
        )
        refused = None if repeat is not None or foreign else self._timestamp_refused(now_ms, ccr)
        if repeat is not None:  # an EVENT answered before: its answer, whatever changed since
            answer = repeat
        elif foreign:
            answer = self._foreign_session_id(ccr)
        elif kind is CCRequestType.EVENT:  # remembered by Session-Id, refusals included
            answer = (
                refused
                or self._event_refused(ccr)
                or self._event(now_ms, origin_host, end_to_end, ccr)
            )
            event_sid = ccr.session_id
        elif refused is not None:
            answer = refused
        elif kind is CCRequestType.INITIAL:
            answer, session = self._initial(now_ms, origin_host, ccr, owner)
        else:
            answer, session = self._update(now_ms, ccr, owner)
            close = kind is CCRequestType.TERMINATION and session is not None
        body = encode_body(answer)
        sid = ""
        if session is not None:
            session.last_answer = body
            if close:
                self._close(session, now_ms, "normalRelease")
            else:
                sid = session.session_id
        self._remember(now_ms, origin_host, end_to_end, answer, body, sid, event_sid)
        return Result(answer, body, False)

    def handle_amr(
        self,
        now_ms: int,
        origin_host: str,
        end_to_end: int,
        amr: AMR,
        *,
        identity_rules: bool = True,
    ) -> Result:
        """`identity_rules=False` only replays an input journaled before a CREATE's identities
        and currency were checked (`InputKind.REQUEST_1_1`): they are kept as received."""
        cached = self._duplicate(now_ms, origin_host, end_to_end)
        if cached is not None:
            return cached
        if amr.account_operation is AccountOperation.CATALOG_SHOW:
            return self._catalog_show(now_ms, origin_host, end_to_end)
        if amr.account_operation is AccountOperation.LIST:
            return self._list(now_ms, origin_host, end_to_end, amr.account_id)
        if amr.account_operation is AccountOperation.SEARCH:
            return self._search(now_ms, origin_host, end_to_end, amr)
        if amr.account_operation is AccountOperation.STATEMENT:  # groups
            return self._group_statement(now_ms, origin_host, end_to_end, amr)
        if amr.account_operation is AccountOperation.HISTORY:  # history (ocs/core/history.py)
            return self._history(now_ms, origin_host, end_to_end, amr)
        if amr.account_operation is AccountOperation.CREATE_BULK:  # bulk (ocs/core/bulk.py)
            return self._create_bulk(now_ms, origin_host, end_to_end, amr, identity_rules)
        outcome, failed, detail = self._admin(now_ms, origin_host, end_to_end, amr, identity_rules)
        account = self.ledger.account(amr.account_id) if outcome is Outcome.OK else None
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            outcome,
            detail=detail,
            failed=failed,
            account=self._account_map(account, now_ms) if account is not None else None,
        )

    def _admin_answer(
        self,
        now_ms: int,
        origin_host: str,
        end_to_end: int,
        outcome: Outcome,
        *,
        detail: str = "",
        failed: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Result:
        """An AMA with `outcome` (its Result-Code and `Error-Message`, with `detail`) and
        `fields`, encoded and remembered for the duplicate window: how every administration
        answer is made."""
        answer = AMA(
            result_code=result_code(outcome),
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            error_message=error_message(outcome, detail),
            failed_avp=failed,
            **fields,
        )
        body = encode_body(answer)
        self._remember(now_ms, origin_host, end_to_end, answer, body)
        return Result(answer, body, False)

    def _catalog_show(self, now_ms: int, origin_host: str, end_to_end: int) -> Result:
        """CATALOG_SHOW (docs/protocol.md): the catalog in force, whatever the Account-Id."""
        since_ms = self.catalog_since_ms
        shown = CatalogInForce(
            catalog_name=self.catalog.name,
            catalog_digest=self.catalog_digest,
            catalog_since=None if since_ms is None else since_ms // MS,
            catalog_source=self.catalog_text,
        )
        answer = AMA(
            result_code=result_code(Outcome.OK),
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            catalog=shown,
        )
        body = encode_body(answer)
        if HEADER_LENGTH + len(body) > MAX_ENCODABLE_LENGTH:  # the text does not fit a message
            answer = msgspec.structs.replace(
                answer, catalog=msgspec.structs.replace(shown, catalog_source=None)
            )
            body = encode_body(answer)
        self._remember(now_ms, origin_host, end_to_end, answer, body)
        return Result(answer, body, False)

    @property
    def catalog_digest(self) -> str:
        """The SHA-256 of the catalog in force (`catalog_digest`)."""
        return catalog_digest(self.catalog_text)

    def due(self, now_ms: int) -> bool:
        """Whether `tick(now_ms)` would change anything (so the edge journals it only then)."""
        deadline = self._deadlines.earliest()
        if deadline is not None and deadline <= now_ms // MS:
            return True
        iot = self.iot.earliest_s()  # IoT profile: a period's aggregate records
        if iot is not None and iot <= now_ms // MS:
            return True
        expiry = self.ledger.next_expiry()
        if expiry is not None and expiry <= now_ms:
            return True
        offers_due = self.offers.next_due()  # offers: renewals and unit holds' expiry
        if offers_due is not None and offers_due <= now_ms:
            return True
        period_end = self.groups.due_ms()  # groups: a package period ends
        return period_end is not None and period_end <= now_ms

    @staticmethod
    def _deadline(session: Session) -> int:
        """When the session is closed if it stays silent (Tcc, WIRE.md 5.3), in epoch s."""
        return session.last_ms // MS + session.tcc_s

    def tick(self, now_ms: int) -> None:
        """Session supervision (Tcc) then reservation expiry, at `now_ms`."""
        silent: list[Session] = []
        for sid in self._deadlines.pop_due(now_ms // MS):
            session = self._peek(sid)  # closed below: no need to unpack it for good
            assert session is not None
            silent.append(session)
        # close in an order that depends on the state alone, so that CDR numbers replay exactly
        silent.sort(key=lambda s: (self._deadline(s), s.session_id))
        marks = self._policy_marks(s.account_id for s in silent)  # status-policy: before
        for session in silent:
            self._release_all(session, now_ms)
            self._close(session, now_ms, "abnormalRelease")
        self._iot_period_records(now_ms)
        expired = self.ledger.expire_due(now_ms)
        released = self._policy_released(expired.expired, expired.expired_owners)
        for reservation_id, sid in zip(expired.expired, expired.expired_owners, strict=True):
            self._drop_expired_grant(reservation_id, sid)
        self._offers_tick(now_ms)  # offers: unit holds expire, renewals at their instants
        self._close_group_periods(now_ms)  # groups
        self._policy_ticked(marks, released)
        self._evict(now_ms)

    def _drop_expired_grant(self, reservation_id: str, sid: str) -> None:
        """A grant whose reservation the ledger expired holds no money any more: forget it, so
        that the session's grants are exactly the account's open reservations (usage reported
        for it later is charged without a reservation, like any usage beyond a grant)."""
        session = self._peek(sid)
        if session is None:
            return
        for rg_id, grant in list(session.grants.items()):
            if grant.reservation_id == reservation_id:
                del session.grants[rg_id]
        if not isinstance(self._sessions[sid], Session):  # it was packed: it stays packed
            self._sessions[sid] = pack_session(session)

    def load_catalog(self, text: str) -> None:
        """Switch catalogs; sessions whose open grants are priced differently get RAR."""
        new = parse_catalog(text)
        old = self.catalog
        self.catalog = new
        self.counters.catalog_changed(  # usage counters
            old.counters, new.counters, zone_changed=old.timezone != new.timezone
        )
        self._links_cache = {}
        self._dearest = {}
        self._variants = {}
        self.catalog_text = text
        self.load_pricing.catalog_changed(new)  # load-modulated prices
        for sid in self._sessions:
            session = self._peek(sid)
            assert session is not None
            changed = tuple(
                rg
                for rg in session.grants
                if old.rating_group(session.service_context_id, rg)
                != new.rating_group(session.service_context_id, rg)
            )
            if changed:
                self._act(ActionKind.RAR, session, changed, "price change")
        if status_policies(old) != status_policies(new):  # status-policy
            self._policy_reloaded(old)

    # --- duplicates (section 6) ----------------------------------------------------------------

    # `_seen` holds the answer of every processed request for the duplicate window, keyed by
    # the peer that sent it (the Origin-Host of its capabilities exchange, never a field of the
    # request alone: no peer can be given another's answer) and its End-to-End-Id. Every
    # processed request is journaled (refusals and reads too), so the cache is part of
    # snapshots and replay rebuilds it exactly: a request answered before a crash gets the same
    # answer after it and changes nothing, whatever changed since. A peer keeps at most
    # `max_cached_per_peer` answers: beyond that its oldest is dropped, a decision on the
    # inputs alone, so replay drops the same ones.

    def _duplicate(self, now_ms: int, origin_host: str, end_to_end: int) -> Result | None:
        cached = self._seen.get((origin_host, end_to_end))
        if cached is not None and now_ms - cached.at_ms <= self.duplicate_window_ms:
            answer = decode_body(cached.command, False, cached.body)
            assert isinstance(answer, Answer)
            return Result(answer, cached.body, True)
        # Not a duplicate: the request is processed, and journaled, so what is out of the
        # window can go now (before the request looks anything up). A duplicate changes
        # nothing, not even this: it is not journaled, and replay must rebuild the same cache.
        self._evict(now_ms)
        return None

    def _event_repeat(self, now_ms: int, origin_host: str, sid: str) -> CCA | None:
        """The answer of the EVENT this peer sent under `sid` within the duplicate window, if
        any: an EVENT sent again under a new End-to-End-Id is a duplicate all the same (WIRE.md
        6). It gets that answer and changes nothing; like a repeat of a session's last request
        number, it is itself journaled and remembered under its own End-to-End-Id."""
        cached = self._events.get((origin_host, sid))
        if cached is None or now_ms - cached.at_ms > self.duplicate_window_ms:
            return None
        answer = decode_body(cached.command, False, cached.body)
        assert isinstance(answer, CCA)
        return answer

    def _forget_event(self, origin_host: str, entry: CachedAnswer) -> None:
        key = (origin_host, entry.event_session_id)
        if self._events.get(key) is entry:  # not replaced by a later EVENT of the same id
            del self._events[key]

    def _remember(
        self,
        now_ms: int,
        origin_host: str,
        end_to_end: int,
        answer: Answer,
        body: bytes,
        session_id: str = "",
        event_session_id: str = "",
    ) -> None:
        key = (origin_host, end_to_end)
        cached = CachedAnswer(now_ms, int(answer.COMMAND), body, session_id, event_session_id)
        if event_session_id:
            self._events[(origin_host, event_session_id)] = cached
        seen = self._seen
        old = seen.get(key)
        if old is not None:
            # left behind by a clock that went back (`_evict` stops at the first answer of the
            # window): replaced where it stands
            seen[key] = cached
            if old.event_session_id:
                self._forget_event(origin_host, old)
            return
        seen[key] = cached
        self._seen_order.append(origin_host)
        mine = self._peer_seen.get(origin_host)
        if mine is None:
            mine = self._peer_seen[origin_host] = deque()
        mine.append(key)
        if len(mine) > self.max_cached_per_peer:
            # the peer's oldest answer goes; its entry in `_seen_order` (the first of this
            # peer's there that stands for an answer) now stands for nothing
            dropped = seen.pop(mine.popleft())
            self._peer_dropped[origin_host] = self._peer_dropped.get(origin_host, 0) + 1
            if dropped.session_id:
                self._pack_if_idle(dropped.session_id, dropped.at_ms)
            if dropped.event_session_id:
                self._forget_event(origin_host, dropped)

    def _evict(self, now_ms: int) -> None:
        horizon = now_ms - self.duplicate_window_ms
        seen, order = self._seen, self._seen_order
        peers, dropped = self._peer_seen, self._peer_dropped
        while order:
            host = order[0]
            gone = dropped.get(host, 0)
            if gone:  # stands for an answer the peer's bound dropped
                order.popleft()
                if gone == 1:
                    del dropped[host]
                else:
                    dropped[host] = gone - 1
                continue
            mine = peers[host]
            key = mine[0]
            entry = seen[key]
            if entry.at_ms >= horizon:
                break
            order.popleft()
            mine.popleft()
            if not mine:
                del peers[host]
            del seen[key]
            if entry.session_id:
                self._pack_if_idle(entry.session_id, entry.at_ms)
            if entry.event_session_id:
                self._forget_event(host, entry)
        closed, corder = self._closed, self._closed_order
        while corder:
            tomb = closed.get(corder[0])
            if tomb is not None and tomb[0] >= horizon:
                break
            sid = corder.popleft()
            if tomb is not None:
                del closed[sid]
                tombs = self._peer_tombstones.get(tomb[3])
                if tombs and tombs[0] == sid:
                    tombs.popleft()
                    if not tombs:
                        del self._peer_tombstones[tomb[3]]
        self._expire_refundable(now_ms)

    # --- answers -------------------------------------------------------------------------------

    def _cca(
        self,
        ccr: CCR,
        outcome: Outcome,
        msccs: list[MsccAnswer] | None = None,
        **extra: Any,
    ) -> CCA:
        return CCA(
            session_id=ccr.session_id,
            result_code=_RC_OK if outcome is Outcome.OK else result_code(outcome),
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            auth_application_id=4,
            cc_request_type=ccr.cc_request_type,
            cc_request_number=ccr.cc_request_number,
            multiple_services_credit_control=tuple(msccs) if msccs else None,
            **extra,
        )

    def _resolve(self, ccr: CCR) -> tuple[str, AccountStatus, int] | None:
        """The account of the first Subscription-Id that has one: (id, status, headroom). An
        E.164 number is found with or without its leading ``+``, as CREATE stores it without."""
        for sub in ccr.subscription_id or ():
            kind, data = int(sub.subscription_id_type), sub.subscription_id_data
            found = self.ledger.standing_for(kind, data)
            if found is None and kind == SubscriptionType.E164 and data.startswith("+"):
                found = self.ledger.standing_for(kind, data[1:])
            if found is not None:
                return found
        return None

    def _aoc(self, ccr: CCR, charge: int, account_id: str) -> dict[str, Any]:
        kind = ccr.aoc_request_type
        if kind is None or kind is AoCRequestType.NOT_REQUESTED:
            return {}
        currency = self.catalog.currency.code
        extra: dict[str, Any] = {}
        if kind in (AoCRequestType.FULL, AoCRequestType.COST_ONLY):
            extra["cost_information"] = self._cost(charge)
        view = self.ledger.account(account_id)
        if view is not None:
            digits, exponent = unit_value(view.available)
            extra["remaining_balance"] = RemainingBalance(
                unit_value=UnitValue(value_digits=digits, exponent=exponent),
                currency_code=currency,
            )
        return extra

    def _session_aoc(self, ccr: CCR, session: Session) -> dict[str, Any]:
        """AoC of a session's answer; an estimate always carries its cost so far (what the
        session would have been charged), and never `Remaining-Balance`, which it leaves as
        it was."""
        if self._is_estimate(session):
            return {"cost_information": self._cost(session.charge_total)}
        # groups: a member's Remaining-Balance is that of the account that pays, its group's
        return self._aoc(ccr, session.charge_total, self.groups.payer(session.account_id))

    def _cost(self, charge: int) -> CostInformation:
        digits, exponent = unit_value(charge)
        currency = self.catalog.currency
        return CostInformation(
            unit_value=UnitValue(value_digits=digits, exponent=exponent),
            currency_code=currency.code,
            cost_unit=currency.alpha,
        )

    # --- domains (WIRE.md 1.1 section 2, "Limits"; protocol.limits) ----------------------------

    def _refuse(self, ccr: CCR, failed_avp: dict[str, Any], reason: str) -> CCA:
        """5004 with Failed-AVP: a value outside its domain; nothing changed."""
        return self._cca(ccr, Outcome.INVALID, failed_avp=failed_avp, error_message=reason)

    def _timestamp_refused(self, now_ms: int, ccr: CCR) -> CCA | None:
        """An Event-Timestamp outside the window around the server's clock (`now_ms`)."""
        at_s = ccr.event_timestamp
        if at_s is None:
            return None
        now_s = now_ms // MS
        if now_s - EVENT_TIMESTAMP_PAST_S <= at_s <= now_s + EVENT_TIMESTAMP_FUTURE_S:
            return None
        return self._refuse(
            ccr,
            {"Event-Timestamp": at_s},
            f"Event-Timestamp more than {EVENT_TIMESTAMP_PAST_S} s before or "
            f"{EVENT_TIMESTAMP_FUTURE_S} s after the server's clock",
        )

    def _charge_bound(self, rg: RatingGroup, units: int) -> int:
        """More than any charge of `units` of `rg` can be, whatever the time, tariff split and
        units before them in the session: the dearest rate of the catalog for `rg`, rounded up
        (`div_ceil`), times the units billed, plus one micro-unit per billed unit (each
        charged segment rounds up once), plus the setup fee. Billed units exceed used ones by
        less than `first + increment`."""
        rate = self._dearest.get(rg.id)
        if rate is None:
            num, den = 0, 1
            # offers: a price modifier of an offer may make the group dearer for its holders
            for tariff in (rg.tariff, *self._modifier_tariffs(rg)):
                for rates in tariff.class_rates:
                    for r in rates:
                        if r.num * den > num * r.den:
                            num, den = r.num, r.den
            # load-modulated prices: at the catalog's dearest band (ocs/core/load.py)
            scale = self.load_pricing.bound_factor(rg.id)
            num, den = num * scale.numerator, den * scale.denominator
            rate = self._dearest[rg.id] = (num, den)
        billed = units + rg.billing.first + rg.billing.increment
        return div_ceil(rate[0] * billed, rate[1]) + billed + rg.setup_fee

    def _usage_refused(self, ccr: CCR, account_id: str, charged: int) -> CCA | None:
        """Usage the request reports that could take one rating group's charge past one
        operation (MAX_AMOUNT), the session's charge past MAX_SESSION_CHARGE, or the account's
        available balance below -MAX_BALANCE; decided on `_charge_bound`, before anything
        changes."""
        total = 0
        available: int | None = None  # the account's, looked up once, if usage is reported
        for mscc in ccr.multiple_services_credit_control or ():
            used = mscc.used_service_unit
            if used is None:
                continue
            rg = self.catalog.rating_group(ccr.service_context_id, mscc.rating_group)
            if rg is None:
                continue
            units = 0
            for usu in used:
                units += units_of(usu, rg.unit) or 0
            bound = self._charge_bound(rg, units)
            total += bound
            if available is None:
                view = self.ledger.account(account_id)
                available = view.available if view is not None else 0
            if bound > MAX_AMOUNT:
                reason = f"usage of rating group {rg.id} could cost more than {MAX_AMOUNT}"
            elif charged + total > MAX_SESSION_CHARGE:
                reason = f"the session's charge could exceed {MAX_SESSION_CHARGE}"
            elif available - total < -MAX_BALANCE:
                reason = f"the account's balance could fall below -{MAX_BALANCE}"
            else:
                continue
            return self._refuse(ccr, _usage_failed(mscc, "Used-Service-Unit", used), reason)
        return None

    def _event_refused(self, ccr: CCR) -> CCA | None:
        """An event whose price could exceed one operation (MAX_AMOUNT); decided on
        `_charge_bound`. Not a refund: what it credits is known exactly before anything
        changes (the debits it gives back, `_plan_refund`), and bounded there, with WIRE.md
        5.4's answer (`_refund_refused`)."""
        if ccr.requested_action is RequestedAction.REFUND_ACCOUNT:
            return None
        total = 0
        for mscc in ccr.multiple_services_credit_control or ():
            asked = mscc.requested_service_unit
            rg = self.catalog.rating_group(ccr.service_context_id, mscc.rating_group)
            if asked is None or rg is None:
                continue
            total += self._charge_bound(rg, units_of(asked, rg.unit) or 0)
            if total > MAX_AMOUNT:
                reason = f"the event could cost more than {MAX_AMOUNT}"
                failed = _usage_failed(mscc, "Requested-Service-Unit", asked)
                return self._refuse(ccr, failed, reason)
        return None

    # --- sessions (section 5.3) ----------------------------------------------------------------

    def _foreign_session_id(self, ccr: CCR) -> CCA:
        """An INITIAL or EVENT naming a Session-Id that is not this peer's to open (WIRE.md
        5.3): it does not begin with the peer's Origin-Host, or another peer holds it."""
        return self._cca(
            ccr,
            Outcome.FOREIGN_SESSION_ID,
            failed_avp={"Session-Id": ccr.session_id},
            error_message="Session-Id must begin with the peer's Origin-Host",
        )

    def _initial(
        self, now_ms: int, origin_host: str, ccr: CCR, owner: str | None
    ) -> tuple[CCA, Session | None]:
        sid = ccr.session_id
        existing = self._peek(sid)
        if existing is not None or sid in self._closed:
            if owner is not None and not self._owned(existing, sid, owner):
                return self._foreign_session_id(ccr), None
            repeat = self._repeat(existing, sid, ccr, owner)
            if repeat is not None:
                return repeat, None
            return (
                self._cca(
                    ccr,
                    Outcome.SESSION_EXISTS,
                    failed_avp={"CC-Request-Type": int(ccr.cc_request_type)},
                    error_message="INITIAL for an open session",
                ),
                None,
            )
        if owner is not None and self._peer_sessions.get(owner, 0) >= self.max_sessions_per_peer:
            return (
                self._cca(
                    ccr,
                    Outcome.SESSION_LIMIT,
                    error_message="the peer holds its limit of open sessions",
                ),
                None,
            )
        found = self._resolve(ccr)
        if found is None:
            return self._cca(ccr, Outcome.USER_UNKNOWN), None
        account_id, status, headroom = found
        policies = status_policies(self.catalog)
        mark = self._policy_mark(account_id, hot=True)
        if self.policy.in_force(policies):  # status-policy: deny only what the state denies
            state = self.policy.state(policies, account_id, status, headroom)
            # (a state no policy names denies nothing, but suspended and barred: no look-up)
            if state != LOW_BALANCE and (state in policies.named or state in (SUSPENDED, BARRED)):
                service = self.catalog.service(ccr.service_context_id)
                ids = service.rating_groups if service is not None else ()
                groups = tuple(self.catalog.rating_groups[g] for g in ids)
                if self.policy.denies_all(policies, state, ccr.service_context_id, groups):
                    return self._cca(ccr, Outcome.SERVICE_DENIED), None
        elif status is not AccountStatus.ACTIVE:
            return self._cca(ccr, Outcome.SERVICE_DENIED), None
        refused = self._usage_refused(ccr, account_id, 0)
        if refused is not None:
            return refused, None
        session = Session(
            session_id=sid,
            account_id=account_id,
            subscriber=_subscriber(ccr.subscription_id or ()),
            origin_host=origin_host,
            service_context_id=ccr.service_context_id,
            opened_ms=now_ms,
            last_ms=now_ms,
            number=ccr.cc_request_number,
            last_answer=b"",
            tcc_s=self.min_tcc_s,
            grants={},
            rated={},
            fee_charged=[],
            starved=[],
            containers=[],
            record_opened_ms=now_ms,
            service_information=ccr.service_information,
        )
        self._sessions[sid] = session
        if ccr.estimate is Estimate.ESTIMATE:
            self._estimates.add(sid)
        self._peer_sessions[origin_host] = self._peer_sessions.get(origin_host, 0) + 1
        self._link_account(account_id, sid)
        self._iot_request(session, ccr, now_ms, opening=True)
        msccs: list[MsccAnswer] = [
            self._mscc(session, m, now_ms, ccr) for m in ccr.multiple_services_credit_control or ()
        ]
        self._deadlines.add(self._deadline(session), sid)
        extra = self._session_aoc(ccr, session)
        if mark is not None:  # status-policy
            self._policy_push(account_id, mark, exclude=sid)
            msccs = self._policy_indication(account_id, msccs, extra)
        answer = self._cca(ccr, Outcome.OK, msccs, **extra)
        return answer, session

    def _owned(self, session: Session | None, sid: str, owner: str) -> bool:
        """Whether the open session, or else the session `sid` closed within the duplicate
        window, belongs to the peer `owner`. A session closed before a snapshot of a build
        that did not record owners belongs to the peer its Session-Id names."""
        if session is not None:
            return session.origin_host == owner
        tomb = self._closed.get(sid)
        if tomb is None:
            return False
        return tomb[3] == owner if tomb[3] else names_peer(sid, owner)

    def _repeat(self, session: Session | None, sid: str, ccr: CCR, owner: str | None) -> CCA | None:
        """The cached answer if (Session-Id, CC-Request-Number) is the last one processed, for
        the session's own peer only (`owner`; None: any, for inputs of a build before
        owners)."""
        if owner is not None and not self._owned(session, sid, owner):
            return None
        if session is not None:
            number, body = session.number, session.last_answer
        else:
            tomb = self._closed.get(sid)
            if tomb is None:
                return None
            _, number, body, _ = tomb
        if number != ccr.cc_request_number or not body:
            return None
        answer = decode_body(CommandCode.CREDIT_CONTROL, False, body)
        assert isinstance(answer, CCA)
        if answer.cc_request_type != ccr.cc_request_type:
            return None
        return answer

    def _update(self, now_ms: int, ccr: CCR, owner: str | None) -> tuple[CCA, Session | None]:
        sid = ccr.session_id
        session = self._session_of(sid, owner)
        if session is None:
            # not open, or another peer's: the same answer either way (WIRE.md 5.3)
            repeat = self._repeat(None, sid, ccr, owner)
            if repeat is not None:
                return repeat, None
            return self._cca(ccr, Outcome.UNKNOWN_SESSION), None
        if ccr.cc_request_number != session.number + 1:
            repeat = self._repeat(session, sid, ccr, owner)
            if repeat is not None:
                return repeat, None
            return (
                self._cca(
                    ccr,
                    Outcome.BAD_REQUEST_NUMBER,
                    failed_avp={"CC-Request-Number": ccr.cc_request_number},
                    error_message=f"expected CC-Request-Number {session.number + 1}",
                ),
                None,
            )
        refused = self._usage_refused(ccr, session.account_id, session.charge_total)
        if refused is not None:
            return refused, None
        deadline = self._deadline(session)
        mark = self._policy_mark(session.account_id, hot=True)  # status-policy
        session.number = ccr.cc_request_number
        session.last_ms = now_ms
        terminating = ccr.cc_request_type is CCRequestType.TERMINATION
        self._iot_request(session, ccr, now_ms)
        msccs: list[MsccAnswer] = [
            self._mscc(session, m, now_ms, ccr, terminating=terminating)
            for m in ccr.multiple_services_credit_control or ()
        ]
        if terminating:
            self._release_all(session, now_ms)
        elif self.iot.within(self.catalog, sid, session.account_id, now_ms):
            self._iot_aggregate(session, now_ms)  # IoT profile: one record per period
        elif not self._is_estimate(session):
            self._maybe_partial(session, now_ms)
        self._deadlines.move(deadline, self._deadline(session), sid)
        extra = self._session_aoc(ccr, session)
        if mark is not None:  # status-policy
            self._policy_push(session.account_id, mark, exclude=sid)
            msccs = self._policy_indication(session.account_id, msccs, extra)
        answer = self._cca(ccr, Outcome.OK, msccs, **extra)
        return answer, session

    def _mscc(
        self,
        session: Session,
        mscc: MsccRequest,
        now_ms: int,
        ccr: CCR,
        *,
        terminating: bool = False,
    ) -> MsccAnswer:
        rg_id = mscc.rating_group
        rg = self.catalog.rating_group(session.service_context_id, rg_id)
        if rg is None:
            return MsccAnswer(rating_group=rg_id, result_code=_RC_RATING_FAILED)
        rg = self._priced_rg(session.account_id, rg)  # offers: the account's price modifiers
        if mscc.used_service_unit is not None:
            self._charge_usage(session, rg, mscc, now_ms)
        else:
            self._release(session, rg_id, now_ms)  # nothing reported: give the quota back
        if rg.zero_rated:
            return MsccAnswer(rating_group=rg_id, result_code=_RC_NOT_APPLICABLE)
        if terminating or mscc.requested_service_unit is None:
            return MsccAnswer(rating_group=rg_id, result_code=_RC_OK)
        standing = self.ledger.standing(session.account_id)
        if standing is None:
            return MsccAnswer(rating_group=rg_id, result_code=_RC_SERVICE_DENIED)
        headroom = standing[1]
        payer = self.groups.payer(session.account_id)  # groups: a member's group pays
        if payer != session.account_id:
            group_headroom = self._group_headroom(session.account_id, payer)
            if group_headroom is None:
                return MsccAnswer(rating_group=rg_id, result_code=_RC_SERVICE_DENIED)
            headroom = group_headroom
        if self._is_estimate(session):
            # the headroom the session would see had it been real: less what it would have
            # charged and what its other grants would hold (the account as it is otherwise)
            headroom -= session.charge_total + sum(g.amount for g in session.grants.values())
        policies = status_policies(self.catalog)
        if self.policy.in_force(policies):  # status-policy (ocs/core/policy.py)
            requested = mscc.requested_service_unit
            return self._policy_grant(session, rg, requested, standing[0], headroom, now_ms)
        if standing[0] is not AccountStatus.ACTIVE:
            return MsccAnswer(rating_group=rg_id, result_code=_RC_SERVICE_DENIED)
        return self._grant(session, rg, mscc.requested_service_unit, headroom, now_ms)

    def _grant(
        self,
        session: Session,
        rg: RatingGroup,
        requested: ServiceUnit,
        headroom: int,
        now_ms: int,
        final_fui: FinalUnitIndication | None = None,
    ) -> MsccAnswer:
        """Reserve and answer quota (WIRE.md 5.3, 5.5): the amount asked, or the default
        quantum, cut to what the account can pay at the dearest tariff of the validity window.
        `final_fui`: the indication of a cut grant instead of the rating group's own
        (status-policy: a grant cut at the inhibit threshold)."""
        policy = rg.grant
        assert policy is not None  # only zero-rated groups have none
        rg_id = rg.id
        iot = self.iot.grant(self.catalog, session.session_id, session.account_id, rg_id, now_ms)
        if iot is not None:  # IoT profile (ocs/core/iot.py); None: the normal grant
            iot_answer = self._iot_grant(session, rg, iot, headroom, now_ms, final_fui is not None)
            if iot_answer is not None:
                return iot_answer
        now_s = now_ms // MS
        validity = max(policy.validity_time, 1)
        end_s = now_s + validity
        asked = units_of(requested, rg.unit)
        # a grant is at most MAX_UNITS (a unit AVP's domain) and reserves at most MAX_AMOUNT
        # (one ledger operation); only a cut by the account's headroom is final
        units = min(asked if asked else policy.quantum, MAX_UNITS)
        # offers: units the allowances pay first; only the rest is priced in money
        # (a group member's session draws on its group's offers: the package's allowances)
        owner = self.groups.payer(session.account_id)
        free = (
            min(units, self.offers.available(owner, rg_id, self.catalog))
            if self.offers.has_offers(owner)
            else 0
        )
        units -= free
        prior = session.rated.get(rg_id, 0)
        fee = rg.setup_fee if rg_id not in session.fee_charged and units else 0
        # load-modulated prices (ocs/core/load.py): the band this grant is decided in
        band = self._load_decision(rg, now_s, session)
        if band is not None:
            rg = self.load_pricing.priced(rg, band.factor, band.name)
        cost = price_dearest(rg, units, now_s, end_s, prior).total + fee
        final = False
        limit = min(headroom, MAX_AMOUNT)
        if cost > limit:
            budget = limit - fee
            fits = affordable(rg, budget, now_s, end_s, prior) if budget >= 0 else 0
            if fits is not None and fits < units:
                units = fits
                final = headroom <= MAX_AMOUNT
            if not units:
                fee = 0
            cost = price_dearest(rg, units, now_s, end_s, prior).total + fee if units else 0
        money_units = units
        units += free
        if units <= 0:
            if rg_id not in session.starved:
                session.starved.append(rg_id)
            return MsccAnswer(rating_group=rg_id, result_code=_RC_CREDIT_LIMIT_REACHED)
        # Tcc = 2 x the longest Validity-Time granted (WIRE.md 5.3); `min_tcc_s` only until
        # the first grant. A shorter Tcc needs its own supervision entry (the heap's keys must
        # never be later than the deadlines they stand for).
        session.tcc_s = (
            2 * validity if session.grants_made == 0 else max(session.tcc_s, 2 * validity)
        )  # (the request moves the session's supervision deadline at its end)
        # Numbered by the core (in its snapshot), so unique in the ledger whatever the
        # clients do with Session-Ids, and short: the session is the reservation's owner.
        session.grants_made += 1
        if self._is_estimate(session):  # reserves nothing: no ledger operation, no reservation id
            return self._granted(
                session, rg, units, cost, validity, final, fee, "", now_s, final_fui, band=band
            )
        expires_at_ms = (now_s + session.tcc_s + RESERVATION_SLACK_S) * MS
        reservation_id = ""  # offers: a grant the allowances pay whole reserves no money
        if money_units:
            self._reservation_seq += 1
            reservation_id = f"r{self._reservation_seq}"
            outcome = self.ledger.apply(
                Reserve(
                    id=reservation_id,
                    now_ms=now_ms,
                    account_id=self.groups.payer(session.account_id),  # groups: or its group
                    amount=cost,
                    expires_at_ms=expires_at_ms,
                    owner=session.session_id,
                ),
                internal=True,
            )
            if outcome.code is not Code.OK:
                if rg_id not in session.starved:
                    session.starved.append(rg_id)
                return MsccAnswer(rating_group=rg_id, result_code=_RC_CREDIT_LIMIT_REACHED)
        if free:  # offers: the units on the allowances, held as the money is reserved
            held = self.offers.hold(
                _hold_key(session.session_id, rg_id),
                owner,
                rg_id,
                free,
                expires_at_ms,
                self.catalog,
            )
            assert held == free
        return self._granted(
            session,
            rg,
            units,
            cost,
            validity,
            final,
            fee,
            reservation_id,
            now_s,
            final_fui,
            band=band,
        )

    def _granted(
        self,
        session: Session,
        rg: RatingGroup,
        units: int,
        cost: int,
        validity: int,
        final: bool,
        fee: int,
        reservation_id: str,
        now_s: int,
        final_fui: FinalUnitIndication | None = None,
        *,
        band: LoadDecision | None = None,
    ) -> MsccAnswer:
        """Record the grant (reserved as `reservation_id`, or \"\" for an estimate) and answer
        it."""
        rg_id = rg.id
        policy = rg.grant
        assert policy is not None
        end_s = now_s + validity
        change = next_tariff_change(rg, now_s, end_s)
        session.grants[rg_id] = Grant(
            reservation_id=reservation_id,
            amount=cost,
            units=units,
            granted_s=now_s,
            validity_s=validity,
            tariff_change_s=change,
            final=final,
            fee=fee,
        )
        if band is not None:  # load-modulated prices: the grant keeps its band
            factor = band.factor
            session.grants[rg_id].load = (band.name, factor.numerator, factor.denominator)
            if not self._is_estimate(session):  # a grant made (an estimate moves nothing)
                self.load_pricing.commit(band, now_s)
        if final:
            if rg_id not in session.starved:
                session.starved.append(rg_id)
        elif rg_id in session.starved:
            session.starved.remove(rg_id)
        unit = rg.unit
        threshold = (policy.threshold_units(units) if policy.threshold else 0) or None
        return MsccAnswer(
            rating_group=rg_id,
            result_code=_RC_OK,
            granted_service_unit=unit_map(unit, units),
            validity_time=validity,
            volume_quota_threshold=threshold if unit is Unit.OCTETS else None,
            time_quota_threshold=threshold if unit is Unit.SECONDS else None,
            unit_quota_threshold=threshold if unit is Unit.UNITS else None,
            quota_holding_time=policy.quota_holding_time or None,
            final_unit_indication=(final_fui or self._fui(rg)) if final else None,
            tariff_time_change=change,
            linked_rating_group=self._links(session, rg_id) or None,
            load_band=band.name if band is not None else None,
            load_factor=band.factor_text if band is not None else None,
        )

    def _links(self, session: Session, rg_id: int) -> tuple[int, ...]:
        """Rating groups linked to `rg_id` in either direction (WIRE.md 5.6), cached per
        catalog."""
        key = (session.service_context_id, rg_id)
        links = self._links_cache.get(key)
        if links is None:
            links = self._links_cache[key] = self._compute_links(session, rg_id)
        return links

    def _compute_links(self, session: Session, rg_id: int) -> tuple[int, ...]:
        catalog = self.catalog
        service = catalog.service(session.service_context_id)
        allowed = service.rating_groups if service is not None else ()
        own = catalog.rating_groups[rg_id].linked_rating_groups
        back = tuple(
            other.id
            for other in catalog.rating_groups.values()
            if rg_id in other.linked_rating_groups and other.id not in own
        )
        return tuple(r for r in (*own, *back) if r in allowed and r != rg_id)

    def _fui(self, rg: RatingGroup) -> FinalUnitIndication:
        policy = rg.grant
        assert policy is not None
        action = WireFinalUnitAction(int(policy.final_unit_action))
        redirect = None
        if policy.redirect_server is not None:
            redirect = RedirectServer(
                redirect_address_type=RedirectAddressType(int(policy.redirect_server.address_type)),
                redirect_server_address=policy.redirect_server.address,
            )
        return FinalUnitIndication(
            final_unit_action=action,
            redirect_server=redirect if action is WireFinalUnitAction.REDIRECT else None,
            filter_id=policy.filter_ids or None
            if action is WireFinalUnitAction.RESTRICT_ACCESS
            else None,
        )

    def _charge_usage(
        self, session: Session, rg: RatingGroup, mscc: MsccRequest, now_ms: int
    ) -> None:
        """Rate every USU at the time it was used, post the total against the grant's
        reservation (even beyond it), and record a container per USU."""
        rg_id = rg.id
        grant = session.grants.pop(rg_id, None)
        now_s = now_ms // MS
        start_s = grant.granted_s if grant is not None else session.last_ms // MS
        # load-modulated prices (ocs/core/load.py): the grant's band, else the band now
        band_name, factor, factor_text = self._usage_band(rg, grant, now_s)
        rated = self.load_pricing.priced(rg, factor, band_name) if band_name else rg
        total = 0
        used_total = 0
        # offers: usage is paid by the units held for the grant, then by the allowances that
        # apply (drawn at once), and only the rest in money (docs/charging.md, Allowances)
        estimate = self._is_estimate(session)
        # (an account without offers skips all of it: most accounts, on the hot path)
        owner = self.groups.payer(session.account_id)  # a member draws on its group's offers
        with_offers = self.offers.has_offers(owner)
        hold_key = _hold_key(session.session_id, rg_id) if with_offers else ""
        hold_left = self.offers.held(hold_key) if with_offers else 0
        from_hold: list[int] = []  # per USU, the units its container takes from the hold
        first_container = len(session.containers)
        for usu in mscc.used_service_unit or ():
            units = units_of(usu, rg.unit) or 0
            held = min(units, hold_left)
            hold_left -= held
            from_hold.append(held)
            drawn: list[tuple[str, str, int]] = []
            if not with_offers:
                money_units = units
            elif estimate:  # on paper: the allowances as they are, nothing drawn
                paper = min(
                    units - held,
                    self.offers.available(owner, rg_id, self.catalog),
                )
                money_units = units - held - paper
            else:
                drawn = self.offers.draw(owner, rg_id, units - held, self.catalog)
                money_units = units - held - sum(n for _, _, n in drawn)
            prior = session.rated.get(rg_id, 0)
            charge = self._rate(rated, usu, money_units, prior, grant, start_s, now_s)
            session.rated[rg_id] = prior + money_units
            fee = 0
            if money_units > 0 and rg.setup_fee and rg_id not in session.fee_charged:
                fee = rg.setup_fee
                session.fee_charged.append(rg_id)
            reason = (
                usu.reporting_reason if usu.reporting_reason is not None else mscc.reporting_reason
            )
            granted_left = (grant.units if grant is not None else 0) - used_total
            # (a zero-rated group is never granted: its usage is not "beyond" anything)
            beyond = 0 if rg.zero_rated else max(0, units - max(granted_left, 0))
            used_total += units
            session.containers.append(
                Container(
                    rating_group=rg_id,
                    time_s=now_s,
                    units=units,
                    unit=rg.unit.value,
                    uplink=usu.cc_input_octets,
                    downlink=usu.cc_output_octets,
                    triggers=(reason.name,) if reason is not None else (),
                    tariff_change_usage=int(usu.tariff_change_usage)
                    if usu.tariff_change_usage is not None
                    else None,
                    charge=charge + fee,
                    setup_fee=fee,
                    beyond_grant=beyond,
                    at_ms=now_ms,
                    drawn=tuple(drawn),
                    load=(band_name, factor_text) if band_name else None,
                )
            )
            total += charge + fee
        if with_offers and not estimate:  # offers: post the hold; containers name balances
            used = self.offers.settle(hold_key, sum(from_hold))
            _attribute(session.containers[first_container:], from_hold, used)
        if self._is_estimate(session):  # booked nowhere, recorded in no CDR: only its cost counts
            session.containers.clear()
            session.charge_total += total
            return
        paid_by = self._paid_by(session, grant)  # groups: the account the usage is charged to
        if grant is not None and grant.reservation_id:  # ("": offers paid the grant whole)
            posted = self.ledger.apply(
                Post(
                    id=f"{grant.reservation_id}|post",
                    now_ms=now_ms,
                    reservation_id=grant.reservation_id,
                    amount=total,
                ),
                internal=True,
            )
            if posted.code is Code.UNKNOWN_RESERVATION:
                if total:  # expired meanwhile
                    self._debit_anyway(session, total, now_ms, paid_by)
            elif posted.code is not Code.OK:
                # refused (the balance would leave +-MAX_TOTAL): the containers above hold a
                # charge the ledger did not book, so the whole input fails (the edge rolls it
                # back and answers 5012)
                raise BookingRefused(
                    f"post of {total} against {grant.reservation_id}: {posted.code.name}"
                )
        elif total:
            self._debit_anyway(session, total, now_ms, paid_by)
        if total:
            session.charge_total += total
            self._account_usage(session.account_id, total)
            self._loan_spent(paid_by, total)  # loans
        if paid_by != session.account_id:  # groups: a member's usage, per service and period
            self._group_usage(paid_by, session.account_id, rg_id, used_total, total, now_ms)
        self._count_usage(session.account_id, rg, used_total, total, now_ms)  # usage counters

    def _load_decision(
        self, rg: RatingGroup, now_s: int, session: Session | None = None
    ) -> LoadDecision | None:
        """The load band a grant of `rg` decided now (for `session`) is in (None: not
        load-priced, or zero-rated). The "sessions" measure counts the open sessions that are
        not estimates, and an estimate `session` itself (it is quoted as if it were real)."""
        if rg.zero_rated:
            return None
        sessions = len(self._sessions) - len(self._estimates)
        if session is not None and self._is_estimate(session):
            sessions += 1
        return self.load_pricing.decide(rg.id, sessions, now_s)

    def _usage_band(
        self, rg: RatingGroup, grant: Grant | None, now_s: int
    ) -> tuple[str, Fraction, str]:
        """The band, factor and factor text usage of `rg` is charged in: its grant's (at most
        the catalog's dearest, `LoadPricing.grant_factor`); without a grant, the band now;
        ("", 1, "") for a group not load-priced."""
        if grant is not None:
            if grant.load is None:
                return "", _ONE, ""
            name, num, den = grant.load
            factor, text = self.load_pricing.grant_factor(rg.id, num, den)
            return name, factor, text
        band = self._load_decision(rg, now_s)
        return ("", _ONE, "") if band is None else (band.name, band.factor, band.factor_text)

    def _rate(
        self,
        rg: RatingGroup,
        usu: UsedServiceUnit,
        units: int,
        prior: int,
        grant: Grant | None,
        start_s: int,
        now_s: int,
    ) -> int:
        """Rated at the time the units were used (WIRE.md 5.5): split by Tariff-Change-Usage
        around the grant's Tariff-Time-Change; UNIT_INDETERMINATE at the dearer side."""
        if units == 0:
            return 0
        tcu = usu.tariff_change_usage
        if tcu is not None:
            change = grant.tariff_change_s if grant is not None else None
            if change is None:
                change = next_tariff_change(rg, start_s, max(now_s, start_s + 1)) or now_s
            before = max(change - 1, start_s)
            if tcu is TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE:
                return price_at(rg, units, before, prior).total
            if tcu is TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE:
                return price_at(rg, units, change, prior).total
            return max(
                price_at(rg, units, before, prior).total, price_at(rg, units, change, prior).total
            )
        if now_s <= start_s:
            return price_at(rg, units, now_s, prior).total
        return price(rg, units, start_s, now_s, prior).total

    def _debit_anyway(
        self, session: Session, amount: int, now_ms: int, account_id: str | None = None
    ) -> None:
        """Usage with no reservation left to post against: charged in full all the same (or,
        if the ledger refuses, the whole input fails: see `BookingRefused`), to `account_id`
        (groups: the member's group) or the session's account."""
        outcome = self.ledger.apply(
            Debit(
                id=f"{session.session_id}|{session.opened_ms}|{session.number}|debit|"
                f"{len(session.containers)}",
                now_ms=now_ms,
                account_id=account_id or session.account_id,
                amount=amount,
                allow_overdraft=True,
            ),
            internal=True,
        )
        if outcome.code is not Code.OK:
            raise BookingRefused(f"debit of {amount} usage: {outcome.code.name}")

    def _release(self, session: Session, rg_id: int, now_ms: int) -> None:
        grant = session.grants.pop(rg_id, None)
        if grant is not None:
            self._void(grant.reservation_id, now_ms)
            if self.offers.holds:  # offers: held units go back
                self.offers.release(_hold_key(session.session_id, rg_id))

    def _void(self, reservation_id: str, now_ms: int) -> None:
        if not reservation_id:  # an estimate's grant: nothing was reserved
            return
        self.ledger.apply(
            Void(id=f"{reservation_id}|void", now_ms=now_ms, reservation_id=reservation_id),
            internal=True,
        )

    def _release_all(self, session: Session, now_ms: int) -> None:
        for rg_id in list(session.grants):
            self._release(session, rg_id, now_ms)

    def _account_usage(self, account_id: str, amount: int) -> None:
        """Account-wide usage thresholds (catalog): crossing one re-authorises the account's
        sessions (RAR)."""
        before = self.usage.get(account_id, 0)
        after = min(before + amount, MAX_BALANCE)  # saturates: thresholds are below it
        self.usage[account_id] = after
        thresholds = self.catalog.account.usage_thresholds
        crossed = [t for t in thresholds if before < t <= after]
        if crossed:  # the legacy counter "account" (docs/charging.md, *Usage counters*)
            self._counters_crossed(account_id, [legacy_counter(after, thresholds, crossed[-1])])

    # --- usage counters (ocs/core/counters.py; docs/charging.md *Usage counters*) --------------

    def _count_usage(
        self, account_id: str, rg: RatingGroup, units: int, charge: int, now_ms: int
    ) -> None:
        """Count usage of `rg` charged to the account (a session's report, a direct debit) in
        the catalog's usage counters; a threshold crossed re-authorises the account's
        sessions."""
        counters = self.catalog.counters
        if not counters:
            return
        crossed = self.counters.add(
            counters, self.catalog.timezone, account_id, rg, units, charge, now_ms
        )
        if crossed:
            self._counters_crossed(account_id, crossed)

    def _counters_crossed(self, account_id: str, crossed: list[UsageCounter]) -> None:
        """RAR to every open session of the account naming the counters crossed
        (`ocs.core.counters.notify`)."""
        sessions = [self._peek(sid) for sid in self._account_sessions(account_id)]
        notify(self._actions, [s for s in sessions if s is not None], crossed)

    def _is_estimate(self, session: Session) -> bool:
        return session.session_id in self._estimates

    def _close(self, session: Session, now_ms: int, cause: str) -> None:
        if session.session_id in self._estimates:
            self._estimates.discard(session.session_id)
        else:
            self._write_session_cdr(session, now_ms, cause)
        self.iot.close(session.session_id)
        sid = session.session_id
        del self._sessions[sid]
        host = session.origin_host
        left = self._peer_sessions.get(host, 0) - 1
        if left > 0:
            self._peer_sessions[host] = left
        else:
            self._peer_sessions.pop(host, None)
        self._unlink_account(session.account_id, sid)
        self._deadlines.discard(self._deadline(session), sid)  # unless `tick` took it already
        if sid not in self._closed:
            self._closed_order.append(sid)
            self._remember_tombstone(host, sid)
        self._closed[sid] = (now_ms, session.number, session.last_answer, host)

    def _remember_tombstone(self, owner: str, sid: str) -> None:
        """`sid` is `owner`'s newest tombstone; beyond `max_tombstones_per_peer` its oldest is
        forgotten (a late repeat of it is then answered as for a session not held: 5002)."""
        mine = self._peer_tombstones.get(owner)
        if mine is None:
            mine = self._peer_tombstones[owner] = deque()
        mine.append(sid)
        if len(mine) > self.max_tombstones_per_peer:
            oldest = mine.popleft()
            tomb = self._closed.get(oldest)
            if tomb is not None and tomb[3] == owner:
                del self._closed[oldest]  # its entry in `_closed_order` goes at expiry
        self._closed_now.append(sid)

    def _maybe_partial(self, session: Session, now_ms: int) -> None:
        """Partial records on the catalog's triggers: a linked-usage report, a tariff change,
        the volume or time limit of a record."""
        containers = session.containers
        if not containers:
            return
        fresh = [c for c in containers if c.at_ms == now_ms]
        linked = any("LINKED_USAGE" in c.triggers for c in fresh)
        tariff = any(c.tariff_change_usage is not None for c in fresh)
        policy = self.catalog.cdr
        volume = sum(c.units for c in containers if c.unit == _OCTETS)
        too_big = policy.volume_limit is not None and volume >= policy.volume_limit
        too_old = (
            policy.time_limit is not None
            and (now_ms - session.record_opened_ms) // MS >= policy.time_limit
        )
        too_many = len(containers) >= MAX_CONTAINERS  # bounds a record and a session's state
        if linked or tariff or too_big or too_old or too_many:
            self._write_session_cdr(session, now_ms, "partialRecord")

    # --- events (section 5.4) ------------------------------------------------------------------

    def _event(self, now_ms: int, origin_host: str, end_to_end: int, ccr: CCR) -> CCA:
        action = ccr.requested_action
        refund = action is RequestedAction.REFUND_ACCOUNT
        at_s = ccr.event_timestamp if ccr.event_timestamp is not None else now_ms // MS
        # PRICE_ENQUIRY quotes the service as a call (session) would be charged for it: the
        # setup fee once per group with non-zero units, as `_charge_usage` charges it; a debit
        # never pays it (catalog.md: `setup_fee` is charged by the session layer only)
        enquiry = action is RequestedAction.PRICE_ENQUIRY
        fee_charged: set[int] = set()
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]] = []
        # load-modulated prices (ocs/core/load.py): each MSCC's band (None: not load-priced)
        bands: list[LoadDecision | None] = []
        for mscc in ccr.multiple_services_credit_control or ():
            rg = self.catalog.rating_group(ccr.service_context_id, mscc.rating_group)
            units = 0
            charge = 0
            band = None
            if rg is not None and not refund:
                band = self._load_decision(rg, now_ms // MS)
            bands.append(band)
            if rg is not None and mscc.requested_service_unit is not None:
                units = units_of(mscc.requested_service_unit, rg.unit) or 0
                banded = (
                    rg if band is None else self.load_pricing.priced(rg, band.factor, band.name)
                )
                # a refund is priced by the debits it gives back (`_plan_refund`)
                charge = price_event(banded, units, at_s).total if units and not refund else 0
                if enquiry and units and rg.setup_fee and rg.id not in fee_charged:
                    fee_charged.add(rg.id)
                    charge += rg.setup_fee
            priced.append((mscc, rg, units, charge))
        total = sum(charge for _, _, _, charge in priced)
        if enquiry:
            return self._cca(
                ccr,
                Outcome.OK,
                self._event_msccs(priced, bands),
                cost_information=self._cost(total),
            )
        found = self._resolve(ccr)
        if found is None:
            return self._cca(ccr, Outcome.USER_UNKNOWN)
        account_id, status, headroom = found
        # offers: units the allowances pay, per MSCC; only the rest is priced in money
        free: list[int] = [0] * len(priced)
        if not refund and self.offers.has_offers(account_id):
            priced, free = self._event_allowances(account_id, priced, at_s, bands)
            total = sum(charge for _, _, _, charge in priced)
        if action is RequestedAction.CHECK_BALANCE:
            enough = total <= headroom
            return self._cca(
                ccr,
                Outcome.OK,
                self._event_msccs(priced, bands),
                check_balance_result=CheckBalanceResult.ENOUGH_CREDIT
                if enough
                else CheckBalanceResult.NO_CREDIT,
            )
        if status is not AccountStatus.ACTIVE and action is RequestedAction.DIRECT_DEBITING:
            return self._cca(ccr, Outcome.SERVICE_DENIED)
        mark = self._policy_mark(account_id, hot=True)  # status-policy
        if action is RequestedAction.DIRECT_DEBITING and self._policy_denies_event(
            ccr, account_id, status, headroom, priced
        ):
            return self._cca(ccr, Outcome.SERVICE_DENIED)
        op = f"event|{origin_host}|{end_to_end}|{ccr.session_id}|{now_ms}"
        estimate = ccr.estimate is Estimate.ESTIMATE
        if not refund:  # DIRECT_DEBITING
            if total > headroom:
                return self._cca(ccr, Outcome.CREDIT_LIMIT_REACHED)
            if estimate:  # what it would have cost: nothing debited, recorded or written
                return self._cca(
                    ccr,
                    Outcome.OK,
                    self._event_msccs(priced, bands),
                    cost_information=self._cost(total),
                )
            if total:
                outcome = self.ledger.apply(
                    Debit(id=op, now_ms=now_ms, account_id=account_id, amount=total),
                    internal=True,
                )
                if outcome.code is not Code.OK:
                    return self._cca(ccr, Outcome.CREDIT_LIMIT_REACHED)
                self._account_usage(account_id, total)
                self._loan_spent(account_id, total)  # loans
            drawn: list[list[HoldPart]] = []
            for (_, rg, units, charge), units_free in zip(priced, free, strict=True):
                parts: list[HoldPart] = []
                if rg is not None and units_free:  # offers: drawn now, refundable as units
                    parts = self.offers.draw_parts(account_id, rg.id, units_free, self.catalog)
                    assert sum(p.units for p in parts) == units_free
                drawn.append(parts)
                if rg is not None and not rg.zero_rated and units - units_free:
                    self._record_debit(account_id, rg.id, units - units_free, charge, now_ms)
                if parts:
                    assert rg is not None
                    self._record_debit(account_id, rg.id, units_free, 0, now_ms, parts)
            event_drawn = [[(p.offer, p.allowance, p.units) for p in ps] for ps in drawn]
            for band in bands:  # load-modulated prices: a debit is a grant made
                if band is not None:
                    self.load_pricing.commit(band, now_ms // MS)
            for _, rg, units, charge in priced:  # usage counters
                if rg is not None:
                    self._count_usage(account_id, rg, units, charge, now_ms)
            sign = 1
        else:  # REFUND_ACCOUNT
            plan = self._plan_refund(account_id, priced, now_ms)
            if isinstance(plan, int):
                return self._refund_refused(ccr, priced[plan][0])
            credits, draws = plan
            total = sum(credits)
            if total:
                view = self.ledger.account(account_id)
                if view is None or view.balance + total > MAX_BALANCE:
                    # the account's balance bound, decided before anything changes
                    first = next(i for i, credit in enumerate(credits) if credit)
                    reason = f"the refund would take the balance past {MAX_BALANCE}"
                    return self._refund_refused(ccr, priced[first][0], reason)
            priced = [
                (mscc, rg, units, credit)
                for (mscc, rg, units, _), credit in zip(priced, credits, strict=True)
            ]
            if estimate:  # what it would have given back: nothing credited or drawn
                return self._cca(
                    ccr, Outcome.OK, self._event_msccs(priced), cost_information=self._cost(total)
                )
            if total:
                outcome = self.ledger.apply(
                    Credit(id=op, now_ms=now_ms, account_id=account_id, amount=total),
                    internal=True,
                )
                if outcome.code is not Code.OK:  # cannot happen: checked above
                    raise BookingRefused(f"credit of {total} refund: {outcome.code.name}")
            event_drawn = self._draw(draws, priced)
            sign = -1
        self._write_event_cdr(
            ccr, origin_host, account_id, priced, sign, now_ms, at_s, event_drawn, bands
        )
        extra = self._aoc(ccr, total, account_id)
        if mark is not None:  # status-policy
            self._policy_push(account_id, mark)
        return self._cca(ccr, Outcome.OK, self._event_msccs(priced, bands), **extra)

    def _event_allowances(
        self,
        account_id: str,
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
        at_s: int,
        bands: list[LoadDecision | None] | None = None,
    ) -> tuple[list[tuple[MsccRequest, RatingGroup | None, int, int]], list[int]]:
        """An event priced with the account's allowances (offers): per MSCC, the units they
        pay, in MSCC order, each taking what the earlier ones left whatever balances they
        share (so drawing them in that order later gets them all), and the money price of the
        rest. Changes nothing."""
        out: list[tuple[MsccRequest, RatingGroup | None, int, int]] = []
        free: list[int] = []
        planned = 0
        for n, (mscc, rg, units, charge) in enumerate(priced):
            if rg is None or rg.zero_rated or not units:
                out.append((mscc, rg, units, charge))
                free.append(0)
                continue
            have = self.offers.available(account_id, rg.id, self.catalog) - planned
            paid = min(units, max(have, 0))
            planned += paid
            rest = units - paid
            priced_rg = self._priced_rg(account_id, rg)  # the account's price modifiers
            band = bands[n] if bands else None  # load-modulated prices: and the band's factor
            if band is not None:
                priced_rg = self.load_pricing.priced(priced_rg, band.factor, band.name)
            out.append((mscc, rg, units, price_event(priced_rg, rest, at_s).total if rest else 0))
            free.append(paid)
        return out, free

    def _event_msccs(
        self,
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
        bands: list[LoadDecision | None] | None = None,
    ) -> list[MsccAnswer]:
        out = []
        for n, (mscc, rg, units, _) in enumerate(priced):
            band = bands[n] if bands else None  # load-modulated prices
            if rg is None:
                out.append(
                    MsccAnswer(
                        rating_group=mscc.rating_group,
                        result_code=_RC_RATING_FAILED,
                    )
                )
            elif rg.zero_rated:
                out.append(MsccAnswer(rating_group=rg.id, result_code=_RC_NOT_APPLICABLE))
            else:
                out.append(
                    MsccAnswer(
                        rating_group=rg.id,
                        result_code=_RC_OK,
                        granted_service_unit=unit_map(rg.unit, units),
                        load_band=band.name if band is not None else None,
                        load_factor=band.factor_text if band is not None else None,
                    )
                )
        return out

    # --- refunds (section 5.4) -----------------------------------------------------------------

    # A refund gives back only what was taken. Every DIRECT_DEBITING leaves, per rating group it
    # charged, a `RefundableDebit` (its time, units and charge) under (account, rating group).
    # A refund of N units of a group draws N units from those entries that are still within the
    # refund window, newest first, and credits what they cost: an entry given back whole returns
    # its remaining charge; k of its u remaining units return floor(charge x k / u) (rounded down,
    # so the entry keeps the remainder and its last unit returns it: an entry never gives back
    # more than it took, and a debit refunded in any number of parts returns exactly its
    # charge). N above the units left in the window: 5004, nothing credited. The window is
    # measured between the inputs' times (the server's clock when each arrived), not
    # `Event-Timestamp`, which the client sets. docs/charging.md has worked numbers.

    def _apply_settings(self, settings: Settings) -> None:
        self.refund_window_s = settings.refund_window_s
        self.history.set_limit(settings.history_limit)
        self._reschedule_refunds()

    def _refund_expiry_s(self, entry: RefundableDebit) -> int:
        """The first second at whose start `entry` is outside the window (now - at > window)."""
        return (entry.at_ms + self.refund_window_s * MS) // MS + 1

    def _reschedule_refunds(self) -> None:
        due: DueSet[tuple[str, int]] = DueSet()
        for key, entries in self._refundable.items():
            due.add(self._refund_expiry_s(entries[0]), key)
        self._refund_due = due

    @property
    def refundable_debits(self) -> int:
        """How many debit entries refunds may still draw on (memory, docs/operations.md)."""
        return sum(len(entries) for entries in self._refundable.values())

    def _prune_refundable(self, key: tuple[str, int], now_ms: int) -> None:
        """Drop the entries of `key` that left the window, oldest first."""
        entries = self._refundable[key]
        horizon = now_ms - self.refund_window_s * MS
        before = self._refund_expiry_s(entries[0])
        drop = 0
        while drop < len(entries) and entries[drop].at_ms < horizon:
            drop += 1
        if not drop:
            return
        del entries[:drop]
        if entries:
            self._refund_due.move(before, self._refund_expiry_s(entries[0]), key)
        else:
            del self._refundable[key]
            self._refund_due.discard(before, key)

    def _expire_refundable(self, now_ms: int) -> None:
        """Forget the debits that left the refund window (at every request and tick)."""
        for key in self._refund_due.pop_due(now_ms // MS):
            entries = self._refundable[key]
            # put it back where `_prune_refundable` expects it, then prune
            self._refund_due.add(self._refund_expiry_s(entries[0]), key)
            self._prune_refundable(key, now_ms)

    def _record_debit(
        self,
        account_id: str,
        rg_id: int,
        units: int,
        charge: int,
        now_ms: int,
        drawn: list[HoldPart] | None = None,
    ) -> None:
        """Remember what a DIRECT_DEBITING took, for refunds. Beyond `MAX_REFUNDABLE_PER_GROUP`
        entries for the pair, the two oldest become one (their units and charges summed, the
        older time): a refund then prices them at their mean, and they leave the window
        together, early. Money is never created."""
        key = (account_id, rg_id)
        entry = RefundableDebit(at_ms=now_ms, units=units, charge=charge, drawn=drawn or [])
        if key in self._refundable:
            self._prune_refundable(key, now_ms)
        entries = self._refundable.get(key)
        if entries is None:
            self._refundable[key] = [entry]
            self._refund_due.add(self._refund_expiry_s(entry), key)
            return
        entries.append(entry)
        if len(entries) > MAX_REFUNDABLE_PER_GROUP:
            first, second = entries[0], entries[1]
            before = self._refund_expiry_s(first)
            merged = RefundableDebit(
                at_ms=min(first.at_ms, second.at_ms),
                units=first.units + second.units,
                charge=first.charge + second.charge,
                drawn=[*first.drawn, *second.drawn],
            )
            entries[0:2] = [merged]
            self._refund_due.move(before, self._refund_expiry_s(merged), key)

    def _plan_refund(
        self,
        account_id: str,
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
        now_ms: int,
    ) -> tuple[list[int], dict[tuple[str, int], dict[int, tuple[int, int]]]] | int:
        """What a refund credits per MSCC, and the (units, charge) each entry it draws on keeps
        (by index, per pair); changes nothing. An int instead: the index of the first MSCC
        that asks for more than is refundable (or takes the refund past the ledger's largest
        single amount)."""
        horizon = now_ms - self.refund_window_s * MS
        # per pair: [index, units left, charge left] of the entries in the window, oldest first
        stacks: dict[tuple[str, int], list[list[int]]] = {}
        left: dict[tuple[str, int], dict[int, tuple[int, int]]] = {}
        credits: list[int] = []
        total = 0
        for n, (_, rg, units, _) in enumerate(priced):
            if rg is None or rg.zero_rated or not units:
                credits.append(0)
                continue
            key = (account_id, rg.id)
            stack = stacks.get(key)
            if stack is None:
                stack = stacks[key] = [
                    [i, e.units, e.charge]
                    for i, e in enumerate(self._refundable.get(key, ()))
                    if e.at_ms >= horizon
                ]
                left[key] = {}
            need = units
            credit = 0
            while need:
                if not stack:
                    return n
                top = stack[-1]  # the newest
                index, have, charge = top[0], top[1], top[2]
                take = min(need, have)
                # ROUND_DOWN: a part of an entry returns at most its share; the rest of it
                # (take == have) returns exactly what is left, so the parts sum to its charge
                money = charge * take // have
                top[1] = have - take
                top[2] = charge - money
                left[key][index] = (top[1], top[2])
                if not top[1]:
                    stack.pop()
                need -= take
                credit += money
            total += credit
            if total > MAX_AMOUNT:
                return n
            credits.append(credit)
        return credits, left

    def _draw(
        self,
        left: dict[tuple[str, int], dict[int, tuple[int, int]]],
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
    ) -> list[list[tuple[str, str, int]]]:
        """Apply a refund's plan: the entries it drew on keep what `_plan_refund` left them.
        Units an allowance paid go back to it (offers): per MSCC, the (offer, allowance,
        units) given back."""
        index_of = {rg.id: n for n, (_, rg, _, _) in enumerate(priced) if rg is not None}
        returned: list[list[tuple[str, str, int]]] = [[] for _ in priced]
        for key, changes in left.items():
            if not changes:
                continue
            entries = self._refundable[key]
            before = self._refund_expiry_s(entries[0])
            for index, (units, charge) in changes.items():
                entry = entries[index]
                if entry.drawn:  # offers: the units it takes back from the debit, LIFO
                    back = self.offers.give_back(key[0], entry.drawn, entry.units - units)
                    returned[index_of[key[1]]].extend(back)
                entry.units = units
                entry.charge = charge
            entries[:] = [e for e in entries if e.units]
            if entries:
                self._refund_due.move(before, self._refund_expiry_s(entries[0]), key)
            else:
                del self._refundable[key]
                self._refund_due.discard(before, key)
        return returned

    def _refund_refused(self, ccr: CCR, mscc: MsccRequest, reason: str = "") -> CCA:
        """5004: the refund asks for more than DIRECT_DEBITING charged within the window and
        was not refunded (WIRE.md 5.4), or credits more than one operation (MAX_AMOUNT) or
        what would take the balance past MAX_BALANCE; nothing is credited. Failed-AVP is
        WIRE.md 5.4's `{"Requested-Service-Unit": value}` in every case."""
        unit = mscc.requested_service_unit
        return self._cca(
            ccr,
            Outcome.INVALID,
            failed_avp={
                "Requested-Service-Unit": msgspec.to_builtins(unit) if unit is not None else None
            },
            error_message=reason
            or f"refund of rating group {mscc.rating_group} exceeds what was debited and not "
            f"refunded within the refund window, or {MAX_AMOUNT}",
        )

    # --- administration (section 8) ------------------------------------------------------------

    def _admin(
        self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR, identity_rules: bool
    ) -> AdminResult:
        """Apply an administrative request: its outcome, the `Failed-AVP` of a refusal (each
        cause names the key at fault: docs/protocol.md, *Administrative refusals*) and a
        detail for its `Error-Message`."""
        op = amr.account_operation
        account_id = amr.account_id
        unknown: AdminResult = (Outcome.UNKNOWN_ACCOUNT, {"Account-Id": account_id}, "")
        if op is AccountOperation.GET:
            return _ADMIN_OK if self.ledger.account(account_id) else unknown
        if op is AccountOperation.CREATE:
            # Refused here, not by the ledger, which would remember the refusal under the
            # operation id (and, with an id per account, answer a second CREATE with the first
            # one's success).
            if self.ledger.standing(account_id) is not None:
                return Outcome.ACCOUNT_EXISTS, {"Account-Id": account_id}, ""
            currency = self.catalog.currency.code
            if identity_rules and amr.currency_code is not None and amr.currency_code != currency:
                detail = f"{amr.currency_code}, the catalog's is {currency}"
                return Outcome.FOREIGN_CURRENCY, {"Currency-Code": amr.currency_code}, detail
            subs, refused = _normalised_identities(amr, identity_rules)
            if refused is not None:
                return refused
            for sub in subs:
                owner = self.ledger.standing_for(sub.type, sub.data)
                if owner is not None:
                    taken = {"Subscription-Id-Type": sub.type, "Subscription-Id-Data": sub.data}
                    held = f"{sub.type}:{sub.data} is held by account {owner[0]}"
                    return Outcome.IDENTITY_TAKEN, {"Subscription-Id": [taken]}, held
            # Checked as the ledger would, then applied as an internal command: a CREATE is
            # applied once by its Account-Id (above), so its id is not remembered among the
            # operators' Operation-Ids, whose bounded memory an import would flush (care).
            create = CreateAccount(
                id=f"create|{account_id}|{origin_host}|{end_to_end}|{now_ms}",
                now_ms=now_ms,
                account_id=account_id,
                currency=currency,
                subscriptions=subs,
                credit_limit=amr.credit_limit or 0,
                balance=amr.amount or 0,
            )
            problem = command_problem(create)
            outcome = (
                self.ledger.apply(create, internal=True)
                if problem is None
                else LedgerOutcome(code=Code.INVALID, detail=problem)
            )
            if outcome.ok:
                self.loans.created(account_id, now_ms)  # loans: the account's age
                if amr.amount:  # history: the opening balance
                    self.history.record(
                        account_id, now_ms, MovementKind.OPENING, amr.amount,
                        operation_id=amr.operation_id,
                    )  # fmt: skip
                return _ADMIN_OK
            # a static refusal (Code.INVALID) leaves the ledger untouched, as would any other
            # (not expected: the checks above come first)
            return Outcome.INVALID, _create_failed_avp(amr, outcome.detail), outcome.detail
        if op in (AccountOperation.UPDATE, AccountOperation.CLOSE):
            return self._lifecycle(now_ms, origin_host, end_to_end, amr)
        if op in (AccountOperation.GROUP_JOIN, AccountOperation.GROUP_LEAVE):  # groups
            return self._group_membership(now_ms, amr)
        if self.ledger.standing(account_id) is None:
            return unknown
        if op in (AccountOperation.SUBSCRIBE, AccountOperation.UNSUBSCRIBE):  # offers
            return self._offer_operation(now_ms, origin_host, end_to_end, amr)
        if op is AccountOperation.TERMINATE_SESSION:
            return self._terminate_session(now_ms, account_id, amr.session_id)
        if op is AccountOperation.LOAN:  # loans (ocs/core/loans.py)
            return self._loan(now_ms, origin_host, end_to_end, amr)
        if op in (AccountOperation.CREDIT, AccountOperation.DEBIT):
            amount = amr.amount
            if amount is None:
                return Outcome.MISSING_AVP, {"Amount": None}, "Amount"
            failed_amount = {"Amount": amount}
            if amount <= 0:
                return Outcome.INVALID, failed_amount, "the Amount must be positive"
            op_id = (
                f"op|{amr.operation_id}"
                if amr.operation_id is not None
                else f"amr|{origin_host}|{end_to_end}|{now_ms}"
            )
            if amr.operation_id is not None:
                # An Operation-Id names one operation: its retry gets the first outcome, but
                # the same id on another operation (kind, account or amount) is refused, not
                # answered with the outcome of something else.
                what = f"{op.name}|{account_id}|{amount}"
                named = self._operations.get(amr.operation_id)
                if named is not None and named != what and self.ledger.recall(op_id):
                    return Outcome.OPERATION_ID_REUSED, {"Operation-Id": amr.operation_id}, ""
                self._name_operation(amr.operation_id, what, op_id)
            applied_before = self.ledger.recall(op_id) is not None  # history: a retry
            mark = self._policy_mark(account_id, hot=True)  # status-policy
            if op is AccountOperation.CREDIT:
                retry = self.ledger.recall(op_id) is not None  # loans: repaid the first time only
                outcome = self.ledger.credit(
                    op_id, now_ms=now_ms, account_id=account_id, amount=amount
                )
                if outcome.ok and not retry:
                    self._loan_topup(now_ms, origin_host, account_id, amount, op_id)  # loans
                if outcome.ok:
                    self._offers_credited(now_ms, account_id)  # offers: suspended ones retried
                    self._topped_up(account_id)
            else:
                # loans: money pays a DEBIT, never the loan balance (a retry: the first outcome)
                if self.ledger.recall(op_id) is None and self._loan_debit_refused(
                    account_id, amount
                ):
                    return Outcome.INSUFFICIENT_FUNDS, failed_amount, "the loan pays charges only"
                outcome = self.ledger.debit(
                    op_id, now_ms=now_ms, account_id=account_id, amount=amount
                )
            self._policy_push(account_id, mark)  # status-policy: a threshold crossed
            if outcome.ok:
                if not applied_before:  # history: the credit or debit
                    credit = op is AccountOperation.CREDIT
                    self.history.record(
                        account_id, now_ms,
                        MovementKind.CREDIT if credit else MovementKind.DEBIT,
                        amount if credit else -amount,
                        operation_id=amr.operation_id,
                    )  # fmt: skip
                return _ADMIN_OK
            if outcome.code is Code.INSUFFICIENT_FUNDS:
                return Outcome.INSUFFICIENT_FUNDS, failed_amount, ""
            if outcome.code is Code.LIMIT_EXCEEDED:
                return Outcome.BALANCE_BOUND, failed_amount, ""
            return Outcome.INVALID, failed_amount, outcome.detail
        # SET_STATUS (status-policy: or an operator-defined Account-State, or thresholds)
        if amr.account_status is None and not _policy_keys(amr):
            return Outcome.MISSING_AVP, {"Account-Status": None}, "Account-Status"
        refused = self._policy_refused(amr)
        if refused is not None:
            return refused
        self._set_status(
            f"status|{origin_host}|{end_to_end}|{now_ms}",
            now_ms,
            account_id,
            amr.account_status,
            amr,
        )
        return _ADMIN_OK

    def _set_status(
        self,
        op_id: str,
        now_ms: int,
        account_id: str,
        status: int | None,
        amr: AMR,
        mark: Mark | None = None,
    ) -> None:
        """Set an account's status (None: unchanged) and what else of the account's state the
        AMR carries (status-policy: `Account-State`, thresholds); the account's sessions are
        told its new state (`_policy_push`): ASR where it denies them everything (a status
        other than ACTIVE, by default), else RAR if the state changed. `mark`: the state before
        the operation, if it changed something already (UPDATE's credit limit)."""
        if mark is None:
            mark = self._policy_mark(account_id)
        if status is not None:
            self.ledger.set_status(
                op_id, now_ms=now_ms, account_id=account_id, status=AccountStatus(int(status))
            )
        if _policy_keys(amr):
            self.policy.apply(
                account_id, amr.account_state, amr.inhibit_threshold, amr.notify_threshold
            )
        self._policy_push(account_id, mark, forced=True)

    def _lifecycle(self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR) -> AdminResult:
        """UPDATE and CLOSE (docs/protocol.md, *Extension: account lifecycle*): each applied
        once under its Operation-Id (a retry answers the first outcome), atomic (a refusal
        changes nothing)."""
        op = amr.account_operation
        account_id = amr.account_id
        op_id = (
            f"op|{amr.operation_id}"
            if amr.operation_id is not None
            else f"amr|{origin_host}|{end_to_end}|{now_ms}"
        )
        if op is AccountOperation.UPDATE:
            subs = None if amr.subscription_id is None else _normalised_identities(amr)
            what = f"{op.name}|{account_id}|{amr.account_status}|{amr.credit_limit}|{subs}"
            if _policy_keys(amr):  # status-policy
                what += f"|{amr.account_state}|{amr.inhibit_threshold}|{amr.notify_threshold}"
        else:
            subs = None
            what = f"{op.name}|{account_id}"
        if amr.operation_id is not None:
            named = self._operations.get(amr.operation_id)
            prior = self.ledger.recall(op_id)
            if named is not None and prior is not None:
                if named != what:
                    return Outcome.OPERATION_ID_REUSED, {"Operation-Id": amr.operation_id}, ""
                if prior.ok:  # a retry of an operation applied: its first outcome
                    return _ADMIN_OK
        if self.ledger.standing(account_id) is None:
            return Outcome.UNKNOWN_ACCOUNT, {"Account-Id": account_id}, ""
        if op is AccountOperation.CLOSE:
            if self._account_sessions(account_id):
                return Outcome.ACCOUNT_IN_USE, {"Account-Id": account_id}, ""
            if self.groups.in_group(account_id):  # groups: a member leaves first
                return Outcome.GROUP_IN_USE, {"Account-Id": account_id}, ""
            view = self.ledger.account(account_id)
            assert view is not None
            if view.balance != 0:
                return Outcome.NOT_SETTLED, {"Account-Id": account_id}, str(view.balance)
            if self.loans.owed(account_id):  # loans
                return Outcome.LOAN_OUTSTANDING, {"Account-Id": account_id}, ""
            if amr.operation_id is not None:
                self._name_operation(amr.operation_id, what, op_id)
            outcome = self.ledger.close_account(op_id, now_ms=now_ms, account_id=account_id)
            if not outcome.ok:  # reserved without a session (not expected): not settled
                return Outcome.NOT_SETTLED, {"Account-Id": account_id}, str(view.balance)
            self.history.forget(account_id)  # history: dropped with the account
            self.offers.forget_account(account_id)  # offers: a closed account holds none
            self.loans.closed(account_id)  # loans
            self.policy.forget(account_id)  # status-policy
            self.counters.forget(account_id)  # usage counters go with the account
            return _ADMIN_OK
        if (
            amr.account_status is None
            and amr.credit_limit is None
            and subs is None
            and not _policy_keys(amr)
        ):
            return Outcome.MISSING_AVP, {"Account-Status": None}, "Account-Status"
        refused_state = self._policy_refused(amr)  # status-policy
        if refused_state is not None:
            return refused_state
        identities: tuple[SubscriberIdentity, ...] | None = None
        if subs is not None:
            identities, refused = subs
            if refused is not None:
                return refused
        # Refused here, not by the ledger, which would remember the refusal under the id.
        for sub in identities or ():
            owner = self.ledger.standing_for(sub.type, sub.data)
            if owner is not None and owner[0] != account_id:
                taken = {"Subscription-Id-Type": sub.type, "Subscription-Id-Data": sub.data}
                held = f"{sub.type}:{sub.data} is held by account {owner[0]}"
                return Outcome.IDENTITY_TAKEN, {"Subscription-Id": [taken]}, held
        if amr.operation_id is not None:
            self._name_operation(amr.operation_id, what, op_id)
        mark = self._policy_mark(account_id, hot=True)  # status-policy: a new credit limit
        outcome = self.ledger.update_account(
            op_id,
            now_ms=now_ms,
            account_id=account_id,
            credit_limit=amr.credit_limit,
            subscriptions=identities,
        )
        if not outcome.ok:  # a static refusal (duplicate identities) leaves the ledger as it was
            return (
                Outcome.INVALID,
                {"Subscription-Id": msgspec.to_builtins(amr.subscription_id)},
                outcome.detail,
            )
        if amr.account_status is not None or _policy_keys(amr):
            self._set_status(f"{op_id}|status", now_ms, account_id, amr.account_status, amr, mark)
        else:
            self._policy_push(account_id, mark)
        return _ADMIN_OK

    def _list(self, now_ms: int, origin_host: str, end_to_end: int, start: str) -> Result:
        """LIST (docs/protocol.md): the Account-Ids from `start` on (inclusive), in code point
        order, at most `LIST_PAGE` of them."""
        page = self.ledger.first_account_ids(start, LIST_PAGE)
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            Outcome.OK,
            listed_account_id=tuple(page),
        )

    def _search(self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR) -> Result:
        """SEARCH (docs/protocol.md): the account holding the (first) Subscription-Id, found as
        CREATE would hold it (an E.164 number with or without its leading `+`)."""
        outcome, detail = Outcome.MISSING_AVP, "Subscription-Id"
        failed: dict[str, Any] | None = {"Subscription-Id": None}
        view: AccountView | None = None
        if amr.subscription_id:
            first = amr.subscription_id[0]
            found = normalise_identity(
                SubscriberIdentity(
                    type=int(first.subscription_id_type), data=first.subscription_id_data
                )
            )
            holder = (
                None
                if isinstance(found, Outcome)
                else self.ledger.account_for(found.type, found.data)
            )
            if holder is None:
                as_received = {
                    "Subscription-Id-Type": int(first.subscription_id_type),
                    "Subscription-Id-Data": first.subscription_id_data,
                }
                outcome, failed, detail = Outcome.NO_HOLDER, {"Subscription-Id": [as_received]}, ""
            else:
                outcome, failed, detail, view = Outcome.OK, None, "", holder
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            outcome,
            detail=detail,
            failed=failed,
            account=self._account_map(view, now_ms) if view is not None else None,
        )

    def _history(self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR) -> Result:
        """HISTORY (docs/protocol.md, *Extension: history*): the account's movements kept in
        memory, newest first, at most `History-Limit`, numbered below `History-Before`."""
        known = self.ledger.standing(amr.account_id) is not None
        outcome = Outcome.OK if known else Outcome.UNKNOWN_ACCOUNT
        count, movements = history_page(self.history, amr)
        ok = outcome is Outcome.OK
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            outcome,
            failed=None if ok else {"Account-Id": amr.account_id},
            movement_count=count if ok else None,
            movement=movements if ok else None,
        )

    def _create_bulk(
        self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR, identity_rules: bool
    ) -> Result:
        """CREATE_BULK (docs/protocol.md, *Extension: bulk create*): each `Bulk-Account` as
        a CREATE; the answer lists the refused ones."""
        if amr.bulk_account is None:
            outcome, failed = Outcome.MISSING_AVP, {"Bulk-Account": None}
            refused = None
        else:
            outcome, failed = Outcome.OK, None
            refused = create_bulk(
                amr, lambda one: self._admin(now_ms, origin_host, end_to_end, one, identity_rules)
            )
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            outcome,
            detail="Bulk-Account" if failed else "",
            failed=failed,
            bulk_result=refused,
        )

    def _terminate_session(self, now_ms: int, account_id: str, sid: str | None) -> AdminResult:
        """Management intervention (docs/protocol.md, TERMINATE_SESSION): close any peer's
        session of the account as supervision does (reservations released, the CDR closed
        with cause "managementIntervention") and send ASR to the peer that owns it."""
        if sid is None:
            return Outcome.MISSING_AVP, {"Session-Id": None}, "Session-Id"
        session = self._peek(sid)  # closed below: no need to unpack it for good
        if session is None or session.account_id != account_id:
            return Outcome.UNKNOWN_SESSION, {"Session-Id": sid}, ""
        self._release_all(session, now_ms)
        self._close(session, now_ms, "managementIntervention")
        self._act(ActionKind.ASR, session, (), "management intervention")
        return _ADMIN_OK

    def _name_operation(self, operation_id: str, what: str, op_id: str) -> None:
        """Remember what an Operation-Id names for as long as the ledger remembers its outcome
        (entries the ledger has forgotten are dropped when the map outgrows its memory)."""
        operations = self._operations
        operations[operation_id] = what
        if len(operations) > self.ledger.max_remembered:
            for key in [k for k in operations if self.ledger.recall(f"op|{k}") is None]:
                del operations[key]

    def _topped_up(self, account_id: str) -> None:
        for sid in self._account_sessions(account_id):
            session = self._peek(sid)
            assert session is not None
            if session.starved:
                self._act(ActionKind.RAR, session, tuple(session.starved), "top-up")

    def _account_map(self, view: AccountView, now_ms: int) -> Account:
        loan_fields = self._loan_fields(view)  # loans: {} for an account that never borrowed
        return Account(
            account_id=view.account_id,
            account_status=WireAccountStatus(int(view.status)),
            balance=loan_fields.pop("balance", view.available),
            reserved=view.reserved,
            credit_limit=view.credit_limit,
            currency_code=view.currency,
            subscription_id=tuple(
                WireSubscriptionId(
                    subscription_id_type=SubscriptionIdType(s.type), subscription_id_data=s.data
                )
                for s in view.subscriptions
            ),
            session_count=len(self._account_sessions(view.account_id)),
            offer_balance=self._offer_balances(view.account_id),
            **loan_fields,
            **self._policy_account(view),  # status-policy
            usage_counter=counter_views(  # usage counters
                self.counters, self.catalog, self.usage, view.account_id, now_ms
            ),
        )

    def _act(
        self, kind: ActionKind, session: Session, rating_groups: tuple[int, ...], reason: str
    ) -> None:
        self._actions.append(
            Action(
                kind=kind,
                session_id=session.session_id,
                origin_host=session.origin_host,
                rating_groups=rating_groups,
                reason=reason,
            )
        )

    # --- offers (ocs/core/offers.py; docs/protocol.md, Extension: offers) ------------------------

    def _offers_tick(self, now_ms: int) -> None:
        """Unit holds that expired give their units back (a grant the allowances paid whole
        goes with its hold, as a grant goes with its expired reservation); renewals due are
        made, each at its own instant, and their fees recorded."""
        for key in self.offers.expire_due(now_ms):
            sid, _, rg = key.rpartition("|")
            session = self._peek(sid)
            if session is None:
                continue
            grant = session.grants.get(int(rg))
            if grant is not None and not grant.reservation_id:
                del session.grants[int(rg)]
                if not isinstance(self._sessions[sid], Session):  # packed: it stays packed
                    self._sessions[sid] = pack_session(session)
        renewed: dict[str, None] = {}  # accounts with fresh allowances, in renewal order
        for renewal in self.offers.renew_due(self.ledger, self.catalog, now_ms):
            if renewal.paid and renewal.fee:
                self._write_fee_cdr(renewal)
            if renewal.paid:
                renewed[renewal.account_id] = None
        for account_id in renewed:  # sessions held at their final units may go on (RAR)
            self._topped_up(account_id)

    def _offers_credited(self, now_ms: int, account_id: str) -> None:
        """A top-up retries the fees of the account's suspended offers at once: paid, an
        offer resumes for the rest of its period (docs/charging.md, *Allowances*)."""
        if not self.offers.has_offers(account_id):
            return
        for renewal in self.offers.retry(self.ledger, self.catalog, account_id, now_ms):
            self._write_fee_cdr(renewal)

    def _offer_operation(
        self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR
    ) -> AdminResult:
        """SUBSCRIBE and UNSUBSCRIBE (docs/protocol.md, *Extension: offers*): applied once
        under their Operation-Id, atomic (a refusal changes nothing)."""
        op = amr.account_operation
        account_id = amr.account_id
        name = amr.offer_name
        if name is None:
            return Outcome.MISSING_AVP, {"Offer-Name": None}, "Offer-Name"
        what = f"{op.name}|{account_id}|{name}"
        if amr.operation_id is not None:
            named = self.offers.operations.get(amr.operation_id)
            if named is not None:
                if named != what:
                    return Outcome.OPERATION_ID_REUSED, {"Operation-Id": amr.operation_id}, ""
                return _ADMIN_OK  # a retry of an operation applied: its first outcome
        failed = {"Offer-Name": name}
        held = self.offers.find(account_id, name)
        if op is AccountOperation.UNSUBSCRIBE:
            if held is None:
                return Outcome.OFFER_NOT_HELD, failed, ""
            if self.offers.holds_on(account_id, name):
                return Outcome.OFFER_IN_USE, failed, ""
            self.offers.unsubscribe(account_id, name)
        else:
            offer = self.catalog.offers.get(name)
            if offer is None:
                return Outcome.UNKNOWN_OFFER, failed, ""
            if held is not None:
                return Outcome.OFFER_HELD, failed, ""
            if len(self.offers.subscriptions(account_id)) >= MAX_SUBSCRIPTIONS_PER_ACCOUNT:
                detail = f"at most {MAX_SUBSCRIPTIONS_PER_ACCOUNT} offers per account"
                return Outcome.INVALID, failed, detail
            renewal = self.offers.subscribe(
                self.ledger, account_id, offer, now_ms, self.catalog.timezone
            )
            if renewal is None:
                return Outcome.INSUFFICIENT_FUNDS, failed, f"the fee is {offer.fee} micro-units"
            if renewal.fee:
                self._write_fee_cdr(renewal)
            self._topped_up(account_id)  # sessions held at their final units may go on
        if amr.operation_id is not None:
            self.offers.name_operation(amr.operation_id, what)
        return _ADMIN_OK

    def _priced_rg(self, account_id: str, rg: RatingGroup) -> RatingGroup:
        """The rating group as the account's offers change its price: their modifiers on it
        are promotions of this account alone, on its timeline beside the catalog's (so one
        that starts inside a grant's validity is its Tariff-Time-Change)."""
        if rg.zero_rated or not self.offers.has_offers(account_id):
            return rg
        extra = self.offers.modifiers(account_id, rg.id, self.catalog)
        if not extra:
            return rg
        key = (rg.id, extra)
        variant = self._variants.get(key)
        if variant is None:
            variant = self._variants[key] = with_promotions(rg, extra)
        return variant

    def _modifier_tariffs(self, rg: RatingGroup) -> list[Tariff]:
        """The tariffs of `rg` with each price modifier of the catalog's offers on it."""
        return [
            with_promotions(rg, (m.promotion,)).tariff
            for offer in self.catalog.offers.values()
            for m in offer.modifiers
            if rg.id in m.rating_groups
        ]

    def _offer_balances(self, account_id: str) -> tuple[OfferBalance, ...] | None:
        """GET's `Offer-Balance` list: every unit balance with its expiry (None: no offers)."""
        if not self.offers.has_offers(account_id):
            return None
        return tuple(
            OfferBalance(
                offer_name=v.offer,
                allowance_name=v.allowance,
                allowance_rating_group=v.rating_groups,
                allowance_units=v.available,
                allowance_reserved=v.reserved,
                balance_expiry=None if v.expires_ms is None else v.expires_ms // MS,
                offer_status=OfferStatus.SUSPENDED if v.suspended else OfferStatus.ACTIVE,
            )
            for v in self.offers.views(account_id, self.catalog)
        )

    def _write_fee_cdr(self, renewal: Renewal) -> None:
        """The record of an offer's fee (recordType "offerFee"): a charge like usage, so the
        sum of `charge` over all records is still what the accounts lost to charging."""
        self._loan_spent(renewal.account_id, renewal.fee)  # loans: a fee is a charge too
        view = self.ledger.account(renewal.account_id)
        served = view.subscriptions[0].data if view is not None and view.subscriptions else ""
        seq = self._next_seq()
        record: dict[str, Any] = {
            "recordSequenceNumber": seq,
            "recordType": "offerFee",
            "sessionId": renewal.operation_id,
            "accountId": renewal.account_id,
            "servedSubscriber": served,
            "nodeId": self.origin_host,
            "localSequenceNumber": 1,
            "recordOpeningTime": iso_ms(renewal.at_ms),
            "recordClosingTime": iso_ms(renewal.at_ms),
            "causeForRecordClosing": "normalRelease",
            "offerName": renewal.offer,
            "offerPeriod": renewal.period,
            "listOfMultipleUnitUsage": [],
            "charge": renewal.fee,
            "currencyCode": self.catalog.currency.code,
        }
        self._cdrs.append((seq, CDR_ENCODER.encode(record)))
        self.history.record(  # history: the fee, under its record's number
            renewal.account_id, renewal.at_ms, MovementKind.FEE, -renewal.fee, cdr_seq=seq
        )

    # --- status-policy: service control by account state (ocs/core/policy.py) -----------------

    def _policy_grant(
        self,
        session: Session,
        rg: RatingGroup,
        requested: ServiceUnit,
        status: AccountStatus,
        headroom: int,
        now_ms: int,
    ) -> MsccAnswer:
        """A grant as the account's state has it: denied (4010, or 4012 in ``low_balance``),
        restricted or redirected (zero units with Final-Unit-Indication, nothing reserved), or
        granted, cut at the inhibit threshold with the low-balance policy's indication."""
        decision = self.policy.decide(
            status_policies(self.catalog),
            session.account_id,
            status,
            headroom,
            session.service_context_id,
            rg,
        )
        rg_id = rg.id
        if decision.action is PolicyAction.ALLOW:
            answer = self._grant(
                session, rg, requested, headroom - decision.floor, now_ms, decision.fui
            )
            if decision.fallback is None or answer.result_code != _RC_CREDIT_LIMIT_REACHED:
                return answer
            fui = decision.fallback  # nothing above the threshold: inhibited at once
        else:
            if decision.low and self.offers.has_offers(session.account_id):
                # the money is at the threshold, not the allowances: what they pay is granted
                # (no money above the threshold), with the indication for when they run out
                fui = decision.fui or policy_fui(ServicePolicy(action=PolicyAction.DENY))
                answer = self._grant(session, rg, requested, 0, now_ms, fui)
                if answer.result_code != _RC_CREDIT_LIMIT_REACHED:
                    return answer
            if decision.action is PolicyAction.DENY:
                if rg_id not in session.starved:
                    session.starved.append(rg_id)
                return MsccAnswer(rating_group=rg_id, result_code=decision.result_code)
            assert decision.fui is not None
            fui = decision.fui
        if rg_id not in session.starved:  # a top-up or a change of state re-authorises it
            session.starved.append(rg_id)
        return zero_grant(rg, fui)

    def _policy_mark(self, account_id: str, *, hot: bool = False) -> Mark | None:
        """The account's state and notification level now; None for an unknown account, or
        (`hot`: a request that only moves money) when money cannot change them."""
        policies = status_policies(self.catalog)
        if hot and not (
            self.policy.in_force(policies) and self.policy.may_change(policies, account_id)
        ):
            return None
        standing = self.ledger.standing(account_id)
        if standing is None:
            return None
        return self.policy.mark(policies, account_id, standing[0], standing[1])

    def _policy_push(
        self, account_id: str, before: Mark | None, *, exclude: str = "", forced: bool = False
    ) -> None:
        """Tell the account's open sessions (but `exclude`, which has its answer) what changed
        since `before`: a new state is RAR (the groups each session holds), or ASR where the
        state denies the session everything; a headroom newly at or below the notification
        threshold is RAR. `forced` (a status set by an operator): ASR even if the state is the
        same. A session already sent a RAR by this input (a top-up) gets no second one."""
        if before is None:
            return
        after = self._policy_mark(account_id)
        if after is None:
            return
        changed = after.state != before.state
        notify = after.notified and not before.notified
        if not (changed or notify or forced):
            return
        policies = status_policies(self.catalog)
        queued = {a.session_id for a in self._actions}
        for sid in self._account_sessions(account_id):
            if sid == exclude or sid in queued:
                continue
            session = self._peek(sid)
            assert session is not None
            held = tuple(sorted({*session.grants, *session.starved}))
            if changed or forced:
                context = session.service_context_id
                service = self.catalog.service(context)
                ids = held or (service.rating_groups if service is not None else ())
                groups = self._policy_groups(context, ids)
                if after.state != LOW_BALANCE and self.policy.denies_all(
                    policies, after.state, context, groups
                ):
                    not_active = after.state in (SUSPENDED, BARRED)
                    why = "account not active" if not_active else f"account {after.state}"
                    self._act(ActionKind.ASR, session, (), why)
                    continue
                if not changed:
                    continue
            reason = f"account {after.state}" if changed else "low balance"
            self._act(ActionKind.RAR, session, held, reason)

    def _on_loan(self, account_id: str) -> str | None:
        """The derived state `on_loan`: the account owes a loan (ocs/core/loans.py)."""
        return ON_LOAN if self.loans.owed(account_id) else None

    def _policy_marks(self, account_ids: Iterable[str]) -> dict[str, Mark]:
        """The marks of the accounts whose state money can change (before a tick's releases)."""
        marks: dict[str, Mark] = {}
        for account_id in account_ids:
            mark = self._policy_mark(account_id, hot=True)
            if mark is not None:
                marks[account_id] = mark
        return marks

    def _policy_groups(self, context: str, ids: Iterable[int]) -> tuple[RatingGroup, ...]:
        groups: list[RatingGroup] = []
        for g in ids:
            rg = self.catalog.rating_group(context, g)
            if rg is not None:
                groups.append(rg)
        return tuple(groups)

    def _policy_released(
        self, reservations: tuple[str, ...], owners: tuple[str, ...]
    ) -> dict[str, int]:
        """What the expired reservations held, per account (read before their grants are
        dropped), when a policy is in force."""
        released: dict[str, int] = {}
        if not reservations or not self.policy.in_force(status_policies(self.catalog)):
            return released
        for reservation_id, sid in zip(reservations, owners, strict=True):
            session = self._peek(sid)
            if session is None:
                continue
            for grant in session.grants.values():
                if grant.reservation_id == reservation_id:
                    account = session.account_id
                    released[account] = released.get(account, 0) + grant.amount
        return released

    def _policy_ticked(self, marks: dict[str, Mark], released: dict[str, int]) -> None:
        """A tick gave money back (sessions closed by supervision, reservations expired): tell
        the accounts' other sessions if their state changed. The state before an expiry is the
        state at the headroom less what the expired reservations held."""
        policies = status_policies(self.catalog)
        for account_id, amount in released.items():
            if account_id in marks or not self.policy.may_change(policies, account_id):
                continue
            standing = self.ledger.standing(account_id)
            if standing is not None:
                marks[account_id] = self.policy.mark(
                    policies, account_id, standing[0], standing[1] - amount
                )
        for account_id in sorted(marks):
            self._policy_push(account_id, marks[account_id])

    def _policy_reloaded(self, old: Catalog) -> None:
        """A catalog with other status policies is in force: each open session (not told
        already by this input) one of whose groups gets another policy is told, as by a change
        of state: ASR if the new policies deny it everything, else RAR for those groups."""
        before, after = status_policies(old), status_policies(self.catalog)
        queued = {a.session_id for a in self._actions}
        book = self.policy
        for sid in sorted(self._sessions):
            if sid in queued:
                continue
            session = self._peek(sid)
            assert session is not None
            standing = self.ledger.standing(session.account_id)
            if standing is None:
                continue
            status, headroom = standing
            context = session.service_context_id
            was = book.state(before, session.account_id, status, headroom)
            now = book.state(after, session.account_id, status, headroom)
            moved: list[int] = []
            groups: list[RatingGroup] = []
            for g in sorted({*session.grants, *session.starved}):
                rg, old_rg = self.catalog.rating_group(context, g), old.rating_group(context, g)
                if rg is None or old_rg is None:
                    continue
                groups.append(rg)
                if book.policy(after, now, context, rg) != book.policy(
                    before, was, context, old_rg
                ):
                    moved.append(g)
            if not moved:
                continue
            if now != LOW_BALANCE and book.denies_all(after, now, context, tuple(groups)):
                self._act(ActionKind.ASR, session, (), f"account {now}: policy change")
            else:
                self._act(ActionKind.RAR, session, tuple(moved), "policy change")

    def _policy_indication(
        self, account_id: str, msccs: list[MsccAnswer], extra: dict[str, Any]
    ) -> list[MsccAnswer]:
        """In a CCA of an account at or below a threshold, each MSCC answered 2001 carries
        `Low-Balance-Indication`, and the CCA `Remaining-Balance` (the available balance)."""
        inhibit, notify = self.policy.thresholds(status_policies(self.catalog), account_id)
        if inhibit is None and notify is None:
            return msccs
        standing = self.ledger.standing(account_id)
        if standing is None:
            return msccs
        headroom = standing[1]
        if inhibit is not None and headroom <= inhibit:
            level = LowBalanceIndication.INHIBIT_THRESHOLD_REACHED
        elif notify is not None and headroom <= notify:
            level = LowBalanceIndication.NOTIFY_THRESHOLD_REACHED
        else:
            return msccs
        view = self.ledger.account(account_id)
        assert view is not None
        msccs = [
            msgspec.structs.replace(m, low_balance_indication=level)
            if m.result_code == _RC_OK
            else m
            for m in msccs
        ]
        if "remaining_balance" not in extra:
            digits, exponent = unit_value(view.available)
            extra["remaining_balance"] = RemainingBalance(
                unit_value=UnitValue(value_digits=digits, exponent=exponent),
                currency_code=self.catalog.currency.code,
            )
        return msccs

    def _policy_refused(self, amr: AMR) -> AdminResult | None:
        """An `Account-State` the catalog does not define: 5004 naming it."""
        why = self.policy.refused(status_policies(self.catalog), amr.account_state)
        if why is None:
            return None
        return Outcome.INVALID, {"Account-State": amr.account_state}, why

    def _policy_account(self, view: AccountView) -> dict[str, Any]:
        """The `Account` keys of the state (when a policy is in force): `Account-State`, and
        the thresholds in force for the account; none for an `active` account without
        thresholds."""
        policies = status_policies(self.catalog)
        if not self.policy.in_force(policies):
            return {}
        inhibit, notify = self.policy.thresholds(policies, view.account_id)
        state = self.policy.state(policies, view.account_id, view.status, view.headroom, inhibit)
        if state == ACTIVE and inhibit is None and notify is None:
            return {}  # an ordinary account: its map as without policies
        return {"account_state": state, "inhibit_threshold": inhibit, "notify_threshold": notify}

    def _policy_denies_event(
        self,
        ccr: CCR,
        account_id: str,
        status: AccountStatus,
        headroom: int,
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
    ) -> bool:
        """A DIRECT_DEBITING of a rating group the account's state denies (but for
        ``low_balance``, where the money decides, as without a threshold)."""
        policies = status_policies(self.catalog)
        if not self.policy.in_force(policies):
            return False
        state = self.policy.state(policies, account_id, status, headroom)
        if state == LOW_BALANCE or state not in policies.named:
            return False  # (suspended and barred are refused before, by their status)
        context = ccr.service_context_id
        return any(
            rg is not None
            and self.policy.policy(policies, state, context, rg).action is PolicyAction.DENY
            for _, rg, _, _ in priced
        )

    # --- IoT low-signalling profile (ocs/core/iot.py; docs/charging.md) -----------------------

    def _iot_request(
        self, session: Session, ccr: CCR, now_ms: int, *, opening: bool = False
    ) -> None:
        """Count a request of a device's session against its threshold set; a device that
        leaves the set falls back to the normal profile: its sessions' aggregate records are
        written (with `iotFallback`) and they are re-authorised (RAR, reason "iot threshold")."""
        if self._is_estimate(session):
            return
        sid = session.session_id
        if opening:
            self.iot.open(self.catalog, sid, ccr)
        if sid not in self.iot.sessions:
            return
        granted = {rg: g.granted_s for rg, g in session.grants.items()}
        reason = self.iot.request(self.catalog, sid, session.account_id, granted, ccr, now_ms)
        if not reason:
            return
        renewed = {
            m.rating_group
            for m in ccr.multiple_services_credit_control or ()
            if m.requested_service_unit is not None
        }
        for other_id in self._account_sessions(session.account_id):
            other = session if other_id == sid else self._peek(other_id)
            device_class = self.iot.device_class(self.catalog, other_id)
            if other is None or device_class is None:
                continue
            packed = not isinstance(self._sessions[other_id], Session)
            if other.containers:
                self._write_session_cdr(other, now_ms, "partialRecord", {"iotFallback": reason})
            if packed:
                self._sessions[other_id] = pack_session(other)
            if other_id == sid and ccr.cc_request_type is CCRequestType.TERMINATION:
                continue  # it closes now
            held = tuple(
                rg
                for rg in other.grants
                if rg in device_class.rating_groups and (other_id != sid or rg not in renewed)
            )
            if held:
                self._act(ActionKind.RAR, other, held, f"iot threshold {reason}")

    def _iot_aggregate(self, session: Session, now_ms: int) -> None:
        """A device within its set: its record waits for the period's end (or the session's),
        unless it holds `MAX_CONTAINERS` containers."""
        if not session.containers:
            return
        if len(session.containers) >= MAX_CONTAINERS:
            self._write_session_cdr(session, now_ms, "partialRecord")
        else:
            self.iot.schedule(self.catalog, session.session_id, now_ms)

    def _iot_period_records(self, now_ms: int) -> None:
        """The aggregate records of the periods that ended by `now_ms` (a packed session stays
        packed)."""
        for sid in self.iot.pop_due(now_ms // MS):
            session = self._peek(sid)
            if session is None or not session.containers:
                continue
            packed = not isinstance(self._sessions[sid], Session)
            self._write_session_cdr(session, now_ms, "partialRecord")
            if packed:
                self._sessions[sid] = pack_session(session)

    def _iot_grant(
        self,
        session: Session,
        rg: RatingGroup,
        iot: IotGrant,
        headroom: int,
        now_ms: int,
        inhibit: bool = False,
    ) -> MsccAnswer | None:
        """A grant of the profile: what is left of the set, until the period's end, reserving
        at most the class's `reserve` (usage beyond it is posted all the same: overdraft). None
        when the headroom does not cover that reservation (the normal grant cuts it then)."""
        rg_id = rg.id
        now_s = now_ms // MS
        units = min(iot.units, MAX_UNITS)
        validity = iot.validity_s
        # A grant carries one Tariff-Time-Change (WIRE.md 5.5): the validity ends at the second
        # change of price before the period's end, if any, so that usage is rated right.
        first = next_tariff_change(rg, now_s, now_s + validity)
        second = next_tariff_change(rg, first, now_s + validity) if first is not None else None
        if second is not None:
            validity = second - now_s
        prior = session.rated.get(rg_id, 0)
        fee = rg.setup_fee if rg_id not in session.fee_charged else 0
        cost = price_dearest(rg, units, now_s, now_s + validity, prior).total + fee
        reserve = min(cost, iot.reserve + fee, MAX_AMOUNT)
        # (`inhibit`: a status policy cuts grants at a threshold, `headroom` is what is above
        # it; the profile's grant must then fit whole, or the threshold could be overrun)
        if reserve > headroom or (inhibit and cost > headroom):
            return None
        session.tcc_s = (
            2 * validity if session.grants_made == 0 else max(session.tcc_s, 2 * validity)
        )
        session.grants_made += 1
        self._reservation_seq += 1
        reservation_id = f"r{self._reservation_seq}"
        outcome = self.ledger.apply(
            Reserve(
                id=reservation_id,
                now_ms=now_ms,
                account_id=session.account_id,
                amount=reserve,
                expires_at_ms=(now_s + session.tcc_s + RESERVATION_SLACK_S) * MS,
                owner=session.session_id,
            ),
            internal=True,
        )
        if outcome.code is not Code.OK:
            return None
        answer = self._granted(
            session, rg, units, reserve, validity, False, fee, reservation_id, now_s
        )
        return msgspec.structs.replace(
            answer,
            quota_holding_time=iot.quota_holding_time_s,
            volume_quota_threshold=None,
        )

    # --- CDRs (section 9) ----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.cdr_seq += 1
        return self.cdr_seq

    def _write_session_cdr(
        self, session: Session, now_ms: int, cause: str, extra: dict[str, Any] | None = None
    ) -> None:
        containers = session.containers
        session.local_seq += 1
        by_rg: dict[int, list[dict[str, Any]]] = {}
        for c in containers:
            by_rg.setdefault(c.rating_group, []).append(_container_json(c))
        charge = sum(c.charge for c in containers)
        seq = self._next_seq()
        record: dict[str, Any] = {
            "recordSequenceNumber": seq,
            "recordType": "session",
            "sessionId": session.session_id,
            "accountId": session.account_id,
            "servedSubscriber": session.subscriber,
            "nodeId": session.origin_host,
            "serviceContextId": session.service_context_id,
            "localSequenceNumber": session.local_seq,
            "recordOpeningTime": iso_ms(session.record_opened_ms),
            "recordClosingTime": iso_ms(now_ms),
            "causeForRecordClosing": cause,
            "listOfMultipleUnitUsage": [
                {"ratingGroup": rg, "usedUnitContainers": items} for rg, items in by_rg.items()
            ],
            "charge": charge,
            "currencyCode": self.catalog.currency.code,
        }
        if session.service_information is not None:
            record["serviceInformation"] = session.service_information
        device_class = self.iot.sessions.get(session.session_id)  # IoT profile
        if device_class is not None:
            record["iotDeviceClass"] = device_class
        if extra:
            record.update(extra)
        self._cdrs.append((seq, CDR_ENCODER.encode(record)))
        record_cdr(  # history: the charge, per rating group, under the CDR's number
            self.history, session.account_id, now_ms, seq,
            [(c.rating_group, c.units, c.charge) for c in containers], refund=False,
        )  # fmt: skip
        session.containers = []
        session.record_opened_ms = now_ms

    def _write_event_cdr(
        self,
        ccr: CCR,
        origin_host: str,
        account_id: str,
        priced: list[tuple[MsccRequest, RatingGroup | None, int, int]],
        sign: int,
        now_ms: int,
        at_s: int,
        drawn: list[list[tuple[str, str, int]]] | None = None,
        bands: list[LoadDecision | None] | None = None,
    ) -> None:
        action = ccr.requested_action
        assert action is not None
        trigger = action.name
        usage = []
        for n, (_, rg, units, charge) in enumerate(priced):
            if rg is None:
                continue
            band = bands[n] if bands else None  # load-modulated prices
            container: dict[str, Any] = {
                "time": units if rg.unit is Unit.SECONDS else None,
                "totalVolume": units if rg.unit is Unit.OCTETS else None,
                "serviceSpecificUnits": units if rg.unit is Unit.UNITS else None,
                "triggers": [trigger],
                "charge": sign * charge,
                "loadBand": band.name if band is not None else None,
                "loadFactor": band.factor_text if band is not None else None,
            }
            parts = drawn[n] if drawn is not None else []
            if parts:  # offers: the balances that paid (a refund: what went back, negative)
                container["balanceUsage"] = [
                    {"offerName": o, "allowanceName": a, "units": sign * u} for o, a, u in parts
                ]
                container["moneyUnits"] = sign * (units - sum(u for _, _, u in parts))
            usage.append(
                {
                    "ratingGroup": rg.id,
                    "usedUnitContainers": [{k: v for k, v in container.items() if v is not None}],
                }
            )
        seq = self._next_seq()
        record: dict[str, Any] = {
            "recordSequenceNumber": seq,
            "recordType": "event",
            "sessionId": ccr.session_id,
            "accountId": account_id,
            "servedSubscriber": _subscriber(ccr.subscription_id or ()),
            "nodeId": origin_host,
            "serviceContextId": ccr.service_context_id,
            "localSequenceNumber": 1,
            "recordOpeningTime": iso_ms(at_s * MS),
            "recordClosingTime": iso_ms(now_ms),
            "causeForRecordClosing": "normalRelease",
            "requestedAction": action.name,
            "listOfMultipleUnitUsage": usage,
            "charge": sign * sum(charge for _, _, _, charge in priced),
            "currencyCode": self.catalog.currency.code,
        }
        if ccr.service_information is not None:
            record["serviceInformation"] = ccr.service_information
        self._cdrs.append((seq, CDR_ENCODER.encode(record)))
        record_cdr(  # history: the debit or refund, per rating group, under the CDR's number
            self.history, account_id, now_ms, seq,
            [(rg.id, units, charge) for _, rg, units, charge in priced if rg is not None],
            refund=sign < 0,
        )  # fmt: skip

    # --- snapshot ------------------------------------------------------------------------------

    def snapshot(self, *, duplicates: bool = True) -> bytes:
        """The core's state as bytes `restore` takes. ``duplicates=False`` leaves out what only
        serves duplicate detection (the answer cache and the last answers of closed sessions),
        and has every session unpacked, to compare business state before and after a request
        in tests."""
        return STATE_ENCODER.encode(
            CoreState(
                catalog_text=self.catalog_text,
                cdr_seq=self.cdr_seq,
                # whether an idle session is packed yet is bookkeeping, not business state
                sessions=list(self._sessions.values() if duplicates else self.sessions.values()),
                # (the cache's own order: a key is never inserted twice while it is held)
                seen=[(host, e2e, c) for (host, e2e), c in self._seen.items()]
                if duplicates
                else [],
                closed=[],
                usage=self.usage,
                operations=self._operations,
                reservation_seq=self._reservation_seq,
                tombstones=[
                    (sid, *self._closed[sid]) for sid in self._closed_order if sid in self._closed
                ]
                if duplicates
                else [],
                refund_window_s=self.refund_window_s,
                refundable=[(a, rg, entries) for (a, rg), entries in self._refundable.items()],
                layout=CORE_LAYOUT,
                catalog_since_ms=self.catalog_since_ms,
                estimates=sorted(self._estimates),
                history=self.history.state(),
                history_limit=self.history.limit,
                offers=self.offers.state(),
                loans=self.loans.snapshot(),
                groups=self.groups.state(),
                load_pricing=self.load_pricing.state(),
                policies=self.policy.snapshot(),  # status-policy
                iot=self.iot.snapshot(),
                counters=self.counters.snapshot(),  # usage counters
            )
        )

    def restore(self, data: bytes) -> None:
        state = STATE_DECODER.decode(data)
        if state.layout > CORE_LAYOUT:
            raise ValueError(
                f"the core's snapshot has layout {state.layout}, newer than this build's "
                f"{CORE_LAYOUT}: start the build that wrote it"
            )
        self.catalog_journaled = True
        self.catalog_since_ms = state.catalog_since_ms
        self.catalog_text = state.catalog_text
        self.catalog = parse_catalog(state.catalog_text)
        self._links_cache = {}
        self._dearest = {}
        self._variants = {}
        self.cdr_seq = state.cdr_seq
        self._reservation_seq = state.reservation_seq
        self._estimates = set(state.estimates)
        sessions: dict[str, Session | bytes] = {}
        self._sessions = sessions
        self._by_account = {}
        self._deadlines = DueSet()
        peer_sessions: dict[str, int] = {}
        self._peer_sessions = peer_sessions
        for kept in state.sessions:
            # a packed session is unpacked once here for its keys, and stays packed
            s = kept if isinstance(kept, Session) else unpack_session(kept)
            sid, account_id = self._shared_keys(s)
            sessions[sid] = kept
            peer_sessions[s.origin_host] = peer_sessions.get(s.origin_host, 0) + 1
            self._link_account(account_id, sid)
            self._deadlines.add(self._deadline(s), sid)
        self._seen = {}
        self._seen_order = deque()
        self._peer_seen = {}
        self._peer_dropped = {}
        self._events = {}
        for host, e2e, cached in state.seen:
            key = (host, e2e)
            self._seen[key] = cached
            self._seen_order.append(host)
            mine = self._peer_seen.get(host)
            if mine is None:
                mine = self._peer_seen[host] = deque()
            mine.append(key)
            if state.layout < 2 and not cached.session_id:  # before EVENT duplicates by id
                cached.event_session_id = _event_session_id(cached)
            if cached.event_session_id:
                self._events[(host, cached.event_session_id)] = cached
        self.refund_window_s = state.refund_window_s
        # layout 1 had no record of debits: refunds draw on the debits made from now on
        self._refundable = {(a, rg): entries for a, rg, entries in state.refundable}
        self._reschedule_refunds()
        # owners unknown ("") in a snapshot of a layout before session owners (see `_owned`)
        self._closed = {sid: (at, n, body, "") for sid, at, n, body in state.closed}
        for sid, at, n, body, owner in state.tombstones:
            self._closed[sid] = (at, n, body, owner)
        self._closed_order = deque(self._closed)
        self._peer_tombstones = {}
        for sid, tomb in self._closed.items():
            tombs = self._peer_tombstones.get(tomb[3])
            if tombs is None:
                tombs = self._peer_tombstones[tomb[3]] = deque()
            tombs.append(sid)
        self.usage = dict(state.usage)
        self._operations = dict(state.operations)
        self.history = History(state.history_limit)  # history: empty before layout 5
        self.history.restore(state.history)
        self.offers = OfferBook()  # offers (layout 5; none before)
        if state.offers is not None:
            self.offers.restore(state.offers)
        self.policy.restore(state.policies)  # status-policy
        self.loans.restore(state.loans)  # loans (b"" before layout 5: none)
        self.groups.restore(state.groups)  # groups (None before layout 5)
        self.load_pricing.restore(state.load_pricing, self.catalog)  # load-modulated prices
        self.iot.restore(state.iot)  # IoT profile (b"" before layout 5: none)
        self.counters.restore(state.counters)  # usage counters (none before layout 5)

    # --- groups: shared group packages (ocs/core/groups.py; docs/accounts.md) -------------------

    def _group_headroom(self, member_id: str, group_id: str) -> int | None:
        """What a member's grant may reserve on its group account: the group's headroom, cut
        to what the package's member cap leaves (less what the member's open grants on the
        group hold); None if the group account is missing or not active (4010)."""
        standing = self.ledger.standing(group_id)
        if standing is None or standing[0] is not AccountStatus.ACTIVE:
            return None
        headroom = standing[1]
        cap = self.groups.cap_left(self.catalog, group_id, member_id)
        if cap is not None:
            held = 0
            for sid in self._account_sessions(member_id):
                session = self._peek(sid)
                assert session is not None
                for grant in session.grants.values():
                    reservation = (
                        self.ledger.reservation(grant.reservation_id)
                        if grant.reservation_id
                        else None
                    )
                    if reservation is not None and reservation.account_id == group_id:
                        held += grant.amount
            headroom = min(headroom, cap - held)
        return headroom

    def _paid_by(self, session: Session, grant: Grant | None) -> str:
        """The account a report's usage is charged to: the account of the grant's reservation
        if it is still open, else whoever pays for the session's account now (its group)."""
        if grant is not None and grant.reservation_id:
            reservation = self.ledger.reservation(grant.reservation_id)
            if reservation is not None:
                return reservation.account_id
        return self.groups.payer(session.account_id)

    def _group_usage(
        self, group_id: str, member_id: str, rg_id: int, units: int, charge: int, now_ms: int
    ) -> None:
        self._close_group_period(group_id, now_ms)  # one that ended before the tick came
        self.groups.record_usage(self.catalog, group_id, member_id, rg_id, units, charge)

    def _close_group_periods(self, now_ms: int) -> None:
        """At a tick: close group periods that ended by `now_ms` (fee, apportionment record,
        statements), each dated at its end, at most `MAX_CLOSES_PER_TICK` of them."""
        due = self.groups.due_ms()
        if due is not None and due <= now_ms:
            self.groups.close_due(now_ms, self.catalog, self.ledger, self._write_group_record)

    def _close_group_period(self, group_id: str | None, now_ms: int) -> None:
        """Before a request that concerns the group: close its periods that ended by then."""
        if group_id is not None:
            self.groups.close_group(
                group_id, now_ms, self.catalog, self.ledger, self._write_group_record
            )

    def _write_group_record(self, record: dict[str, Any], start_ms: int, end_ms: int) -> int:
        """Number an apportionment record and write it in the CDR stream with the fields every
        record has (docs/protocol.md, *Extension: shared group packages*)."""
        seq = self._next_seq()
        full: dict[str, Any] = {
            "recordSequenceNumber": seq,
            "recordType": record["recordType"],
            "sessionId": f"{self.origin_host};group;{record['accountId']};{start_ms // MS}",
            "accountId": record["accountId"],
            "servedSubscriber": "",
            "nodeId": self.origin_host,
            "localSequenceNumber": 1,
            "recordOpeningTime": iso_ms(start_ms),
            "recordClosingTime": iso_ms(end_ms),
            "causeForRecordClosing": "periodEnd",
            "listOfMultipleUnitUsage": [],
        }
        for key, value in record.items():
            full.setdefault(key, value)
        self._cdrs.append((seq, CDR_ENCODER.encode(full)))
        if record["recordType"] == "apportionment" and record["charge"]:
            # history: the package fee the group account paid, apportioned by this record
            self.history.record(
                record["accountId"], end_ms, MovementKind.APPORTIONMENT, -record["charge"],
                cdr_seq=seq,
            )  # fmt: skip
        return seq

    def _group_membership(self, now_ms: int, amr: AMR) -> AdminResult:
        """GROUP_JOIN and GROUP_LEAVE (docs/protocol.md): at the time of the request."""
        member_id = amr.account_id
        if self.ledger.standing(member_id) is None:
            return Outcome.UNKNOWN_ACCOUNT, {"Account-Id": member_id}, ""
        op = amr.account_operation
        what = f"{op.name}|{member_id}|{amr.group_account_id}|{amr.package_name}"
        if amr.operation_id is not None:
            named = self._operations.get(amr.operation_id)
            if named == what:  # a retry of an operation applied: its first outcome
                return _ADMIN_OK
            if named is not None:
                return Outcome.OPERATION_ID_REUSED, {"Operation-Id": amr.operation_id}, ""
        self._close_group_period(self.groups.member_of.get(member_id), now_ms)
        self._close_group_period(amr.group_account_id, now_ms)
        if op is AccountOperation.GROUP_JOIN:
            group_id = amr.group_account_id
            if group_id is None:
                return Outcome.MISSING_AVP, {"Group-Account-Id": None}, "Group-Account-Id"
            if self.ledger.standing(group_id) is None:
                return Outcome.UNKNOWN_GROUP, {"Group-Account-Id": group_id}, ""
            refused = self.groups.join(now_ms, self.catalog, member_id, group_id, amr.package_name)
        else:
            refused = self.groups.leave(now_ms, member_id)
        if refused is not None:
            outcome = Outcome[refused.outcome]
            detail = refused.key if outcome is Outcome.MISSING_AVP else refused.detail
            return outcome, {refused.key: refused.value}, detail
        if amr.operation_id is not None:
            self._operations[amr.operation_id] = what
        return _ADMIN_OK

    def _group_statement(self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR) -> Result:
        """STATEMENT (docs/protocol.md): a member's statement of the period holding
        `Period-Start` (absent: its latest closed period, else its open one)."""
        self._close_group_period(self.groups.member_of.get(amr.account_id), now_ms)
        at_ms = amr.period_start * MS if amr.period_start is not None else None
        found = self.groups.statement(self.catalog, amr.account_id, at_ms)
        shown: WireStatement | None = None
        if found is None:
            outcome = Outcome.NO_STATEMENT
            failed: dict[str, Any] | None = (
                {"Period-Start": amr.period_start}
                if amr.period_start is not None
                else {"Account-Id": amr.account_id}
            )
        else:
            outcome, failed = Outcome.OK, None
            open_period = found.share is None
            shown = WireStatement(
                group_account_id=found.group_id,
                package_name=found.package,
                period_start=found.start_ms // MS,
                period_end=found.end_ms // MS,
                statement_service=tuple(
                    StatementService(
                        service_name=line.service,
                        used_units=line.units,
                        usage_charge=line.charge,
                        share=None if open_period else line.share,
                    )
                    for line in found.lines
                ),
                usage_charge=sum(line.charge for line in found.lines),
                share=found.share,
            )
        view = self.ledger.account(amr.account_id) if shown is not None else None
        return self._admin_answer(
            now_ms,
            origin_host,
            end_to_end,
            outcome,
            failed=failed,
            account=self._account_map(view, now_ms) if view is not None else None,
            statement=shown,
        )

    def _shared_keys(self, session: Session) -> tuple[str, str]:
        """The session's id and account id as the ledger holds them (as reservation owner, as
        account): decoding a snapshot made copies of both, which a running core shares."""
        sid, account_id = session.session_id, session.account_id
        for grant in session.grants.values():
            reservation = self.ledger.reservation(grant.reservation_id)
            if reservation is not None and reservation.owner == sid:
                sid = reservation.owner
                break
        view = self.ledger.account(account_id)
        return sid, view.account_id if view is not None else account_id

    # --- loans (ocs/core/loans.py; docs/protocol.md LOAN, docs/accounts.md "A loan") ----------

    def _loan_threshold(self) -> int:
        policy = self.catalog.loan_policy
        return policy.threshold if policy is not None else 0

    def _emit_record(self, record: dict[str, Any], now_ms: int) -> None:
        """A loan or repayment record, numbered in the CDR stream, and its movement in the
        account's history (a loan: its principal credited; a repayment: principal and fee
        taken from the top-up)."""
        seq = self._next_seq()
        self._cdrs.append((seq, CDR_ENCODER.encode({"recordSequenceNumber": seq, **record})))
        account_id: str = record["accountId"]
        if record["recordType"] == "loan":
            self.history.record(
                account_id, now_ms, MovementKind.LOAN, record["loanAmount"], cdr_seq=seq
            )
        else:
            repaid: int = record["principalRepaid"] + record["feeRepaid"]
            self.history.record(account_id, now_ms, MovementKind.REPAYMENT, -repaid, cdr_seq=seq)

    def _loan(self, now_ms: int, origin_host: str, end_to_end: int, amr: AMR) -> AdminResult:
        """LOAN: applied once under its Operation-Id (a retry answers the first outcome)."""
        account_id = amr.account_id
        op_id = (
            f"op|{amr.operation_id}"
            if amr.operation_id is not None
            else f"amr|{origin_host}|{end_to_end}|{now_ms}"
        )
        if amr.operation_id is not None:
            what = f"LOAN|{account_id}|{amr.amount}"
            named = self._operations.get(amr.operation_id)
            prior = self.ledger.recall(op_id)
            if named is not None and prior is not None:
                if named != what:
                    return Outcome.OPERATION_ID_REUSED, {"Operation-Id": amr.operation_id}, ""
                if prior.ok:
                    return _ADMIN_OK
            self._name_operation(amr.operation_id, what, op_id)
        mark = self._policy_mark(account_id, hot=True)  # status-policy
        outcome, failed, detail = take_loan(
            self.loans,
            self.ledger,
            self.catalog.loan_policy,
            now_ms=now_ms,
            account_id=account_id,
            amount=amr.amount,
            op_id=op_id,
            node_id=origin_host,
            currency=self.catalog.currency.code,
            when=iso_ms(now_ms),
            emit=lambda record: self._emit_record(record, now_ms),
        )
        if outcome is Outcome.OK:
            self._topped_up(account_id)  # loan money for sessions held at their final units
            self._policy_push(account_id, mark)  # status-policy: now `on_loan`
        return outcome, failed, detail

    def _loan_topup(
        self, now_ms: int, origin_host: str, account_id: str, amount: int, op_id: str
    ) -> None:
        """A top-up: remembered for the loan policy, and repays the account's loans first."""
        self.loans.topped_up(account_id, amount, now_ms, self.catalog.loan_policy)
        if not self.loans.owed(account_id):
            return
        repay_from_topup(
            self.loans,
            self.ledger,
            now_ms=now_ms,
            account_id=account_id,
            amount=amount,
            op_id=op_id,
            node_id=origin_host,
            currency=self.catalog.currency.code,
            when=iso_ms(now_ms),
            emit=lambda record: self._emit_record(record, now_ms),
        )

    def _loan_spent(self, account_id: str, charge: int) -> None:
        """A charge was posted (usage, an offer's fee): its loan part leaves the loan
        balance."""
        if not self.loans.loan_balance(account_id):
            return
        view = self.ledger.account(account_id)
        if view is not None:
            self.loans.spent(account_id, charge, view.balance, self._loan_threshold())

    def _loan_debit_refused(self, account_id: str, amount: int) -> bool:
        """An administrative DEBIT is paid by money alone, never by the loan balance."""
        if not self.loans.loan_balance(account_id):
            return False
        view = self.ledger.account(account_id)
        assert view is not None
        money = money_available(self.loans, self.ledger, account_id, self._loan_threshold())
        return money - amount < -view.credit_limit

    def _loan_fields(self, view: AccountView) -> dict[str, Any]:
        """The `Account` keys of an account that borrowed: `Balance` is its money alone,
        `Loan-Balance` the loan money available, `Loan` its loans outstanding."""
        account = self.loans.account(view.account_id)
        if account is None:
            return {}
        money, loan = split_available(
            view.balance, view.reserved, account.balance, self._loan_threshold()
        )
        return {
            "balance": money,
            "loan_balance": loan,
            "loan": tuple(
                WireLoan(
                    loan_id=item.loan_id,
                    loan_amount=item.amount,
                    loan_fee=item.fee,
                    loan_time=item.at_ms // MS,
                    loan_principal_due=item.principal_due,
                    loan_fee_due=item.fee_due,
                )
                for item in account.loans
            ),
        }


def _policy_keys(amr: AMR) -> bool:
    """Whether an AMR carries a key of the state (status-policy)."""
    return (
        amr.account_state is not None
        or amr.inhibit_threshold is not None
        or amr.notify_threshold is not None
    )


def _event_session_id(cached: CachedAnswer) -> str:
    """The Session-Id of the EVENT a cached answer answered, or "" (a snapshot of layout 1)."""
    if cached.command != CommandCode.CREDIT_CONTROL:
        return ""
    answer = decode_body(cached.command, False, cached.body)
    if isinstance(answer, CCA) and answer.cc_request_type is CCRequestType.EVENT:
        return answer.session_id or ""
    return ""


def _usage_failed(mscc: MsccRequest, key: str, value: Any) -> dict[str, Any]:
    """Failed-AVP for the usage of one MSCC: its Rating-Group and `key`, as received (an array
    of unit maps, or one unit map)."""
    received = msgspec.to_builtins(value)
    return {
        "Multiple-Services-Credit-Control": [
            {
                "Rating-Group": mscc.rating_group,
                key: list(received) if isinstance(received, tuple) else received,
            }
        ]
    }


def _container_json(c: Container) -> dict[str, Any]:
    item: dict[str, Any] = {
        "time": c.units if c.unit == _SECONDS else None,
        "totalVolume": c.units if c.unit == _OCTETS else None,
        "uplinkVolume": c.uplink,
        "downlinkVolume": c.downlink,
        "serviceSpecificUnits": c.units if c.unit == _UNITS else None,
        "triggers": list(c.triggers),
        "tariffChangeUsage": c.tariff_change_usage,
        "charge": c.charge,
        "reportTime": iso_ms(c.at_ms),
    }
    if c.setup_fee:
        item["setupFee"] = c.setup_fee
    if c.beyond_grant:
        item["beyondGrant"] = c.beyond_grant
    if c.load is not None:  # load-modulated prices (docs/charging.md section 6)
        item["loadBand"], item["loadFactor"] = c.load
    if c.drawn:  # offers: which balance paid what (docs/protocol.md, CDR extension fields)
        item["balanceUsage"] = [
            {"offerName": offer, "allowanceName": allowance, "units": units}
            for offer, allowance, units in c.drawn
        ]
        item["moneyUnits"] = c.units - sum(units for _, _, units in c.drawn)
    return {k: v for k, v in item.items() if v is not None}


def _normalised_identities(
    amr: AMR, identity_rules: bool = True
) -> tuple[tuple[SubscriberIdentity, ...], AdminResult | None]:
    """The identities of a CREATE as the account will hold them (`normalise_identity`), or the
    refusal of the first one outside its domain, naming it as received. Without
    `identity_rules` (an input of an earlier build) they are kept as received."""
    subs: list[SubscriberIdentity] = []
    for s in amr.subscription_id or ():
        received = SubscriberIdentity(type=int(s.subscription_id_type), data=s.subscription_id_data)
        checked = normalise_identity(received) if identity_rules else received
        if isinstance(checked, Outcome):
            bad = {
                "Subscription-Id-Type": int(s.subscription_id_type),
                "Subscription-Id-Data": s.subscription_id_data,
            }
            return (), (checked, {"Subscription-Id": [bad]}, repr(s.subscription_id_data))
        subs.append(checked)
    return tuple(subs), None


def _create_failed_avp(amr: AMR, detail: str) -> dict[str, Any] | None:
    """The `Failed-AVP` of a CREATE the ledger refused, from the problem it names."""
    values: dict[str, Any] = {
        "Account-Id": amr.account_id,
        "Currency-Code": amr.currency_code,
        "Credit-Limit": amr.credit_limit,
        "Amount": amr.amount,
        "Subscription-Id": msgspec.to_builtins(amr.subscription_id),
    }
    for word, key in _CREATE_KEYS:
        if word in detail:
            return {key: values[key]}
    return None


# --- offers (ocs/core/offers.py; docs/charging.md, Allowances) ---------------------------------


def _hold_key(session_id: str, rg_id: int) -> str:
    """The key of the unit hold of a session's grant for a rating group."""
    return f"{session_id}|{rg_id}"


def _attribute(
    containers: list[Container], from_hold: list[int], used: list[tuple[str, str, int]]
) -> None:
    """Give each container the held units it used, balance by balance, in the order the hold
    took them (`used`), before the units it drew at once (already in `Container.drawn`)."""
    queue = list(used)
    for container, need in zip(containers, from_hold, strict=True):
        parts: list[tuple[str, str, int]] = []
        while need and queue:
            offer, allowance, units = queue[0]
            take = min(need, units)
            parts.append((offer, allowance, take))
            need -= take
            if take == units:
                queue.pop(0)
            else:
                queue[0] = (offer, allowance, units - take)
        if parts:
            container.drawn = (*parts, *container.drawn)
