"""The balance store's deterministic core: accounts and a two-phase reservation ledger.

State-machine replication in the TigerBeetle style: every mutation is a command value that
carries its own operation id and the time ``now_ms`` (int **milliseconds** since the Unix epoch).
`Ledger.apply` is synchronous, never reads a clock, never touches a file, and is used both live
and when the journal is replayed after a restart, so replay rebuilds exactly the same state.

Business results are `LedgerOutcome` values with a `Code`, never exceptions.

Two-phase transfers
    ``Reserve`` holds an amount against an account (a pending transfer; its ``id`` is the
    reservation id). ``Post`` closes it and charges the amount actually used, which may exceed
    what was held (overuse is charged anyway; the balance may then go below ``-credit_limit``
    and the outcome says ``overdraft=True``). ``Void`` closes it without charge. ``Expire``
    closes every reservation whose ``expires_at_ms <= now_ms``. A reservation stays open until
    one of these closes it: a ``Post`` that arrives after ``expires_at_ms`` but before the
    ``Expire`` command is still accepted.

Funds rule
    ``available = balance - reserved``. ``Reserve`` and (non-overdraft) ``Debit`` are allowed
    iff ``available - amount >= -credit_limit``. ``Credit`` is always allowed.

Idempotency
    Every command has an ``id``. Applying a command whose id was already applied returns the
    first outcome and changes nothing (failures included: a refused debit repeated with the same
    id stays refused). Ids of commands that fail static validation (`Code.INVALID`) are not
    remembered: validity depends on the command alone, so a repeat gets the same answer anyway.
    Ids are remembered for at least ``retention_ms`` (default 24 h) of ledger time (the highest
    ``now_ms`` applied so far) and are part of snapshots, so idempotency survives restarts. Memory
    is capped at ``max_remembered`` ids (default 1,000,000): past that the oldest are forgotten
    first, so under sustained load above ``max_remembered / retention`` the horizon shrinks to
    ``max_remembered / rate``. Ids share one namespace across all command types; the caller keeps
    them unique (e.g. ``"<origin-host>/<operation-id>"``).

Invariants, at every step (`Ledger.check_invariants`)
    ``initial + credits - debits == sum of balances`` over the ledger (the totals are kept per
    ledger, not per account, to keep an account at ~500 bytes); per account ``reserved`` equals
    the sum of its open reservations.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Final

from ocs.core.accounts import (
    AccountRecord,
    AccountStatus,
    AccountView,
    SubscriberIdentity,
    subscription_key,
)
from ocs.core.due import DueBuckets
from ocs.core.ledger_types import (
    COMMAND_ENCODER,
    DAY_MS,
    LEDGER_STATE_DECODER,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_TOTAL,
    OK_OUTCOME,
    OK_OVERDRAFT,
    OUTCOME_OF_CODE,
    SNAPSHOT_VERSION,
    CloseAccount,
    Code,
    Command,
    CreateAccount,
    Credit,
    Debit,
    Expire,
    InvariantViolation,
    LedgerOutcome,
    LedgerState,
    Post,
    Reservation,
    Reserve,
    SetStatus,
    Totals,
    UpdateAccount,
    Void,
    command_problem,
    decode_command,
    encode_command,
    intern_outcome,
)

__all__ = [
    "DAY_MS",
    "MAX_AMOUNT",
    "MAX_ID_LENGTH",
    "MAX_TOTAL",
    "CloseAccount",
    "Code",
    "Command",
    "CreateAccount",
    "Credit",
    "Debit",
    "Expire",
    "InvariantViolation",
    "Ledger",
    "LedgerOutcome",
    "Post",
    "Reservation",
    "Reserve",
    "SetStatus",
    "Totals",
    "UpdateAccount",
    "Void",
    "decode_command",
    "encode_command",
]

# Small ints that recur in every account (currency codes, a handful of credit limits) are shared
# instead of stored once per account: this is a bounded table, not an interning of money.
_SHARED_INTS: dict[int, int] = {}


def _shared(value: int) -> int:
    shared = _SHARED_INTS.get(value)
    if shared is not None:
        return shared
    if len(_SHARED_INTS) < 4096:
        _SHARED_INTS[value] = value
    return value


def _status(value: int) -> AccountStatus:
    return value if type(value) is AccountStatus else AccountStatus(value)


# --- the ledger --------------------------------------------------------------------------------


class Ledger:
    """In-memory accounts + reservations + idempotency memory. Not thread-safe."""

    def __init__(self, *, retention_ms: int = DAY_MS, max_remembered: int = 1_000_000) -> None:
        if retention_ms < 0 or max_remembered < 1:
            raise ValueError("retention_ms must be >= 0 and max_remembered >= 1")
        self.retention_ms: Final = retention_ms
        self.max_remembered: Final = max_remembered
        self._accounts: dict[str, AccountRecord] = {}
        self._by_subscription: dict[str, AccountRecord] = {}
        self._reservations: dict[str, Reservation] = {}
        # reservation ids by expires_at_ms; closed reservations leave stale entries, skipped lazily
        self._expiry: DueBuckets[str] = DueBuckets()
        self._seen: dict[str, LedgerOutcome] = {}
        self._seen_order: deque[str] = deque()
        # [second of ledger time, how many of _seen_order's ids were remembered in it]
        self._seen_marks: deque[list[int]] = deque()
        self._clock = 0
        self._initial = 0
        self._credits = 0
        self._debits = 0

    # -- applying commands

    def apply(self, cmd: Command, *, replay: bool = False, internal: bool = False) -> LedgerOutcome:
        """Apply one command and return its outcome.

        A command whose id was applied before returns the first outcome and changes nothing.
        ``replay=True`` (journal replay) skips validation and that look-up: the journal only holds
        valid commands that were new when first applied, so replay must apply each of them, even
        if the retention settings (or validation rules) changed between runs.
        """
        # An `internal` command is one the charging core built from values it validated
        # (prices, unique reservation ids), inside a request that is itself applied once
        # (duplicate detection, journal replay): no static checks, and its id is not
        # remembered, so the bounded id memory serves operators' Operation-Ids alone.
        if not internal and not replay:  # journaled commands passed these when first applied
            problem = command_problem(cmd)
            if problem is not None:
                return LedgerOutcome(code=Code.INVALID, detail=problem)
            prior = self._seen.get(cmd.id)
            if prior is not None:
                return prior
        if cmd.now_ms > self._clock:
            self._clock = cmd.now_ms
            self._forget_expired_ids()
        outcome = self._handle(cmd)
        if not internal:
            self._remember(cmd.id, outcome)
        return outcome

    def recall(self, op_id: str) -> LedgerOutcome | None:
        """The remembered outcome of operation ``op_id``, or None if it is not remembered."""
        return self._seen.get(op_id)

    # -- convenience operations: build a command and apply it

    def create_account(
        self,
        op_id: str,
        *,
        now_ms: int,
        account_id: str,
        currency: int,
        subscriptions: Sequence[SubscriberIdentity] = (),
        credit_limit: int = 0,
        balance: int = 0,
        status: AccountStatus = AccountStatus.ACTIVE,
    ) -> LedgerOutcome:
        return self.apply(
            CreateAccount(
                id=op_id,
                now_ms=now_ms,
                account_id=account_id,
                subscriptions=tuple(subscriptions),
                currency=currency,
                credit_limit=credit_limit,
                balance=balance,
                status=status,
            )
        )

    def credit(self, op_id: str, *, now_ms: int, account_id: str, amount: int) -> LedgerOutcome:
        return self.apply(Credit(id=op_id, now_ms=now_ms, account_id=account_id, amount=amount))

    def debit(
        self,
        op_id: str,
        *,
        now_ms: int,
        account_id: str,
        amount: int,
        allow_overdraft: bool = False,
    ) -> LedgerOutcome:
        return self.apply(
            Debit(
                id=op_id,
                now_ms=now_ms,
                account_id=account_id,
                amount=amount,
                allow_overdraft=allow_overdraft,
            )
        )

    def set_status(
        self, op_id: str, *, now_ms: int, account_id: str, status: AccountStatus
    ) -> LedgerOutcome:
        return self.apply(SetStatus(id=op_id, now_ms=now_ms, account_id=account_id, status=status))

    def update_account(
        self,
        op_id: str,
        *,
        now_ms: int,
        account_id: str,
        credit_limit: int | None = None,
        subscriptions: Sequence[SubscriberIdentity] | None = None,
    ) -> LedgerOutcome:
        return self.apply(
            UpdateAccount(
                id=op_id,
                now_ms=now_ms,
                account_id=account_id,
                credit_limit=credit_limit,
                subscriptions=None if subscriptions is None else tuple(subscriptions),
            )
        )

    def close_account(self, op_id: str, *, now_ms: int, account_id: str) -> LedgerOutcome:
        return self.apply(CloseAccount(id=op_id, now_ms=now_ms, account_id=account_id))

    def reserve(
        self, reservation_id: str, *, now_ms: int, account_id: str, amount: int, expires_at_ms: int
    ) -> LedgerOutcome:
        return self.apply(
            Reserve(
                id=reservation_id,
                now_ms=now_ms,
                account_id=account_id,
                amount=amount,
                expires_at_ms=expires_at_ms,
            )
        )

    def post(self, op_id: str, *, now_ms: int, reservation_id: str, amount: int) -> LedgerOutcome:
        return self.apply(
            Post(id=op_id, now_ms=now_ms, reservation_id=reservation_id, amount=amount)
        )

    def void(self, op_id: str, *, now_ms: int, reservation_id: str) -> LedgerOutcome:
        return self.apply(Void(id=op_id, now_ms=now_ms, reservation_id=reservation_id))

    def expire_due(self, now_ms: int, *, op_id: str | None = None) -> LedgerOutcome:
        """Release the reservations due at ``now_ms``.

        Applies an `Expire` command only if something is due; otherwise returns a plain OK and
        records nothing. The default op id is ``"expire@<now_ms>"``.
        """
        due = self.next_expiry()
        if due is None or due > now_ms:
            return OK_OUTCOME
        return self.apply(
            Expire(id=op_id if op_id is not None else f"expire@{now_ms}", now_ms=now_ms)
        )

    def _create(self, cmd: CreateAccount) -> LedgerOutcome:
        if cmd.account_id in self._accounts:
            return OUTCOME_OF_CODE[Code.ACCOUNT_EXISTS]
        keys = tuple([subscription_key(s.type, s.data) for s in cmd.subscriptions])
        if any(k in self._by_subscription for k in keys):
            return OUTCOME_OF_CODE[Code.SUBSCRIPTION_TAKEN]
        account = AccountRecord(
            account_id=cmd.account_id,
            status=_status(cmd.status),
            currency=_shared(cmd.currency),
            credit_limit=_shared(cmd.credit_limit),
            balance=cmd.balance,
            reserved=0,
            subscriptions=keys,
        )
        self._initial += cmd.balance
        self._accounts[account.account_id] = account
        for key in keys:
            self._by_subscription[key] = account
        return OK_OUTCOME

    def _credit(self, cmd: Credit) -> LedgerOutcome:
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        balance = account.balance + cmd.amount
        if balance > MAX_TOTAL:
            return OUTCOME_OF_CODE[Code.LIMIT_EXCEEDED]
        account.balance = balance
        self._credits += cmd.amount
        return OK_OUTCOME

    def _debit(self, cmd: Debit) -> LedgerOutcome:
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        if (
            not cmd.allow_overdraft
            and account.balance - account.reserved - cmd.amount < -account.credit_limit
        ):
            return OUTCOME_OF_CODE[Code.INSUFFICIENT_FUNDS]
        return self._charge(account, cmd.amount)

    def _charge(self, account: AccountRecord, amount: int) -> LedgerOutcome:
        balance = account.balance - amount
        if balance < -MAX_TOTAL:
            return OUTCOME_OF_CODE[Code.LIMIT_EXCEEDED]
        account.balance = balance
        self._debits += amount
        return OK_OVERDRAFT if balance < -account.credit_limit else OK_OUTCOME

    def _set_status(self, cmd: SetStatus) -> LedgerOutcome:
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        account.status = _status(cmd.status)
        return OK_OUTCOME

    def _update(self, cmd: UpdateAccount) -> LedgerOutcome:
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        if cmd.subscriptions is not None:
            keys = tuple([subscription_key(s.type, s.data) for s in cmd.subscriptions])
            index = self._by_subscription
            if any(index.get(k, account) is not account for k in keys):
                return OUTCOME_OF_CODE[Code.SUBSCRIPTION_TAKEN]
            for key in account.subscriptions:
                del index[key]
            for key in keys:
                index[key] = account
            account.subscriptions = keys
        if cmd.credit_limit is not None:
            account.credit_limit = _shared(cmd.credit_limit)
        return OK_OUTCOME

    def _close(self, cmd: CloseAccount) -> LedgerOutcome:
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        if account.balance != 0 or account.reserved != 0:
            return OUTCOME_OF_CODE[Code.NOT_SETTLED]
        for key in account.subscriptions:
            del self._by_subscription[key]
        del self._accounts[cmd.account_id]
        return OK_OUTCOME

    def _reserve(self, cmd: Reserve) -> LedgerOutcome:
        if cmd.id in self._reservations:
            return OUTCOME_OF_CODE[Code.RESERVATION_EXISTS]
        account = self._accounts.get(cmd.account_id)
        if account is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_ACCOUNT]
        if account.status is not AccountStatus.ACTIVE:
            return OUTCOME_OF_CODE[Code.ACCOUNT_NOT_ACTIVE]
        if account.balance - account.reserved - cmd.amount < -account.credit_limit:
            return OUTCOME_OF_CODE[Code.INSUFFICIENT_FUNDS]
        account.reserved += cmd.amount
        self._reservations[cmd.id] = Reservation(
            reservation_id=cmd.id,
            account_id=account.account_id,
            amount=_shared(cmd.amount),  # the price of a default quantum recurs
            expires_at_ms=cmd.expires_at_ms,
            owner=cmd.owner,
        )
        self._expiry.add(cmd.expires_at_ms, cmd.id)
        return OK_OUTCOME

    def _post(self, cmd: Post) -> LedgerOutcome:
        reservation = self._reservations.get(cmd.reservation_id)
        if reservation is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_RESERVATION]
        account = self._accounts[reservation.account_id]
        outcome = self._charge(account, cmd.amount)
        if outcome.code is Code.OK:
            self._release(account, reservation)
        return outcome

    def _void(self, cmd: Void) -> LedgerOutcome:
        reservation = self._reservations.get(cmd.reservation_id)
        if reservation is None:
            return OUTCOME_OF_CODE[Code.UNKNOWN_RESERVATION]
        self._release(self._accounts[reservation.account_id], reservation)
        return OK_OUTCOME

    def _expire(self, cmd: Expire) -> LedgerOutcome:
        expired: list[str] = []
        owners: list[str] = []
        expiry, reservations = self._expiry, self._reservations
        while True:
            expires_at_ms = expiry.earliest()
            if expires_at_ms is None or expires_at_ms > cmd.now_ms:
                break
            _, ids = expiry.pop_earliest()
            for rid in sorted(set(ids)):  # by (expires_at_ms, id), as documented
                reservation = reservations.get(rid)
                if reservation is None or reservation.expires_at_ms != expires_at_ms:
                    continue  # stale entry of a closed reservation
                self._release(self._accounts[reservation.account_id], reservation)
                expired.append(rid)
                owners.append(reservation.owner)
        if not expired:
            return OK_OUTCOME
        return LedgerOutcome(code=Code.OK, expired=tuple(expired), expired_owners=tuple(owners))

    def _release(self, account: AccountRecord, reservation: Reservation) -> None:
        del self._reservations[reservation.reservation_id]
        account.reserved -= reservation.amount
        entries = len(self._expiry)
        if entries > 64 and entries > 2 * len(self._reservations):
            self._rebuild_expiry()

    def _rebuild_expiry(self) -> None:
        self._expiry.rebuild(
            (r.expires_at_ms, r.reservation_id) for r in self._reservations.values()
        )

    def _handle(self, cmd: Command) -> LedgerOutcome:
        # the commands of charging first; a chain of checks, not a table of methods, so that
        # the compiled build (mypyc) calls the methods directly
        if isinstance(cmd, Reserve):
            return self._reserve(cmd)
        if isinstance(cmd, Post):
            return self._post(cmd)
        if isinstance(cmd, Void):
            return self._void(cmd)
        if isinstance(cmd, Debit):
            return self._debit(cmd)
        if isinstance(cmd, Credit):
            return self._credit(cmd)
        if isinstance(cmd, Expire):
            return self._expire(cmd)
        if isinstance(cmd, CreateAccount):
            return self._create(cmd)
        if isinstance(cmd, UpdateAccount):
            return self._update(cmd)
        if isinstance(cmd, CloseAccount):
            return self._close(cmd)
        return self._set_status(cmd)

    # -- idempotency memory

    def _remember(self, op_id: str, outcome: LedgerOutcome) -> None:
        if op_id in self._seen:  # only on replay after a retention change: keep its age
            self._seen[op_id] = outcome
            return
        self._seen[op_id] = outcome
        self._seen_order.append(op_id)
        second = self._clock // 1000
        marks = self._seen_marks
        if marks and marks[-1][0] == second:
            marks[-1][1] += 1
        else:
            marks.append([second, 1])
        while len(self._seen) > self.max_remembered:
            self._forget_oldest(1)

    def _forget_expired_ids(self) -> None:
        horizon = self._clock - self.retention_ms
        marks = self._seen_marks
        # Every id of a mark's second was remembered before (second + 1) * 1000.
        while marks and (marks[0][0] + 1) * 1000 <= horizon:
            self._forget_oldest(marks[0][1])

    def _forget_oldest(self, count: int) -> None:
        order, seen, marks = self._seen_order, self._seen, self._seen_marks
        while count > 0:
            mark = marks[0]
            take = min(count, mark[1])
            for _ in range(take):
                del seen[order.popleft()]
            mark[1] -= take
            count -= take
            if mark[1] == 0:
                marks.popleft()

    # -- reading

    def account(self, account_id: str) -> AccountView | None:
        account = self._accounts.get(account_id)
        return None if account is None else account.view()

    def standing(self, account_id: str) -> tuple[AccountStatus, int] | None:
        """The account's status and headroom (``AccountView.headroom``), or None; cheaper than
        `account` (no view is built), for the charging core's per-rating-group checks."""
        account = self._accounts.get(account_id)
        if account is None:
            return None
        return account.status, account.balance - account.reserved + account.credit_limit

    def standing_for(self, sub_type: int, data: str) -> tuple[str, AccountStatus, int] | None:
        """The account a subscription identity resolves to, as (id, status, headroom), or
        None: `account_for` without building a view."""
        account = self._by_subscription.get(subscription_key(sub_type, data))
        if account is None:
            return None
        headroom = account.balance - account.reserved + account.credit_limit
        return account.account_id, account.status, headroom

    def account_for(self, sub_type: int, data: str) -> AccountView | None:
        """The account a subscription identity resolves to (O(1)), or None."""
        account = self._by_subscription.get(subscription_key(sub_type, data))
        return None if account is None else account.view()

    def reservation(self, reservation_id: str) -> Reservation | None:
        return self._reservations.get(reservation_id)

    def accounts(self) -> Iterator[AccountView]:
        for account in list(self._accounts.values()):
            yield account.view()

    def first_account_ids(self, start: str, count: int) -> list[str]:
        """The ``count`` smallest Account-Ids from ``start`` on (inclusive), in code point
        order: one pass over the accounts, no view built."""
        return heapq.nsmallest(count, (i for i in self._accounts if i >= start))

    def reservations(self) -> Iterator[Reservation]:
        yield from list(self._reservations.values())

    def next_expiry(self) -> int | None:
        """The earliest ``expires_at_ms`` of the open reservations, or None."""
        expiry, reservations = self._expiry, self._reservations
        while True:
            expires_at_ms = expiry.earliest()
            if expires_at_ms is None:
                return None
            _, ids = expiry.peek_earliest()
            live = [
                rid
                for rid in ids
                if (r := reservations.get(rid)) is not None and r.expires_at_ms == expires_at_ms
            ]
            if len(live) == len(ids):
                return expires_at_ms
            expiry.pop_earliest()  # drop the stale entries once, keep the live ones
            for rid in live:
                expiry.add(expires_at_ms, rid)

    @property
    def clock(self) -> int:
        """The highest ``now_ms`` applied so far (drives the retention of operation ids)."""
        return self._clock

    def totals(self) -> Totals:
        return Totals(initial=self._initial, credits=self._credits, debits=self._debits)

    @property
    def account_count(self) -> int:
        return len(self._accounts)

    @property
    def reservation_count(self) -> int:
        return len(self._reservations)

    @property
    def remembered_count(self) -> int:
        return len(self._seen)

    def check_invariants(self) -> None:
        """Raise `InvariantViolation` unless the books balance. O(accounts + reservations)."""
        held: dict[str, int] = {}
        for r in self._reservations.values():
            if r.account_id not in self._accounts:
                raise InvariantViolation(f"reservation {r.reservation_id!r} of unknown account")
            held[r.account_id] = held.get(r.account_id, 0) + r.amount
        if self._credits < 0 or self._debits < 0:
            raise InvariantViolation("negative credit or debit total")
        balances = sum(a.balance for a in self._accounts.values())
        if self._initial + self._credits - self._debits != balances:
            raise InvariantViolation(
                f"initial {self._initial} + credits {self._credits} - debits {self._debits} "
                f"!= sum of balances {balances}"
            )
        for a in self._accounts.values():
            if held.get(a.account_id, 0) != a.reserved:
                raise InvariantViolation(
                    f"{a.account_id!r}: reserved {a.reserved} != open reservations "
                    f"{held.get(a.account_id, 0)}"
                )
            if a.reserved < 0:
                raise InvariantViolation(f"{a.account_id!r}: negative reserved")
            for key in a.subscriptions:
                if self._by_subscription.get(key) is not a:
                    raise InvariantViolation(f"{a.account_id!r}: subscription {key!r} not indexed")
        if len(self._by_subscription) != sum(len(a.subscriptions) for a in self._accounts.values()):
            raise InvariantViolation("subscription index has stray entries")
        if sum(m[1] for m in self._seen_marks) != len(self._seen_order) or len(
            self._seen_order
        ) != len(self._seen):
            raise InvariantViolation("idempotency memory out of step")

    # -- snapshots

    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes (deterministic: equal states give equal bytes)."""
        table: dict[LedgerOutcome, int] = {}
        seen = self._seen
        refs = [table.setdefault(seen[i], len(table)) for i in self._seen_order]
        return COMMAND_ENCODER.encode(
            LedgerState(
                version=SNAPSHOT_VERSION,
                clock=self._clock,
                totals=self.totals(),
                accounts=list(self._accounts.values()),
                reservations=list(self._reservations.values()),
                seen_ids=list(self._seen_order),
                seen_refs=refs,
                outcomes=list(table),
                seen_marks=[list(m) for m in self._seen_marks],
            )
        )

    def restore(self, data: bytes | memoryview) -> None:
        """Replace the whole state with a `snapshot`'s."""
        state = LEDGER_STATE_DECODER.decode(data)
        if state.version != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported ledger snapshot version {state.version}")
        if len(state.seen_ids) != len(state.seen_refs):
            raise ValueError("corrupt ledger snapshot: idempotency memory")
        shared = _shared
        for account in state.accounts:
            account.currency = shared(account.currency)
            account.credit_limit = shared(account.credit_limit)
        self._accounts = {a.account_id: a for a in state.accounts}
        self._by_subscription = {k: a for a in state.accounts for k in a.subscriptions}
        # Decoding gives each reservation its own copy of the account id and owner strings; the
        # running ledger shares one (the account's, the holder's): share them again.
        accounts = self._accounts
        owners: dict[str, str] = {}
        self._reservations = {
            r.reservation_id: Reservation(
                reservation_id=r.reservation_id,
                account_id=accounts[r.account_id].account_id if r.account_id in accounts else "",
                amount=shared(r.amount),
                expires_at_ms=r.expires_at_ms,
                owner=owners.setdefault(r.owner, r.owner),
            )
            for r in state.reservations
        }
        self._rebuild_expiry()
        table = [intern_outcome(o) for o in state.outcomes]
        self._seen = dict(zip(state.seen_ids, map(table.__getitem__, state.seen_refs), strict=True))
        self._seen_order = deque(state.seen_ids)
        self._seen_marks = deque(state.seen_marks)
        self._clock = state.clock
        self._initial = state.totals.initial
        self._credits = state.totals.credits
        self._debits = state.totals.debits
        remembered = len(self._seen)
        if remembered > self.max_remembered:
            self._forget_oldest(remembered - self.max_remembered)
        self._forget_expired_ids()
        if len(self._seen) < remembered:
            self._seen = dict(self._seen)  # a dict never shrinks on deletion: compact it
