"""What the simulators share: configuration, statistics, the link to the server, provisioning
of subscribers over AMR, RAR/ASR dispatch to sessions, and the end-of-run summary."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocs.edge.tls import TlsClientConfig, client_context
from ocs.tools.sim.clock import SimClock
from ocs.tools.sim.groups import share  # groups
from ocs.tools.sim.link import Delivery, Link
from ocs.tools.sim.usage_log import UsageLog
from protocol.codes import (
    VERSION,
    AccountOperation,
    ApplicationId,
    ResultCode,
    SubscriptionIdType,
    is_protocol_error,
)
from protocol.errors import ProtocolError
from protocol.header import Header
from protocol.messages import AMA, AMR, ASA, ASR, RAA, RAR, Answer, Request, SubscriptionId
from rating import format_money

if TYPE_CHECKING:
    from ocs.tools.sim.session import CcSession

# Answers that say the request itself was wrong (not a business outcome): a correct client
# never gets them.
_BAD_REQUEST_CODES = frozenset(
    {
        ResultCode.INVALID_AVP_VALUE,
        ResultCode.MISSING_AVP,
        ResultCode.AVP_NOT_ALLOWED,
        ResultCode.AVP_OCCURS_TOO_MANY_TIMES,
        ResultCode.CONTRADICTING_AVPS,
        ResultCode.INVALID_MESSAGE_LENGTH,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 3868
    subscribers: int = 10
    duration: float = 10.0  # real seconds of traffic
    speed: float = 1.0  # simulated seconds per real second
    seed: int = 1
    usage_log: Path | None = None
    balance: int = 10_000_000  # initial balance of each subscriber, micro-units
    # status-policy: each subscriber's own inhibit threshold, micro-units (None: the catalog's)
    inhibit_threshold: int | None = None
    origin_host: str = "sim.test.local"
    origin_realm: str = "test.local"
    first_msisdn: int = 491700000000
    tick: float = 0.02  # real seconds between two steps of the simulation
    connect_timeout: float = 10.0  # real seconds to reach the server at the start
    answer_timeout: float = 5.0  # real seconds before a request is sent again elsewhere
    give_up: float = 60.0  # real seconds after which an unanswered request is abandoned
    drain_timeout: float = 60.0  # real seconds to close every session at the end
    tls: TlsClientConfig | None = None  # connect over TLS (RFC 6733 section 13)
    encoding: int = VERSION  # the body encoding: VERSION (MessagePack) or VERSION_DIAMETER
    offer: str | None = None  # offers: the first subscriber takes this offer of the catalog
    # groups: the first `group_members` subscribers share a group account's package
    group_members: int = 0
    group_package: str = "family"


@dataclass(slots=True)
class Stats:
    subscribers: int = 0
    sessions_opened: int = 0
    sessions_refused: int = 0
    sessions_closed: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    result_codes: Counter[int] = field(default_factory=Counter)
    mscc_result_codes: Counter[int] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    units: Counter[int] = field(default_factory=Counter)  # per rating group, reported and ok
    uncounted: Counter[int] = field(default_factory=Counter)
    inhibited: Counter[int] = field(default_factory=Counter)  # zero grants with a final action
    dropped: Counter[int] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    protocol_errors: int = 0
    unanswered: int = 0
    rar: int = 0
    asr: int = 0
    retransmissions: int = 0
    reconnects: int = 0
    timeouts: int = 0
    busy: int = 0
    unit_names: dict[int, str] = field(default_factory=dict)
    # RARs sent for usage counters, by counter name (their `Usage-Counter`s, docs/protocol.md)
    counter_rars: Counter[str] = field(default_factory=Counter)

    def answer(self, delivery: Delivery, *, admin: bool = False) -> None:
        if delivery.answer is None:
            self.unanswered += 1
            return
        code = delivery.answer.result_code
        self.result_codes[code] += 1
        bad_request = code in _BAD_REQUEST_CODES and not admin
        if delivery.error_flag or is_protocol_error(code) or bad_request:
            self.protocol_errors += 1


def iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Subscriber:
    index: int
    msisdn: str  # the identity (an IMSI for an IoT device, see `id_type`)
    account_id: str
    id_type: SubscriptionIdType = SubscriptionIdType.END_USER_E164

    @property
    def subscription(self) -> tuple[SubscriptionId, ...]:
        return (
            SubscriptionId(
                subscription_id_type=self.id_type,
                subscription_id_data=self.msisdn,
            ),
        )


class SimRuntime:
    """The parts of a simulator that are not its traffic."""

    def __init__(self, config: SimConfig, *, name: str) -> None:
        self.config = config
        self.name = name
        self.clock = SimClock(config.speed)
        self.rng = random.Random(config.seed)
        self.stats = Stats()
        self.log = UsageLog(config.usage_log)
        self.sessions: dict[str, CcSession] = {}
        self.link = Link(
            config.host,
            config.port,
            origin_host=config.origin_host,
            origin_realm=config.origin_realm,
            applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
            on_request=self.on_request,
            answer_timeout=config.answer_timeout,
            product_name=f"ocs-sim-{name}",
            ssl=client_context(config.tls) if config.tls is not None else None,
            server_hostname=config.tls.hostname(config.host) if config.tls is not None else None,
            encoding=config.encoding,
        )
        self._sid_prefix = f"{config.origin_host};{time.time_ns() // 1_000_000};"
        self._sid = 0
        self.stopping = False
        self.started = time.monotonic()
        self.tasks: set[asyncio.Task[None]] = set()

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def new_session_id(self) -> str:
        self._sid += 1
        return f"{self._sid_prefix}{self._sid}"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def sleep_sim(self, sim_ms: int) -> None:
        await asyncio.sleep(self.clock.real_seconds(sim_ms))

    async def call(self, request: Request) -> Delivery:
        return await self.link.call(request, give_up=self.config.give_up)

    # --- server-initiated requests (WIRE.md section 7) ----------------------------------------

    def on_request(self, header: Header, message: Request) -> Answer:
        cfg = self.config
        if isinstance(message, RAR):
            session = self.sessions.get(message.session_id)
            known = session is not None and session.accepts_server_requests
            self.stats.rar += 1
            for counter in message.usage_counter or ():  # a usage threshold crossed
                self.stats.counter_rars[counter.counter_name] += 1
            if session is not None and known:
                session.on_rar(message.rating_group)
            return RAA(
                result_code=ResultCode.SUCCESS if known else ResultCode.UNKNOWN_SESSION_ID,
                origin_host=cfg.origin_host,
                origin_realm=cfg.origin_realm,
                session_id=message.session_id,
            )
        if isinstance(message, ASR):
            session = self.sessions.get(message.session_id)
            known = session is not None and session.accepts_server_requests
            self.stats.asr += 1
            if session is not None and known:
                session.on_asr()
            return ASA(
                result_code=ResultCode.SUCCESS if known else ResultCode.UNKNOWN_SESSION_ID,
                origin_host=cfg.origin_host,
                origin_realm=cfg.origin_realm,
                session_id=message.session_id,
            )
        raise ProtocolError(ResultCode.UNABLE_TO_COMPLY, "a simulator serves RAR and ASR only")

    # --- subscribers ---------------------------------------------------------------------------

    def subscribers(self) -> list[Subscriber]:
        first = self.config.first_msisdn
        return [
            Subscriber(i, str(first + i), f"sim-{first + i}")
            for i in range(self.config.subscribers)
        ]

    async def provision(self, subscribers: list[Subscriber]) -> None:
        """Create the accounts over AMR (an account that exists already is used as it is)."""
        sem = asyncio.Semaphore(32)

        async def create(sub: Subscriber) -> None:
            async with sem:
                delivery = await self.call(
                    AMR(
                        origin_host=self.config.origin_host,
                        origin_realm=self.config.origin_realm,
                        account_operation=AccountOperation.CREATE,
                        account_id=sub.account_id,
                        subscription_id=sub.subscription,
                        amount=self.config.balance,
                    )
                )
                self.stats.requests["AMR"] += 1
                self.stats.answer(delivery, admin=True)
                answer = delivery.answer
                if answer is None:
                    raise RuntimeError(f"CREATE {sub.account_id}: no answer")
                if answer.result_code == ResultCode.INVALID_AVP_VALUE:
                    return  # exists already (an earlier run)
                if answer.result_code != ResultCode.SUCCESS or not isinstance(answer, AMA):
                    raise RuntimeError(f"CREATE {sub.account_id}: {answer.result_code}")
                if self.config.inhibit_threshold is not None:
                    await self._inhibit_at(sub, self.config.inhibit_threshold)

        await asyncio.gather(*(create(s) for s in subscribers))
        self.stats.subscribers = len(subscribers)
        if self.config.offer is not None and subscribers:
            await self._subscribe(subscribers[0], self.config.offer)
        if self.config.group_members:  # groups (ocs/tools/sim/groups.py)
            await share(self, subscribers[: self.config.group_members])

    async def _subscribe(self, sub: Subscriber, offer: str) -> None:
        """Offers: the subscriber takes `offer` (its usage then draws on the allowances); once
        per account (its Operation-Id), and an account that holds it already keeps it."""
        delivery = await self.call(
            AMR(
                origin_host=self.config.origin_host,
                origin_realm=self.config.origin_realm,
                account_operation=AccountOperation.SUBSCRIBE,
                account_id=sub.account_id,
                offer_name=offer,
                operation_id=f"sim-offer-{sub.account_id}-{offer}",
            )
        )
        self.stats.requests["AMR"] += 1
        self.stats.answer(delivery, admin=True)
        answer = delivery.answer
        if answer is None:
            raise RuntimeError(f"SUBSCRIBE {sub.account_id} {offer}: no answer")
        held = answer.result_code == ResultCode.INVALID_AVP_VALUE and "already" in (
            answer.error_message or ""
        )  # an earlier run's subscription
        if answer.result_code != ResultCode.SUCCESS and not held:
            raise RuntimeError(
                f"SUBSCRIBE {sub.account_id} {offer}: {answer.result_code} {answer.error_message}"
            )

    async def _inhibit_at(self, sub: Subscriber, threshold: int) -> None:
        """status-policy: UPDATE the account's own inhibit threshold (docs/protocol.md)."""
        delivery = await self.call(
            AMR(
                origin_host=self.config.origin_host,
                origin_realm=self.config.origin_realm,
                account_operation=AccountOperation.UPDATE,
                account_id=sub.account_id,
                inhibit_threshold=threshold,
            )
        )
        self.stats.requests["AMR"] += 1
        self.stats.answer(delivery, admin=True)
        answer = delivery.answer
        if answer is None or answer.result_code != ResultCode.SUCCESS:
            code = None if answer is None else answer.result_code
            raise RuntimeError(f"UPDATE {sub.account_id} Inhibit-Threshold: {code}")

    # --- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.link.start(timeout=self.config.connect_timeout)

    async def drain(self) -> None:
        """Wait for the tasks still running (terminations), up to `drain_timeout`."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.config.drain_timeout)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5.0)
        await self.link.close()
        link = self.link
        self.stats.retransmissions = link.retransmissions
        self.stats.reconnects = max(link.connects - 1, 0)
        self.stats.timeouts = link.timeouts
        self.stats.busy = link.busy
        self.log.close()

    def summary(self) -> str:
        s = self.stats
        elapsed = time.monotonic() - self.started
        sim_s = int(elapsed * self.config.speed)
        closed = ", ".join(f"{k} {v}" for k, v in sorted(s.sessions_closed.items())) or "none"
        requests = ", ".join(f"{k} {v}" for k, v in sorted(s.requests.items()))
        codes = ", ".join(f"{k} x{v}" for k, v in sorted(s.result_codes.items()))
        mscc = ", ".join(f"{k} x{v}" for k, v in sorted(s.mscc_result_codes.items())) or "none"
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.reasons.items())) or "none"
        units = (
            ", ".join(
                f"RG {rg} {v} {s.unit_names.get(rg, 'units')}" for rg, v in sorted(s.units.items())
            )
            or "none"
        )
        lines = [
            f"ocs sim {self.name}: {s.subscribers} subscribers, {elapsed:.1f} s at "
            f"x{self.config.speed:g} ({sim_s} simulated s), "
            f"balance {format_money(self.config.balance)} each",
            f"  sessions        opened {s.sessions_opened}, refused {s.sessions_refused}, "
            f"closed {sum(s.sessions_closed.values())} ({closed})",
            f"  requests        {sum(s.requests.values())} ({requests}), unanswered {s.unanswered}",
            f"  result codes    {codes}; per rating group {mscc}",
            f"  reports         {reasons}",
            f"  units reported  {units}",
        ]
        if s.events:
            events = ", ".join(f"{k} {v}" for k, v in sorted(s.events.items()))
            lines.append(f"  events          {events}")
        if +s.uncounted or +s.dropped:
            unc = ", ".join(f"RG {rg} {v}" for rg, v in sorted((+s.uncounted).items())) or "none"
            drp = ", ".join(f"RG {rg} {v}" for rg, v in sorted((+s.dropped).items())) or "none"
            lines.append(f"  not charged     passed uncounted {unc}; refused (no quota) {drp}")
        if +s.inhibited:
            inh = ", ".join(f"RG {rg} {v}" for rg, v in sorted((+s.inhibited).items()))
            lines.append(f"  inhibited       zero grants with redirect/restrict {inh}")
        if s.counter_rars:
            crossed = ", ".join(f"{k} {v}" for k, v in sorted(s.counter_rars.items()))
            lines.append(f"  usage counters  RAR for {crossed}")
        lines += [
            f"  RAR handled {s.rar}, ASR handled {s.asr}, retransmissions {s.retransmissions} "
            f"(reconnects {s.reconnects}, timeouts {s.timeouts}, too busy {s.busy})",
            f"  protocol errors {s.protocol_errors}",
        ]
        if self.config.usage_log is not None:
            lines.append(f"  usage log       {self.config.usage_log} ({self.log.count} lines)")
        return "\n".join(lines)
