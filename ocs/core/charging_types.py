"""The charging core's value types: journaled inputs, actions, session state, snapshots.

msgspec Structs live here, apart from `ocs.core.charging`'s logic, because that module is
compiled with mypyc, which drops the class keywords (``kw_only=True``, ``array_like=True``) of
the classes it compiles; this module stays plain Python. `ocs.core.charging` re-exports the
public names.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, NamedTuple

import msgspec

from ocs.core.groups import GroupsState
from ocs.core.history import DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT
from ocs.core.load import LoadState
from ocs.core.offers import HoldPart, OffersState
from protocol.codec import encode_body
from protocol.codes import CCRequestType
from protocol.messages import CCA, Answer, MsccAnswer, ServiceUnit, UsageCounter

# --- inputs (what is journaled) ---------------------------------------------------------------


class InputKind(enum.IntEnum):
    # A CCR or AMR body from the peer `origin_host`: the Origin-Host of its capabilities
    # exchange, held to the rules of WIRE.md 1.1 sections 4, 5.3 and 6 (Session-Ids begin with
    # their opener's Origin-Host, sessions belong to their opener).
    # Since the account lifecycle (docs/protocol.md, *Identities at CREATE*), a CREATE's
    # identities are also checked and normalised and its currency must be the catalog's.
    REQUEST = 6
    # A CCR or AMR journaled by a build with the peer rules but before the identity checks:
    # replayed with its identities kept as received, so that an account such a build created
    # (with an identity the checks would refuse now) is created again in replay.
    REQUEST_1_1 = 4
    # A CCR or AMR journaled by a build before those rules (`origin_host` is the request's own
    # Origin-Host): replayed as it was processed then, without the Session-Id and ownership
    # checks, so that a data directory of that build recovers to the state it acknowledged.
    REQUEST_1_0 = 1
    TICK = 2  # supervision and expiry at `now_ms`
    CATALOG = 3  # a new catalog (TOML text)
    # Settings that shape what inputs do (`Settings`, msgpack map). 5, not 4: both were new in
    # the same release and REQUEST took 4; no build ever wrote a kind 5 record before.
    SETTINGS = 5


#: The kinds of journaled requests, the current one and those of earlier builds.
REQUEST_KINDS: Final = frozenset({InputKind.REQUEST, InputKind.REQUEST_1_1, InputKind.REQUEST_1_0})


class Input(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One journaled input. Replaying the inputs in order rebuilds the state exactly."""

    kind: InputKind
    now_ms: int
    origin_host: str = ""
    end_to_end: int = 0
    command: int = 0
    body: bytes = b""


_INPUT_ENCODER: Final = msgspec.msgpack.Encoder()
_INPUT_DECODER: Final = msgspec.msgpack.Decoder(Input)


def encode_input(record: Input) -> bytes:
    return _INPUT_ENCODER.encode(record)


def decode_input(data: bytes | memoryview) -> Input:
    return _INPUT_DECODER.decode(data)


# --- settings (journaled, so that replay applies the ones in force when it was live) ----------

