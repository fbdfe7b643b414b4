"""The demo's traffic: data, SMS and voice against the demo catalog, with a live summary.

Creates a few subscribers over AMR, has one more take an airtime loan, spend it on a call and
repay it with a top-up (docs/accounts.md, "A loan"), then runs, concurrently, data sessions
(RG 10 with linked video RG 20 usage), SMS (a reservation session per message, some
undelivered, plus an event debit and its refund) and voice calls (RG 40, setup fee), prints a
summary line every second and, at the end, checks the money: what the accounts lost equals
the sum of the CDR charges.

The network element behaves as WIRE.md section 7 asks: a RAR (the demo catalog's usage
thresholds send some) is answered RAA 2001 (5002 for a session it no longer holds), then the
session sends a CCR UPDATE reporting FORCED_REAUTHORISATION; an ASR is answered ASA 2001 and the
session ends with its TERMINATION. A session's requests go one at a time, numbered in order.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocs.edge.cdr_files import iter_records
from ocs.edge.client import Client
from ocs.tools import demo_groups
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    Estimate,
    ReportingReason,
    RequestedAction,
    ResultCode,
    SubscriptionIdType,
    TerminationCause,
)
from protocol.errors import ProtocolError
from protocol.header import Header
from protocol.messages import (
    AMA,
    AMR,
    ASA,
    ASR,
    CCA,
    CCR,
    RAA,
    RAR,
    Answer,
    MsccRequest,
    Request,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from rating import format_money

HOST = "demo-ne.test.local"
REALM = "test.local"
DATA, SMS, VOICE = "32251@3gpp.org", "32274@3gpp.org", "32260@3gpp.org"
SUBSCRIBERS = 5
BUNDLE = "bundle-15"  # the demo catalog's offer (docs/catalog.md, *Offers*)
INITIAL_BALANCE = 20_000_000  # 20 EUR each
MIB = 1 << 20


def nothing_used(rg: int, reason: ReportingReason | None = None) -> UsedServiceUnit:
    """A report of zero units in the rating group's unit (demo catalog: RG 10 and 20 octets,
    30 messages, 40 seconds)."""
    if rg in (10, 20):
        return UsedServiceUnit(cc_total_octets=0, reporting_reason=reason)
    if rg == 30:
        return UsedServiceUnit(cc_service_specific_units=0, reporting_reason=reason)
    return UsedServiceUnit(cc_time=0, reporting_reason=reason)


@dataclass
class OpenSession:
    """A session the network element holds (INITIAL answered 2001 until its TERMINATION)."""

    context: str
    rating_groups: tuple[int, ...]
    number: int = 0  # the last CC-Request-Number sent
    ending: bool = False  # its TERMINATION is queued or in flight: no more UPDATEs
    closed: bool = False  # its TERMINATION was answered
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request in flight


class Demo:
    def __init__(self, client: Client, seed: int = 7) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.results: Counter[int] = Counter()
        self.sessions = 0
        self.events = 0
        self.rar = 0  # RAR answered 2001
        self.reauthorised = 0  # UPDATE FORCED_REAUTHORISATION answered
        self.rar_ending = 0  # RAR for a session already ending: no UPDATE needed
        self.asr = 0
        self.open: dict[str, OpenSession] = {}
        self._sid = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # --- requests from the server (WIRE.md section 7) ------------------------------------------

    def on_request(self, header: Header, message: Request) -> Answer:
        """RAR: RAA 2001, then the re-authorising UPDATE; ASR: ASA 2001, then TERMINATION.
        A session whose TERMINATION is on its way is still held (2001), and needs neither;
        5002 for a session no longer held."""
        if isinstance(message, RAR | ASR):
            session = self.open.get(message.session_id)
            code = ResultCode.SUCCESS if session is not None else ResultCode.UNKNOWN_SESSION_ID
            if session is not None:
                if isinstance(message, RAR):
                    self.rar += 1
                    groups = message.rating_group or session.rating_groups
                    if session.ending:
                        self.rar_ending += 1
                    else:
                        self._spawn(self._reauthorise(message.session_id, session, groups))
                else:
                    self.asr += 1
                    if not session.ending:
                        self._spawn(self._abort(message.session_id, session))
            kind = RAA if isinstance(message, RAR) else ASA
            return kind(
                result_code=code,
                origin_host=HOST,
                origin_realm=REALM,
                session_id=message.session_id,
            )
        raise ProtocolError(ResultCode.UNABLE_TO_COMPLY, "the demo serves RAR and ASR only")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reauthorise(self, sid: str, session: OpenSession, groups: tuple[int, ...]) -> None:
        """A CCR UPDATE with reason FORCED_REAUTHORISATION for the groups the RAR names: each
        asks for quota and reports what was used since (the demo's usage is reported at once,
        so: nothing)."""
        msccs = tuple(
            MsccRequest(
                rating_group=rg,
                requested_service_unit=ServiceUnit(),
                used_service_unit=(nothing_used(rg, ReportingReason.FORCED_REAUTHORISATION),),
            )
            for rg in groups
            if rg in session.rating_groups
        )
        if msccs and await self.in_session(sid, CCRequestType.UPDATE, msccs) is not None:
            self.reauthorised += 1
        else:  # its TERMINATION went first: the session is ending, nothing to re-authorise
            self.rar_ending += 1

    async def _abort(self, sid: str, session: OpenSession) -> None:
        msccs = tuple(
            MsccRequest(
                rating_group=rg,
                used_service_unit=(nothing_used(rg),),
            )
            for rg in session.rating_groups
        )
        await self.in_session(
            sid,
            CCRequestType.TERMINATION,
            msccs,
            termination_cause=TerminationCause.ADMINISTRATIVE,
        )

    async def wait_idle(self) -> None:
        """Until the re-authorisations and terminations the server asked for are done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- sessions --------------------------------------------------------------------------------

    async def open_session(
        self,
        sid: str,
        context: str,
        msccs: tuple[MsccRequest, ...],
        sub: tuple[SubscriptionId, ...],
    ) -> bool:
        """INITIAL; True if the session is open (held until its TERMINATION). The session is
        held from the INITIAL on: a RAR may come before its answer (the server sends those an
        input causes before that input's answer), and its UPDATE then follows the answer."""
        session = self.open[sid] = OpenSession(context, tuple(m.rating_group for m in msccs))
        async with session.lock:
            cca = await self.send(
                self.ccr(
                    sid,
                    context,
                    CCRequestType.INITIAL,
                    0,
                    subscription_id=sub,
                    multiple_services_credit_control=msccs,
                )
            )
            if cca.result_code != 2001:
                session.closed = True
                self.open.pop(sid, None)
                return False
        self.sessions += 1
        return True

    async def in_session(
        self,
        sid: str,
        kind: CCRequestType,
        msccs: tuple[MsccRequest, ...],
        **kw: object,
    ) -> CCA | None:
        """An UPDATE or TERMINATION of an open session, numbered after its last request and
        sent once that one is answered; None if the session is ending (an UPDATE after its
        TERMINATION was queued) or ended (a TERMINATION after an ASR's)."""
        session = self.open.get(sid)
        if session is None or session.ending:
            return None
        terminating = kind is CCRequestType.TERMINATION
        if terminating:
            session.ending = True
        async with session.lock:
            if session.closed or (session.ending and not terminating):
                return None
            session.number += 1
            try:
                return await self.send(
                    self.ccr(
                        sid,
                        session.context,
                        kind,
                        session.number,
                        multiple_services_credit_control=msccs,
                        **kw,
                    )
                )
            finally:
                if terminating:
                    session.closed = True
                    self.open.pop(sid, None)

    def msisdn(self, i: int) -> str:
        return f"4917000{i:05d}"

    def sub(self, i: int) -> tuple[SubscriptionId, ...]:
        return (
            SubscriptionId(
                subscription_id_type=SubscriptionIdType.END_USER_E164,
                subscription_id_data=self.msisdn(i),
            ),
        )

    async def amr(self, op: AccountOperation, account: str, **kw: object) -> AMA:
        answer = await self.client.request(
            AMR(
                origin_host=HOST,
                origin_realm=REALM,
                account_operation=op,
                account_id=account,
                **kw,  # type: ignore[arg-type]
            )
        )
        assert isinstance(answer, AMA)
        return answer

    def ccr(self, sid: str, context: str, kind: CCRequestType, number: int, **kw: object) -> CCR:
        return CCR(
            session_id=sid,
            origin_host=HOST,
            origin_realm=REALM,
            destination_realm=REALM,
            auth_application_id=4,
            service_context_id=context,
            cc_request_type=kind,
            cc_request_number=number,
            **kw,  # type: ignore[arg-type]
        )

    async def send(self, ccr: CCR) -> CCA:
        answer = await self.client.request(ccr)
        assert isinstance(answer, CCA)
        self.results[answer.result_code] += 1
        for mscc in answer.multiple_services_credit_control or ():
            self.results[mscc.result_code] += 1
        return answer

    def session_id(self) -> str:
        self._sid += 1
        return f"{HOST};{int(time.time())};{self._sid}"

    async def data_session(self, i: int) -> None:
        sid = self.session_id()
        rsu = ServiceUnit()
        initial = (MsccRequest(rating_group=10, requested_service_unit=rsu),)
        if not await self.open_session(sid, DATA, initial, self.sub(i)):
            return
        for _ in range(self.rng.randint(1, 3)):
            used = self.rng.randint(1, 8) * MIB
            video = self.rng.randint(0, 4) * MIB
            msccs = [
                MsccRequest(
                    rating_group=10,
                    requested_service_unit=rsu,
                    used_service_unit=(
                        UsedServiceUnit(
                            cc_total_octets=used, reporting_reason=ReportingReason.THRESHOLD
                        ),
                    ),
                )
            ]
            if video:
                msccs.append(
                    MsccRequest(
                        rating_group=20,
                        used_service_unit=(
                            UsedServiceUnit(
                                cc_total_octets=video,
                                reporting_reason=ReportingReason.LINKED_USAGE,
                            ),
                        ),
                    )
                )
            await self.in_session(sid, CCRequestType.UPDATE, tuple(msccs))
            await asyncio.sleep(0.05)
        await self.in_session(
            sid,
            CCRequestType.TERMINATION,
            (
                MsccRequest(
                    rating_group=10,
                    used_service_unit=(
                        UsedServiceUnit(
                            cc_total_octets=self.rng.randint(0, MIB),
                            reporting_reason=ReportingReason.FINAL,
                        ),
                    ),
                ),
            ),
        )

    async def sms(self, i: int) -> None:
        sid = self.session_id()
        initial = (
            MsccRequest(
                rating_group=30, requested_service_unit=ServiceUnit(cc_service_specific_units=1)
            ),
        )
        if not await self.open_session(sid, SMS, initial, self.sub(i)):
            return
        delivered = self.rng.random() > 0.2  # one message in five is not delivered
        await self.in_session(
            sid,
            CCRequestType.TERMINATION,
            (
                MsccRequest(
                    rating_group=30,
                    used_service_unit=(
                        UsedServiceUnit(cc_service_specific_units=1 if delivered else 0),
                    ),
                ),
            ),
        )

    async def debit_and_refund(self, i: int) -> None:
        for action in (RequestedAction.DIRECT_DEBITING, RequestedAction.REFUND_ACCOUNT):
            await self.send(
                self.ccr(
                    self.session_id(),
                    SMS,
                    CCRequestType.EVENT,
                    0,
                    requested_action=action,
                    subscription_id=self.sub(i),
                    multiple_services_credit_control=(
                        MsccRequest(
                            rating_group=30,
                            requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                        ),
                    ),
                )
            )
            self.events += 1

    async def call(self, i: int) -> None:
        sid = self.session_id()
        initial = (MsccRequest(rating_group=40, requested_service_unit=ServiceUnit()),)
        if not await self.open_session(sid, VOICE, initial, self.sub(i)):
            return
        await asyncio.sleep(0.1)
        await self.in_session(
            sid,
            CCRequestType.TERMINATION,
            (
                MsccRequest(
                    rating_group=40,
                    used_service_unit=(
                        UsedServiceUnit(
                            cc_time=self.rng.randint(5, 240),
                            reporting_reason=ReportingReason.FINAL,
                        ),
                    ),
                ),
            ),
        )


