"""The IoT low-signalling profile (issue 15 item 3; docs/charging.md, *IoT low-signalling profile*).

Deterministic state of the charging core, owned by `ChargingCore` (its `iot` attribute) and in
its snapshots (`CoreState.iot`); no clock: time is passed in.

* **Membership.** A session is a device's when its INITIAL carries a `Subscription-Id` of type
  END_USER_IMSI whose data begins with an `imsi_prefixes` entry of a catalog device class
  (`rating/devices.py`). The session keeps that class (by name) until it closes.
* **Threshold set.** Per account (the device) and per period of its class (fixed lengths
  aligned on the epoch): the octets reported for the class's rating groups against grants made
  in the period, and the credit-control requests of its sessions. A request that makes the
  requests more than `max_reports`, or finds the octets at `max_octets` or more, makes the
  device fall back to the normal profile for the rest of the period.
* **Within the set** a grant of a class group is what is left of `max_octets`, valid until the
  period's end, with the class's Quota-Holding-Time and no quota threshold, and reserves at
  most `reserve` (docs: overuse is charged as overdraft); the session's records are not cut by
  the catalog's partial-record triggers but once per period (a TICK at the period's end) and
  at the session's end.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import msgspec

from ocs.core.due import DueSet
from protocol.codes import SubscriptionIdType
from protocol.messages import CCR
from rating import Catalog
from rating.devices import DeviceClass

__all__ = ["IotGrant", "IotProfile"]

MS: Final = 1000
#: The reasons a device falls back (the RAR's reason and the record's `iotFallback`).
FALLBACK_OCTETS: Final = "maxOctets"
FALLBACK_REPORTS: Final = "maxReports"


class DeviceUsage(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """A device's count in one period of its class."""

    device_class: str
    period_start_s: int
    octets: int = 0
    reports: int = 0
    fallback: str = ""  # "" within the set; else why it fell back for the rest of the period
    period_end_s: int = 0  # when the count is over (then forgotten: a new period starts at 0)


class IotState(msgspec.Struct, kw_only=True, array_like=True):
    """The profile's part of a core snapshot (`CoreState.iot`, encoded)."""

    sessions: dict[str, str] = {}  # open session id -> its device class's name
    devices: dict[str, DeviceUsage] = {}  # account id -> its count in the current period
    pending: list[tuple[str, int]] = []  # (session id, period end s): its aggregate record due


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(IotState)


class IotGrant(NamedTuple):
    """How the profile sizes one grant."""

    units: int  # octets
    validity_s: int  # until the period's end
    quota_holding_time_s: int
    reserve: int  # the most money the grant reserves (micro-units)


def _octets(value: object) -> int:
    total = getattr(value, "cc_total_octets", None)
    if total is not None:
        return int(total)
    return int(getattr(value, "cc_input_octets", None) or 0) + int(
        getattr(value, "cc_output_octets", None) or 0
    )


