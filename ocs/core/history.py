"""The history of an account's money and units: the movements a HISTORY request answers.

A *movement* is one change of an account's money balance (or of its units): a charge with the
number of the CDR that records it, a refund, an administrative credit or debit, the opening
balance of CREATE, and (recorded by their features) offer renewals and fees, loans and their
fees, repayments, apportionments and draws of units from an allowance. `MovementKind`
(protocol/codes.py) numbers them on the wire; docs/protocol.md, *Extension: history*,
documents the request.

The API (one call per movement, from the core, deterministic: time is passed in)::

    seq = core.history.record(
        account_id, now_ms, MovementKind.CREDIT, +amount,   # amount: the change of the money
        units=None, rating_group=None,                      # balance, signed (a charge < 0)
        cdr_seq=None, operation_id=None,                    # the CDR / Operation-Id, if any
    )

Record a movement when the money has moved (the ledger said OK, and not for the retry of an
operation applied before), in the same input, so that replay records it again at the same
place. A draw of units from an allowance is ``amount=0, units=N, rating_group=RG``;
a movement of both units and money gives both. Apportionments, fees and loans give their
own kinds. `forget(account_id)` when an account is closed.

Bound. Each account keeps its last `limit` movements (`Settings.history_limit`, 10 unless
configured; ``ocs serve --history-limit``), packed as one msgpack `bytes` per account (~25
bytes a movement). Measured with tracemalloc (docs/benchmarks.md, *Memory*): ~100 B for an
account with one movement, ~350 B with 10, ~610 B with 16; nothing for an account that never
moved. So 1,000,000 accounts with full histories hold ~0.35 GB at the default. Movements are
numbered per account from 1 (`Movement.seq`), and the count survives the trimming, so a
reader sees how many older ones are no longer held. Older movements live in the CDR files
(every charge and refund, under its `recordSequenceNumber`) and in the journal (every
operation, until compaction; `ocs journal show`). The kept movements are part of the core's
snapshot (`CoreState.history`) and are recorded again by replay, so they survive a restart.
A closed account's history is dropped with it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from protocol.codes import MovementKind
from protocol.messages import AMR
from protocol.messages import Movement as WireMovement

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_HISTORY_PAGE",
    "MAX_HISTORY_LIMIT",
    "History",
    "Movement",
    "MovementKind",
    "history_page",
    "record_cdr",
]

#: Movements kept per account unless configured (`Settings.history_limit`).
DEFAULT_HISTORY_LIMIT: Final = 10
#: The most movements kept per account that can be configured.
MAX_HISTORY_LIMIT: Final = 1024
#: Movements a HISTORY answer lists when the request has no `History-Limit`.
DEFAULT_HISTORY_PAGE: Final = 20
_MS: Final = 1000


class Movement(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One movement of an account. `amount`: the change of the money balance in micro-units
    (negative for a charge or a debit); `units`: units used or drawn (with their
    `rating_group`); `cdr_seq`: the `recordSequenceNumber` of the CDR that records it;
    `operation_id`: the AMR's Operation-Id."""

    seq: int
    at_ms: int
    kind: int
    amount: int
    units: int | None = None
    rating_group: int | None = None
    cdr_seq: int | None = None
    operation_id: str | None = None


class _Kept(msgspec.Struct, array_like=True, gc=False):
    """One account's history as packed: how many movements it ever had, and the last ones,
    oldest first."""

    count: int
    movements: list[Movement]


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Kept)


class History:
    """The last `limit` movements of every account (see the module's docstring)."""

    __slots__ = ("_kept", "limit")

    def __init__(self, limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self.limit = limit
        self._kept: dict[str, bytes] = {}

    def record(
        self,
        account_id: str,
        now_ms: int,
        kind: MovementKind,
        amount: int,
        *,
        units: int | None = None,
        rating_group: int | None = None,
        cdr_seq: int | None = None,
        operation_id: str | None = None,
    ) -> int:
        """Record one movement of `account_id` at `now_ms`; returns its number (1, 2, ...)."""
        packed = self._kept.get(account_id)
        kept = _Kept(0, []) if packed is None else _DECODER.decode(packed)
        kept.count += 1
        kept.movements.append(
            Movement(
                seq=kept.count,
                at_ms=now_ms,
                kind=int(kind),
                amount=amount,
                units=units,
                rating_group=rating_group,
                cdr_seq=cdr_seq,
                operation_id=operation_id,
            )
        )
        excess = len(kept.movements) - self.limit
        if excess > 0:
            del kept.movements[:excess]
        self._kept[account_id] = _ENCODER.encode(kept)
        return kept.count

    def page(
        self, account_id: str, *, limit: int, before: int | None = None
    ) -> tuple[int, list[Movement]]:
        """How many movements the account ever had, and at most `limit` of those kept, newest
        first, numbered below `before` (None: from the newest)."""
        packed = self._kept.get(account_id)
        if packed is None:
            return 0, []
        kept = _DECODER.decode(packed)
        found = [m for m in reversed(kept.movements) if before is None or m.seq < before]
        return kept.count, found[:limit]

    def forget(self, account_id: str) -> None:
        """Drop a closed account's history."""
        self._kept.pop(account_id, None)

    def set_limit(self, limit: int) -> None:
        """Keep `limit` movements per account from now on (fewer kept already are trimmed
        at the account's next movement)."""
        self.limit = limit

    def __len__(self) -> int:
        """How many accounts have a history."""
        return len(self._kept)

    # --- snapshot ------------------------------------------------------------------------------

    def state(self) -> dict[str, bytes]:
        return self._kept

    def restore(self, kept: dict[str, bytes]) -> None:
        self._kept = dict(kept)


# --- the core's two uses ---------------------------------------------------------------------


def record_cdr(
    history: History,
    account_id: str,
    now_ms: int,
    cdr_seq: int,
    usage: list[tuple[int, int, int]],
    *,
    refund: bool,
) -> None:
    """Record what a CDR charged (or refunded, `refund`): one movement per rating group of
    `usage` ((rating group, units, charge >= 0) per container, in the CDR's order), each with
    the units and the charge of that rating group and the CDR's `recordSequenceNumber`."""
    by_rg: dict[int, list[int]] = {}
    for rg, units, charge in usage:
        total = by_rg.get(rg)
        if total is None:
            by_rg[rg] = [units, charge]
        else:
            total[0] += units
            total[1] += charge
    kind = MovementKind.REFUND if refund else MovementKind.CHARGE
    for rg, (units, charge) in by_rg.items():
        history.record(
            account_id,
            now_ms,
            kind,
            charge if refund else -charge,
            units=units,
            rating_group=rg,
            cdr_seq=cdr_seq,
        )


def history_page(history: History, amr: AMR) -> tuple[int, tuple[WireMovement, ...]]:
    """The `Movement-Count` and the `Movement`s of a HISTORY answer to `amr`."""
    limit = DEFAULT_HISTORY_PAGE if amr.history_limit is None else amr.history_limit
    count, movements = history.page(amr.account_id, limit=limit, before=amr.history_before)
    return count, tuple(
        WireMovement(
            movement_sequence=m.seq,
            event_timestamp=m.at_ms // _MS,
            movement_kind=MovementKind(m.kind),
            amount=m.amount,
            movement_units=m.units,
            rating_group=m.rating_group,
            movement_record=m.cdr_seq,
            operation_id=m.operation_id,
        )
        for m in movements
    )
