"""SIGKILL during load: the books still balance against the CDR files after a restart.

A subprocess server (`ocs serve`, strict group commit) on 127.0.0.1. Three credit-control
clients, two workers each, run data sessions (INITIAL, UPDATEs with usage, sometimes beyond
the grant, TERMINATION) and SMS events (DIRECT_DEBITING, sometimes REFUND_ACCOUNT) against four
accounts; an operator client tops accounts up (CREDIT with an Operation-Id). At a random moment
the server is killed with SIGKILL and restarted on the same data directory. Then each client
sends again, with the same End-to-End-Id and the T flag, the request it had in flight (applied
before the crash or not, it must count once), credits included; every session still open is
terminated (2001, or 5002 if the server never acknowledged its INITIAL). Checked through AMA GET
and the CDR files, per account:

    initial + acknowledged credits == Balance (available) + Reserved (0) + its CDR charges

no reservation and no session left, and CDR sequence numbers 1..N, gap-free and unique.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ocs.edge.cdr_files import iter_records, read_sequence_numbers
from ocs.edge.client import Client, ClientError
from protocol.codes import AccountOperation, ApplicationId, CCRequestType, RequestedAction
from protocol.messages import AMA, AMR, CCR, Answer
from tests.charging.conftest import EUR, SMS, MiB, amr, ccr, mscc, rsu, usu
from tests.server.process import ServerProcess

ACCOUNTS = {f"k{i}": (f"49150000000{i}", 5 * EUR) for i in range(4)}
ADMIN = "admin.test.local"
TIMEOUT = 5.0


@dataclass
class Pending:
    message: CCR | AMR
    e2e: int


@dataclass
class Peer:
    """One Origin-Host: its End-to-End-Ids run on across the restart."""

    origin: str
    next_e2e: int
    client: Client | None = None
    in_flight: dict[int, Pending] = field(default_factory=dict)  # worker -> request

    def e2e(self) -> int:
        self.next_e2e += 1
        return self.next_e2e

    async def connect(self, port: int) -> None:
        self.client = await Client.connect(
            port=port,
            origin_host=self.origin,
            applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
        )

    async def send(
        self, worker: int, message: CCR | AMR, *, e2e: int | None = None, again: bool = False
    ) -> Answer:
        """Send and wait; the request stays `in_flight` until answered."""
        assert self.client is not None
        pending = Pending(message, e2e if e2e is not None else self.e2e())
        self.in_flight[worker] = pending
        answer = await self.client.request(
            message, end_to_end=pending.e2e, retransmit=again, timeout=TIMEOUT
        )
        del self.in_flight[worker]
        return answer


@dataclass
class Session:
    sid: str
    peer: Peer
    number: int = -1  # the last request number the server acknowledged (-1: none)
    done: bool = False


@dataclass
class Books:
    credits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    sessions: list[Session] = field(default_factory=list)


async def session_worker(peer: Peer, worker: int, books: Books, rng: random.Random) -> None:
    n = 0
    while True:
        n += 1
        account = rng.choice(sorted(ACCOUNTS))
        subscriber = ACCOUNTS[account][0]
        if rng.random() < 0.3:
            action = RequestedAction.DIRECT_DEBITING
            if rng.random() < 0.2:
                action = RequestedAction.REFUND_ACCOUNT
            event = ccr(
                f"{peer.origin};ev;{worker};{n}",
                CCRequestType.EVENT,
                0,
                mscc(30, ask=rsu(units=rng.randint(1, 3))),
                subscriber=subscriber,
                service=SMS,
                action=action,
                origin=peer.origin,
            )
            answer = await peer.send(worker, event)
            # a refund beyond what was debited (and not refunded) in the window: 5004
            refund = action is RequestedAction.REFUND_ACCOUNT
            assert answer.result_code in ((2001, 5004) if refund else (2001, 4012)), answer
            continue
        session = Session(f"{peer.origin};s;{worker};{n}", peer)
        books.sessions.append(session)
        initial = ccr(
            session.sid,
            CCRequestType.INITIAL,
            0,
            mscc(10, ask=rsu()),
            mscc(20, ask=rsu(octets=MiB)),
            subscriber=subscriber,
            origin=peer.origin,
        )
        answer = await peer.send(worker, initial)
        assert answer.result_code == 2001, answer
        session.number = 0
        for number in range(1, rng.randint(2, 4)):
            octets = rng.choice([0, 1000, MiB, 12 * MiB])  # 12 MiB: beyond the 10 MiB grant
            update = ccr(
                session.sid,
                CCRequestType.UPDATE,
                number,
                mscc(10, ask=rsu(), used=(usu(octets=octets),)),
                origin=peer.origin,
            )
            answer = await peer.send(worker, update)
            assert answer.result_code == 2001, answer
            session.number = number
        term = ccr(
            session.sid,
            CCRequestType.TERMINATION,
            session.number + 1,
            mscc(10, used=(usu(octets=rng.randint(0, 2 * MiB)),)),
            mscc(20, used=(usu(octets=rng.randint(0, MiB)),)),
            origin=peer.origin,
        )
        answer = await peer.send(worker, term)
        assert answer.result_code == 2001, answer
        session.number += 1
        session.done = True


async def admin_worker(peer: Peer, books: Books, rng: random.Random) -> None:
    n = 0
    while True:
        n += 1
        account = rng.choice(sorted(ACCOUNTS))
        amount = rng.randint(1, 500_000)
        credit = amr(
            AccountOperation.CREDIT,
            account,
            amount=amount,
            operation_id=f"topup-{n}",
            origin=ADMIN,
        )
        answer = await peer.send(0, credit)
        assert answer.result_code == 2001
        books.credits[account] += amount
        await asyncio.sleep(0.01)


async def run_until_killed(
    server: ServerProcess, peers: list[Peer], admin: Peer, books: Books, rng: random.Random
) -> None:
    tasks = [
        asyncio.create_task(session_worker(p, w, books, random.Random(rng.random())))
        for p in peers
        for w in range(2)
    ]
    tasks.append(asyncio.create_task(admin_worker(admin, books, random.Random(rng.random()))))
    await asyncio.sleep(rng.uniform(0.4, 1.2))
    assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    server.kill()  # SIGKILL: no flush, no checkpoint
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
    assert all(isinstance(r, ClientError | TimeoutError) for r in results), results


async def recover(port: int, peers: list[Peer], admin: Peer, books: Books) -> None:
    for peer in [*peers, admin]:
        await peer.connect(port)
    # what was in flight, again with its End-to-End-Id and the T flag (an INITIAL is not:
    # its session is terminated below, whether the server opened it or not)
    for peer in [*peers, admin]:
        for worker, pending in sorted(peer.in_flight.items()):
            message = pending.message
            if isinstance(message, CCR) and message.cc_request_type is CCRequestType.INITIAL:
                continue
            answer = await peer.send(worker, message, e2e=pending.e2e, again=True)
            if isinstance(message, AMR):
                assert answer.result_code == 2001
                assert message.amount is not None
                books.credits[message.account_id] += message.amount
                continue
            session = next((s for s in books.sessions if s.sid == message.session_id), None)
            if session is None:  # an event (5004: a refund beyond what was debited)
                assert answer.result_code in (2001, 4012, 5004)
                continue
            assert answer.result_code == 2001, (message, answer)
            session.number = message.cc_request_number
            session.done = message.cc_request_type is CCRequestType.TERMINATION
    # every session still open is terminated
    for session in books.sessions:
        if session.done:
            continue
        term = ccr(
            session.sid,
            CCRequestType.TERMINATION,
            max(session.number + 1, 1),  # after an INITIAL the server may have processed
            mscc(10, used=(usu(octets=1000),)),
            origin=session.peer.origin,
        )
        answer = await session.peer.send(99, term)
        expected = (2001, 5002) if session.number < 0 else (2001,)
        assert answer.result_code in expected, (session, answer)
        session.done = True


@pytest.mark.parametrize("seed", [11, 12])
async def test_sigkill_during_load_keeps_the_books(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir)
    books = Books()
    peers = [Peer(f"upf{i}.test.local", rng.getrandbits(24) << 4) for i in range(3)]
    admin = Peer(ADMIN, rng.getrandbits(24) << 4)
    try:
        server.start()
        await admin.connect(server.port)
        for account, (subscriber, balance) in ACCOUNTS.items():
            create = amr(
                AccountOperation.CREATE,
                account,
                amount=balance,
                subscriber=subscriber,
                origin=ADMIN,
            )
            assert (await admin.send(0, create)).result_code == 2001
        for peer in peers:
            await peer.connect(server.port)

        await run_until_killed(server, peers, admin, books, rng)
        for peer in [*peers, admin]:
            assert peer.client is not None
            await peer.client.wait_closed()

        server.start()  # the same data directory: recovery replays the journal
        await recover(server.port, peers, admin, books)
        assert books.sessions, "no session ran before the kill"

        accounts = {}
        for account in ACCOUNTS:
            answer = await admin.send(0, amr(AccountOperation.GET, account, origin=ADMIN))
            assert isinstance(answer, AMA) and answer.account is not None
            accounts[account] = answer.account
        for peer in [*peers, admin]:
            assert peer.client is not None
            await peer.client.close()
        assert server.terminate() == 0  # SIGTERM: every CDR is written
    finally:
        server.kill()

    cdr_dir = data_dir / "cdr"
    sequence = read_sequence_numbers(cdr_dir)
    assert sequence == list(range(1, len(sequence) + 1))
    charged = dict.fromkeys(ACCOUNTS, 0)
    for record in iter_records(cdr_dir):
        charged[record["accountId"]] += record["charge"]
    for account, (_, initial) in ACCOUNTS.items():
        view = accounts[account]
        assert view.reserved == 0 and view.session_count == 0, view
        assert initial + books.credits[account] == view.balance + view.reserved + charged[account]
