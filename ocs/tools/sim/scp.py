"""`ocs sim scp`: an SCP/SMSC charging SMS (32274@3gpp.org, RG 30) and voice (32260@3gpp.org,
RG 40).

* SMS with unit reservation: INITIAL reserving 1 unit, delivery (fails with `failure_rate`),
  TERMINATION with 1 used unit, or 0 when the message could not be delivered.
* SMS charged by immediate event: EVENT DIRECT_DEBITING of 1 unit; when that message then
  fails, EVENT REFUND_ACCOUNT of what was debited (same Event-Timestamp, so the same price).
* Voice calls: INITIAL asking for time quota, the call's seconds counted against it, an UPDATE
  when the Time-Quota-Threshold is reached, TERMINATION at the end of the call, or when final
  units (action TERMINATE) are used up.

Messages arrive as a Poisson process (`sms_rate` per simulated second); calls start at random
instants of the first part of the run. RAR and ASR are handled by every session.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from ocs.tools.sim.runtime import SimConfig, SimRuntime, Subscriber, iso
from ocs.tools.sim.session import CcSession, Phase
from ocs.tools.sim.urr import RuleState, units_in
from ocs.tools.sim.usage_log import EventEntry, cost_micro
from protocol.codes import AoCRequestType, CCRequestType, RequestedAction, ResultCode
from protocol.messages import CCA, CCR, MsccRequest, ServiceUnit
from rating import Unit

SMS_CONTEXT = "32274@3gpp.org"
VOICE_CONTEXT = "32260@3gpp.org"
SMS_RG = 30
VOICE_RG = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class ScpProfile:
    sms_rate: float = 1.0  # messages per simulated second, all subscribers together
    failure_rate: float = 0.1  # share of messages that cannot be delivered
    event_share: float = 0.5  # share of messages charged by immediate event (else: reservation)
    delivery_mean_s: float = 5.0  # mean delivery attempt (simulated seconds)
    calls: int = 10  # voice calls over the run
    call_mean_s: float = 180.0  # mean call length (simulated seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScpConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    profile: ScpProfile = field(default_factory=ScpProfile)


class Call:
    """One voice call: its seconds are counted as they pass, once the call is answered."""

    def __init__(self, rt: SimRuntime, subscriber: Subscriber, start_ms: int, length_ms: int):
        self.rt = rt
        self.subscriber = subscriber
        self.start_ms = start_ms
        self.length_ms = length_ms
        self.session: CcSession | None = None
        self.answered_ms: int | None = None
        self.accounted_s = 0  # seconds of the call handled (counted or refused)
        self.done = False

    def step(self, now: int) -> None:
        if self.done:
            return
        session = self.session
        if session is None:
            if self.rt.stopping:
                self.done = True
            elif now >= self.start_ms:
                self._start()
            return
        if session.phase is Phase.CLOSED:
            self.done = True
            return
        if session.phase is not Phase.OPEN or self.answered_ms is None:
            return
        end = self.answered_ms + self.length_ms
        elapsed = (min(now, end) - self.answered_ms) // 1000
        if elapsed > self.accounted_s:
            t0 = self.answered_ms + self.accounted_s * 1000
            t1 = self.answered_ms + elapsed * 1000
            session.engine.consume(VOICE_RG, elapsed - self.accounted_s, t0, t1)
            self.accounted_s = elapsed
        if now >= end or self.rt.stopping:
            session.end("end")
        session.step(now)

    def _start(self) -> None:
        session = CcSession(
            self.rt,
            subscriber=self.subscriber,
            service_context_id=VOICE_CONTEXT,
            units={VOICE_RG: Unit.SECONDS},
        )
        self.session = session

        async def open_call() -> None:
            if await session.open((VOICE_RG,)):
                self.answered_ms = self.rt.now_ms()
                self.rt.stats.events["call answered"] += 1

        self.rt.spawn(open_call())


class Scp:
    def __init__(self, rt: SimRuntime, profile: ScpProfile, subscribers: list[Subscriber]):
        self.rt = rt
        self.profile = profile
        self.subscribers = subscribers
        self.rng = random.Random(rt.rng.getrandbits(64))
        self.calls: list[Call] = []
        now = rt.now_ms()
        self.next_sms_ms = now + self._sms_gap()
        span_ms = int(rt.config.duration * rt.config.speed * 1000 * 0.7)
        for _ in range(profile.calls):
            start = now + self.rng.randrange(max(span_ms, 1))
            length = max(1000, int(self.rng.expovariate(1 / profile.call_mean_s) * 1000))
            self.calls.append(Call(rt, self.rng.choice(subscribers), start, length))

    def _sms_gap(self) -> int:
        rate = self.profile.sms_rate
        if rate <= 0:
            return 1 << 62
        return max(1, int(self.rng.expovariate(rate) * 1000))

    @property
    def active(self) -> bool:
        return any(not c.done for c in self.calls) or bool(self.rt.sessions)

    def step(self, now: int) -> None:
        rt = self.rt
        if not rt.stopping:
            while now >= self.next_sms_ms:
                self.next_sms_ms += self._sms_gap()
                subscriber = self.rng.choice(self.subscribers)
                if self.rng.random() < self.profile.event_share:
                    rt.spawn(self.sms_event(subscriber))
                else:
                    rt.spawn(self.sms_session(subscriber))
        for call in self.calls:
            call.step(now)
        for session in list(rt.sessions.values()):
            session.step(now)

    def _delivered(self) -> bool:
        return self.rng.random() >= self.profile.failure_rate

    def _delivery_ms(self) -> int:
        return int(self.rng.expovariate(1 / self.profile.delivery_mean_s) * 1000)

    # --- SMS with unit reservation ------------------------------------------------------------

    async def sms_session(self, subscriber: Subscriber) -> None:
        rt = self.rt
        session = CcSession(
            rt,
            subscriber=subscriber,
            service_context_id=SMS_CONTEXT,
            units={SMS_RG: Unit.UNITS},
            requested={SMS_RG: ServiceUnit(cc_service_specific_units=1)},
        )
        if not await session.open((SMS_RG,)):
            return
        await rt.sleep_sim(self._delivery_ms())
        rule = session.engine.rule(SMS_RG)
        if session.is_open and rule.state is RuleState.ACTIVE:
            if self._delivered():
                now = rt.now_ms()
                session.engine.consume(SMS_RG, 1, now, now)
                rt.stats.events["SMS delivered (reservation)"] += 1
                session.end("delivered")
            else:
                rt.stats.events["SMS failed (reservation)"] += 1
                session.end("undelivered")
        else:
            rt.stats.events["SMS not sent (no credit)"] += 1
            session.end("no-credit")
        await session.wait_closed()

    # --- SMS by immediate event, refunded when it fails ----------------------------------------

    async def sms_event(self, subscriber: Subscriber) -> None:
        rt = self.rt
        timestamp = rt.now_ms() // 1000
        debit_id = rt.new_session_id()
        granted = await self.event(
            subscriber, debit_id, RequestedAction.DIRECT_DEBITING, 1, timestamp
        )
        if granted is None:
            rt.stats.events["SMS not sent (no credit)"] += 1
            return
        await rt.sleep_sim(self._delivery_ms())
        if self._delivered():
            rt.stats.events["SMS delivered (event)"] += 1
            return
        rt.stats.events["SMS failed (event), refunded"] += 1
        await self.event(
            subscriber,
            rt.new_session_id(),
            RequestedAction.REFUND_ACCOUNT,
            granted,
            timestamp,
            refund_of=debit_id,
        )

    async def event(
        self,
        subscriber: Subscriber,
        session_id: str,
        action: RequestedAction,
        units: int,
        timestamp: int,
        *,
        refund_of: str | None = None,
    ) -> int | None:
        """An EVENT request; the units granted (debited / refunded) if answered 2001."""
        rt = self.rt
        cfg = rt.config
        ccr = CCR(
            session_id=session_id,
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            destination_realm=cfg.origin_realm,
            auth_application_id=4,
            service_context_id=SMS_CONTEXT,
            cc_request_type=CCRequestType.EVENT,
            cc_request_number=0,
            requested_action=action,
            event_timestamp=timestamp,
            subscription_id=subscriber.subscription,
            multiple_services_credit_control=(
                MsccRequest(
                    rating_group=SMS_RG,
                    requested_service_unit=ServiceUnit(cc_service_specific_units=units),
                ),
            ),
            aoc_request_type=AoCRequestType.COST_ONLY,  # what it cost, for reconcile
        )
        rt.stats.requests["EVENT"] += 1
        delivery = await rt.call(ccr)
        rt.stats.answer(delivery)
        answer = delivery.answer
        cca = answer if isinstance(answer, CCA) else None
        ok = cca is not None and cca.result_code == ResultCode.SUCCESS and not delivery.error_flag
        granted = None
        if cca is not None:
            for mscc in cca.multiple_services_credit_control or ():
                rt.stats.mscc_result_codes[mscc.result_code] += 1
                if mscc.rating_group == SMS_RG:
                    granted = units_in(mscc.granted_service_unit, Unit.UNITS)
        rt.log.write(
            EventEntry(
                time=iso(rt.now_ms()),
                node=cfg.origin_host,
                session_id=session_id,
                service_context_id=SMS_CONTEXT,
                subscriber=subscriber.msisdn,
                action=action.name,
                rating_group=SMS_RG,
                unit=Unit.UNITS.value,
                units=units,
                granted_units=granted,
                event_timestamp=timestamp,
                result_code=answer.result_code if answer is not None else None,
                ok=ok,
                refund_of=refund_of,
                retransmitted=delivery.retransmitted,
                cost=cost_micro(cca.cost_information) if cca is not None else None,
                currency=(
                    cca.cost_information.currency_code
                    if cca is not None and cca.cost_information is not None
                    else None
                ),
            )
        )
        if ok:
            rt.stats.events[action.name] += 1
            return granted if granted is not None else units
        return None


class ScpSimulator:
    """The SCP: `run()` provisions the subscribers, sends messages and places calls for
    `duration` real seconds, then finishes every call and message."""

    def __init__(self, config: ScpConfig) -> None:
        self.config = config
        self.rt = SimRuntime(config.sim, name="scp")
        self.scp: Scp | None = None

    async def run(self) -> SimRuntime:
        rt, cfg = self.rt, self.config.sim
        await rt.start()
        try:
            subscribers = rt.subscribers()
            await rt.provision(subscribers)
            scp = self.scp = Scp(rt, self.config.profile, subscribers)
            loop = asyncio.get_running_loop()
            end = loop.time() + cfg.duration
            while loop.time() < end:
                scp.step(rt.now_ms())
                await asyncio.sleep(cfg.tick)
            rt.stopping = True
            deadline = loop.time() + cfg.drain_timeout
            while (scp.active or rt.tasks) and loop.time() < deadline:
                scp.step(rt.now_ms())
                await asyncio.sleep(cfg.tick)
            await rt.drain()
        finally:
            await rt.close()
        return rt


async def run_scp(config: ScpConfig) -> SimRuntime:
    """Run the SCP for `config.sim.duration` real seconds, then finish every call and message."""
    return await ScpSimulator(config).run()
