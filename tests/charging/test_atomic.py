"""Atomic inputs (issue 16, part 2): an input the core raises on is applied not at all.

The state before and after compares equal byte for byte (`core.snapshot()`,
`ledger.snapshot()`); a request gets 5012 DIAMETER_UNABLE_TO_COMPLY in the short error shape on
a connection that stays open; the failure is logged once (`input.failed`); its CDRs, RAR/ASR and
CDR numbers are discarded; a retransmission is processed again; the journal holds nothing of it,
so a restart (a replay of the whole journal) rebuilds the same state.

Failures are injected through names the core looks up in its module at each call
(`encode_body`, `Action`, `CDR_ENCODER`, ...; and between two ledger commands in the interpreted
build): each fails once, at a chosen call, after the input has changed the ledger and the
sessions; the rebuild's replay of the journaled inputs then runs normally, as it would for a
real bug that only this input triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

import ocs.core.charging as charging_module
import ocs.core.ledger
import ocs.node as node_module
from ocs.core.charging import (
    BookingRefused,
    ChargingCore,
    Input,
    InputKind,
    Result,
    encode_input,
)
from ocs.core.ledger import MAX_TOTAL, Ledger
from ocs.core.ledger_types import (
    COMMAND_ENCODER,
    LEDGER_STATE_DECODER,
    OUTCOME_OF_CODE,
    Code,
    Command,
    Credit,
    Debit,
    LedgerOutcome,
    Post,
)
from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.edge.store import JournalReplayError
from ocs.node import (
    TICK_RETRY_MS,
    CoreComponent,
    Node,
    NodeConfig,
    ReplayError,
    recover,
)
from protocol.codec import encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    CommandCode,
    RequestedAction,
    TariffChangeUsage,
)
from protocol.messages import AMA, AMR, CCA, CCR, RAR, Answer
from tests.charging.conftest import DEMO, EUR, PEAK, SMS, MiB, amr, ccr, mscc, rsu, usu
from tests.charging.peer import APPS, UPF, Peer
from tests.server.process import ServerProcess

SUB = "491700000001"
INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
U64_MAX = 2**64 - 1
FULL = AoCRequestType.FULL
# the core's logic is plain Python (OCS_PURE=1), not mypyc-compiled: its classes can be patched
INTERPRETED = ocs.core.ledger.__file__ is not None and ocs.core.ledger.__file__.endswith(".py")


class Injected(RuntimeError):
    """The failure a test injects into the core."""


def fail_at(monkeypatch: pytest.MonkeyPatch, at_call: int, hooks: Iterable[str]) -> list[int]:
    """Make the `at_call`-th call from now, counted over `hooks`, raise `Injected` (the calls
    before and after it behave normally). A hook is a name the core looks up in
    `ocs.core.charging` at each call, in the mypyc-compiled build too (`encode_body`,
    `CDR_ENCODER`'s `encode`, `Action`, ...), or "Ledger.apply" (a failure between two ledger
    commands; the interpreted build only: compiled classes cannot be patched). Returns the
    call counter."""
    calls = [0]

    def wrap(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == at_call:
                raise Injected(f"call {at_call} of {', '.join(hooks)}")
            return real(*args, **kwargs)

        return call

    for name in hooks:
        if name == "Ledger.apply":
            monkeypatch.setattr(Ledger, "apply", wrap(Ledger.apply))
        elif name == "CDR_ENCODER":
            real = getattr(charging_module, name).encode
            monkeypatch.setattr(charging_module, name, Encoder(wrap(real)))
        else:
            monkeypatch.setattr(charging_module, name, wrap(getattr(charging_module, name)))
    return calls


def fail_once(monkeypatch: pytest.MonkeyPatch, hook: str, *, at_call: int = 1) -> list[int]:
    """`fail_at` with one hook."""
    return fail_at(monkeypatch, at_call, [hook])


@dataclass(frozen=True)
class Encoder:
    """Stands for `CDR_ENCODER`, with its `encode` replaced."""

    encode: Callable[[Any], bytes]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The node's log events (a fresh logger: another test may have configured structlog to
    cache its loggers on first use)."""
    with capture_logs() as captured:
        monkeypatch.setattr(node_module, "log", structlog.get_logger("ocs.node"))
        yield captured


def failures(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == "input.failed"]


def state(node: Node) -> tuple[bytes, bytes]:
    return node.core.snapshot(), node.core.ledger.snapshot()


# --- a node over 127.0.0.1 ---------------------------------------------------------------------


