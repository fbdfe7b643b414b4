"""Messages and CDRs per IoT device per day, with and without the IoT low-signalling profile
(docs/charging.md *IoT low-signalling profile*, docs/benchmarks.md *IoT profile*).

    .venv/bin/python -m bench.iot [--devices 20] [--days 3] [--seed 1] [--json]

Simulated time, deterministic, in-process: a `ChargingCore` on the demo catalog, driven as the
server drives it (requests with their time, a TICK whenever `due` says so), by devices of
`ocs.tools.sim.iot` (a meter: 200 bytes every 15 minutes, one data session held open) whose
usage reporting rules (`ocs.tools.sim.urr`) decide every request, as `ocs sim upf --iot`
does against a server. The same devices run twice from Monday 2026-01-05 00:00 UTC: with IMSIs
in the demo catalog's device class "meter" (the profile), and with IMSIs outside it (the normal
profile). The first day (the INITIAL, the first period) is left out of the figures: they count
the days after it. A message is a request or an answer (CCR/CCA, RAR/RAA). Nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ocs.core.charging import ActionKind, ChargingCore
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from ocs.tools.sim.iot import (
    IOT_RG,
    IotMeter,
    IotProfile,
    IotTraffic,
    ccr_for,
    imsi_subscription,
)
from ocs.tools.sim.urr import UrrEngine
from protocol.codes import AccountOperation, CCRequestType
from protocol.messages import AMR, CCA
from rating import Unit

START_MS = 1_767_571_200_000  # Monday 2026-01-05 00:00:00 UTC
DAY_MS = 86_400_000
UPF = "upf.iot.bench"
IN_CLASS = 999_010_000_000_000  # the demo class "meter": IMSIs beginning 99901
OUT_OF_CLASS = 999_020_000_000_000  # no device class: the normal profile


@dataclass
class Counts:
    requests: Counter[str] = field(default_factory=Counter)
    rar: int = 0
    cdrs: int = 0
    charged: int = 0  # micro-units in the CDRs

    @property
    def messages(self) -> int:
        return 2 * (sum(self.requests.values()) + self.rar)


@dataclass
class Device:
    imsi: str
    session_id: str
    engine: UrrEngine
    meter: IotMeter
    number: int = 0
    last_ms: int = 0
    rar: bool = False


def run(*, in_class: bool, devices: int, days: int, seed: int, step_s: int = 5) -> Counts:
    """Counts over days 2..`days` (the first is left out) for `devices` devices."""
    ledger = Ledger()
    core = ChargingCore(ledger, demo_catalog_text())
    rng = random.Random(seed)
    profile = IotProfile()
    first = IN_CLASS if in_class else OUT_OF_CLASS
    e2e = 0
    counts = Counts()
    counting = False

    def send(now_ms: int, message: Any) -> Any:
        nonlocal e2e
        e2e += 1
        if isinstance(message, AMR):
            return core.handle_amr(now_ms, "admin.iot.bench", e2e, message).answer
        if counting:
            counts.requests[message.cc_request_type.name] += 1
        return core.handle_ccr(now_ms, UPF, e2e, message).answer

    def collect() -> None:
        for action in core.take_actions():
            if action.kind is ActionKind.RAR:
                if counting:
                    counts.rar += 1
                by_sid[action.session_id].rar = True
        for _, line in core.take_cdrs():
            if counting:
                counts.cdrs += 1
                counts.charged += json.loads(line)["charge"]
        core.take_closed()

    fleet: list[Device] = []
    by_sid: dict[str, Device] = {}
    for i in range(devices):
        imsi = str(first + i)
        created = send(
            START_MS,
            AMR(
                origin_host="admin.iot.bench",
                origin_realm="bench",
                account_operation=AccountOperation.CREATE,
                account_id=f"dev-{imsi}",
                subscription_id=imsi_subscription(imsi),
                amount=10_000_000,
            ),
        )
        assert created.result_code == 2001, created
        device = Device(
            imsi=imsi,
            session_id=f"{UPF};{i}",
            engine=UrrEngine({IOT_RG: Unit.OCTETS}),
            meter=IotMeter(IotTraffic(random.Random(rng.getrandbits(64)), profile, START_MS)),
            last_ms=START_MS,
        )
        fleet.append(device)
        by_sid[device.session_id] = device

    def request(device: Device, kind: CCRequestType, reports: list[Any], now_ms: int) -> None:
        ccr = ccr_for(
            session_id=device.session_id,
            origin_host=UPF,
            origin_realm="bench",
            service_context_id="32251@3gpp.org",
            kind=kind,
            number=device.number,
            reports=reports,
            engine=device.engine,
            subscription=imsi_subscription(device.imsi),
        )
        device.number += 1
        answer = send(now_ms, ccr)
        assert isinstance(answer, CCA) and answer.result_code == 2001, answer
        device.engine.apply(reports, answer.multiple_services_credit_control or (), now_ms)
        collect()

    for device in fleet:
        request(device, CCRequestType.INITIAL, device.engine.initial((IOT_RG,)), START_MS)
    end_ms = START_MS + days * DAY_MS
    now = START_MS
    while now < end_ms:
        now += step_s * 1000
        counting = now > START_MS + DAY_MS
        if core.due(now):
            core.tick(now)
            collect()
        for device in fleet:
            device.meter.feed(device.engine, device.last_ms, now)
            if device.rar:
                device.rar = False
                reports = device.engine.reauthorise(None, now)
            else:
                reports = device.engine.poll(now)
            if reports:
                request(device, CCRequestType.UPDATE, reports, now)
                if device.meter.backlog:  # held back for want of quota: sent now
                    device.meter.feed(device.engine, device.last_ms, now)
            device.last_ms = now
    return counts


def report(devices: int, days: int, seed: int) -> dict[str, Any]:
    per = devices * (days - 1)
    out: dict[str, Any] = {"devices": devices, "days_counted": days - 1, "seed": seed}
    for name, in_class in (("normal", False), ("iot", True)):
        c = run(in_class=in_class, devices=devices, days=days, seed=seed)
        out[name] = {
            "messages_per_device_day": c.messages / per,
            "requests_per_device_day": {k: v / per for k, v in sorted(c.requests.items())},
            "rar_per_device_day": c.rar / per,
            "cdrs_per_device_day": c.cdrs / per,
            "charged_per_device_day": c.charged / per,
        }
    normal, iot = out["normal"], out["iot"]
    out["messages_ratio"] = normal["messages_per_device_day"] / iot["messages_per_device_day"]
    out["cdrs_ratio"] = normal["cdrs_per_device_day"] / iot["cdrs_per_device_day"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.iot", description=__doc__)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.days < 2 or args.devices < 1:
        parser.error("at least 1 device and 2 days (the first is not counted)")
    out = report(args.devices, args.days, args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"IoT profile: {args.devices} devices (200 B every 15 min), days 2-{args.days}")
    print("| profile | messages/device/day | CCR-U/device/day | CDRs/device/day | charged |")
    print("|---|---|---|---|---|")
    for name in ("normal", "iot"):
        r = out[name]
        updates = r["requests_per_device_day"].get("UPDATE", 0.0)
        print(
            f"| {name} | {r['messages_per_device_day']:.2f} | {updates:.2f} | "
            f"{r['cdrs_per_device_day']:.2f} | {r['charged_per_device_day']:.0f} |"
        )
    print(f"messages {out['messages_ratio']:.1f}x fewer, CDRs {out['cdrs_ratio']:.1f}x fewer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