async def drive(port: int, data_dir: Path, *, seconds: float = 6.0) -> bool:
    client = await Client.connect(
        port=port,
        origin_host=HOST,
        applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
    )
    assert client.peer is not None
    print(f"demo: connected to {client.peer.origin_host} (CER/CEA done)", flush=True)
    demo = Demo(client)
    client.on_request = demo.on_request  # RAR and ASR (WIRE.md section 7)
    accounts = [f"demo-{i}" for i in range(SUBSCRIBERS)]
    for i, account in enumerate(accounts):
        answer = await demo.amr(
            AccountOperation.CREATE,
            account,
            amount=INITIAL_BALANCE,
            currency_code=978,
            subscription_id=demo.sub(i),
        )
        if answer.result_code != 2001:
            print(f"demo: CREATE {account} answered {answer.result_code}", flush=True)
            return False
    print(
        f"demo: {SUBSCRIBERS} subscribers with {format_money(INITIAL_BALANCE)} EUR each",
        flush=True,
    )
    # offers: demo-0 takes the catalog's bundle (its fee is a charge with a record), and its
    # data, SMS and calls draw on the bundle's allowances before money
    answer = await demo.amr(
        AccountOperation.SUBSCRIBE, accounts[0], offer_name=BUNDLE, operation_id="demo-bundle"
    )
    if answer.result_code != 2001:
        print(f"demo: SUBSCRIBE {accounts[0]} {BUNDLE} answered {answer.result_code}", flush=True)
        return False
    print(f"demo: {accounts[0]} subscribed to {BUNDLE}: {_bundle(answer)}", flush=True)
    # money put into each account (opening balance, top-ups): what it lost is this less what
    # it holds
    funded = {account: INITIAL_BALANCE for account in accounts}
    if not await loan_story(demo, funded):
        return False
    if not await estimate_story(demo, funded):
        return False
    # groups: demo-1 and demo-2 share the package "family" of a group account (demo-0 holds
    # the bundle: its own allowances, its own money)
    members = accounts[1:3]
    if not await demo_groups.make_group(demo.amr, members, INITIAL_BALANCE):
        return False
    accounts.append(demo_groups.GROUP)
    funded[demo_groups.GROUP] = INITIAL_BALANCE

    async def traffic() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            i = demo.rng.randrange(SUBSCRIBERS)
            await asyncio.gather(
                demo.data_session(i), demo.sms(i), demo.call(i), demo.debit_and_refund(i)
            )

    async def summary() -> None:
        while True:
            await asyncio.sleep(1.0)
            spent = await total_spent(demo, funded)
            cdrs = sum(1 for _ in iter_records(data_dir / "cdr"))
            print(
                f"demo: sessions {demo.sessions:5d}  events {demo.events:4d}  "
                f"charged {format_money(spent)} EUR  CDRs written {cdrs:5d}  "
                f"RAR {demo.rar:3d}  result codes {dict(sorted(demo.results.items()))}",
                flush=True,
            )

    reporter = asyncio.create_task(summary())
    await asyncio.gather(*(traffic() for _ in range(4)))
    await demo.wait_idle()  # the re-authorisations the last RARs asked for
    reporter.cancel()
    print(
        f"demo: RAR {demo.rar} answered 2001: {demo.reauthorised} re-authorised by an UPDATE, "
        f"{demo.rar_ending} for sessions already ending; ASR {demo.asr}",
        flush=True,
    )
    spent = await total_spent(demo, funded)
    bundle = await demo.amr(AccountOperation.GET, accounts[0])
    print(f"demo: {accounts[0]} after the traffic: {_bundle(bundle)}", flush=True)
    group_ok = await demo_groups.check_statements(
        demo.amr, members, await total_spent(demo, {demo_groups.GROUP: INITIAL_BALANCE})
    )
    await client.close()
    await asyncio.sleep(0.3)  # CDRs follow the journal by one group commit
    records = list(iter_records(data_dir / "cdr"))
    cdr_total = sum(int(r["charge"]) for r in records)
    seqs = [int(r["recordSequenceNumber"]) for r in records]
    ok = cdr_total == spent and seqs == list(range(1, len(seqs) + 1)) and group_ok
    print(
        f"demo: accounts lost {format_money(spent)} EUR; {len(records)} CDRs charge "
        f"{format_money(cdr_total)} EUR; sequence 1..{len(seqs)} gap-free: "
        f"{seqs == list(range(1, len(seqs) + 1))}; money reconciles: {ok}",
        flush=True,
    )
    return ok


