"""`reconcile` on hand-made usage logs and CDRs: each kind of difference is found and named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from ocs.cli.main import main
from ocs.tools.sim.reconcile import compare
from ocs.tools.sim.usage_log import Entry, EventEntry, SessionEntry, UsageEntry, UsageLog

NODE = "upf.test.local"


def session(sid: str, event: str = "open", ok: bool = True) -> SessionEntry:
    return SessionEntry(
        time="2026-01-05T14:00:00.000Z",
        node=NODE,
        session_id=sid,
        service_context_id="32251@3gpp.org",
        subscriber="491710000000",
        event=event,
        cc_request_number=0,
        result_code=2001 if ok else 5030,
        ok=ok,
    )


def usage(
    sid: str,
    rg: int,
    units: int,
    *,
    number: int = 1,
    result: int | None = 2001,
    tcu: str | None = None,
) -> UsageEntry:
    return UsageEntry(
        time="2026-01-05T14:00:00.000Z",
        node=NODE,
        session_id=sid,
        service_context_id="32251@3gpp.org",
        subscriber="491710000000",
        rating_group=rg,
        unit="octets",
        units=units,
        reason="THRESHOLD",
        tariff_change_usage=tcu,
        cc_request_type="UPDATE",
        cc_request_number=number,
        result_code=result,
        mscc_result_code=2001 if result == 2001 else None,
        ok=result == 2001,
    )


def event(sid: str, action: str = "DIRECT_DEBITING", *, result: int | None = 2001) -> EventEntry:
    return EventEntry(
        time="2026-01-05T14:00:00.000Z",
        node=NODE,
        session_id=sid,
        service_context_id="32274@3gpp.org",
        subscriber="491720000000",
        action=action,
        rating_group=30,
        unit="units",
        units=1,
        granted_units=1 if result == 2001 else None,
        event_timestamp=1767621600,
        result_code=result,
        ok=result == 2001,
    )


def session_cdr(
    seq: int, sid: str, usage: dict[int, list[int | tuple[int, int]]]
) -> dict[str, Any]:
    def container(item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, tuple):
            return {"totalVolume": item[0], "tariffChangeUsage": item[1], "charge": 1}
        return {"totalVolume": item, "charge": 1}

    return {
        "recordSequenceNumber": seq,
        "recordType": "session",
        "sessionId": sid,
        "nodeId": NODE,
        "causeForRecordClosing": "normalRelease",
        "listOfMultipleUnitUsage": [
            {"ratingGroup": rg, "usedUnitContainers": [container(i) for i in items]}
            for rg, items in usage.items()
        ],
        "charge": 1,
    }


def event_cdr(
    seq: int, sid: str, action: str = "DIRECT_DEBITING", units: int = 1
) -> dict[str, Any]:
    sign = -1 if action == "REFUND_ACCOUNT" else 1
    return {
        "recordSequenceNumber": seq,
        "recordType": "event",
        "sessionId": sid,
        "nodeId": NODE,
        "requestedAction": action,
        "listOfMultipleUnitUsage": [
            {
                "ratingGroup": 30,
                "usedUnitContainers": [{"serviceSpecificUnits": units, "charge": sign * 100000}],
            }
        ],
        "charge": sign * 100000,
    }


def base() -> tuple[list[Entry], list[dict[str, Any]]]:
    entries: list[Entry] = [
        session("s1"),
        usage("s1", 10, 1000, number=1),
        usage("s1", 20, 300, number=1),
        usage("s1", 10, 500, number=2),
        session("s1", "close"),
        event("e1"),
        event("e2", "REFUND_ACCOUNT"),
    ]
    records = [
        session_cdr(1, "s1", {10: [1000], 20: [300]}),
        session_cdr(2, "s1", {10: [500]}),
        event_cdr(3, "e1"),
        event_cdr(4, "e2", "REFUND_ACCOUNT"),
    ]
    return entries, records


def test_matching_logs_and_cdrs_have_no_difference() -> None:
    entries, records = base()
    result = compare(entries, records)
    assert result.ok, result.render()
    assert result.client_units[10] == result.server_units[10] == 1500
    assert (result.client_reports, result.server_containers) == (3, 3)
    assert (result.client_events, result.server_events) == (2, 2)
    assert result.render().endswith("no difference")


def test_usage_charged_twice_is_a_difference() -> None:
    entries, records = base()
    records.append(session_cdr(5, "s1", {10: [500]}))  # the second report, again
    result = compare(entries, records)
    assert result.differences == [
        "session s1 RG 10: client 1500 octets in 2 reports, CDRs 2000 in 3 containers (+500)"
    ]


def test_usage_missing_on_the_server_is_a_difference() -> None:
    entries, records = base()
    records[1] = session_cdr(2, "s1", {10: [400]})
    result = compare(entries, records)
    assert len(result.differences) == 1 and "(-100)" in result.differences[0]


def test_sessions_missing_on_either_side() -> None:
    entries, records = base()
    entries += [session("s2"), usage("s2", 10, 1)]
    records.append(session_cdr(5, "s3", {10: [7]}))
    result = compare(entries, records)
    assert result.differences == [
        "session s2: opened (INITIAL answered 2001) but no CDR on the server",
        "session s3: CDR(s) #5 but no usage log opened it",
    ]


def test_events_missing_duplicated_unknown_or_different() -> None:
    entries, records = base()
    entries += [event("e3"), event("e5", result=None)]
    records += [
        event_cdr(5, "e1"),  # e1 twice
        event_cdr(6, "e4"),  # nobody sent e4
        event_cdr(7, "e5"),  # e5 charged, the client never heard
    ]
    records[3] = event_cdr(4, "e2", "DIRECT_DEBITING")  # a refund recorded as a debit
    result = compare(entries, records)
    assert result.differences == [
        "event e1: 2 CDRs (#3, 5): charged more than once",
        "event e2: client REFUND_ACCOUNT, CDR DIRECT_DEBITING",
        "event e3 (DIRECT_DEBITING): answered 2001 but no CDR on the server",
        "event e4: CDR #6 but the client has no such event",
        "event e5: CDR #7 but the client never got an answer",
    ]


def test_unanswered_reports_are_differences_and_refused_ones_are_notes() -> None:
    entries, records = base()
    entries += [usage("s1", 10, 42, number=3, result=None), usage("s1", 10, 9, result=5002)]
    result = compare(entries, records)
    assert result.differences == [
        "session s1 RG 10: 42 octets reported in UPDATE #3 never answered (charged or not: unknown)"
    ]
    assert any("9 units reported in requests not answered 2001" in n for n in result.notes)


def test_a_different_tariff_change_split_is_a_difference() -> None:
    entries, records = base()
    entries[3] = usage("s1", 10, 500, number=2, tcu="UNIT_BEFORE_TARIFF_CHANGE")
    records[1] = session_cdr(2, "s1", {10: [(500, 1)]})
    result = compare(entries, records)
    assert len(result.differences) == 1
    assert "tariff-change split differs" in result.differences[0]


def test_cdrs_of_other_nodes_are_not_compared() -> None:
    entries, records = base()
    other = session_cdr(5, "x1", {10: [1]})
    other["nodeId"] = "someone.else"
    result = compare(entries, [*records, other])
    assert result.ok and result.cdrs_other_nodes == 1


def test_the_reconcile_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries, records = base()
    log_path = tmp_path / "usage.jsonl"
    log = UsageLog(log_path)
    for entry in entries:
        log.write(entry)
    log.close()
    cdr_dir = tmp_path / "data" / "cdr"
    cdr_dir.mkdir(parents=True)
    current = cdr_dir / "cdr-000000000001.jsonl.current"
    current.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    argv = ["reconcile", "--usage-log", str(log_path), "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip().endswith("no difference")

    with current.open("ab") as f:
        f.write(msgspec.json.encode(event_cdr(5, "e1")) + b"\n")
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "1 difference(s):" in out and "event e1: 2 CDRs (#3, 5)" in out

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "nonsense"}\n')
    assert main(["reconcile", "--usage-log", str(bad), "--data-dir", str(tmp_path / "data")]) == 2


# --- money (Cost-Information in the log against the CDR charges) ------------------------------


def priced() -> tuple[list[Entry], list[dict[str, Any]]]:
    """`base` with the costs the answers gave: s1 charged 2 micro-units over its two CDRs, the
    debit 0.10, the refund 0.10 back."""
    entries, records = base()
    costs = {"s1": 2, "e1": 100_000, "e2": 100_000}
    for i, entry in enumerate(entries):
        closing = isinstance(entry, SessionEntry) and entry.event == "close"
        if closing or isinstance(entry, EventEntry):
            entries[i] = msgspec.structs.replace(entry, cost=costs[entry.session_id], currency=978)
    for record in records:
        record["servedSubscriber"] = (
            "491720000000" if record["recordType"] == "event" else "491710000000"
        )
    return entries, records


def test_matching_money_has_no_difference_and_a_summary_per_subscriber() -> None:
    entries, records = priced()
    result = compare(entries, records)
    assert result.ok, result.render()
    assert (result.client_money, result.server_money, result.priced) == (2, 2, 3)
    text = result.render()
    assert "money client/CDRs: 0.000002/0.000002 over 3 sessions and events" in text
    assert (
        "    491710000000: money 0.000002/0.000002; sessions 1/1; events 0/0; "
        "units RG 10 1500/1500, RG 20 300/300"
    ) in text
    assert "    491720000000: money 0.00/0.00; sessions 0/0; events 2/2; units RG 30 2/2" in text
    assert "<>" not in text


def test_every_charge_multiplied_by_ten_is_a_difference() -> None:
    entries, records = priced()
    for record in records:
        record["charge"] *= 10
        for usage_map in record["listOfMultipleUnitUsage"]:
            for container in usage_map["usedUnitContainers"]:
                container["charge"] *= 10
    result = compare(entries, records)
    assert result.differences == [
        "session s1: client cost 0.000002 (Cost-Information of its TERMINATION's answer), "
        "CDRs charge 0.00002 (+0.000018)",
        "event e1 (DIRECT_DEBITING): client cost 0.10 (Cost-Information), CDR charge 1.00",
        "event e2 (REFUND_ACCOUNT): client cost -0.10 (Cost-Information), CDR charge -1.00",
    ]
    assert "<>" in result.render() and not result.render().endswith("no difference")


def test_a_log_without_costs_is_noted_not_compared() -> None:
    entries, records = base()
    for record in records:
        record["charge"] *= 10
    result = compare(entries, records)
    assert result.ok, result.render()
    assert result.priced == 0
    assert "money of 3 sessions and events not compared" in " ".join(result.notes)


def test_cost_micro_is_exact() -> None:
    from ocs.tools.sim.usage_log import cost_micro
    from protocol.messages import CostInformation, UnitValue

    def cost(digits: int, exponent: int | None) -> CostInformation:
        unit_value = UnitValue(value_digits=digits, exponent=exponent)
        return CostInformation(unit_value=unit_value, currency_code=978)

    assert cost_micro(cost(15, -1)) == 1_500_000
    assert cost_micro(cost(2, -6)) == 2
    assert cost_micro(cost(7, None)) == 7_000_000
    assert cost_micro(cost(-35, -3)) == -35_000
    assert cost_micro(cost(1, -7)) is None  # not a whole number of micro-units
    assert cost_micro(None) is None
