"""`ocs sim upf`: a UPF/SMF charging data sessions (Service-Context-Id 32251@3gpp.org).

Each subscriber runs data sessions one after another (exponential lengths and gaps): RG 10
(internet) always, RG 20 (video, linked to RG 10 in the demo catalog) in some sessions. The
traffic model (`ocs.tools.sim.traffic`) produces bytes; the usage reporting rules
(`ocs.tools.sim.urr`) count them against the grants and decide the reports;
`ocs.tools.sim.session` sends them. Everything runs on the simulation clock (`--speed`).
With `--iot N`, N IoT devices (`ocs.tools.sim.iot`: IMSI identities, one session held open,
a small report every 15 minutes) run beside the subscribers.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from ocs.tools.sim.iot import IOT_RG, IotMeter, IotProfile, IotTraffic
from ocs.tools.sim.runtime import SimConfig, SimRuntime, Subscriber
from ocs.tools.sim.session import CcSession, Phase
from ocs.tools.sim.traffic import DATA_RG, VIDEO_RG, DataFlow, DataProfile, session_length_ms
from protocol.codes import SubscriptionIdType
from rating import Unit

DATA_CONTEXT = "32251@3gpp.org"
DATA_UNITS = {DATA_RG: Unit.OCTETS, VIDEO_RG: Unit.OCTETS}


@dataclass(frozen=True, slots=True, kw_only=True)
class UpfConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    profile: DataProfile = field(default_factory=DataProfile)
    iot_devices: int = 0  # IoT devices beside the subscribers
    iot: IotProfile = field(default_factory=IotProfile)


class DataUser:
    """One subscriber: a data session at a time, then a pause, then the next."""

    def __init__(
        self, rt: SimRuntime, subscriber: Subscriber, profile: DataProfile, rng: random.Random
    ) -> None:
        self.rt = rt
        self.subscriber = subscriber
        self.profile = profile
        self.rng = rng
        now = rt.now_ms()
        self.next_start_ms = now + int(rng.uniform(0, profile.gap_mean_s) * 1000)
        self.session: CcSession | None = None
        self.flow: DataFlow | None = None
        self.last_ms = now
        self.end_ms = now

    @property
    def active(self) -> bool:
        return self.session is not None

    def step(self, now: int) -> None:
        session = self.session
        if session is None:
            if not self.rt.stopping and now >= self.next_start_ms:
                self._start(now)
            return
        if session.phase is Phase.CLOSED:
            self.session = None
            self.flow = None
            gap = self.rng.expovariate(1 / self.profile.gap_mean_s)
            self.next_start_ms = now + int(gap * 1000)
            return
        if session.phase is not Phase.OPEN:
            self.last_ms = now  # no traffic before the session is open or while it closes
            return
        assert self.flow is not None
        for rg, amount in self.flow.advance(self.last_ms, now).items():
            session.engine.consume(rg, amount.total, self.last_ms, now, uplink=amount.uplink)
        self.last_ms = now
        if now >= self.end_ms or self.rt.stopping:
            session.end("end")
        session.step(now)

    def _start(self, now: int) -> None:
        flow = DataFlow(self.rng, self.profile, now)
        session = CcSession(
            self.rt,
            subscriber=self.subscriber,
            service_context_id=DATA_CONTEXT,
            units={rg: DATA_UNITS[rg] for rg in flow.rating_groups},
        )
        self.session = session
        self.flow = flow
        self.last_ms = now
        self.end_ms = now + session_length_ms(self.rng, self.profile.session_mean_s)

        async def open_session() -> None:
            await session.open(flow.rating_groups)

        self.rt.spawn(open_session())


class IotDevice:
    """An IoT device: one data session (RG 10) opened at the start and held, a small report
    every `interval_s`, held back while its rule has no quota (`IotMeter`)."""

    def __init__(
        self, rt: SimRuntime, subscriber: Subscriber, profile: IotProfile, rng: random.Random
    ) -> None:
        self.rt = rt
        self.subscriber = subscriber
        now = rt.now_ms()
        self.meter = IotMeter(IotTraffic(rng, profile, now))
        self.session: CcSession | None = None
        self.started = False
        self.last_ms = now

    @property
    def active(self) -> bool:
        return self.session is not None

    def step(self, now: int) -> None:
        session = self.session
        if session is None:
            if not self.started and not self.rt.stopping:
                self._start(now)
            return
        if session.phase is Phase.CLOSED:
            self.session = None  # a device does not open another session in a run
            return
        if session.phase is not Phase.OPEN:
            self.last_ms = now
            return
        self.meter.feed(session.engine, self.last_ms, now)
        self.last_ms = now
        if self.rt.stopping:
            session.end("end")
        session.step(now)

    def _start(self, now: int) -> None:
        self.started = True
        session = CcSession(
            self.rt,
            subscriber=self.subscriber,
            service_context_id=DATA_CONTEXT,
            units={IOT_RG: Unit.OCTETS},
        )
        self.session = session
        self.last_ms = now

        async def open_session() -> None:
            await session.open((IOT_RG,))

        self.rt.spawn(open_session())


def iot_subscribers(profile: IotProfile, count: int) -> list[Subscriber]:
    """The IoT devices' identities: IMSIs from `profile.first_imsi` on."""
    return [
        Subscriber(
            i,
            str(profile.first_imsi + i),
            f"sim-iot-{profile.first_imsi + i}",
            SubscriptionIdType.END_USER_IMSI,
        )
        for i in range(count)
    ]


class UpfSimulator:
    """The UPF: `run()` provisions the subscribers, runs traffic for `duration` real seconds,
    then closes every session and the connection. `rt` is there from the start (statistics,
    the link) for whoever watches."""

    def __init__(self, config: UpfConfig) -> None:
        self.config = config
        self.rt = SimRuntime(config.sim, name="upf")
        self.users: list[DataUser] = []
        self.devices: list[IotDevice] = []

    def step(self) -> None:
        now = self.rt.now_ms()
        for user in self.users:
            user.step(now)
        for device in self.devices:
            device.step(now)

    async def run(self) -> SimRuntime:
        rt, cfg = self.rt, self.config.sim
        await rt.start()
        try:
            subscribers = rt.subscribers()
            things = iot_subscribers(self.config.iot, self.config.iot_devices)
            await rt.provision(subscribers + things)
            self.users = [
                DataUser(rt, sub, self.config.profile, random.Random(rt.rng.getrandbits(64)))
                for sub in subscribers
            ]
            self.devices = [
                IotDevice(rt, sub, self.config.iot, random.Random(rt.rng.getrandbits(64)))
                for sub in things
            ]
            loop = asyncio.get_running_loop()
            end = loop.time() + cfg.duration
            while loop.time() < end:
                self.step()
                await asyncio.sleep(cfg.tick)
            rt.stopping = True
            deadline = loop.time() + cfg.drain_timeout
            while (
                any(u.active for u in self.users) or any(d.active for d in self.devices)
            ) and loop.time() < deadline:
                self.step()
                await asyncio.sleep(cfg.tick)
            await rt.drain()
        finally:
            await rt.close()
        return rt


async def run_upf(config: UpfConfig) -> SimRuntime:
    """Run the UPF for `config.sim.duration` real seconds, then close every session."""
    return await UpfSimulator(config).run()
