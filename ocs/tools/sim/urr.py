"""Usage reporting rules: how a network element spends quota and when it reports (sans-IO).

A UPF applies a PFCP usage reporting rule (URR) per rating group; an SCP does the same for a
call or a message. This module is that logic without sockets or a clock: time is passed in
(int milliseconds since the epoch of the simulation clock), so the tests drive it with a fake
clock. One `UsageRule` per rating group of a session, grouped in a `UrrEngine`.

The cycle of a rule (WIRE.md 5.3, 5.5, 5.6):

* a grant (`apply`) gives it quota, a threshold, a validity time, a quota holding time, maybe a
  tariff change, final-unit indication and linked rating groups;
* traffic is counted against the quota (`consume`): never beyond it; what does not fit is
  dropped (and asks for quota if the rule holds none);
* `UrrEngine.poll` says which reports are due: QUOTA_EXHAUSTED (quota used), VALIDITY_TIME,
  THRESHOLD (remaining at or below the threshold; the rest of the quota keeps serving until the
  new grant arrives), QHT (no traffic for the quota holding time: the quota is given back), and
  a quota request for a rule without quota that has traffic waiting. A report with reason
  THRESHOLD, QUOTA_EXHAUSTED, VALIDITY_TIME or FINAL carries the linked rating groups' usage
  too (reason LINKED_USAGE);
* usage is split at the grant's Tariff-Time-Change: two used-unit entries, UNIT_BEFORE and
  UNIT_AFTER;
* final units: TERMINATE ends the session once they are used (`terminate_due`); REDIRECT and
  RESTRICT_ACCESS report them and then let traffic pass uncounted (state FINAL) until a
  re-authorisation (`reauthorise`, after a RAR) brings quota again. A grant of zero units with
  REDIRECT or RESTRICT_ACCESS (an inhibit threshold reached, an account state that restricts)
  is FINAL at once.

Every unit counted is reported exactly once: a report takes the usage measured since the last
report, and usage measured while a report is in flight goes into the next one (and counts
against the grant that answers it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from protocol.codes import FinalUnitAction, ReportingReason, ResultCode, TariffChangeUsage
from protocol.messages import MsccAnswer, ServiceUnit
from rating import Unit

MS: Final = 1000

# Reasons that make the linked rating groups report together (WIRE.md 5.6).
LINKED_TRIGGERS: Final = frozenset(
    {
        ReportingReason.THRESHOLD,
        ReportingReason.QUOTA_EXHAUSTED,
        ReportingReason.VALIDITY_TIME,
        ReportingReason.FINAL,
    }
)


class RuleState(enum.Enum):
    IDLE = "idle"  # no quota (none asked yet, or given back after QHT): traffic asks for some
    ACTIVE = "active"  # holds a grant
    FINAL = "final"  # final units used (redirect/restrict): traffic passes, not counted
    DENIED = "denied"  # no credit (4012) or refused: no traffic until re-authorised
    FREE = "free"  # 4011: not charged, traffic passes uncounted
    DISABLED = "disabled"  # 5031 or another permanent refusal


@dataclass(slots=True)
class Measure:
    """Units counted since the last report on one side of a tariff change."""

    total: int = 0
    uplink: int = 0

    def add(self, total: int, uplink: int) -> None:
        self.total += total
        self.uplink += uplink

    def take(self) -> Measure:
        out = Measure(self.total, self.uplink)
        self.total = 0
        self.uplink = 0
        return out


@dataclass(frozen=True, slots=True)
class UsedUnits:
    """One Used-Service-Unit to report."""

    units: int
    uplink: int | None  # CC-Input-Octets (octet rules only)
    downlink: int | None  # CC-Output-Octets
    tariff_change_usage: TariffChangeUsage | None
    reason: ReportingReason


@dataclass(frozen=True, slots=True)
class MsccReport:
    """One MSCC of a CCR: usage to report (may be empty) and whether to ask for quota."""

    rating_group: int
    used: tuple[UsedUnits, ...]
    request_quota: bool
    reason: ReportingReason | None  # what triggered it (None: a plain quota request)


@dataclass(frozen=True, slots=True)
class _Pending:
    reason: ReportingReason | None
    request_quota: bool
    state_before: RuleState


_THRESHOLD_FIELD: Final = {
    Unit.OCTETS: "volume_quota_threshold",
    Unit.SECONDS: "time_quota_threshold",
    Unit.UNITS: "unit_quota_threshold",
}


def units_in(unit_map: ServiceUnit | None, unit: Unit) -> int | None:
    """The amount of `unit` in a granted unit map, read as RFC 8506 section 8.17 defines the
    AVPs: octets are `CC-Total-Octets`, else input + output. Written here, not imported from
    the server's core: a simulated network element is an independent oracle."""
    if unit_map is None:
        return None
    if unit is Unit.OCTETS:
        if unit_map.cc_total_octets is not None:
            return unit_map.cc_total_octets
        if unit_map.cc_input_octets is None and unit_map.cc_output_octets is None:
            return None
        return (unit_map.cc_input_octets or 0) + (unit_map.cc_output_octets or 0)
    if unit is Unit.SECONDS:
        return unit_map.cc_time
    return unit_map.cc_service_specific_units


