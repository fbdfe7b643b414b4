"""Ledger commands journaled as inputs: the tests' and `bench.ledger`'s stand-in for the core.

The server journals requests (records of kind 2) and the charging core changes the ledger. These
tests and the benchmark drive the ledger with its own commands instead, over the same path: a
component whose records (kind `KIND_COMMANDS`) are ledger commands, applied by `execute`,
appended with `Store.append` and replayed into the store's ledger on restart. The ledger's state
is in every snapshot under kind 1, as in the server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from ocs.core.ledger import Code, Command, Ledger, LedgerOutcome, decode_command, encode_command
from ocs.edge.journal import DEFAULT_SEGMENT_BYTES, JournalBrokenError
from ocs.edge.store import Component, Store

__all__ = ["KIND_COMMANDS", "LedgerCommands", "execute", "open_store"]

KIND_COMMANDS: Final = 3


class LedgerCommands:
    """The component: its records are ledger commands, replayed into ``ledger``. It has no
    state of its own (the ledger's is in the snapshot under kind 1)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        if data:
            raise ValueError("the ledger commands component has no state")

    def replay(self, body: bytes, lsn: int) -> None:
        self.ledger.apply(decode_command(body), replay=True)


def open_store(
    data_dir: str | os.PathLike[str],
    *,
    components: Mapping[int, Component] | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    max_remembered: int = 1_000_000,
) -> Store:
    """`Store.open` with a fresh ledger and `LedgerCommands` on it (plus ``components``)."""
    ledger = Ledger(max_remembered=max_remembered)
    return Store.open(
        data_dir,
        components={KIND_COMMANDS: LedgerCommands(ledger), **(components or {})},
        segment_bytes=segment_bytes,
        ledger=ledger,
    )


def execute(store: Store, cmd: Command) -> LedgerOutcome:
    """Apply a ledger command and journal it (buffered: durable after the next commit).

    A repeat of a remembered operation id returns the first outcome and journals nothing; an
    invalid command (`Code.INVALID`) changes nothing and journals nothing. Raises
    `JournalBrokenError`, before changing anything, once the journal has failed.
    """
    if store.journal.broken is not None:
        raise JournalBrokenError("the journal failed; the store takes no more commands")
    ledger = store.ledger
    prior = ledger.recall(cmd.id) if isinstance(cmd.id, str) else None
    if prior is not None:
        return prior
    outcome = ledger.apply(cmd)
    if outcome.code is not Code.INVALID:
        store.append(KIND_COMMANDS, encode_command(cmd))
    return outcome