@dataclass
class Running:
    node: Node
    peer: Peer
    client: Client
    data_dir: Path
    e2e: int = 1 << 20

    async def send(self, message: CCR | AMR, *, e2e: int | None = None) -> Answer:
        if e2e is None:
            self.e2e += 1
            e2e = self.e2e
        return await self.client.request(message, end_to_end=e2e, retransmit=False)

    async def cca(self, message: CCR, *, e2e: int | None = None) -> CCA:
        answer = await self.send(message, e2e=e2e)
        assert isinstance(answer, CCA), answer
        return answer

    async def ama(self, message: AMR, *, e2e: int | None = None) -> AMA:
        answer = await self.send(message, e2e=e2e)
        assert isinstance(answer, AMA), answer
        return answer

    async def balance(self, account_id: str = "a") -> tuple[int, int]:
        answer = await self.ama(amr(AccountOperation.GET, account_id, origin=UPF))
        assert answer.result_code == 2001 and answer.account is not None
        return answer.account.balance, answer.account.reserved


@contextlib.asynccontextmanager
async def running(data_dir: Path, **config: Any) -> AsyncIterator[Running]:
    node = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=data_dir, **config),
    )
    peer = Peer()
    try:
        await node.start()
        client = await peer.connect(node.server.port)
        try:
            yield Running(node=node, peer=peer, client=client, data_dir=data_dir)
        finally:
            await client.close()
    finally:
        await node.stop()
        await node.close()


async def replayed_state(run: Running, tmp_path: Path) -> tuple[bytes, bytes]:
    """The state a restart after a crash would have: the journal, durable now, copied and
    replayed from the start by `recover` (what `Node.open` does)."""
    await run.node.drain()
    copy = tmp_path / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run.data_dir / "journal", copy / "journal")
    recovered = recover(
        NodeConfig(data_dir=copy), origin_host="ocs.test.local", origin_realm="test.local"
    )
    try:
        return recovered.core.snapshot(), recovered.core.ledger.snapshot()
    finally:
        recovered.cdrs.close()
        recovered.store.close()


async def setup_session(run: Running, sid: str, *, service: str = "32251@3gpp.org") -> None:
    created = await run.ama(
        amr(AccountOperation.CREATE, "a", amount=20 * EUR, subscriber=SUB, origin=UPF)
    )
    assert created.result_code == 2001
    rg = 30 if service == SMS else 10
    ask = rsu(units=1) if service == SMS else rsu(octets=MiB)
    opened = await run.cca(ccr(sid, INITIAL, 0, mscc(rg, ask=ask), subscriber=SUB, service=service))
    assert opened.result_code == 2001


@dataclass(frozen=True)
class Case:
    """A request that fails when `hook` fails at its `at_call`-th call (after the ledger and
    the session changed), and what it would have produced."""

    name: str
    hook: str
    message: Callable[[str], CCR | AMR]
    at_call: int = 1
    cdrs: bool = False  # whether the request, when it succeeds, writes a CDR
    action: bool = False  # whether it sends a RAR or an ASR


