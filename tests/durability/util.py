"""Helpers for the durability tests: server processes that can be SIGKILLed (over
`ocs.tools.spawn`), request builders, and a load model that remembers which operations were
acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client, ClientError
from ocs.tools.spawn import SpawnedServer, serve_argv
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    SubscriptionIdType,
)
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    Account,
    Answer,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from tests.conftest import ROOT

REALM: Final = "test.local"
SMS_CONTEXT: Final = "32274@3gpp.org"
SMS_RG: Final = 30
SMS_PRICE: Final = 100_000  # demo catalog: 0.10 EUR a message, in micro-units
CONNECTION_ERRORS: Final = (ClientError, ConnectionError, OSError, TimeoutError)


class AppProcess(SpawnedServer):
    """A server subprocess on 127.0.0.1 (a free port), JSON logs in its own file.

    ``module`` is ``"ocs"`` (then ``serve`` is run, as an operator would) or
    ``"tests.durability.serve_app"``. Starting it again after ``kill`` (a crash) or
    ``terminate`` restarts it on the same data directory; the log is appended to."""

    def __init__(
        self, data_dir: Path, *extra: str, module: str = "ocs", name: str = "server"
    ) -> None:
        if module == "ocs":
            argv = serve_argv(*extra, data_dir=data_dir, log_json=True)
        else:
            argv = [sys.executable, "-m", module, "--data-dir", str(data_dir), *extra]
        super().__init__(
            argv, data_dir.parent, name=name, cwd=ROOT, ready_timeout=20.0, stop_grace=15.0
        )
        self.data_dir = data_dir
        self.extra = extra
        self.module = module

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines with ``"event": name``, in order (all runs of this process)."""
        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("event") == name:
                    found.append(entry)
        return found


# --- End-to-End-Ids: never reused by an Origin-Host, across connections and restarts --------

_E2E: Final = itertools.count(random.Random(7).getrandbits(24) << 4)


def next_e2e() -> int:
    return next(_E2E) & 0xFFFF_FFFF


# --- requests -----------------------------------------------------------------------------------


async def connect_admin(port: int, origin_host: str = "admin.test.local") -> Client:
    return await Client.connect(
        port=port,
        origin_host=origin_host,
        origin_realm=REALM,
        applications=(ApplicationId.ADMINISTRATION,),
    )


async def connect_cc(port: int, origin_host: str) -> Client:
    return await Client.connect(port=port, origin_host=origin_host, origin_realm=REALM)


def amr(client: Client, op: AccountOperation, account_id: str, **fields: Any) -> AMR:
    return AMR(
        origin_host=client.identity.origin_host,
        origin_realm=REALM,
        account_operation=op,
        account_id=account_id,
        **fields,
    )


async def admin(
    client: Client,
    op: AccountOperation,
    account_id: str,
    *,
    end_to_end: int | None = None,
    timeout: float = 5.0,
    **fields: Any,
) -> AMA:
    answer = await client.request(
        amr(client, op, account_id, **fields),
        end_to_end=next_e2e() if end_to_end is None else end_to_end,
        timeout=timeout,
    )
    assert isinstance(answer, AMA), answer
    return answer


async def get_account(client: Client, account_id: str) -> Account:
    answer = await admin(client, AccountOperation.GET, account_id)
    assert answer.result_code == 2001 and answer.account is not None, answer
    return answer.account


def msisdn(account_id: str) -> str:
    return "336" + "".join(c for c in account_id if c.isdigit()).rjust(8, "0")


async def create_account(client: Client, account_id: str, balance: int) -> Account:
    answer = await admin(
        client,
        AccountOperation.CREATE,
        account_id,
        amount=balance,
        subscription_id=(
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164,
                subscription_id_data=msisdn(account_id),
            ),
        ),
    )
    assert answer.result_code == 2001 and answer.account is not None, answer
    return answer.account


def sms_ccr(
    origin_host: str,
    session_id: str,
    kind: CCRequestType,
    number: int,
    *,
    account_id: str = "",
    used: int | None = None,
) -> CCR:
    if kind is CCRequestType.INITIAL:
        mscc = MsccRequest(
            rating_group=SMS_RG, requested_service_unit=ServiceUnit(cc_service_specific_units=1)
        )
        subs: tuple[SubscriptionId, ...] | None = (
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164,
                subscription_id_data=msisdn(account_id),
            ),
        )
    else:
        mscc = MsccRequest(
            rating_group=SMS_RG,
            used_service_unit=(UsedServiceUnit(cc_service_specific_units=used or 0),),
        )
        subs = None
    return CCR(
        origin_host=origin_host,
        origin_realm=REALM,
        destination_realm=REALM,
        auth_application_id=4,
        session_id=session_id,
        service_context_id=SMS_CONTEXT,
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=subs,
        multiple_services_credit_control=(mscc,),
    )


# --- the load model -----------------------------------------------------------------------------


