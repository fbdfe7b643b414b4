"""Helpers for the CDR file tests: deterministic records, a settable clock, crash simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ocs.edge.cdr_files import CdrWriter


def record(seq: int) -> dict[str, Any]:
    """The CDR the core would produce as record ``seq`` (the same on every replay)."""
    return {
        "recordSequenceNumber": seq,
        "recordType": "session" if seq % 3 else "event",
        "sessionId": f"gw;{seq // 4};1",
        "accountId": f"acct-{seq % 5}",
        "localSequenceNumber": seq % 4 + 1,
        "charge": (seq * 1_234_567) % 9_000_000 - 1_000_000,
        "note": "\u00e9\n" * (seq % 3),  # escaped by the encoder: never a raw newline
    }


def line(seq: int) -> bytes:
    return msgspec.json.encode(record(seq))


def file_bytes(first: int, last: int) -> bytes:
    return b"".join(line(s) + b"\n" for s in range(first, last + 1))


class FakeClock:
    __slots__ = ("now",)

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def append_range(writer: CdrWriter, first: int, last: int) -> None:
    for seq in range(first, last + 1):
        writer.append(seq, line(seq))


def abandon(writer: CdrWriter) -> None:
    """Simulate the process dying: what was written stays in the file, the buffer is lost.

    Closes the descriptor (so tests do not leak it) without flushing or fsyncing.
    """
    out = writer._out
    if out is not None:
        out.close()  # drops the buffer


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