SID = f"{UPF};atomic;1"
CASES = [
    Case(  # between two ledger commands: the usage posted, then reserving the new grant fails
        "update-between-ledger-commands",
        "Ledger.apply",
        lambda sid: ccr(sid, UPDATE, 1, mscc(10, used=(usu(octets=3 * MiB),), ask=rsu())),
        at_call=2,
    ),
    Case(  # the answer fails to encode after the usage was posted and a new grant reserved
        "update-posted",
        "encode_body",
        lambda sid: ccr(sid, UPDATE, 1, mscc(10, used=(usu(octets=3 * MiB),), ask=rsu())),
    ),
    Case(  # a partial record numbered (CDR sequence advanced) before the answer fails
        "update-partial-cdr",
        "encode_body",
        lambda sid: ccr(
            sid,
            UPDATE,
            1,
            mscc(
                10,
                used=(usu(octets=MiB, tcu=TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),),
                ask=rsu(),
            ),
        ),
        cdrs=True,
    ),
    Case(  # usage posted, every reservation voided, then the answer fails (before the close)
        "termination",
        "encode_body",
        lambda sid: ccr(sid, TERMINATION, 1, mscc(10, used=(usu(octets=2 * MiB),))),
        cdrs=True,
    ),
    Case(  # the session's CDR fails to encode, after the post and the voids
        "termination-cdr",
        "CDR_ENCODER",
        lambda sid: ccr(sid, TERMINATION, 1, mscc(10, used=(usu(octets=2 * MiB),))),
        cdrs=True,
    ),
    Case(  # the ledger set the status, then building the ASR fails
        "suspend",
        "Action",
        lambda sid: amr(
            AccountOperation.SET_STATUS, "a", status=AccountStatus.SUSPENDED, origin=UPF
        ),
        action=True,
    ),
    Case(  # the ledger credited the account, then the answer fails
        "credit",
        "encode_body",
        lambda sid: amr(AccountOperation.CREDIT, "a", amount=3 * EUR, origin=UPF),
    ),
]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.name,
            marks=pytest.mark.skipif(
                c.hook == "Ledger.apply" and not INTERPRETED, reason="compiled Ledger"
            ),
        )
        for c in CASES
    ],
)
async def test_a_request_the_core_fails_on_is_not_applied_at_all(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    events: list[MutableMapping[str, Any]],
) -> None:
    async with running(tmp_path / "data") as run:
        await setup_session(run, SID)
        balance = await run.balance()
        await run.node.drain()
        node = run.node
        before, cdr_seq = state(node), node.core.cdr_seq
        message = case.message(SID)
        e2e = 77
        calls = fail_once(monkeypatch, case.hook, at_call=case.at_call)
        answer = await run.send(message, e2e=e2e)
        assert calls[0] >= case.at_call, "the hook was never reached"
        # 5012 in the short error shape, Session-Id when known
        assert answer.result_code == 5012
        assert answer.error_message is not None
        if isinstance(message, CCR):
            assert isinstance(answer, CCA) and answer.session_id == SID
            assert answer.multiple_services_credit_control is None
            assert answer.cc_request_number is None
        else:
            assert isinstance(answer, AMA) and answer.account is None
        # nothing changed, nothing numbered, nothing sent
        assert state(node) == before
        assert node.core.cdr_seq == cdr_seq
        (failed,) = failures(events)
        assert failed["kind"] == "request" and failed["end_to_end"] == e2e
        assert failed["error"].startswith("Injected")
        assert run.peer.requests == []
        # the connection stays open: the next request is served on it
        assert await run.balance() == balance
        # the journal has nothing of it: a replay from the start rebuilds the same state
        assert await replayed_state(run, tmp_path) == state(node)
        # a retransmission is processed again (the failure was not remembered) and succeeds
        again = await run.send(message, e2e=e2e)
        assert again.result_code == 2001
        assert (node.core.cdr_seq == cdr_seq + 1) == case.cdrs
        after = state(node)
        assert after != before
        assert await replayed_state(run, tmp_path) == after
        if case.action:
            await run.node.drain()
            for _ in range(100):
                if run.peer.requests:
                    break
                await run.client.request(amr(AccountOperation.GET, "a", origin=UPF))
            assert len(run.peer.requests) == 1
    # CDR files: numbered 1, 2, ... with no gap, and a restart finds the same state
    data = tmp_path / "data"
    assert read_sequence_numbers(data / "cdr") == list(range(1, cdr_seq + 2 if case.cdrs else 1))
    async with running(data) as restarted:
        assert state(restarted.node) == after


async def test_an_update_whose_answer_cannot_be_encoded_leaves_nothing_half_applied(
    tmp_path: Path,
) -> None:
    """Issue 16's example: an UPDATE reporting three 2^64-1 units with AoC asked. The server
    booked part of it in memory, journaled nothing and dropped the connection without an
    answer; its retransmission was then journaled as something else and every later restart
    failed. Now it is answered (5012, or 5004 once the usage is refused at the door), the
    connection stays open, nothing changed, and a restart rebuilds the same state."""
    sid = f"{UPF};atomic;sms"
    async with running(tmp_path / "data") as run:
        await setup_session(run, sid, service=SMS)
        balance = await run.balance()
        await run.node.drain()
        before = state(run.node)
        huge = ccr(
            sid,
            UPDATE,
            1,
            mscc(30, used=(usu(units=U64_MAX),) * 3, ask=rsu()),
            service=SMS,
            aoc=AoCRequestType.FULL,
        )
        for _ in range(2):  # the retransmission is refused the same way
            answer = await run.send(huge, e2e=4242)
            assert answer.result_code in (5004, 5012)
            assert state(run.node) == before
        assert await run.balance() == balance  # the connection is still open
        live = state(run.node)
        assert await replayed_state(run, tmp_path) == live
        ended = await run.cca(ccr(sid, TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS))
        assert ended.result_code == 2001
        live = state(run.node)
    async with running(tmp_path / "data") as restarted:
        assert state(restarted.node) == live
        records = list(iter_records(tmp_path / "data" / "cdr"))
        assert [r["charge"] for r in records] == [100_000]  # one SMS, 0.10 EUR