@dataclass
class MoneyOp:
    """An administrative CREDIT or DEBIT with its Operation-Id."""

    op_id: str
    kind: AccountOperation
    account_id: str
    amount: int
    result: int | None = None  # Result-Code of the first answer received (None: no answer yet)


@dataclass
class SmsSession:
    """INITIAL reserves one message; TERMINATION reports ``used`` messages (0..3)."""

    session_id: str
    account_id: str
    origin_host: str
    used: int
    # "new", "initial-sent", "open" (INITIAL answered), "term-sent", "closed" (answered)
    state: str = "new"


@dataclass
class Load:
    """Everything sent, and what was acknowledged, over all the rounds of a test."""

    accounts: dict[str, int]  # account id -> initial balance
    rng: random.Random
    ops: list[MoneyOp] = field(default_factory=list)
    sessions: list[SmsSession] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def new_op(self) -> MoneyOp:
        kind = self.rng.choice((AccountOperation.CREDIT, AccountOperation.DEBIT))
        op = MoneyOp(
            op_id=f"op-{next(self._ids)}",
            kind=kind,
            account_id=self.rng.choice(sorted(self.accounts)),
            amount=self.rng.randint(1, 2_000_000),
        )
        self.ops.append(op)
        return op

    def new_session(self, origin_host: str) -> SmsSession:
        session = SmsSession(
            session_id=f"{origin_host};{next(self._ids)}",
            account_id=self.rng.choice(sorted(self.accounts)),
            origin_host=origin_host,
            used=self.rng.randint(0, 3),
        )
        self.sessions.append(session)
        return session

    # -- what the books must say

    def open_sessions(self, account_id: str) -> int:
        return sum(
            1
            for s in self.sessions
            if s.account_id == account_id and s.state in ("open", "term-sent")
        )

    def expected_available(self, account_id: str, cdr_charges: dict[str, int]) -> int:
        """initial + credits - debits - CDR charges - what open sessions hold."""
        total = self.accounts[account_id]
        for op in self.ops:
            if op.account_id != account_id or op.result != 2001:
                continue
            total += op.amount if op.kind is AccountOperation.CREDIT else -op.amount
        return total - cdr_charges.get(account_id, 0) - SMS_PRICE * self.open_sessions(account_id)


async def admin_worker(
    load: Load, port: int, name: str, stop: asyncio.Event, streams: int = 4
) -> None:
    """CREDIT/DEBIT with unique Operation-Ids, ``streams`` in flight on one connection, until
    the server dies or ``stop`` is set."""
    try:
        client = await connect_admin(port, f"{name}.test.local")
    except CONNECTION_ERRORS:
        return

    async def stream() -> None:
        while not stop.is_set():
            op = load.new_op()
            answer = await admin(
                client, op.kind, op.account_id, amount=op.amount, operation_id=op.op_id
            )
            op.result = answer.result_code

    await _streams(client, stream, streams)


async def session_worker(
    load: Load, port: int, name: str, stop: asyncio.Event, streams: int = 3
) -> None:
    """SMS sessions (INITIAL reserving, TERMINATION charging), ``streams`` in flight on one
    connection, until the server dies or ``stop`` is set; some sessions are left open (INITIAL
    answered, no TERMINATION sent)."""
    origin = f"{name}.test.local"
    try:
        client = await connect_cc(port, origin)
    except CONNECTION_ERRORS:
        return

    async def stream() -> None:
        while not stop.is_set():
            session = load.new_session(origin)
            await advance(client, session)
            if stop.is_set() or load.rng.random() < 0.3:
                continue  # leave it open across the next crash
            await advance(client, session)

    await _streams(client, stream, streams)