def _bundle(answer: AMA) -> str:
    """The unit balances of an account's offers, for the demo's output."""
    balances = answer.account.offer_balance if answer.account is not None else None
    return ", ".join(
        f"{b.allowance_name} {b.allowance_units} left ({b.allowance_reserved} held)"
        for b in balances or ()
    )


async def total_spent(demo: Demo, funded: dict[str, int]) -> int:
    spent = 0
    for account, put_in in funded.items():
        answer = await demo.amr(AccountOperation.GET, account)
        assert answer.account is not None
        # loan money (`Loan-Balance`, docs/protocol.md LOAN) is held too
        held = answer.account.balance + (answer.account.loan_balance or 0)
        spent += put_in - (held + answer.account.reserved)
    return spent


async def loan_story(demo: Demo, funded: dict[str, int]) -> bool:
    """docs/accounts.md, "A loan": a subscriber at 0.20 EUR borrows 2.00 (fee 0.20 by the demo
    catalog's policy), spends it on a call, and a 10.00 top-up repays 2.20 first."""
    account, i = "demo-loan", SUBSCRIBERS  # a subscriber of its own, outside the traffic
    created = await demo.amr(
        AccountOperation.CREATE, account, amount=200_000, subscription_id=demo.sub(i)
    )
    loan = await demo.amr(AccountOperation.LOAN, account, amount=2_000_000, operation_id="loan-1")
    if created.result_code != 2001 or loan.result_code != 2001 or loan.account is None:
        print(f"demo: the loan answered {loan.result_code} {loan.error_message}", flush=True)
        return False
    funded[account] = 200_000
    print(
        f"demo: {account} at 0.20 EUR took a loan of 2.00 EUR (fee "
        f"{format_money((loan.account.loan or ())[0].loan_fee)} EUR): balance "
        f"{format_money(loan.account.balance)}, loan balance "
        f"{format_money(loan.account.loan_balance or 0)}",
        flush=True,
    )
    sid = demo.session_id()
    ask = (MsccRequest(rating_group=40, requested_service_unit=ServiceUnit(cc_time=1_950)),)
    if await demo.open_session(sid, VOICE, ask, demo.sub(i)):
        used = UsedServiceUnit(cc_time=1_950, reporting_reason=ReportingReason.FINAL)
        final = (MsccRequest(rating_group=40, used_service_unit=(used,)),)
        await demo.in_session(sid, CCRequestType.TERMINATION, final)
    spent = await demo.amr(AccountOperation.GET, account)
    topup = await demo.amr(
        AccountOperation.CREDIT, account, amount=10_000_000, operation_id="loan-topup-1"
    )
    if topup.result_code != 2001 or topup.account is None or spent.account is None:
        print(f"demo: the top-up answered {topup.result_code}", flush=True)
        return False
    funded[account] += 10_000_000
    owed = sum(x.loan_principal_due + x.loan_fee_due for x in topup.account.loan or ())
    print(
        f"demo: {account} called 1,950 s on the loan (loan balance left "
        f"{format_money(spent.account.loan_balance or 0)}); a 10.00 EUR top-up repaid the loan "
        f"first: balance {format_money(topup.account.balance)}, owed {format_money(owed)}",
        flush=True,
    )
    return True