async def test_a_tick_the_core_fails_on_is_rolled_back_and_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[MutableMapping[str, Any]]
) -> None:
    """Supervision closes a silent session (reservations voided, CDR numbered), then its CDR
    fails to encode: the tick is undone and not journaled, and is tried again a minute later,
    then two minutes after that."""
    async with running(tmp_path / "data") as run:
        await setup_session(run, SID)
        await run.node.drain()
        node = run.node
        before = state(node)
        later = node.core.ledger.clock + 10 * 24 * 3600 * 1000  # past every Tcc and expiry
        assert node.core.due(later)
        fail_once(monkeypatch, "CDR_ENCODER")
        assert node.tick(later) is False
        assert state(node) == before and node.core.cdr_seq == 0
        (failed,) = failures(events)
        assert failed["kind"] == "tick" and failed["error"].startswith("Injected")
        assert node.tick(later + 1000) is False  # not retried at once
        assert state(node) == before
        assert await replayed_state(run, tmp_path) == before
        fail_once(monkeypatch, "CDR_ENCODER")  # it fails again a minute later ...
        assert node.tick(later + TICK_RETRY_MS) is False
        assert len(failures(events)) == 2
        # ... so the next try waits twice as long
        assert node.tick(later + 2 * TICK_RETRY_MS) is False
        assert node.tick(later + 3 * TICK_RETRY_MS) is True
        assert SID not in node.core.sessions and node.core.cdr_seq == 1
        after = state(node)
        assert await replayed_state(run, tmp_path) == after
    assert read_sequence_numbers(tmp_path / "data" / "cdr") == [1]


async def test_a_catalog_the_core_fails_on_is_not_put_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[MutableMapping[str, Any]]
) -> None:
    """SIGHUP with a new price for a rating group an open session holds: the core switches
    catalogs, then building the RAR fails. The catalog in force stays, nothing is journaled,
    no RAR is sent; reloading again (the failure gone) puts it in force and sends the RAR."""
    path = tmp_path / "catalog.toml"
    path.write_text(DEMO)
    async with running(tmp_path / "data", catalog=path) as run:
        await setup_session(run, SID)
        await run.node.drain()
        node = run.node
        before = state(node)
        changed = DEMO.replace('price = "0.01"', 'price = "0.03"', 1)
        assert changed != DEMO
        path.write_text(changed)
        fail_once(monkeypatch, "Action")
        assert node.reload_catalog() is False
        assert node.core.catalog_text == DEMO
        assert state(node) == before
        (failed,) = failures(events)
        assert failed["kind"] == "catalog"
        assert await replayed_state(run, tmp_path) == before
        assert node.reload_catalog() is True
        assert node.core.catalog_text == changed
        for _ in range(100):
            if run.peer.requests:
                break
            await run.balance()
        assert [type(r) for r in run.peer.requests] == [RAR]


async def test_a_rollback_starts_from_the_latest_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[MutableMapping[str, Any]]
) -> None:
    """The rebuild restores the latest snapshot (here one written by the running server's
    checkpoint, in a forked child) and replays only the inputs journaled after it; the
    inputs the snapshot covers are no longer kept. A checkpoint follows the rebuild, so that
    another one would replay nothing."""
    async with running(tmp_path / "data", checkpoint_records=4) as run:
        await setup_session(run, SID)
        await run.balance()  # catalog, CREATE, INITIAL, GET: a checkpoint is due
        node, journal = run.node, run.node.store.journal
        for _ in range(200):  # the timer checks each second
            if journal.snapshot_lsn >= 4 and node.component.retained == 0:
                break
            await asyncio.sleep(0.05)
        assert journal.snapshot_lsn >= 4
        await run.balance()
        await run.node.drain()
        since = journal.last_lsn - journal.snapshot_lsn
        assert node.component.retained == since
        before = state(node)
        fail_once(monkeypatch, "encode_body")
        answer = await run.send(ccr(SID, UPDATE, 1, mscc(10, used=(usu(octets=MiB),), ask=rsu())))
        assert answer.result_code == 5012
        assert state(node) == before
        (failed,) = failures(events)
        assert failed["replayed"] == since
        assert await replayed_state(run, tmp_path) == before
        for _ in range(200):  # a rebuild makes the next checkpoint come at once
            if journal.snapshot_lsn == journal.last_lsn and node.component.retained == 0:
                break
            await asyncio.sleep(0.05)
        assert journal.snapshot_lsn == journal.last_lsn and node.component.retained == 0


