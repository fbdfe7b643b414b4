"""`ocs reconcile`: the simulators' usage logs checked against the server's CDRs.

The client's bill is what its usage logs say was reported and answered 2001; the server's is
what its CDRs hold. For the nodes (Origin-Hosts) that wrote the logs, this lists every
difference:

* sessions: opened by the client (INITIAL answered 2001) without any CDR, and session CDRs of
  those nodes that no log opened;
* usage, per session and rating group: the units the client reported (answered 2001) against
  the units in the CDR containers, the number of reports against the number of containers, and
  the split by Tariff-Change-Usage;
* events: a debit or refund answered 2001 without a CDR, an event with more than one CDR
  (charged twice), an event CDR the client does not know as successful, and the action or the
  units differing;
* reports that were never answered (the client cannot know whether they were charged);
* money, where the log has it: the cost the answers' `Cost-Information` gave the client (a
  session's charge in its TERMINATION's answer, an event's debit or refund) against the sum of
  `charge` over the session's CDRs, or the event's CDR. Sessions and events whose log carries no
  cost are counted in a note, not compared.

It also sums, per subscriber, what each side says: sessions, events, units and money.

Notes that are not differences: usage answered with something else than 2001 (not charged by
either side), sessions the server closed abnormally, CDRs of other nodes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocs.edge.cdr_files import iter_records
from ocs.tools.sim.usage_log import Entry, EventEntry, SessionEntry, UsageEntry, read_all
from rating import format_exact

_UNIT_KEYS = ("totalVolume", "time", "serviceSpecificUnits")
# records of money movements, not of a network element's usage (loans: docs/protocol.md, LOAN)
_MONEY_RECORDS = ("loan", "loanRepayment")


@dataclass(slots=True)
class Tally:
    units: int = 0
    reports: int = 0
    unit: str = ""
    by_tcu: Counter[str] = field(default_factory=Counter)

    def add(self, units: int, tcu: str | None, unit: str = "") -> None:
        self.units += units
        self.reports += 1
        self.by_tcu[tcu or "-"] += units
        if unit:
            self.unit = unit


@dataclass(slots=True)
class Side:
    """What one side (the client's log, the CDRs) says of one subscriber."""

    sessions: int = 0
    events: int = 0
    units: Counter[int] = field(default_factory=Counter)  # by rating group
    money: int = 0  # micro-units, over what the client knows a cost of
    priced: int = 0  # sessions and events whose money is counted


@dataclass(slots=True)
class Subscriber:
    client: Side = field(default_factory=Side)
    server: Side = field(default_factory=Side)


@dataclass(slots=True)
class Reconciliation:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    log_lines: int = 0
    cdrs: int = 0
    cdrs_other_nodes: int = 0
    client_sessions: int = 0
    server_sessions: int = 0
    client_reports: int = 0
    server_containers: int = 0
    client_events: int = 0
    server_events: int = 0
    client_units: Counter[int] = field(default_factory=Counter)
    server_units: Counter[int] = field(default_factory=Counter)
    server_charge: int = 0
    client_money: int = 0  # micro-units: the costs the answers gave, where the log has them
    server_money: int = 0  # micro-units: the CDR charges of the same sessions and events
    priced: int = 0  # sessions and events whose money was compared
    subscribers: dict[str, Subscriber] = field(default_factory=dict)

    def subscriber(self, name: str) -> Subscriber:
        found = self.subscribers.get(name)
        if found is None:
            found = self.subscribers[name] = Subscriber()
        return found

    @property
    def ok(self) -> bool:
        return not self.differences

    def render(self) -> str:
        units = ", ".join(
            f"RG {rg} {self.client_units[rg]}/{self.server_units[rg]}"
            for rg in sorted(set(self.client_units) | set(self.server_units))
        )
        lines = [
            f"reconcile: {self.log_lines} usage log lines from {', '.join(sorted(self.nodes))}; "
            f"{self.cdrs} CDRs of theirs ({self.cdrs_other_nodes} of other nodes ignored)",
            f"  sessions {self.client_sessions} (client) / {self.server_sessions} (CDRs); "
            f"reports {self.client_reports} / containers {self.server_containers}; "
            f"events {self.client_events} / {self.server_events}",
            f"  units client/CDRs: {units or 'none'}; CDR charge {self.server_charge} micro-units",
            f"  money client/CDRs: {format_exact(self.client_money)}/"
            f"{format_exact(self.server_money)} over {self.priced} sessions and events with a "
            "cost in the log",
        ]
        if self.subscribers:
            lines.append("  per subscriber (client / CDRs):")
        for name in sorted(self.subscribers):
            sub = self.subscribers[name]
            mine, theirs = sub.client, sub.server
            rgs = sorted(set(mine.units) | set(theirs.units))
            per_rg = ", ".join(f"RG {rg} {mine.units[rg]}/{theirs.units[rg]}" for rg in rgs)
            mark = "" if mine.money == theirs.money and mine.units == theirs.units else "  <>"
            lines.append(
                f"    {name}: money {format_exact(mine.money)}/{format_exact(theirs.money)}; "
                f"sessions {mine.sessions}/{theirs.sessions}; events {mine.events}/"
                f"{theirs.events}; units {per_rg or 'none'}{mark}"
            )
        lines += [f"  note: {n}" for n in self.notes]
        if self.differences:
            lines.append(f"{len(self.differences)} difference(s):")
            lines += [f"  {d}" for d in self.differences]
        else:
            lines.append("no difference")
        return "\n".join(lines)


def _container_units(container: dict[str, Any]) -> int:
    for key in _UNIT_KEYS:
        value = container.get(key)
        if value is not None:
            return int(value)
    return 0


def reconcile(
    usage_logs: Sequence[Path], cdr_dir: Path, *, nodes: Iterable[str] | None = None
) -> Reconciliation:
    return compare(read_all(usage_logs), iter_records(cdr_dir), nodes=nodes)


def compare(
    entries: Sequence[Entry],
    records: Iterable[dict[str, Any]],
    *,
    nodes: Iterable[str] | None = None,
) -> Reconciliation:
    out = Reconciliation()
    out.log_lines = len(entries)
    out.nodes = set(nodes) if nodes is not None else {e.node for e in entries}

    # --- the client's side ---------------------------------------------------------------------
    opened: dict[str, SessionEntry] = {}
    client_usage: dict[tuple[str, int], Tally] = defaultdict(Tally)
    client_events: dict[str, list[EventEntry]] = defaultdict(list)
    failed_events: dict[str, EventEntry] = {}
    not_charged = 0
    costs: dict[str, int] = {}  # session: its charge, from its TERMINATION's answer
    for entry in entries:
        if isinstance(entry, SessionEntry):
            if entry.event == "open" and entry.ok:
                opened[entry.session_id] = entry
            elif entry.event == "close" and entry.ok and entry.cost is not None:
                costs[entry.session_id] = entry.cost
        elif isinstance(entry, UsageEntry):
            if entry.result_code is None:
                out.differences.append(
                    f"session {entry.session_id} RG {entry.rating_group}: {entry.units} "
                    f"{entry.unit} reported in {entry.cc_request_type} "
                    f"#{entry.cc_request_number} never answered (charged or not: unknown)"
                )
                continue
            if not entry.ok:
                not_charged += entry.units
                continue
            key = (entry.session_id, entry.rating_group)
            client_usage[key].add(entry.units, entry.tariff_change_usage, entry.unit)
            out.client_reports += 1
            out.client_units[entry.rating_group] += entry.units
            out.subscriber(entry.subscriber).client.units[entry.rating_group] += entry.units
        elif entry.ok:
            client_events[entry.session_id].append(entry)
        else:
            failed_events[entry.session_id] = entry
    out.client_sessions = len(opened)
    for session in opened.values():
        out.subscriber(session.subscriber).client.sessions += 1
    out.client_events = sum(len(v) for v in client_events.values())
    if not_charged:
        out.notes.append(
            f"{not_charged} units reported in requests not answered 2001 (charged by neither side)"
        )

    # --- the server's side ---------------------------------------------------------------------
    session_cdrs: dict[str, list[int]] = defaultdict(list)
    session_charges: Counter[str] = Counter()
    session_subscriber: dict[str, str] = {}
    server_usage: dict[tuple[str, int], Tally] = defaultdict(Tally)
    event_cdrs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    abnormal = 0
    for record in records:
        if record.get("recordType") in _MONEY_RECORDS:  # not usage: docs/protocol.md, LOAN
            continue
        if record.get("nodeId") not in out.nodes:
            out.cdrs_other_nodes += 1
            continue
        out.cdrs += 1
        out.server_charge += int(record.get("charge", 0))
        sid = str(record.get("sessionId"))
        seq = int(record["recordSequenceNumber"])
        served = out.subscriber(str(record.get("servedSubscriber", "")))
        for usage in record.get("listOfMultipleUnitUsage") or ():
            for container in usage.get("usedUnitContainers") or ():
                served.server.units[int(usage["ratingGroup"])] += _container_units(container)
        if record.get("recordType") == "event":
            event_cdrs[sid].append(record)
            served.server.events += 1
            continue
        if sid not in session_cdrs:
            served.server.sessions += 1
        session_cdrs[sid].append(seq)
        session_charges[sid] += int(record.get("charge", 0))
        session_subscriber[sid] = str(record.get("servedSubscriber", ""))
        if record.get("causeForRecordClosing") == "abnormalRelease":
            abnormal += 1
        for usage in record.get("listOfMultipleUnitUsage") or ():
            rg = int(usage["ratingGroup"])
            for container in usage.get("usedUnitContainers") or ():
                units = _container_units(container)
                tcu = container.get("tariffChangeUsage")
                server_usage[(sid, rg)].add(units, _TCU_NAMES.get(tcu) if tcu is not None else None)
                out.server_containers += 1
                out.server_units[rg] += units
    out.server_sessions = len(session_cdrs)
    out.server_events = sum(len(v) for v in event_cdrs.values())
    if abnormal:
        out.notes.append(f"{abnormal} session CDRs closed abnormalRelease by the server")
    if out.cdrs_other_nodes:
        out.notes.append(f"{out.cdrs_other_nodes} CDRs of other nodes not compared")

    # --- sessions ------------------------------------------------------------------------------
    diffs = out.differences
    missing_server = sorted(set(opened) - set(session_cdrs))
    missing_client = sorted(set(session_cdrs) - set(opened))
    for sid in missing_server:
        diffs.append(f"session {sid}: opened (INITIAL answered 2001) but no CDR on the server")
    for sid in missing_client:
        seqs = ", ".join(str(s) for s in session_cdrs[sid])
        diffs.append(f"session {sid}: CDR(s) #{seqs} but no usage log opened it")
    skip = set(missing_server) | set(missing_client)

    # --- usage per session and rating group -----------------------------------------------------
    for key in sorted(set(client_usage) | set(server_usage)):
        sid, rg = key
        if sid in skip:
            continue
        mine, theirs = client_usage.get(key, Tally()), server_usage.get(key, Tally())
        unit = mine.unit or "units"
        if mine.units != theirs.units or mine.reports != theirs.reports:
            diffs.append(
                f"session {sid} RG {rg}: client {mine.units} {unit} in {mine.reports} reports, "
                f"CDRs {theirs.units} in {theirs.reports} containers "
                f"({theirs.units - mine.units:+d})"
            )
        elif +mine.by_tcu != +theirs.by_tcu:
            diffs.append(
                f"session {sid} RG {rg}: tariff-change split differs: client "
                f"{dict(mine.by_tcu)}, CDRs {dict(theirs.by_tcu)}"
            )

    # --- money per session -----------------------------------------------------------------------
    unpriced = 0
    for sid in sorted(opened):
        if sid in skip:
            continue
        cost = costs.get(sid)
        if cost is None:
            unpriced += 1
            continue
        charge = session_charges[sid]
        _priced(out, opened[sid].subscriber, cost, session_subscriber.get(sid), charge)
        if cost != charge:
            diffs.append(
                f"session {sid}: client cost {format_exact(cost)} (Cost-Information of its "
                f"TERMINATION's answer), CDRs charge {format_exact(charge)} "
                f"({'+' if charge >= cost else '-'}{format_exact(abs(charge - cost))})"
            )

    # --- events --------------------------------------------------------------------------------
    for ev in (e for events in client_events.values() for e in events):
        mine_sub = out.subscriber(ev.subscriber).client
        mine_sub.events += 1
        mine_sub.units[ev.rating_group] += (
            ev.granted_units if ev.granted_units is not None else ev.units
        )
    for sid in sorted(set(client_events) | set(event_cdrs)):
        mine_ev = client_events.get(sid, [])
        cdrs = event_cdrs.get(sid, [])
        if len(mine_ev) > 1:
            diffs.append(f"event {sid}: logged as successful {len(mine_ev)} times")
        if not cdrs:
            ev = mine_ev[0]
            diffs.append(f"event {sid} ({ev.action}): answered 2001 but no CDR on the server")
            continue
        if len(cdrs) > 1:
            seqs = ", ".join(str(r["recordSequenceNumber"]) for r in cdrs)
            diffs.append(f"event {sid}: {len(cdrs)} CDRs (#{seqs}): charged more than once")
        if not mine_ev:
            failed = failed_events.get(sid)
            if failed is None:
                how = "has no such event"
            elif failed.result_code is None:
                how = "never got an answer"
            else:
                how = f"got {failed.result_code}"
            diffs.append(
                f"event {sid}: CDR #{cdrs[0]['recordSequenceNumber']} but the client {how}"
            )
            continue
        ev = mine_ev[0]
        record = cdrs[0]
        if record.get("requestedAction") != ev.action:
            diffs.append(f"event {sid}: client {ev.action}, CDR {record.get('requestedAction')}")
        units = sum(
            _container_units(c)
            for usage in record.get("listOfMultipleUnitUsage") or ()
            if int(usage["ratingGroup"]) == ev.rating_group
            for c in usage.get("usedUnitContainers") or ()
        )
        expected = ev.granted_units if ev.granted_units is not None else ev.units
        if units != expected:
            diffs.append(f"event {sid} RG {ev.rating_group}: client {expected}, CDR {units}")
        if ev.cost is None:
            unpriced += 1
            continue
        cost = -ev.cost if ev.action == "REFUND_ACCOUNT" else ev.cost
        charge = int(record.get("charge", 0))
        _priced(out, ev.subscriber, cost, str(record.get("servedSubscriber", "")), charge)
        if cost != charge:
            diffs.append(
                f"event {sid} ({ev.action}): client cost {format_exact(cost)} "
                f"(Cost-Information), CDR charge {format_exact(charge)}"
            )
    if unpriced:
        out.notes.append(
            f"money of {unpriced} sessions and events not compared: their log lines carry no "
            "cost (Cost-Information)"
        )
    return out


def _priced(out: Reconciliation, client: str, cost: int, served: str | None, charge: int) -> None:
    """Count the money of one session or event on both sides."""
    out.priced += 1
    out.client_money += cost
    out.server_money += charge
    mine = out.subscriber(client).client
    mine.money += cost
    mine.priced += 1
    theirs = out.subscriber(served if served is not None else client).server
    theirs.money += charge
    theirs.priced += 1


_TCU_NAMES = {
    0: "UNIT_BEFORE_TARIFF_CHANGE",
    1: "UNIT_AFTER_TARIFF_CHANGE",
    2: "UNIT_INDETERMINATE",
}