class UsageRule:
    """The usage reporting rule of one rating group."""

    def __init__(self, rating_group: int, unit: Unit) -> None:
        self.rating_group = rating_group
        self.unit = unit
        self.state = RuleState.IDLE
        self.holds_grant = False  # the server holds a reservation for this rule
        self.granted = 0
        self.remaining = 0
        self.granted_ms = 0
        self.threshold: int | None = None
        self.threshold_reported = False
        self.validity_deadline_ms: int | None = None
        self.qht_ms: int | None = None
        self.tariff_change_ms: int | None = None
        self.final_action: FinalUnitAction | None = None
        self.linked: tuple[int, ...] = ()
        self.last_traffic_ms = 0
        self.demand = False  # traffic is waiting for quota
        self.pending: _Pending | None = None  # a report of this rule is in flight
        self.before = Measure()
        self.after = Measure()
        # statistics
        self.counted = 0  # units counted (and so reported, sooner or later)
        self.uncounted = 0  # units that passed without being counted (FINAL, FREE)
        self.dropped = 0  # units refused for lack of quota
        self.inhibited = 0  # zero grants with a final-unit action (restricted / redirected)

    # --- traffic -------------------------------------------------------------------------------

    @property
    def measured(self) -> int:
        return self.before.total + self.after.total

    def consume(self, units: int, start_ms: int, end_ms: int, *, uplink: int = 0) -> int:
        """Count `units` used over [start_ms, end_ms] (`uplink` of them uplink); returns how
        many were counted: all of them if the quota allows, else what is left of it."""
        if units <= 0:
            return 0
        if self.state in (RuleState.FINAL, RuleState.FREE):
            self.uncounted += units
            return 0
        take = min(units, self.remaining)
        if take < units:
            self.dropped += units - take
            if self.state is RuleState.IDLE:
                self.demand = True
        if take <= 0:
            return 0
        up = uplink * take // units if uplink else 0
        self.remaining -= take
        self.counted += take
        self.last_traffic_ms = max(self.last_traffic_ms, end_ms)
        change = self.tariff_change_ms
        if change is None or end_ms <= change:
            self.before.add(take, up)
        elif start_ms >= change:
            self.after.add(take, up)
        else:  # the interval spans the tariff change: apportion by time
            first = take * (change - start_ms) // (end_ms - start_ms)
            first_up = up * first // take
            self.before.add(first, first_up)
            self.after.add(take - first, up - first_up)
        return take

    # --- triggers ------------------------------------------------------------------------------

    def trigger(self, now_ms: int) -> tuple[ReportingReason | None, bool] | None:
        """(reason, ask for quota) if this rule must report now, else None."""
        if self.pending is not None:
            return None
        if self.state is RuleState.IDLE:
            return (None, True) if self.demand else None
        if self.state is not RuleState.ACTIVE:
            return None
        final = self.final_action is not None
        if self.remaining <= 0:
            if final and self.final_action is FinalUnitAction.TERMINATE:
                return None  # the session ends (terminate_due)
            return ReportingReason.QUOTA_EXHAUSTED, not final
        if self.validity_deadline_ms is not None and now_ms >= self.validity_deadline_ms:
            return ReportingReason.VALIDITY_TIME, True
        if (
            not final
            and self.threshold is not None
            and not self.threshold_reported
            and self.remaining <= self.threshold
        ):
            return ReportingReason.THRESHOLD, True
        if self.qht_ms is not None:
            idle_since = max(self.last_traffic_ms, self.granted_ms)
            if now_ms - idle_since >= self.qht_ms:
                return ReportingReason.QHT, False
        return None

    @property
    def terminate_due(self) -> bool:
        """Final units with action TERMINATE are used: the session must end."""
        return (
            self.pending is None
            and self.state is RuleState.ACTIVE
            and self.final_action is FinalUnitAction.TERMINATE
            and self.remaining <= 0
        )

    # --- reports -------------------------------------------------------------------------------

    def take_report(
        self, reason: ReportingReason | None, request_quota: bool, now_ms: int
    ) -> MsccReport:
        """The MSCC reporting what was measured since the last report (the measure restarts),
        marked in flight until `apply` or `fail`."""
        used = self._used(reason, now_ms)
        self.pending = _Pending(reason, request_quota, self.state)
        self.holds_grant = False  # the server releases the reservation on any report
        if reason is ReportingReason.THRESHOLD:
            self.threshold_reported = True
        if reason in (ReportingReason.VALIDITY_TIME, ReportingReason.QHT, ReportingReason.FINAL):
            self.remaining = 0
        if reason is ReportingReason.QHT:
            self.state = RuleState.IDLE
        elif reason is ReportingReason.QUOTA_EXHAUSTED and not request_quota:
            self.state = RuleState.FINAL  # final units used: redirect / restrict from now on
        self.demand = False
        return MsccReport(self.rating_group, used, request_quota, reason)

    def _used(self, reason: ReportingReason | None, now_ms: int) -> tuple[UsedUnits, ...]:
        if not self.holds_grant and self.measured == 0:
            return ()
        usage_reason = reason if reason is not None else ReportingReason.OTHER_QUOTA_TYPE
        before, after = self.before.take(), self.after.take()
        change = self.tariff_change_ms
        if change is None or now_ms < change:
            before.add(after.total, after.uplink)
            return (self._usu(before, None, usage_reason),)
        parts = [
            self._usu(m, tcu, usage_reason)
            for m, tcu in (
                (before, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
                (after, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
            )
            if m.total
        ]
        if not parts:  # nothing used: one empty entry (the reservation is released)
            parts = [self._usu(before, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE, usage_reason)]
        return tuple(parts)

    def _usu(self, m: Measure, tcu: TariffChangeUsage | None, reason: ReportingReason) -> UsedUnits:
        octets = self.unit is Unit.OCTETS
        return UsedUnits(
            units=m.total,
            uplink=m.uplink if octets else None,
            downlink=m.total - m.uplink if octets else None,
            tariff_change_usage=tcu,
            reason=reason,
        )

    # --- answers -------------------------------------------------------------------------------

    def apply(self, answer: MsccAnswer | None, now_ms: int) -> None:
        """The answer to this rule's report in flight (None: the CCA had no MSCC for it)."""
        pending, self.pending = self.pending, None
        if pending is None or not pending.request_quota:
            return
        code = answer.result_code if answer is not None else None
        granted = units_in(answer.granted_service_unit, self.unit) if answer else None
        if answer is not None and code == ResultCode.SUCCESS and granted is not None:
            self._grant(answer, granted, now_ms)
        elif code == ResultCode.CREDIT_CONTROL_NOT_APPLICABLE:
            self.state = RuleState.FREE
            self.remaining = 0
        elif code == ResultCode.RATING_FAILED:
            self.state = RuleState.DISABLED
            self.remaining = 0
        else:
            self.remaining = 0
            if pending.state_before is not RuleState.FINAL:
                self.state = RuleState.DENIED

    def fail(self) -> None:
        """The report was not processed (no answer, or a failed request): nothing granted."""
        self.pending = None
        self.remaining = 0
        if self.state is RuleState.ACTIVE or self.state is RuleState.IDLE:
            self.state = RuleState.DENIED

    def _grant(self, answer: MsccAnswer, granted: int, now_ms: int) -> None:
        fui = answer.final_unit_indication
        if (
            granted == 0
            and fui is not None
            and fui.final_unit_action is not FinalUnitAction.TERMINATE
        ):
            # zero units with REDIRECT / RESTRICT_ACCESS (RFC 8506 5.6, immediate graceful
            # termination: an inhibit threshold, a state that restricts): the action applies
            # at once; nothing is held, traffic passes uncounted until a re-authorisation
            self.state = RuleState.FINAL
            self.final_action = fui.final_unit_action
            self.remaining = 0
            self.granted = 0
            self.holds_grant = False
            self.demand = False
            self.inhibited += 1
            return
        self.granted = granted
        # usage measured since the report counts against the new grant
        self.remaining = max(granted - self.measured, 0)
        self.granted_ms = now_ms
        threshold = getattr(answer, _THRESHOLD_FIELD[self.unit])
        self.threshold = threshold if threshold is not None and threshold > 0 else None
        self.threshold_reported = False
        vt = answer.validity_time
        self.validity_deadline_ms = now_ms + vt * MS if vt else None
        qht = answer.quota_holding_time
        self.qht_ms = qht * MS if qht else None
        ttc = answer.tariff_time_change
        # what was measured before this grant came happened before its tariff change
        self.before.add(self.after.total, self.after.uplink)
        self.after = Measure()
        self.tariff_change_ms = ttc * MS if ttc is not None else None
        fui = answer.final_unit_indication
        self.final_action = fui.final_unit_action if fui is not None else None
        self.linked = tuple(answer.linked_rating_group or ())
        self.state = RuleState.ACTIVE
        self.holds_grant = True
        self.demand = False


class UrrEngine:
    """The rules of one session, and what they report together."""

    def __init__(self, units: Mapping[int, Unit]) -> None:
        self.rules = {rg: UsageRule(rg, unit) for rg, unit in units.items()}

    def rule(self, rating_group: int) -> UsageRule:
        return self.rules[rating_group]

    def consume(
        self, rating_group: int, units: int, start_ms: int, end_ms: int, *, uplink: int = 0
    ) -> int:
        return self.rules[rating_group].consume(units, start_ms, end_ms, uplink=uplink)

    @property
    def pending(self) -> bool:
        return any(r.pending is not None for r in self.rules.values())

    @property
    def terminate_due(self) -> bool:
        return any(r.terminate_due for r in self.rules.values())

    def initial(self, rating_groups: Iterable[int]) -> list[MsccReport]:
        """The quota requests of an INITIAL."""
        return [self.rules[rg].take_report(None, True, 0) for rg in rating_groups]

    def poll(self, now_ms: int) -> list[MsccReport]:
        """The reports due now, with the linked rating groups' usage (WIRE.md 5.6)."""
        reports: dict[int, MsccReport] = {}
        for rg, rule in self.rules.items():
            due = rule.trigger(now_ms)
            if due is not None:
                reports[rg] = rule.take_report(due[0], due[1], now_ms)
        self._add_linked(reports, now_ms)
        return list(reports.values())

    def _add_linked(self, reports: dict[int, MsccReport], now_ms: int) -> None:
        for rg, report in list(reports.items()):
            if report.reason not in LINKED_TRIGGERS:
                continue
            for other in self.rules[rg].linked:
                rule = self.rules.get(other)
                if other in reports or rule is None or rule.pending is not None:
                    continue
                if not rule.holds_grant and rule.measured == 0:
                    continue
                reports[other] = rule.take_report(
                    ReportingReason.LINKED_USAGE, rule.state is RuleState.ACTIVE, now_ms
                )

    def reauthorise(self, rating_groups: Iterable[int] | None, now_ms: int) -> list[MsccReport]:
        """Reports for a RAR (reason FORCED_REAUTHORISATION): usage so far and a quota request
        for the listed rating groups (all of them that hold or lack quota, if none listed)."""
        if rating_groups is None:
            targets = [
                rg
                for rg, rule in self.rules.items()
                if rule.holds_grant
                or rule.state in (RuleState.ACTIVE, RuleState.FINAL, RuleState.DENIED)
            ]
        else:
            targets = [rg for rg in dict.fromkeys(rating_groups) if rg in self.rules]
        reports = []
        for rg in targets:
            rule = self.rules[rg]
            if rule.pending is not None or rule.state in (RuleState.FREE, RuleState.DISABLED):
                continue
            reports.append(rule.take_report(ReportingReason.FORCED_REAUTHORISATION, True, now_ms))
        return reports

    def final(self, now_ms: int) -> list[MsccReport]:
        """The reports of a TERMINATION: everything measured, reason FINAL, no quota asked."""
        reports = []
        for rule in self.rules.values():
            if rule.holds_grant or rule.measured:
                rule.pending = None
                reports.append(rule.take_report(ReportingReason.FINAL, False, now_ms))
        return reports

    def apply(self, reports: Iterable[MsccReport], answers: Iterable[MsccAnswer], now: int) -> None:
        """Apply a CCA's MSCCs to the rules that reported."""
        by_rg = {a.rating_group: a for a in answers}
        for report in reports:
            self.rules[report.rating_group].apply(by_rg.get(report.rating_group), now)

    def fail(self, reports: Iterable[MsccReport]) -> None:
        for report in reports:
            self.rules[report.rating_group].fail()