#: WIRE.md 5.4: a refund draws on the debits of the last 24 hours unless configured.
DEFAULT_REFUND_WINDOW_S: Final = 24 * 3600
#: The longest refund window accepted (it bounds the memory of debits, docs/operations.md).
MAX_REFUND_WINDOW_S: Final = 90 * 24 * 3600


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Core settings that change what an input does. They are journaled (`InputKind.SETTINGS`)
    when they differ from the state's, and kept in snapshots, never read from the
    configuration during replay: a restart with another value replays the past as it was."""

    refund_window_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_REFUND_WINDOW_S)] = (
        DEFAULT_REFUND_WINDOW_S
    )
    # movements kept per account (ocs/core/history.py; docs/protocol.md "Extension: history")
    history_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_HISTORY_LIMIT)] = DEFAULT_HISTORY_LIMIT


_SETTINGS_ENCODER: Final = msgspec.msgpack.Encoder()
_SETTINGS_DECODER: Final = msgspec.msgpack.Decoder(Settings)


def decode_settings(data: bytes | memoryview) -> Settings:
    return _SETTINGS_DECODER.decode(data)


def settings_input(now_ms: int, settings: Settings) -> Input:
    """The journaled input that puts `settings` in force. Raises ValueError for a value out of
    its range (`msgspec.ValidationError` is one)."""
    body = _SETTINGS_ENCODER.encode(settings)
    decode_settings(body)  # the same check replay makes
    return Input(kind=InputKind.SETTINGS, now_ms=now_ms, body=body)


class BookingRefused(RuntimeError):
    """The ledger refused to book a charge or credit that the core had already decided (a post,
    a debit of usage beyond its reservation, a refund's credit): the input cannot be completed,
    so it fails whole. The core never records a charge in a CDR that the ledger did not book;
    the edge rolls the input back (`ocs.node.CoreComponent.rebuild`) and answers 5012."""


# --- actions (what the edge sends on the core's behalf) ---------------------------------------


class ActionKind(enum.Enum):
    RAR = "rar"
    ASR = "asr"


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    kind: ActionKind
    session_id: str
    origin_host: str
    rating_groups: tuple[int, ...] = ()
    reason: str = ""
    # RAR for usage thresholds: the counters crossed (docs/protocol.md, usage counters)
    usage_counters: tuple[UsageCounter, ...] = ()


# --- session state ----------------------------------------------------------------------------


class Grant(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """Quota granted for one rating group, held by one ledger reservation. (Fields added after
    the first eight are left out of the packing dictionary: see `_DICT_GRANT_FIELDS`.)"""

    reservation_id: str
    amount: int  # micro-units reserved
    units: int  # granted units
    granted_s: int  # when granted (epoch s)
    validity_s: int
    tariff_change_s: int | None
    final: bool  # carried Final-Unit-Indication
    fee: int  # setup fee included in `amount` (0 if already charged)
    # load-modulated prices (ocs/core/load.py): the band the grant was decided in and its exact
    # factor, (name, num, den); its usage is charged so. None for a group whose price ignores
    # load (one byte in a packed session).
    load: tuple[str, int, int] | None = None


class Container(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One used-unit container of a CDR (WIRE.md section 9)."""

    rating_group: int
    time_s: int
    units: int
    unit: str  # the rating group's unit ("octets", "seconds", "units")
    uplink: int | None
    downlink: int | None
    triggers: tuple[str, ...]
    tariff_change_usage: int | None
    charge: int
    setup_fee: int
    beyond_grant: int
    at_ms: int
    # offers: the units allowances paid, as (offer, allowance, units); `charge` is the money
    # paid for the rest (`units` less these)
    drawn: tuple[tuple[str, str, int], ...] = ()
    # load-modulated prices: the band and factor ("3/2") the usage was charged in (None: none)
    load: tuple[str, str] | None = None


class Session(msgspec.Struct, kw_only=True, array_like=True):
    session_id: str
    account_id: str
    subscriber: str
    origin_host: str
    service_context_id: str
    opened_ms: int
    last_ms: int
    number: int  # the last CC-Request-Number processed
    last_answer: bytes  # encoded CCA body of that request (section 6)
    tcc_s: int
    grants: dict[int, Grant] = {}
    rated: dict[int, int] = {}  # units rated so far per rating group (increments, tiers)
    fee_charged: list[int] = []  # rating groups whose setup fee was charged
    starved: list[int] = []  # rating groups held at final units or refused (top-up -> RAR)
    charge_total: int = 0
    containers: list[Container] = []  # since the last CDR of this session
    record_opened_ms: int = 0
    local_seq: int = 0  # CDRs written for this session
    service_information: dict[str, Any] | None = None
    grants_made: int = 0  # numbers this session's reservations (ids unique in the ledger)


class CachedAnswer(msgspec.Struct, array_like=True, gc=False):
    at_ms: int
    command: int
    body: bytes
    session_id: str = ""  # the session whose request this answered ("" for events, AMR)
    # the Session-Id of the EVENT this answered: (Origin-Host, it) is a duplicate too (WIRE.md 6)
    event_session_id: str = ""


class RefundableDebit(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """What one DIRECT_DEBITING took from an account for one rating group, and a refund may
    still give back (WIRE.md 5.4): the units and the money not refunded yet."""

    at_ms: int  # when it was debited (the time of its input)
    units: int
    charge: int  # micro-units
    # offers: the allowance units among `units` (charge 0), by balance, oldest first; a refund
    # gives them back to their balances, newest first
    drawn: list[HoldPart] = []


#: The layout of `CoreState`, written into every snapshot. 1: before refunds were bounded by
#: debits (no `layout`, `refund_window_s`, `refundable`, nor `CachedAnswer.event_session_id`);
#: such a snapshot is still restored (docs/operations.md, "Upgrades"). 2: closed sessions without
#: their owner (`closed`), restored with the owner unknown. 3: this build (`tombstones`, closed
#: sessions with their owner). 4: this build (`estimates`: a build of layout 3 would take an
#: estimate session for a real one, so it must refuse the snapshot).
#: 5: the features of issues 14 and 15 (the `CoreState` fields after `estimates`: offers,
#: loans, groups, the history of movements (`history`, `history_limit`), policies, IoT, load
#: bands (`load_pricing`, and grants with a load band: an earlier build would charge them at
#: the base price), counters).
CORE_LAYOUT: Final = 5


class CoreState(msgspec.Struct, kw_only=True, array_like=True):
    """The core's part of a snapshot (the ledger snapshots itself)."""

    catalog_text: str
    cdr_seq: int
    sessions: list[Session | bytes]  # bytes: an idle session, packed (see `pack_session`)
    seen: list[tuple[str, int, CachedAnswer]]  # (peer, End-to-End-Id, answer), oldest first
    # Closed sessions of snapshots written before sessions had owners: session id, closed at
    # ms, number, CCA body. Read, never written (their owner is unknown: see `_repeat`).
    closed: list[tuple[str, int, int, bytes]]
    usage: dict[str, int]
    operations: dict[str, str] = {}  # Operation-Id -> what it names (see `_admin`)
    reservation_seq: int = 0  # reservations opened so far (their ids: see `_grant`)
    refund_window_s: int = DEFAULT_REFUND_WINDOW_S  # `Settings` in force
    # (account id, rating group, its refundable debits oldest first): see `ChargingCore._refund`
    refundable: list[tuple[str, int, list[RefundableDebit]]] = []
    layout: int = 1  # CORE_LAYOUT of the build that wrote it (absent: 1)
    # Closed sessions (for the duplicate window): session id, closed at ms, number, CCA body,
    # the peer that owned it (layout 3). After `layout`, which stays where a build of layout 2
    # reads it: such a build decodes a layout 3 snapshot without this field and refuses it as
    # newer than itself rather than misread it.
    tombstones: list[tuple[str, int, int, bytes, str]] = []
    # When the catalog in force was put in force (the `now_ms` of its CATALOG input); None in
    # a snapshot written before this field existed (a build of the same layout, which ignores
    # it when it reads this one: it is information for operators, never used to rate).
    catalog_since_ms: int | None = None
    # The open sessions that are estimates (docs/protocol.md "Estimate"; layout 4): rated as any
    # session, but their grants reserve nothing (`Grant.reservation_id` ""), their usage is
    # booked nowhere and they write no CDR.
    estimates: list[str] = []
    # The last movements of every account (layout 5, ocs/core/history.py: account id -> its
    # packed history) and how many are kept per account (`Settings.history_limit`).
    history: dict[str, bytes] = {}
    history_limit: int = DEFAULT_HISTORY_LIMIT
    # Offers: subscriptions, unit balances, unit holds (ocs/core/offers.py; layout 5). None in
    # a snapshot of an earlier layout: no account held an offer.
    offers: OffersState | None = None
    # Loans (layout 5): the loan book's snapshot (`ocs.core.loans.LoanState`, msgpack); b""
    # in a snapshot of an earlier layout (no loans).
    loans: bytes = b""
    # groups (layout 5): shared group packages, members, usage, statements (ocs/core/groups.py)
    groups: GroupsState | None = None
    # Load-modulated prices (layout 5, ocs/core/load.py): the band in force and the recent
    # grants; None in older snapshots (the base band, no recent grants).
    load_pricing: LoadState | None = None
    # status-policy (layout 5): per account with any, (account id, operator-defined state or "",
    # inhibit threshold, notify threshold) (`ocs.core.policy.PolicyBook.snapshot`)
    policies: list[tuple[str, str, int | None, int | None]] = []
    # The IoT low-signalling profile's state (`ocs.core.iot.IotProfile.snapshot`, msgpack;
    # b"": none; layout 5).
    iot: bytes = b""
    # The values of the usage counters (`ocs.core.counters`, layout 5): (account id, counter
    # name, anchor ms, period start ms, period end ms or None, value). The money of
    # `[account] usage_thresholds` stays in `usage`.
    counters: list[tuple[str, str, int, int, int | None, int]] = []


STATE_ENCODER: Final = msgspec.msgpack.Encoder()
STATE_DECODER: Final = msgspec.msgpack.Decoder(CoreState)

# --- idle sessions, packed ---------------------------------------------------------------------

# A session that has been idle for the duplicate window (its last answer left the duplicate
# cache) is kept as bytes: its msgpack encoding (last answer included), deflated with a preset
# dictionary made of a typical session. Most of what a session holds is AVP names, field
# layout and repeated values, so ~1,100 bytes of objects become ~100-160 bytes. The next request
# of the session (or anything that changes it) unpacks it again (~10 µs).
_PACK_WBITS: Final = -11  # raw deflate, 2 KiB window: the dictionary and a session fit
#: The version of the preset dictionary, the first byte of every packed session: a snapshot
#: packed with another dictionary is refused, never unpacked into garbage. Bump it whenever
#: `_typical_session` changes (tests/charging/test_idle_sessions.py pins the dictionary).
PACK_TAG: Final = 1
_SESSION_ENCODER: Final = msgspec.msgpack.Encoder()
_SESSION_DECODER: Final = msgspec.msgpack.Decoder(Session)


def _typical_session() -> Session:
    """A fixed, made-up data session with two grants: the preset dictionary of the packing.
    Changing it changes the packed bytes (never what they unpack to), so packed sessions in an
    older snapshot unpack only with the dictionary they were packed with: bump `PACK_TAG`."""
    msccs = tuple(
        MsccAnswer(
            rating_group=rg,
            result_code=2001,
            granted_service_unit=ServiceUnit(cc_total_octets=units),
            validity_time=3600,
            volume_quota_threshold=units // 5,
            quota_holding_time=300,
            linked_rating_group=(other,),
        )
        for rg, other, units in ((10, 20, 10_485_760), (20, 10, 52_428_800))
    )
    sid = "pgw1.operator.net;1700000000;0000000001"
    answer = CCA(
        session_id=sid,
        result_code=2001,
        origin_host="ocs.operator.net",
        origin_realm="operator.net",
        auth_application_id=4,
        cc_request_type=CCRequestType.UPDATE,
        cc_request_number=1,
        multiple_services_credit_control=msccs,
    )
    return Session(
        session_id=sid,
        account_id="acct-00000001",
        subscriber="491510000000001",
        origin_host="pgw1.operator.net",
        service_context_id="32251@3gpp.org",
        opened_ms=1_700_000_000_000,
        last_ms=1_700_000_060_000,
        number=1,
        last_answer=encode_body(answer),
        tcc_s=7200,
        grants={
            rg: Grant(
                reservation_id=f"r{rg}",
                amount=100_000,
                units=units,
                granted_s=1_700_000_060,
                validity_s=3600,
                tariff_change_s=None,
                final=False,
                fee=0,
            )
            for rg, units in ((10, 10_485_760), (20, 52_428_800))
        },
        rated={10: 1_048_576, 20: 1_048_576},
        fee_charged=[],
        starved=[],
        containers=[],
        record_opened_ms=1_700_000_000_000,
        grants_made=4,
    )


#: The fields a `Grant` had when the dictionary was made (`PACK_TAG` 1): fields added later
#: (at their defaults in the typical session) are left out of it, so the dictionary stays the
#: same bytes and packed sessions of older snapshots still unpack.
_DICT_GRANT_FIELDS: Final = 8


def _dictionary(session: Session) -> bytes:
    """The preset dictionary made of `session`: its msgpack encoding, with its grants encoded
    with their first `_DICT_GRANT_FIELDS` fields only."""
    raw = msgspec.to_builtins(session, builtin_types=(bytes,))
    grants = raw[Session.__struct_fields__.index("grants")]
    for rg, grant in grants.items():
        grants[rg] = grant[:_DICT_GRANT_FIELDS]
    return _SESSION_ENCODER.encode(raw)


PACK_DICT: Final = _dictionary(_typical_session())


def pack_session(session: Session) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, _PACK_WBITS, 2, zlib.Z_DEFAULT_STRATEGY, PACK_DICT)
    data = packer.compress(_SESSION_ENCODER.encode(session)) + packer.flush()
    return bytes((PACK_TAG,)) + data


def unpack_session(data: bytes) -> Session:
    if not data or data[0] != PACK_TAG:
        found = data[0] if data else None
        raise ValueError(f"session packed with dictionary {found}, this build has {PACK_TAG}")
    unpacker = zlib.decompressobj(_PACK_WBITS, PACK_DICT)
    raw = unpacker.decompress(memoryview(data)[1:]) + unpacker.flush()
    return _SESSION_DECODER.decode(raw)


class SessionsView(Mapping[str, Session]):
    """Read-only view of the open sessions by Session-Id; packed ones are unpacked (as copies:
    changing what this returns changes nothing)."""

    __slots__ = ("_sessions",)

    def __init__(self, sessions: dict[str, Session | bytes]) -> None:
        self._sessions = sessions

    def __getitem__(self, sid: str) -> Session:
        session = self._sessions[sid]
        return session if isinstance(session, Session) else unpack_session(session)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, sid: object) -> bool:
        return sid in self._sessions

    def packed(self) -> int:
        """How many of the sessions are packed."""
        return sum(1 for s in self._sessions.values() if not isinstance(s, Session))


CDR_ENCODER: Final = msgspec.json.Encoder()


class Result(NamedTuple):
    """An answer (and its encoded body, to send without encoding again), and whether it came
    from the duplicate cache. Every request that is not a duplicate is journaled, refusals and
    reads included: replay then rebuilds the duplicate cache exactly, so a duplicate gets its
    first answer even across a restart (WIRE.md 6)."""

    answer: Answer
    body: bytes
    duplicate: bool
