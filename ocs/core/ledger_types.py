"""The ledger's value types: commands, outcomes, reservations, the snapshot layout.

msgspec Structs live here, apart from `ocs.core.ledger`'s logic, because that module is compiled
with mypyc, which drops the class keywords (``frozen=True``, ``tag=...``) of the classes it
compiles; this module stays plain Python. Everything here is re-exported by `ocs.core.ledger`.
"""

from __future__ import annotations

import enum
from typing import Final, TypeAlias

import msgspec

from ocs.core.accounts import AccountRecord, AccountStatus, SubscriberIdentity
from protocol import limits

DAY_MS: Final = 86_400_000
#: Largest single amount (credit, debit, reservation, post, initial balance, credit limit):
#: 10^15 micro-units = 10^9 currency units (the limit of protocol/limits.py, one definition).
MAX_AMOUNT: Final = limits.MAX_AMOUNT
#: Bound on every account balance, so it fits an int64. (The ledger-wide totals are not bounded:
#: at 2^63 micro-units they would take centuries of any operator's revenue to reach.)
MAX_TOTAL: Final = limits.MAX_BALANCE
MAX_TIME: Final = 2**62
MAX_ID_LENGTH: Final = 256
MAX_SUBSCRIPTIONS: Final = 16
SNAPSHOT_VERSION: Final = 1


class Code(enum.IntEnum):
    OK = 0
    INSUFFICIENT_FUNDS = 1
    UNKNOWN_ACCOUNT = 2
    ACCOUNT_EXISTS = 3
    SUBSCRIPTION_TAKEN = 4
    UNKNOWN_RESERVATION = 5
    RESERVATION_EXISTS = 6
    ACCOUNT_NOT_ACTIVE = 7
    #: A balance would leave +-MAX_TOTAL.
    LIMIT_EXCEEDED = 8
    #: The command itself is malformed (bad type, range, empty id ...); see `LedgerOutcome.detail`.
    INVALID = 9
    #: CloseAccount of an account with a balance or reservations.
    NOT_SETTLED = 10


