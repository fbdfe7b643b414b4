"""IoT devices for `ocs sim upf --iot N` and `bench.iot` (docs/simulators.md, *IoT devices*).

A device (an NB-IoT meter) keeps one data session open (RG 10) and sends a small report every
`interval_s`: `report_bytes` at once, at a phase of its own (seeded), mostly uplink. The usage
reporting rules (`ocs.tools.sim.urr`) count them against the grants and decide when the
session reports, exactly as for any data session: with the server's normal profile a grant of
10 MiB held for at most its Quota-Holding-Time (5 min in the demo) is given back after each
report and asked for again at the next; within the IoT profile (a device class of the catalog,
by IMSI prefix) one grant lasts until the period's end.

`IotTraffic` is pure (time passed in); `ccr_for` builds the request a session sends for the
rules' reports, for simulators that drive a core in-process (`bench.iot`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from ocs.tools.sim.urr import MsccReport, UrrEngine
from protocol.codes import CCRequestType, SubscriptionIdType
from protocol.messages import CCR, MsccRequest, ServiceUnit, SubscriptionId, UsedServiceUnit
from rating import Unit

IOT_RG: Final = 10
#: The demo catalog's device class "meter" takes IMSIs beginning 99901 (test PLMN 999-01).
DEFAULT_IMSI_BASE: Final = 999_010_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class IotProfile:
    report_bytes: int = 200  # one report's size
    interval_s: int = 900  # seconds between two reports (96 a day)
    uplink_share: float = 0.9  # a meter mostly sends
    first_imsi: int = DEFAULT_IMSI_BASE  # the IMSI of the first device


class IotTraffic:
    """When a device sends, and how much: `report_bytes` every `interval_s` from a seeded
    phase."""

    def __init__(self, rng: random.Random, profile: IotProfile, start_ms: int) -> None:
        self.profile = profile
        self.next_ms = start_ms + rng.randrange(profile.interval_s) * 1000

    def advance(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """(bytes, of which uplink) the device sends in [start_ms, end_ms)."""
        p = self.profile
        reports = 0
        while self.next_ms < end_ms:
            if self.next_ms >= start_ms:
                reports += 1
            self.next_ms += p.interval_s * 1000
        total = reports * p.report_bytes
        return total, int(total * p.uplink_share)


class IotMeter:
    """A device's traffic and what it holds back: a meter keeps a report it could not send
    (its rule held no quota: given back after the Quota-Holding-Time) and sends it once quota
    comes, rather than losing it as a data flow would."""

    def __init__(self, traffic: IotTraffic) -> None:
        self.traffic = traffic
        self.backlog = 0
        self.backlog_uplink = 0

    def feed(self, engine: UrrEngine, start_ms: int, end_ms: int) -> None:
        """Count what the device sends in [start_ms, end_ms) and what it held back."""
        sent, uplink = self.traffic.advance(start_ms, end_ms)
        total, up = sent + self.backlog, uplink + self.backlog_uplink
        if total <= 0:
            return
        counted = engine.consume(IOT_RG, total, start_ms, end_ms, uplink=up)
        rule = engine.rule(IOT_RG)
        held = total - counted
        rule.dropped -= held  # held back, not dropped
        self.backlog = held
        self.backlog_uplink = up - up * counted // total if held else 0


def imsi_subscription(imsi: str) -> tuple[SubscriptionId, ...]:
    return (
        SubscriptionId(
            subscription_id_type=SubscriptionIdType.END_USER_IMSI, subscription_id_data=imsi
        ),
    )


def ccr_for(
    *,
    session_id: str,
    origin_host: str,
    origin_realm: str,
    service_context_id: str,
    kind: CCRequestType,
    number: int,
    reports: list[MsccReport],
    engine: UrrEngine,
    subscription: tuple[SubscriptionId, ...] | None,
) -> CCR:
    """The CCR a session sends for the rules' reports (as `ocs.tools.sim.session` does)."""
    msccs = []
    for report in reports:
        unit = engine.rules[report.rating_group].unit
        used = tuple(
            UsedServiceUnit(
                cc_total_octets=u.units if unit is Unit.OCTETS else None,
                cc_input_octets=u.uplink,
                cc_output_octets=u.downlink,
                cc_time=u.units if unit is Unit.SECONDS else None,
                cc_service_specific_units=u.units if unit is Unit.UNITS else None,
                tariff_change_usage=u.tariff_change_usage,
                reporting_reason=u.reason,
            )
            for u in report.used
        )
        msccs.append(
            MsccRequest(
                rating_group=report.rating_group,
                requested_service_unit=ServiceUnit() if report.request_quota else None,
                used_service_unit=used or None,
                reporting_reason=report.reason if not used else None,
            )
        )
    return CCR(
        session_id=session_id,
        origin_host=origin_host,
        origin_realm=origin_realm,
        destination_realm=origin_realm,
        auth_application_id=4,
        service_context_id=service_context_id,
        cc_request_type=kind,
        cc_request_number=number,
        subscription_id=subscription if kind is CCRequestType.INITIAL else None,
        multiple_services_credit_control=tuple(msccs) or None,
    )