def _cost(answer: CCA) -> int | None:
    """`Cost-Information` in micro-units (EUR, exponent -6 or above), None if absent."""
    cost = answer.cost_information
    if cost is None:
        return None
    scale: int = 10 ** (6 + (cost.unit_value.exponent or 0))  # exponent -6 or above
    return cost.unit_value.value_digits * scale


async def estimate_story(demo: Demo, funded: dict[str, int]) -> bool:
    """docs/charging.md 3e: a 95 s call run first as an estimate (`Estimate` 1: nothing
    reserved, charged or recorded), then for real; the estimate's `Cost-Information` is what
    the real call takes from the account (0.05 setup + the first minute whole + 35 s at 0.001 =
    0.145 EUR on a weekday)."""
    account, i = "demo-estimate", SUBSCRIBERS + 1  # outside the traffic, like demo-loan
    created = await demo.amr(
        AccountOperation.CREATE, account, amount=INITIAL_BALANCE, subscription_id=demo.sub(i)
    )
    if created.result_code != 2001:
        print(f"demo: CREATE {account} answered {created.result_code}", flush=True)
        return False
    funded[account] = INITIAL_BALANCE
    ask = (MsccRequest(rating_group=40, requested_service_unit=ServiceUnit()),)
    used = UsedServiceUnit(cc_time=95, reporting_reason=ReportingReason.FINAL)
    final = (MsccRequest(rating_group=40, used_service_unit=(used,)),)
    sid = demo.session_id()
    first = await demo.send(
        demo.ccr(
            sid, VOICE, CCRequestType.INITIAL, 0, subscription_id=demo.sub(i),
            multiple_services_credit_control=ask, estimate=Estimate.ESTIMATE,
        )
    )  # fmt: skip
    last = await demo.send(
        demo.ccr(
            sid, VOICE, CCRequestType.TERMINATION, 1, multiple_services_credit_control=final,
            estimate=Estimate.ESTIMATE,
        )
    )  # fmt: skip
    estimated = _cost(last)
    untouched = await demo.amr(AccountOperation.GET, account)
    sid = demo.session_id()
    if first.result_code != 2001 or estimated is None or untouched.account is None:
        print(f"demo: the estimate answered {first.result_code}/{last.result_code}", flush=True)
        return False
    if not await demo.open_session(sid, VOICE, ask, demo.sub(i)):
        return False
    await demo.in_session(sid, CCRequestType.TERMINATION, final)
    after = await demo.amr(AccountOperation.GET, account)
    if after.account is None:
        return False
    charged = untouched.account.balance - after.account.balance
    same = charged == estimated and untouched.account.balance == INITIAL_BALANCE
    print(
        f"demo: {account}: a 95 s call estimated at {format_money(estimated)} EUR (the "
        f"account untouched: {format_money(untouched.account.balance)}), then charged "
        f"{format_money(charged)} EUR for real; the same: {same}",
        flush=True,
    )
    return same
