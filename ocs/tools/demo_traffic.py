"""The demo's traffic: data, SMS and voice against the demo catalog, with a live summary.

Creates a few subscribers over AMR, then runs, concurrently, data sessions (RG 10 with linked
video RG 20 usage), SMS (a reservation session per message, some undelivered, plus an event
debit and its refund) and voice calls (RG 40, setup fee), prints a summary line every second
and, at the end, checks the money: what the accounts lost equals the sum of the CDR charges.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.edge.client import Client
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    ReportingReason,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from rating import format_money

HOST = "demo-ne.test.local"
REALM = "test.local"
DATA, SMS, VOICE = "32251@3gpp.org", "32274@3gpp.org", "32260@3gpp.org"
SUBSCRIBERS = 5
INITIAL_BALANCE = 20_000_000  # 20 EUR each
MIB = 1 << 20


class Demo:
    def __init__(self, client: Client, seed: int = 7) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.results: Counter[int] = Counter()
        self.sessions = 0
        self.events = 0
        self._sid = 0

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
        cca = await self.send(
            self.ccr(
                sid,
                DATA,
                CCRequestType.INITIAL,
                0,
                subscription_id=self.sub(i),
                multiple_services_credit_control=(
                    MsccRequest(rating_group=10, requested_service_unit=rsu),
                ),
            )
        )
        if cca.result_code != 2001:
            return
        self.sessions += 1
        number = 0
        for _ in range(self.rng.randint(1, 3)):
            number += 1
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
            await self.send(
                self.ccr(
                    sid,
                    DATA,
                    CCRequestType.UPDATE,
                    number,
                    multiple_services_credit_control=tuple(msccs),
                )
            )
            await asyncio.sleep(0.05)
        await self.send(
            self.ccr(
                sid,
                DATA,
                CCRequestType.TERMINATION,
                number + 1,
                multiple_services_credit_control=(
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
        )

    async def sms(self, i: int) -> None:
        sid = self.session_id()
        cca = await self.send(
            self.ccr(
                sid,
                SMS,
                CCRequestType.INITIAL,
                0,
                subscription_id=self.sub(i),
                multiple_services_credit_control=(
                    MsccRequest(
                        rating_group=30,
                        requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                    ),
                ),
            )
        )
        if cca.result_code != 2001:
            return
        self.sessions += 1
        delivered = self.rng.random() > 0.2  # one message in five is not delivered
        await self.send(
            self.ccr(
                sid,
                SMS,
                CCRequestType.TERMINATION,
                1,
                multiple_services_credit_control=(
                    MsccRequest(
                        rating_group=30,
                        used_service_unit=(
                            UsedServiceUnit(cc_service_specific_units=1 if delivered else 0),
                        ),
                    ),
                ),
            )
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
        cca = await self.send(
            self.ccr(
                sid,
                VOICE,
                CCRequestType.INITIAL,
                0,
                subscription_id=self.sub(i),
                multiple_services_credit_control=(
                    MsccRequest(rating_group=40, requested_service_unit=ServiceUnit()),
                ),
            )
        )
        if cca.result_code != 2001:
            return
        self.sessions += 1
        await asyncio.sleep(0.1)
        await self.send(
            self.ccr(
                sid,
                VOICE,
                CCRequestType.TERMINATION,
                1,
                multiple_services_credit_control=(
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
            spent = await total_spent(demo, accounts)
            cdrs = sum(1 for _ in iter_records(data_dir / "cdr"))
            print(
                f"demo: sessions {demo.sessions:5d}  events {demo.events:4d}  "
                f"charged {format_money(spent)} EUR  CDRs written {cdrs:5d}  "
                f"result codes {dict(sorted(demo.results.items()))}",
                flush=True,
            )

    reporter = asyncio.create_task(summary())
    await asyncio.gather(*(traffic() for _ in range(4)))
    reporter.cancel()
    spent = await total_spent(demo, accounts)
    await client.close()
    await asyncio.sleep(0.3)  # CDRs follow the journal by one group commit
    records = list(iter_records(data_dir / "cdr"))
    cdr_total = sum(int(r["charge"]) for r in records)
    seqs = [int(r["recordSequenceNumber"]) for r in records]
    ok = cdr_total == spent and seqs == list(range(1, len(seqs) + 1))
    print(
        f"demo: accounts lost {format_money(spent)} EUR; {len(records)} CDRs charge "
        f"{format_money(cdr_total)} EUR; sequence 1..{len(seqs)} gap-free: "
        f"{seqs == list(range(1, len(seqs) + 1))}; money reconciles: {ok}",
        flush=True,
    )
    return ok


async def total_spent(demo: Demo, accounts: list[str]) -> int:
    spent = 0
    for account in accounts:
        answer = await demo.amr(AccountOperation.GET, account)
        assert answer.account is not None
        spent += INITIAL_BALANCE - (answer.account.balance + answer.account.reserved)
    return spent