async def test_a_journaled_input_that_fails_in_replay_stops_recovery_with_its_lsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[MutableMapping[str, Any]]
) -> None:
    """Replay never skips a record: one the core raises on (here the INITIAL, record 3 after
    the catalog and the CREATE) stops recovery with the store's `JournalReplayError` naming
    it (segment, offset, LSN), caused by the component's `ReplayError` (the input in words,
    where the core raised), logged as `startup.failed`, and the data directory is released."""
    async with running(tmp_path / "data") as run:
        await setup_session(run, SID)
        await run.node.drain()
        copy = tmp_path / "copy"
        shutil.copytree(run.data_dir / "journal", copy / "journal")
    fail_once(monkeypatch, "encode_body", at_call=2)  # the CREATE's answer, then the INITIAL's
    config = NodeConfig(data_dir=copy)
    with pytest.raises(JournalReplayError) as raised:
        recover(config, origin_host="ocs.test.local", origin_realm="test.local")
    assert raised.value.lsn == 3
    cause = raised.value.__cause__
    assert isinstance(cause, ReplayError) and cause.lsn == 3
    assert cause.kind == f"request {int(CommandCode.CREDIT_CONTROL)} from {UPF}"
    assert "Injected" in cause.reason
    (failed,) = [e for e in events if e["event"] == "startup.failed"]
    assert failed["lsn"] == 3 and failed["kind"] == "core REQUEST CREDIT_CONTROL"
    assert "journal record 3" in failed["reason"] and "Injected" in failed["reason"]
    monkeypatch.undo()
    recovered = recover(config, origin_host="ocs.test.local", origin_realm="test.local")
    recovered.cdrs.close()
    recovered.store.close()


# --- the core in memory, driven as the node drives it ------------------------------------------