class IotProfile:
    """The device classes of open sessions, the devices' counts, the aggregate records due."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.devices: dict[str, DeviceUsage] = {}
        self._pending: DueSet[str] = DueSet()
        self._pending_at: dict[str, int] = {}
        # account ids under the end of their count's period: a count whose period is over is
        # the same as none, so it is forgotten then (memory stays with the devices of the
        # current period)
        self._expiring: DueSet[str] = DueSet()

    # --- membership --------------------------------------------------------------------------

    @staticmethod
    def classify(catalog: Catalog, ccr: CCR) -> DeviceClass | None:
        """The device class an INITIAL's IMSI puts its session in (the first listed wins)."""
        if not catalog.device_classes:
            return None
        for sub in ccr.subscription_id or ():
            if int(sub.subscription_id_type) != SubscriptionIdType.END_USER_IMSI:
                continue
            for device_class in catalog.device_classes:
                if device_class.matches(sub.subscription_id_data):
                    return device_class
        return None

    def device_class(self, catalog: Catalog, sid: str) -> DeviceClass | None:
        """The class of an open session, if the catalog in force still defines it."""
        name = self.sessions.get(sid)
        if name is None:
            return None
        for device_class in catalog.device_classes:
            if device_class.name == name:
                return device_class
        return None

    def open(self, catalog: Catalog, sid: str, ccr: CCR) -> None:
        device_class = self.classify(catalog, ccr)
        if device_class is not None:
            self.sessions[sid] = device_class.name

    def close(self, sid: str) -> None:
        if self.sessions.pop(sid, None) is not None:
            at = self._pending_at.pop(sid, None)
            if at is not None:
                self._pending.discard(at, sid)

    # --- the threshold set ---------------------------------------------------------------------

    def _usage(self, device_class: DeviceClass, account_id: str, now_s: int) -> DeviceUsage:
        """The device's count in the current period (a new period starts from zero)."""
        start = device_class.period_start_s(now_s)
        usage = self.devices.get(account_id)
        if (
            usage is None
            or usage.period_start_s != start
            or usage.device_class != device_class.name
        ):
            if usage is not None:
                self._expiring.discard(usage.period_end_s, account_id)
            end = start + device_class.period_s
            usage = self.devices[account_id] = DeviceUsage(
                device_class=device_class.name, period_start_s=start, period_end_s=end
            )
            self._expiring.add(end, account_id)
        return usage

    def request(
        self,
        catalog: Catalog,
        sid: str,
        account_id: str,
        grants_made_s: dict[int, int],
        ccr: CCR,
        now_ms: int,
    ) -> str:
        """Count a credit-control request of the session (before it is processed): one report,
        and the octets it reports for the class's groups against grants made in this period
        (`grants_made_s`: the session's grant times by rating group). Returns the reason the
        device falls back now ("" if it does not, or fell back earlier in the period)."""
        device_class = self.device_class(catalog, sid)
        if device_class is None:
            return ""
        now_s = now_ms // MS
        usage = self._usage(device_class, account_id, now_s)
        usage.reports += 1
        for mscc in ccr.multiple_services_credit_control or ():
            if mscc.rating_group not in device_class.rating_groups:
                continue
            granted_s = grants_made_s.get(mscc.rating_group)
            if granted_s is not None and granted_s < usage.period_start_s:
                continue  # used in an earlier period: counted there (or never, once it ended)
            for usu in mscc.used_service_unit or ():
                usage.octets += _octets(usu)
        if usage.fallback:
            return ""
        if usage.reports > device_class.max_reports:
            usage.fallback = FALLBACK_REPORTS
        elif usage.octets >= device_class.max_octets:
            usage.fallback = FALLBACK_OCTETS
        return usage.fallback

    def within(self, catalog: Catalog, sid: str, account_id: str, now_ms: int) -> bool:
        """Whether the session is a device's within its threshold set in the current period."""
        device_class = self.device_class(catalog, sid)
        if device_class is None:
            return False
        usage = self.devices.get(account_id)
        start = device_class.period_start_s(now_ms // MS)
        return usage is None or usage.period_start_s != start or not usage.fallback

    def grant(
        self, catalog: Catalog, sid: str, account_id: str, rating_group: int, now_ms: int
    ) -> IotGrant | None:
        """The profile's grant for a class group of a device within its set, else None."""
        device_class = self.device_class(catalog, sid)
        if device_class is None or rating_group not in device_class.rating_groups:
            return None
        if not self.within(catalog, sid, account_id, now_ms):
            return None
        now_s = now_ms // MS
        usage = self.devices.get(account_id)
        start = device_class.period_start_s(now_s)
        used = usage.octets if usage is not None and usage.period_start_s == start else 0
        left = device_class.max_octets - used
        if left <= 0:
            return None
        return IotGrant(
            units=left,
            validity_s=max(start + device_class.period_s - now_s, 1),
            quota_holding_time_s=device_class.quota_holding_time_s,
            reserve=device_class.reserve,
        )

    # --- aggregate records ---------------------------------------------------------------------

    def schedule(self, catalog: Catalog, sid: str, now_ms: int) -> None:
        """The session holds usage of this period: its record is due at the period's end."""
        device_class = self.device_class(catalog, sid)
        if device_class is None or sid in self._pending_at:
            return
        end_s = device_class.period_start_s(now_ms // MS) + device_class.period_s
        self._pending_at[sid] = end_s
        self._pending.add(end_s, sid)

    def earliest_s(self) -> int | None:
        times = [t for t in (self._pending.earliest(), self._expiring.earliest()) if t is not None]
        return min(times) if times else None

    def pop_due(self, now_s: int) -> list[str]:
        """The sessions whose aggregate record is due at `now_s`, sorted (replay: same CDR
        numbers); the counts whose period is over by then are forgotten."""
        for account_id in self._expiring.pop_due(now_s):
            del self.devices[account_id]
        due = self._pending.pop_due(now_s)
        for sid in due:
            del self._pending_at[sid]
        return sorted(due)

    # --- snapshots -----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        if not self.sessions and not self.devices:
            return b""
        return _ENCODER.encode(
            IotState(
                sessions=self.sessions,
                devices=self.devices,
                pending=sorted(self._pending_at.items()),
            )
        )

    def restore(self, data: bytes) -> None:
        state = _DECODER.decode(data) if data else IotState()
        self.sessions = dict(state.sessions)
        self.devices = dict(state.devices)
        self._pending = DueSet()
        self._pending_at = {}
        self._expiring = DueSet()
        for account_id, usage in self.devices.items():
            self._expiring.add(usage.period_end_s, account_id)
        for sid, at in state.pending:
            self._pending_at[sid] = at
            self._pending.add(at, sid)