async def _streams(client: Client, stream: Callable[[], Awaitable[None]], count: int) -> None:
    try:
        results = await asyncio.gather(*(stream() for _ in range(count)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, CONNECTION_ERRORS):
                raise result
    finally:
        await _close_quietly(client)


async def advance(client: Client, session: SmsSession) -> None:
    """Send the session's next request (or re-send the one not answered) and check the answer.
    A re-sent request gets the same outcome whether or not the first one was applied."""
    if session.state in ("new", "initial-sent"):
        session.state = "initial-sent"
        ccr = sms_ccr(
            session.origin_host,
            session.session_id,
            CCRequestType.INITIAL,
            0,
            account_id=session.account_id,
        )
        answer = await client.request(ccr, end_to_end=next_e2e())
        check_cca(answer, session, granted=True)
        session.state = "open"
    elif session.state in ("open", "term-sent"):
        session.state = "term-sent"
        ccr = sms_ccr(
            session.origin_host,
            session.session_id,
            CCRequestType.TERMINATION,
            1,
            used=session.used,
        )
        answer = await client.request(ccr, end_to_end=next_e2e())
        check_cca(answer, session, granted=False)
        session.state = "closed"


def check_cca(answer: Answer, session: SmsSession, *, granted: bool) -> None:
    assert isinstance(answer, CCA), answer
    assert answer.result_code == 2001, (session, answer)
    assert answer.session_id == session.session_id
    msccs = answer.multiple_services_credit_control or ()
    assert [m.result_code for m in msccs] == [2001], (session, answer)
    if granted:
        gsu = msccs[0].granted_service_unit
        assert gsu is not None and gsu.cc_service_specific_units == 1, answer


async def _close_quietly(client: Client) -> None:
    try:
        await asyncio.wait_for(client.close(timeout=0.5), 2.0)
    except (*CONNECTION_ERRORS, asyncio.CancelledError):
        pass


async def run_load(
    load: Load, port: int, *, admins: int, sessions: int, until: float | None, round_no: int
) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    """Start the workers; they stop at ``stop`` or when the server goes away."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(admin_worker(load, port, f"admin-{round_no}-{i}", stop))
        for i in range(admins)
    ] + [asyncio.create_task(session_worker(load, port, f"pgw-{i}", stop)) for i in range(sessions)]
    if until is not None:
        await asyncio.sleep(until)
    return stop, tasks


async def settle(load: Load, port: int) -> None:
    """After a restart: re-send every operation not acknowledged (same Operation-Id; it may or
    may not have been applied before the crash, it must count once either way) and every
    acknowledged one (it must change nothing and answer as the first time); re-send every
    session request not answered."""
    admin_client = await connect_admin(port, "settle.test.local")

    async def resend(op: MoneyOp) -> None:
        answer = await admin(
            admin_client, op.kind, op.account_id, amount=op.amount, operation_id=op.op_id
        )
        if op.result is None:
            op.result = answer.result_code
        else:
            assert answer.result_code == op.result, (op, answer)

    unacknowledged = [op for op in load.ops if op.result is None]
    acknowledged = [op for op in load.ops if op.result is not None]
    try:
        for ops in (unacknowledged, acknowledged):
            for start in range(0, len(ops), 256):
                await asyncio.gather(*(resend(op) for op in ops[start : start + 256]))
    finally:
        await admin_client.close()
    by_origin: dict[str, list[SmsSession]] = {}
    for s in load.sessions:
        if s.state in ("initial-sent", "term-sent"):
            by_origin.setdefault(s.origin_host, []).append(s)
    for origin, pending in by_origin.items():
        client = await connect_cc(port, origin)
        try:
            for s in pending:
                await advance(client, s)
        finally:
            await client.close()
    # Sessions never sent are forgotten: they do not exist anywhere.
    load.sessions = [s for s in load.sessions if s.state != "new"]


async def terminate_all(load: Load, port: int) -> None:
    by_origin: dict[str, list[SmsSession]] = {}
    for s in load.sessions:
        if s.state != "closed":
            by_origin.setdefault(s.origin_host, []).append(s)
    for origin, pending in by_origin.items():
        client = await connect_cc(port, origin)

        async def close(s: SmsSession, client: Client = client) -> None:
            while s.state != "closed":
                await advance(client, s)

        try:
            for start in range(0, len(pending), 128):
                await asyncio.gather(*(close(s) for s in pending[start : start + 128]))
        finally:
            await client.close()


def cdr_charges(data_dir: Path) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """Sum of CDR charges per account, and the CDRs of each session id."""
    charges: dict[str, int] = {}
    by_session: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(data_dir / "cdr"):
        charges[record["accountId"]] = charges.get(record["accountId"], 0) + record["charge"]
        by_session.setdefault(record["sessionId"], []).append(record)
    return charges, by_session


async def check_books(load: Load, port: int, data_dir: Path) -> dict[str, Account]:
    """Every acknowledged operation is in the balances exactly once; every closed session has
    exactly one CDR, with its charge; open sessions hold exactly their reservation; the CDR
    sequence has no gap and no repeat."""
    numbers = read_sequence_numbers(data_dir / "cdr")
    assert numbers == list(range(1, len(numbers) + 1))
    charges, by_session = cdr_charges(data_dir)
    for s in load.sessions:
        records = by_session.get(s.session_id, [])
        if s.state == "closed":
            assert len(records) == 1, (s, records)
            assert records[0]["charge"] == SMS_PRICE * s.used, (s, records)
            assert records[0]["causeForRecordClosing"] == "normalRelease"
            assert records[0]["accountId"] == s.account_id
        else:
            assert s.state == "open", s
            assert records == [], (s, records)
    assert set(by_session) <= {s.session_id for s in load.sessions}
    client = await connect_admin(port, "check.test.local")
    accounts: dict[str, Account] = {}
    try:
        for account_id in sorted(load.accounts):
            account = accounts[account_id] = await get_account(client, account_id)
            assert account.reserved == SMS_PRICE * load.open_sessions(account_id), account
            assert account.session_count == load.open_sessions(account_id), account
            assert account.balance == load.expected_available(account_id, charges), account
    finally:
        await client.close()
    return accounts