class LedgerOutcome(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """The result of one command.

    `overdraft`: after a `Post` or an overdraft `Debit`, the posted balance is below
    ``-credit_limit`` (usage was charged beyond what the account could pay; CDRs show it).
    `expired`: for `Expire`, the ids of the reservations it released, in release order;
    `expired_owners`: their owners (see `Reserve.owner`), in the same order.
    `detail`: for `Code.INVALID`, what is wrong.
    """

    code: Code
    overdraft: bool = False
    expired: tuple[str, ...] = ()
    detail: str = ""
    expired_owners: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


OUTCOME_OF_CODE: Final = {code: LedgerOutcome(code=code) for code in Code}
OK_OUTCOME: Final = OUTCOME_OF_CODE[Code.OK]
OK_OVERDRAFT: Final = LedgerOutcome(code=Code.OK, overdraft=True)


def intern_outcome(outcome: LedgerOutcome) -> LedgerOutcome:
    if outcome.expired or outcome.detail:
        return outcome
    if outcome.overdraft:
        return OK_OVERDRAFT if outcome.code is Code.OK else outcome
    return OUTCOME_OF_CODE[outcome.code]


# --- commands ----------------------------------------------------------------------------------


class _Command(msgspec.Struct, frozen=True, kw_only=True, array_like=True, tag_field="t"):
    #: Operation id: applied once; a repeat returns the first outcome.
    id: str
    #: Time of the operation, int ms since the Unix epoch (the ledger's only clock).
    now_ms: int


class CreateAccount(_Command, frozen=True, kw_only=True, tag="create"):
    account_id: str
    subscriptions: tuple[SubscriberIdentity, ...] = ()
    currency: int
    credit_limit: int = 0
    #: Initial balance (may be negative, e.g. a migrated debt).
    balance: int = 0
    status: AccountStatus = AccountStatus.ACTIVE


class Credit(_Command, frozen=True, kw_only=True, tag="credit"):
    account_id: str
    amount: int


class Debit(_Command, frozen=True, kw_only=True, tag="debit"):
    account_id: str
    amount: int
    #: False (administration DEBIT, event DIRECT_DEBITING): refused with INSUFFICIENT_FUNDS if
    #: funds do not allow it. True: charged anyway (usage whose reservation is gone).
    allow_overdraft: bool = False


class SetStatus(_Command, frozen=True, kw_only=True, tag="status"):
    account_id: str
    status: AccountStatus


class UpdateAccount(_Command, frozen=True, kw_only=True, tag="update"):
    """Change an account's credit limit and/or replace its identities (None: unchanged)."""

    account_id: str
    credit_limit: int | None = None
    subscriptions: tuple[SubscriberIdentity, ...] | None = None


class CloseAccount(_Command, frozen=True, kw_only=True, tag="close"):
    """Remove an account whose balance and reservations are zero; its identities are freed."""

    account_id: str


class Reserve(_Command, frozen=True, kw_only=True, tag="reserve"):
    """Open a reservation; ``id`` is both the operation id and the reservation id."""

    account_id: str
    amount: int
    #: Absolute expiry, int ms since the epoch; must be later than ``now_ms``.
    expires_at_ms: int
    #: Who holds the reservation (the charging core: the Session-Id), told back on expiry.
    owner: str = ""


class Post(_Command, frozen=True, kw_only=True, tag="post"):
    reservation_id: str
    #: The amount charged; may exceed the reservation (overuse) or be 0 (nothing used).
    amount: int


class Void(_Command, frozen=True, kw_only=True, tag="void"):
    reservation_id: str


class Expire(_Command, frozen=True, kw_only=True, tag="expire"):
    """Release every open reservation with ``expires_at_ms <= now_ms`` (deterministic given
    state)."""


Command: TypeAlias = (
    CreateAccount
    | Credit
    | Debit
    | SetStatus
    | Reserve
    | Post
    | Void
    | Expire
    | UpdateAccount
    | CloseAccount
)

COMMAND_ENCODER: Final = msgspec.msgpack.Encoder()
_COMMAND_DECODER: Final[msgspec.msgpack.Decoder[Command]] = msgspec.msgpack.Decoder(Command)


def encode_command(cmd: Command) -> bytes:
    return COMMAND_ENCODER.encode(cmd)


def decode_command(data: bytes | memoryview) -> Command:
    return _COMMAND_DECODER.decode(data)


class Reservation(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    """An open reservation (immutable; `Ledger.reservation` hands out the stored object)."""

    reservation_id: str
    account_id: str
    amount: int
    expires_at_ms: int
    owner: str = ""


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    """Ledger-wide money movements: ``initial + credits - debits == sum of balances``.

    `initial`: opening balances of created accounts; `credits`: `Credit`; `debits`: `Debit` and
    `Post` (what charging and administration took).
    """

    initial: int
    credits: int
    debits: int


class InvariantViolation(AssertionError):
    """`Ledger.check_invariants` found the books out of balance (a bug, never a business result)."""


# --- snapshot layout ---------------------------------------------------------------------------


class LedgerState(msgspec.Struct, array_like=True):
    version: int
    clock: int
    totals: Totals
    accounts: list[AccountRecord]
    reservations: list[Reservation]
    #: Remembered operation ids, oldest first; their outcomes as indexes into `outcomes` (most
    #: outcomes are one of a handful of values); [second, count] marks of their age.
    seen_ids: list[str]
    seen_refs: list[int]
    outcomes: list[LedgerOutcome]
    seen_marks: list[list[int]]


LEDGER_STATE_DECODER: Final = msgspec.msgpack.Decoder(LedgerState)


# --- static validation (plain Python on purpose: it must see the values as given, a bool
# where an int belongs included, which compiled code would convert on reading)


def _is_int(value: object, low: int, high: int) -> bool:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        return False
    return low <= value <= high


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _is_status(value: object) -> bool:
    return _is_int(value, 0, len(AccountStatus) - 1)


def command_problem(cmd: object) -> str | None:
    """Why the command is malformed, or None. Depends on the command alone, never on state."""
    if not isinstance(cmd, _Command):
        return "not a ledger command"
    if not _is_id(cmd.id):
        return "id must be a non-empty string of at most 256 characters"
    if not _is_int(cmd.now_ms, 0, MAX_TIME):
        return "now_ms must be an int of ms since the epoch"
    if isinstance(cmd, Reserve):
        if not _is_id(cmd.account_id):
            return "bad account_id"
        if not _is_int(cmd.amount, 1, MAX_AMOUNT):
            return "amount must be an int in 1..10^15"
        if not _is_int(cmd.expires_at_ms, cmd.now_ms + 1, MAX_TIME):
            return "expires_at_ms must be an int later than now_ms"
        if not isinstance(cmd.owner, str) or len(cmd.owner) > MAX_ID_LENGTH:
            return "owner must be a string of at most 256 characters"
        return None
    if isinstance(cmd, Post):
        if not _is_id(cmd.reservation_id):
            return "bad reservation_id"
        if not _is_int(cmd.amount, 0, MAX_AMOUNT):
            return "amount must be an int in 0..10^15"
        return None
    if isinstance(cmd, Credit | Debit):
        if not _is_id(cmd.account_id):
            return "bad account_id"
        if not _is_int(cmd.amount, 1, MAX_AMOUNT):
            return "amount must be an int in 1..10^15"
        if isinstance(cmd, Debit) and not isinstance(cmd.allow_overdraft, bool):
            return "allow_overdraft must be a bool"
        return None
    if isinstance(cmd, Void):
        return None if _is_id(cmd.reservation_id) else "bad reservation_id"
    if isinstance(cmd, Expire):
        return None
    if isinstance(cmd, SetStatus):
        if not _is_id(cmd.account_id):
            return "bad account_id"
        return None if _is_status(cmd.status) else "status must be 0, 1 or 2"
    if isinstance(cmd, CreateAccount):
        return _create_problem(cmd)
    if isinstance(cmd, UpdateAccount):
        return _update_problem(cmd)
    if isinstance(cmd, CloseAccount):
        return None if _is_id(cmd.account_id) else "bad account_id"
    return "unknown command"


def _update_problem(cmd: UpdateAccount) -> str | None:
    if not _is_id(cmd.account_id):
        return "bad account_id"
    if cmd.credit_limit is not None and not _is_int(cmd.credit_limit, 0, MAX_AMOUNT):
        return "credit_limit must be an int in 0..10^15"
    if cmd.subscriptions is not None:
        return _subscriptions_problem(cmd.subscriptions)
    return None


def _create_problem(cmd: CreateAccount) -> str | None:
    if not _is_id(cmd.account_id):
        return "bad account_id"
    if not _is_int(cmd.currency, 0, 999):
        return "currency must be an ISO 4217 numeric code (0..999)"
    if not _is_int(cmd.credit_limit, 0, MAX_AMOUNT):
        return "credit_limit must be an int in 0..10^15"
    if not _is_int(cmd.balance, -MAX_AMOUNT, MAX_AMOUNT):
        return "balance must be an int in -10^15..10^15"
    if not _is_status(cmd.status):
        return "status must be 0, 1 or 2"
    return _subscriptions_problem(cmd.subscriptions)


def _subscriptions_problem(subs: object) -> str | None:
    if not isinstance(subs, tuple | list) or len(subs) > MAX_SUBSCRIPTIONS:
        return "subscriptions must be a sequence of at most 16 SubscriberIdentity"
    seen: set[tuple[int, str]] = set()
    for sub in subs:
        if not isinstance(sub, SubscriberIdentity):
            return "subscriptions must be SubscriberIdentity values"
        if not _is_int(sub.type, 0, 4) or not _is_id(sub.data):
            return "subscription type must be 0..4 and data a non-empty string"
        if (sub.type, sub.data) in seen:
            return "duplicate subscription"
        seen.add((sub.type, sub.data))
    return None