class Atomic:
    """The core as the node drives it, without files: an input the core raises on is rolled
    back by `CoreComponent.rebuild` (from `base`, the last checkpoint, kept here in memory) and
    answered None; the others are journaled (counted, and kept by the component)."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.core = ChargingCore(self.ledger, DEMO)
        self.component = CoreComponent(self.core)
        self.lsn = 0
        self.base: tuple[int, bytes] | None = None
        self.journal: list[Input] = []
        self.cdrs: list[tuple[int, bytes]] = []
        self.failed: list[Exception] = []
        self.e2e = 0
        assert self.input(Input(kind=InputKind.CATALOG, now_ms=0, body=DEMO.encode())) is None

    def input(self, record: Input) -> Result | None:
        try:
            result = self.core.apply(record)
        except Exception as exc:
            self.failed.append(exc)
            self.component.rebuild(self.base, self.lsn)
            return None
        if result is None or not result.duplicate:
            self.lsn += 1
            self.journal.append(record)
            self.component.journaled(encode_input(record))
        self.cdrs.extend(self.core.take_cdrs())
        self.core.take_actions()
        self.core.take_closed()
        return result

    def send(self, message: CCR | AMR, now_ms: int) -> Result | None:
        self.e2e += 1
        command = CommandCode.CREDIT_CONTROL if isinstance(message, CCR) else None
        return self.input(
            Input(
                kind=InputKind.REQUEST,
                now_ms=now_ms,
                origin_host=message.origin_host,
                end_to_end=self.e2e,
                command=int(command or CommandCode.ACCOUNT_MANAGEMENT),
                body=encode_body(message),
            )
        )

    def state(self) -> tuple[bytes, bytes]:
        return self.core.snapshot(), self.ledger.snapshot()

    def checkpoint(self) -> None:
        """What a checkpoint leaves for a rebuild: the snapshot, and the inputs after it."""
        states = {1: self.ledger.snapshot(), 2: self.core.snapshot()}
        self.base = (self.lsn, msgspec.msgpack.encode(states))
        self.component.forget_through(self.lsn, self.lsn)
        self.component.forget_through(self.lsn, self.lsn)  # (twice: nothing more goes)
        assert self.component.retained == 0

    def set_balance(self, account_id: str, balance: int) -> None:
        """Put the account's balance at the edge of the ledger's bound (no request can do
        that in a test's time), keeping the books balanced, and checkpoint there."""
        ledger_state = LEDGER_STATE_DECODER.decode(self.ledger.snapshot())
        (account,) = [a for a in ledger_state.accounts if a.account_id == account_id]
        totals = ledger_state.totals
        ledger_state.totals = type(totals)(
            initial=totals.initial + balance - account.balance,
            credits=totals.credits,
            debits=totals.debits,
        )
        account.balance = balance
        self.ledger.restore(COMMAND_ENCODER.encode(ledger_state))
        self.ledger.check_invariants()
        self.checkpoint()

    def replayed(self) -> tuple[bytes, bytes, list[tuple[int, bytes]]]:
        """A fresh core fed every journaled input (no snapshot)."""
        ledger = Ledger()
        core = ChargingCore(ledger, DEMO)
        for record in self.journal:
            core.apply(record)
            core.take_actions()
        return core.snapshot(), ledger.snapshot(), core.take_cdrs()


def new_account(a: Atomic, account_id: str = "a", sub: str = SUB, balance: int = 10 * EUR) -> None:
    created = a.send(amr(AccountOperation.CREATE, account_id, amount=balance, subscriber=sub), PEAK)
    assert created is not None and created.answer.result_code == 2001


def refuse_bookings(monkeypatch: pytest.MonkeyPatch, kind: type[Command]) -> None:
    """The ledger refuses every command of `kind` as at its balance bound (LIMIT_EXCEEDED).
    The core's domain checks refuse (5004) every request that could reach that bound before
    anything changes, so no request reaches the refusal: it is injected (the interpreted build
    only: compiled classes cannot be patched)."""
    real = Ledger.apply

    def apply(self: Ledger, cmd: Command, **kwargs: bool) -> LedgerOutcome:
        if isinstance(cmd, kind):
            return OUTCOME_OF_CODE[Code.LIMIT_EXCEEDED]
        return real(self, cmd, **kwargs)

    monkeypatch.setattr(Ledger, "apply", apply)


def open_sms(a: Atomic, sid: str, *, reserve: bool) -> None:
    ask = (mscc(30, ask=rsu(units=1)),) if reserve else ()
    opened = a.send(ccr(sid, INITIAL, 0, *ask, subscriber=SUB, service=SMS), PEAK)
    assert opened is not None and opened.answer.result_code == 2001


@pytest.mark.parametrize("reserve", [True, False])
def test_usage_at_the_balance_bound_is_refused_before_the_ledger(reserve: bool) -> None:
    """A post against a reservation, or a debit of usage without one, that could take the
    balance below -MAX_TOTAL is refused 5004 by the core's domain checks before anything
    changes (docs/protocol.md "Limits"): the ledger is never asked."""
    a = Atomic()
    new_account(a)
    sid = f"{UPF};sms"
    open_sms(a, sid, reserve=reserve)
    a.set_balance("a", -MAX_TOTAL + 50_000)  # one SMS (0.10 EUR) cannot be posted any more
    ledger, cdrs = a.ledger.snapshot(), list(a.cdrs)
    ended = a.send(ccr(sid, TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS), PEAK)
    assert ended is not None and ended.answer.result_code == 5004 and a.failed == []
    assert a.ledger.snapshot() == ledger and a.cdrs == cdrs == []


@pytest.mark.skipif(not INTERPRETED, reason="compiled Ledger")
def test_a_post_the_ledger_refuses_fails_the_input_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Usage posted against a reservation, the ledger refusing it. It used to be answered 2001
    with a CDR charging what was never booked (the money identity broken); now the input fails
    whole: nothing booked, no CDR, the reservation still held."""
    a = Atomic()
    new_account(a)
    sid = f"{UPF};sms"
    open_sms(a, sid, reserve=True)
    before, cdrs = a.state(), list(a.cdrs)
    refuse_bookings(monkeypatch, Post)
    ended = a.send(ccr(sid, TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS), PEAK)
    assert ended is None and isinstance(a.failed[-1], BookingRefused)
    assert a.state() == before and a.cdrs == cdrs == []
    assert a.ledger.reservation_count == 1 and sid in a.core.sessions


@pytest.mark.skipif(not INTERPRETED, reason="compiled Ledger")
def test_usage_without_a_reservation_the_ledger_refuses_fails_the_input_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Usage reported with no reservation to post against is debited anyway; the ledger's
    refusal of that debit was ignored (CDR charged, balance unchanged)."""
    a = Atomic()
    new_account(a)
    sid = f"{UPF};sms"
    open_sms(a, sid, reserve=False)
    before = a.state()
    refuse_bookings(monkeypatch, Debit)
    ended = a.send(ccr(sid, TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS), PEAK)
    assert ended is None and isinstance(a.failed[-1], BookingRefused)
    assert a.state() == before and a.cdrs == []


def sms_event(a: Atomic, sid: str, action: RequestedAction, now_ms: int) -> Result | None:
    return a.send(
        ccr(
            sid,
            CCRequestType.EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=action,
        ),
        now_ms,
    )


def test_a_refund_at_the_balance_bound_is_refused_before_the_ledger() -> None:
    """A refund whose credit would take the balance past MAX_TOTAL is refused 5004 (WIRE.md
    5.4's Failed-AVP) before anything changes: the ledger is never asked, no CDR is written."""
    a = Atomic()
    new_account(a)
    charged = sms_event(a, f"{UPF};e1", RequestedAction.DIRECT_DEBITING, PEAK)
    assert charged is not None and charged.answer.result_code == 2001
    a.set_balance("a", MAX_TOTAL)
    ledger = a.ledger.snapshot()
    refunded = sms_event(a, f"{UPF};e2", RequestedAction.REFUND_ACCOUNT, PEAK + 1000)
    assert refunded is not None and refunded.answer.result_code == 5004 and a.failed == []
    assert refunded.answer.failed_avp == {
        "Requested-Service-Unit": {"CC-Service-Specific-Units": 1}
    }
    assert a.ledger.snapshot() == ledger and len(a.cdrs) == 1


@pytest.mark.skipif(not INTERPRETED, reason="compiled Ledger")
def test_a_refund_the_ledger_refuses_fails_the_input_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refund whose credit the ledger refuses used to write its negative CDR all the
    same."""
    a = Atomic()
    new_account(a)
    charged = sms_event(a, f"{UPF};e1", RequestedAction.DIRECT_DEBITING, PEAK)
    assert charged is not None and charged.answer.result_code == 2001
    assert [json.loads(line)["charge"] for _, line in a.cdrs] == [100_000]
    before = a.state()
    refuse_bookings(monkeypatch, Credit)
    refunded = sms_event(a, f"{UPF};e2", RequestedAction.REFUND_ACCOUNT, PEAK + 1000)
    assert refunded is None and isinstance(a.failed[-1], BookingRefused)
    assert a.state() == before and len(a.cdrs) == 1


# --- any input, failing anywhere ---------------------------------------------------------------

HOOKS = ["encode_body", "decode_body", "Action", "CDR_ENCODER", "pack_session", "unpack_session"]
# sessions three times as often as the rest: most money moves there
OPS = [
    *["initial", "update", "terminate"] * 3,
    "create",
    "credit",
    "debit",
    "status",
    "event",
    "refund",
    "tick",
    "catalog",
    "checkpoint",
]
CHANGED = DEMO.replace('price = "0.01"', 'price = "0.03"', 1)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.integers(0, 2),  # which account / session
        st.integers(0, 4),  # how much
        st.integers(1, 8) | st.integers(1, 8) | st.none(),  # fail at that call of the hooks
        st.integers(0, 40 * 60_000) | st.integers(2 * 3600_000, 3 * 3600_000),  # ms since
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_any_input_failing_at_any_point_changes_nothing(
    steps: list[tuple[str, int, int, int | None, int]],
) -> None:
    """Random traffic (administration, sessions, events, refunds, ticks, catalogs, snapshots),
    each input failing or not at a random call of a random hook. After each: an input that
    failed changed nothing (state bytes, CDRs); the books balance. At the end: the journaled
    inputs replayed from scratch give the same state and CDRs, CDR numbers run 1..n, and the
    CDRs (with the containers of open sessions) charge exactly what charging took:
    sum(CDR charges) = (debits - administrative debits) - (credits - administrative credits)."""
    a = Atomic()
    for i in range(3):
        new_account(a, f"a{i}", f"4917000000{i}", 5 * EUR)
    now = PEAK
    numbers: dict[str, int] = {}  # open session -> its next CC-Request-Number
    opened = [0, 0, 0]  # sessions opened per index (their ids)
    admin = {"credit": 0, "debit": 0}
    catalogs = [DEMO, CHANGED]
    for op, i, size, fault, dt in steps:
        now += dt
        if op in ("update", "terminate") and f"{UPF};{i};{opened[i]}" not in numbers:
            if numbers:  # report on an open session rather than on none
                i = int(sorted(numbers)[size % len(numbers)].split(";")[1])
            else:
                op = "initial"
        sid = f"{UPF};{i};{opened[i]}"
        record: Input | None = None
        message: CCR | AMR | None = None
        if op == "create":
            sub = f"4917000000{i}"
            message = amr(AccountOperation.CREATE, f"n{i}", amount=size * EUR, subscriber=sub)
        elif op in ("credit", "debit"):
            kind = AccountOperation.CREDIT if op == "credit" else AccountOperation.DEBIT
            message = amr(kind, f"a{i}", amount=(size + 1) * EUR // 2)
        elif op == "status":
            status = AccountStatus.SUSPENDED if size == 4 else AccountStatus.ACTIVE
            message = amr(AccountOperation.SET_STATUS, f"a{i}", status=status)
        elif op == "initial":
            msccs = [mscc(10, ask=rsu(octets=(size + 1) * MiB))] + [mscc(20, ask=rsu())] * (
                size % 2
            )
            message = ccr(sid, INITIAL, 0, *msccs, subscriber=f"4917000000{i}")
        elif op in ("update", "terminate"):
            used = (usu(octets=size * MiB + 1000),)
            if op == "update":
                message = ccr(sid, UPDATE, numbers[sid], mscc(10, used=used, ask=rsu()))
            else:
                message = ccr(sid, TERMINATION, numbers[sid], mscc(10, used=used))
        elif op in ("event", "refund"):
            action = (
                RequestedAction.DIRECT_DEBITING if op == "event" else RequestedAction.REFUND_ACCOUNT
            )
            message = ccr(
                f"{UPF};ev;{len(a.journal)}",
                CCRequestType.EVENT,
                0,
                mscc(30, ask=rsu(units=size + 1)),
                subscriber=f"4917000000{i}",
                service=SMS,
                action=action,
            )
        elif op == "tick":
            if a.core.due(now):
                record = Input(kind=InputKind.TICK, now_ms=now)
        elif op == "catalog":
            text = catalogs[size % 2]
            record = Input(kind=InputKind.CATALOG, now_ms=now, body=text.encode())
        elif op == "checkpoint":
            a.checkpoint()
        if message is not None:
            a.e2e += 1
            command = CommandCode.CREDIT_CONTROL if isinstance(message, CCR) else None
            record = Input(
                kind=InputKind.REQUEST,
                now_ms=now,
                origin_host=message.origin_host,
                end_to_end=a.e2e,
                command=int(command or CommandCode.ACCOUNT_MANAGEMENT),
                body=encode_body(message),
            )
        if record is None:
            continue
        before, produced, failed = a.state(), len(a.cdrs), len(a.failed)
        with pytest.MonkeyPatch.context() as patch:
            if fault is not None:
                fail_at(patch, fault, [*HOOKS, "Ledger.apply"] if INTERPRETED else HOOKS)
            result = a.input(record)
        if len(a.failed) > failed:
            assert isinstance(a.failed[-1], Injected)
            assert a.state() == before and len(a.cdrs) == produced
            event(f"failed: {op}")
        else:
            event(f"applied: {op}")
        if result is not None and result.answer.result_code == 2001:
            if op in admin:
                admin[op] += (size + 1) * EUR // 2
            if op == "initial":
                numbers[sid] = 1
            elif op == "update":
                numbers[sid] += 1
            elif op == "terminate":
                del numbers[sid]
                opened[i] += 1
        for key in [k for k in numbers if k not in a.core.sessions]:  # closed by supervision
            del numbers[key]
            opened[int(key.split(";")[1])] += 1
        a.ledger.check_invariants()
    core_state, ledger_state, cdrs = a.replayed()
    assert (core_state, ledger_state) == a.state()
    assert cdrs == a.cdrs
    assert [seq for seq, _ in a.cdrs] == list(range(1, len(a.cdrs) + 1))
    totals = a.ledger.totals()
    charged = sum(json.loads(line)["charge"] for _, line in a.cdrs) + sum(
        c.charge
        for s in a.core.sessions.values()
        for c in s.containers  # CDRs to come
    )
    assert charged == (totals.debits - admin["debit"]) - (totals.credits - admin["credit"])


async def test_ocs_serve_survives_the_update_and_exits_zero(tmp_path: Path) -> None:
    """The same UPDATE against `ocs serve`: it used to leave a state that no checkpoint could
    encode (SIGTERM then exited 1) and a journal no restart could replay. Now: answered, logged
    once if the core failed on it, SIGTERM exits 0, and the restart carries on the session."""
    sid = f"{UPF};atomic;serve"
    data = tmp_path / "data"
    server = ServerProcess(data, "--log-json").start()
    try:
        client = await Client.connect(port=server.port, origin_host=UPF, applications=APPS)
        created = await client.request(
            amr(AccountOperation.CREATE, "a", amount=20 * EUR, subscriber=SUB, origin=UPF)
        )
        assert created.result_code == 2001
        sms = mscc(30, ask=rsu(units=1))
        opened = await client.request(ccr(sid, INITIAL, 0, sms, subscriber=SUB, service=SMS))
        assert opened.result_code == 2001
        used = (usu(units=U64_MAX),) * 3
        huge = ccr(sid, UPDATE, 1, mscc(30, used=used, ask=rsu()), service=SMS, aoc=FULL)
        answer = await client.request(huge)
        assert answer.result_code in (5004, 5012)
        got = await client.request(amr(AccountOperation.GET, "a", origin=UPF))
        assert got.result_code == 2001  # the connection is still open
        assert server.terminate() == 0
        await client.wait_closed()
        logged = [json.loads(line) for line in server.log_text().splitlines() if line[:1] == "{"]
        failed = [e for e in logged if e["event"] == "input.failed"]
        assert len(failed) == (answer.result_code == 5012)
        server.start()
        client = await Client.connect(port=server.port, origin_host=UPF, applications=APPS)
        end = ccr(sid, TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS)
        assert (await client.request(end)).result_code == 2001
        assert server.terminate() == 0
        await client.wait_closed()
    finally:
        server.kill()
    assert [r["charge"] for r in iter_records(data / "cdr")] == [100_000]
