"""The simulators' usage log: JSON Lines, one object a line, written as answers come back.

Three kinds of line, told apart by `"type"`:

* `"usage"`: one reported Used-Service-Unit: session, rating group, units (and their unit),
  uplink/downlink octets, Reporting-Reason, Tariff-Change-Usage, the CCR's type and
  CC-Request-Number, the answer's Result-Code and the MSCC's, `ok` (the request was answered
  2001, so the usage counts as charged) and `retransmitted` (sent again with the T flag).
* `"session"`: a session opened (INITIAL) or closed (TERMINATION, or given up).
* `"event"`: an EVENT request (DIRECT_DEBITING, REFUND_ACCOUNT) and its outcome.

The simulators ask every answer for its cost (`AoC-Request-Type` COST_ONLY): `cost` is the
answer's `Cost-Information` in int micro-units (`cost_micro`): for a session the charge so far,
on the TERMINATION's close line its whole charge; for an event what it debited (or a refund
credited). None when the answer carried none.

`reconcile` reads these back (`read_entries`) and compares them with the server's CDRs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Final

import msgspec

from protocol.messages import CostInformation


class UsageEntry(msgspec.Struct, tag="usage", tag_field="type", kw_only=True, frozen=True):
    time: str  # ISO 8601 UTC, simulation clock, when the answer came
    node: str  # Origin-Host
    session_id: str
    service_context_id: str
    subscriber: str
    rating_group: int
    unit: str  # "octets", "seconds", "units"
    units: int
    uplink: int | None = None  # CC-Input-Octets
    downlink: int | None = None  # CC-Output-Octets
    reason: str | None = None  # Reporting-Reason name
    tariff_change_usage: str | None = None  # UNIT_BEFORE_TARIFF_CHANGE, ...
    cc_request_type: str  # INITIAL, UPDATE, TERMINATION
    cc_request_number: int
    result_code: int | None  # top-level; None: never answered
    mscc_result_code: int | None = None
    ok: bool  # answered 2001 (and the rating group was rated): the server charged it
    retransmitted: bool = False


class SessionEntry(msgspec.Struct, tag="session", tag_field="type", kw_only=True, frozen=True):
    time: str
    node: str
    session_id: str
    service_context_id: str
    subscriber: str
    event: str  # "open" or "close"
    cc_request_number: int
    result_code: int | None
    ok: bool
    cause: str | None = None  # why it closed: "end", "final-units", "abort", "failed", ...
    retransmitted: bool = False
    cost: int | None = None  # Cost-Information of the answer, micro-units: the charge so far
    currency: int | None = None  # its Currency-Code


class EventEntry(msgspec.Struct, tag="event", tag_field="type", kw_only=True, frozen=True):
    time: str
    node: str
    session_id: str
    service_context_id: str
    subscriber: str
    action: str  # DIRECT_DEBITING, REFUND_ACCOUNT
    rating_group: int
    unit: str
    units: int  # Requested-Service-Unit
    granted_units: int | None  # Granted-Service-Unit of the answer (what was debited)
    event_timestamp: int  # Event-Timestamp sent (epoch s)
    result_code: int | None
    ok: bool
    refund_of: str | None = None  # the Session-Id of the debit a refund gives back
    retransmitted: bool = False
    cost: int | None = None  # Cost-Information of the answer, micro-units: debited (credited)
    currency: int | None = None  # its Currency-Code


Entry = UsageEntry | SessionEntry | EventEntry

_MICRO_DIGITS: Final = 6


def cost_micro(cost: CostInformation | None) -> int | None:
    """A `Cost-Information` as int micro-units, exactly (`Value-Digits` x 10^`Exponent`); None
    when absent or not a whole number of micro-units."""
    if cost is None:
        return None
    digits = cost.unit_value.value_digits
    shift = _MICRO_DIGITS + (cost.unit_value.exponent or 0)
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return digits * scale
    whole, rest = divmod(digits, scale)
    return None if rest else whole


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(Entry)


class UsageLogError(ValueError):
    """A line of a usage log is not an entry."""


class UsageLog:
    """Appends entries to a JSON Lines file (truncated when opened)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.count = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("wb")

    def write(self, entry: Entry) -> None:
        self.count += 1
        if self._file is not None:
            self._file.write(_ENCODER.encode(entry) + b"\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_entries(path: Path) -> Iterator[Entry]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield _DECODER.decode(line)
            except msgspec.DecodeError as exc:
                raise UsageLogError(f"{path}:{number}: {exc}") from exc


def read_all(paths: Iterable[Path]) -> list[Entry]:
    return [entry for path in paths for entry in read_entries(path)]
