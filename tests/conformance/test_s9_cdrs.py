"""WIRE.md §9 CDRs: JSON Lines files in `<data-dir>/cdr/`, read after traffic, a crash
(SIGKILL), more traffic and a stop (SIGTERM)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    APP_CC,
    CCR,
    CHECK_BALANCE,
    CREDIT,
    DATA,
    DEBIT,
    DIRECT_DEBITING,
    EVENT,
    FINAL,
    LINKED_USAGE,
    MICRO,
    MSGPACK,
    PRICE_ENQUIRY,
    REFUND_ACCOUNT,
    SET_STATUS,
    SMS,
    SUCCESS,
    THRESHOLD,
    VOICE,
    CcSession,
    CreatedAccount,
    Peer,
    amr,
    avp,
    ccr_body,
    create_account,
    get_account,
    new_session_id,
    units_sms,
)

MIB = 1 << 20
SMS_PRICE = 100_000
REQUIRED = {
    "recordSequenceNumber": int,
    "recordType": str,
    "sessionId": str,
    "accountId": str,
    "servedSubscriber": str,
    "nodeId": str,
    "localSequenceNumber": int,
    "recordOpeningTime": str,
    "recordClosingTime": str,
    "causeForRecordClosing": str,
    "listOfMultipleUnitUsage": list,
    "charge": int,
}
SERVICE_INFORMATION = {"PS-Information": {"3GPP-Charging-Id": 4711, "Called-Station-Id": "apn"}}
# over binary AVPs an OctetString arrives as bytes: text AVPs only, to compare with the CDR
SERVICE_INFORMATION_BINARY = {
    "PS-Information": {"3GPP-Charging-Characteristics": "0800", "Called-Station-Id": "apn"}
}


def service_information(peer: Peer) -> dict[str, Any]:
    return SERVICE_INFORMATION if peer.encoding == MSGPACK else SERVICE_INFORMATION_BINARY


@dataclass
class Ledger:
    """Money the test put into each account (initial balance + credits - debits)."""

    funded: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # session id -> account id

    async def account(self, admin: Peer, balance: int) -> CreatedAccount:
        account = await create_account(admin, balance)
        self.funded[account.account_id] = balance
        return account

    async def adjust(self, admin: Peer, op: int, account: CreatedAccount, amount: int) -> None:
        answer = await amr(admin, op, account.account_id, Amount=amount)
        assert answer.result_code == SUCCESS
        self.funded[account.account_id] += amount if op == CREDIT else -amount


def sms(requested: int | None = None, used: list[int] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"Rating-Group": 30}
    if requested is not None:
        entry["Requested-Service-Unit"] = units_sms(requested)
    if used is not None:
        entry["Used-Service-Unit"] = [units_sms(n) for n in used]
    return entry


async def event(peer: Peer, account: CreatedAccount, action: int, units: int) -> str:
    sid = new_session_id(peer)
    body = ccr_body(
        peer,
        sid,
        EVENT,
        0,
        service=SMS,
        msisdn=account.msisdn,
        mscc=[sms(units)],
        **avp("Requested-Action", action),
    )
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == SUCCESS
    return sid


async def traffic_before_crash(
    admin: Peer, peer: Peer, ledger: Ledger
) -> tuple[CreatedAccount, dict[str, str]]:
    rich = await ledger.account(admin, 20 * MICRO)
    poor = await ledger.account(admin, 150_000)
    named: dict[str, str] = {}

    text = CcSession(peer, rich.msisdn)
    await text.initial([sms(2)], **avp("Service-Information", service_information(peer)))
    await text.update([sms(1, [2])])
    await text.terminate([sms(used=[1])])
    named["sms"] = text.session_id

    data = CcSession(peer, rich.msisdn, DATA)
    await data.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {}},
            {"Rating-Group": 20, "Requested-Service-Unit": {}},
        ]
    )
    answer = await data.update(
        [
            {
                "Rating-Group": 10,
                "Requested-Service-Unit": {},
                "Used-Service-Unit": [
                    {
                        "CC-Total-Octets": 3 * MIB,
                        "CC-Input-Octets": MIB,
                        "CC-Output-Octets": 2 * MIB,
                        "Reporting-Reason": THRESHOLD,
                    }
                ],
            },
            {
                "Rating-Group": 20,
                "Used-Service-Unit": [{"CC-Total-Octets": 5000, "Reporting-Reason": LINKED_USAGE}],
            },
        ]
    )
    assert answer.result_code == SUCCESS
    named["data"] = data.session_id

    beyond = CcSession(peer, poor.msisdn)
    await beyond.initial([sms(1)])
    await beyond.terminate([sms(used=[3])])  # 0.30 EUR from 0.15: below zero
    named["beyond"] = beyond.session_id

    named["debit"] = await event(peer, rich, DIRECT_DEBITING, 2)
    await ledger.adjust(admin, CREDIT, rich, 1_234_567)
    return rich, {**named, "data-open": data.session_id}


async def traffic_after_crash(
    admin: Peer, peer: Peer, ledger: Ledger, rich: CreatedAccount, data_session_id: str
) -> dict[str, str]:
    named: dict[str, str] = {}
    data = CcSession(peer, rich.msisdn, DATA, session_id=data_session_id, number=1)
    answer = await data.terminate(
        [
            {
                "Rating-Group": 10,
                "Used-Service-Unit": [{"CC-Total-Octets": 1500, "Reporting-Reason": FINAL}],
            }
        ]
    )
    assert answer.result_code == SUCCESS

    voice = CcSession(peer, rich.msisdn, VOICE)
    await voice.initial([{"Rating-Group": 40, "Requested-Service-Unit": {}}])
    await voice.terminate([{"Rating-Group": 40, "Used-Service-Unit": [{"CC-Time": 75}]}])
    named["voice"] = voice.session_id

    named["refund"] = await event(peer, rich, REFUND_ACCOUNT, 1)
    await event(peer, rich, CHECK_BALANCE, 1)
    await event(peer, rich, PRICE_ENQUIRY, 1)
    await ledger.adjust(admin, DEBIT, rich, 300_000)

    denied = await ledger.account(admin, MICRO)
    answer = await amr(admin, SET_STATUS, denied.account_id, Account_Status=1)
    assert answer.result_code == SUCCESS
    answer = await CcSession(peer, denied.msisdn).initial([sms(1)])
    assert answer.result_code == 4010
    return named


def read_cdrs(directory: Path) -> list[dict[str, Any]]:
    """Every record of every file (complete `*.jsonl` and the `.current` one)."""
    records: list[dict[str, Any]] = []
    for path in sorted(directory.glob("cdr-*")):
        assert path.name.endswith((".jsonl", ".jsonl.current")), path.name
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert isinstance(record, dict)
            records.append(record)
    return records


def parse_utc(text: str) -> datetime:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0), f"§9: ISO 8601 UTC: {text}"
    return stamp


def check_record(record: dict[str, Any]) -> None:
    for key, kind in REQUIRED.items():
        assert isinstance(record.get(key), kind), f"§9: {key} in {record}"
    assert record["recordType"] in ("session", "event")
    assert parse_utc(record["recordOpeningTime"]) <= parse_utc(record["recordClosingTime"])
    assert record["localSequenceNumber"] >= 1
    for usage in record["listOfMultipleUnitUsage"]:
        assert isinstance(usage["ratingGroup"], int)
        assert isinstance(usage["usedUnitContainers"], list)
        for container in usage["usedUnitContainers"]:
            assert isinstance(container["charge"], int)
            assert isinstance(container.get("triggers", []), list)
            assert all(isinstance(t, str) for t in container.get("triggers", []))
            units = {"time", "totalVolume", "serviceSpecificUnits"} & set(container)
            assert units, f"§9: a container says what was used: {container}"
    containers = [c for u in record["listOfMultipleUnitUsage"] for c in u["usedUnitContainers"]]
    assert record["charge"] == sum(c["charge"] for c in containers)


async def test_s9_cdr_files_after_traffic_crash_and_stop(spawn: Spawn, connect: Connect) -> None:
    """WIRE.md §9: every record has the required fields; recordSequenceNumber runs 1, 2, 3, ...
    across all files, never repeated or skipped, across a crash (SIGKILL) and a stop
    (SIGTERM); the sum of charge equals exactly the money the accounts lost to charging (from
    AMA); a refund is negative; usage beyond the grant shows in the CDR; a linked-usage report
    is one record with a container per rating group and its triggers; Service-Information is
    copied (§5.1)."""
    ledger = Ledger()
    srv = spawn()
    admin = await connect(srv.port)
    peer = await connect(srv.port)
    rich, named = await traffic_before_crash(admin, peer, ledger)
    await peer.close()
    await admin.close()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)

    srv = spawn()
    admin = await connect(srv.port, admin.origin_host)
    peer = await connect(srv.port, peer.origin_host)
    named.update(await traffic_after_crash(admin, peer, ledger, rich, named["data-open"]))
    lost = 0
    for account_id, funded in ledger.funded.items():
        account = await get_account(admin, account_id)
        assert account["Reserved"] == 0
        lost += funded - account["Balance"]
    await peer.close()
    await admin.close()
    assert srv.terminate() == 0

    records = read_cdrs(srv.data_dir / "cdr")
    assert records, "§9: CDRs were written"
    numbers = [r["recordSequenceNumber"] for r in records]
    assert sorted(numbers) == list(range(1, len(records) + 1)), "§9: 1..N, none twice or skipped"
    for record in records:
        check_record(record)
        assert record["nodeId"] == peer.origin_host
    assert sum(r["charge"] for r in records) == lost, "§9: CDR charges == money lost"

    by_session: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: int(r["recordSequenceNumber"])):
        by_session.setdefault(record["sessionId"], []).append(record)
    for sid, recs in by_session.items():
        assert [r["localSequenceNumber"] for r in recs] == list(range(1, len(recs) + 1)), sid

    sms_records = by_session[named["sms"]]
    assert sum(r["charge"] for r in sms_records) == 3 * SMS_PRICE
    assert sms_records[-1]["recordType"] == "session"
    assert sms_records[-1]["causeForRecordClosing"] == "normalRelease"
    assert sms_records[-1]["accountId"] == rich.account_id
    assert sms_records[-1]["servedSubscriber"] == rich.msisdn
    copied = service_information(peer)
    assert any(copied in r.values() for r in sms_records), "§5.1: copied"

    refund = by_session[named["refund"]]
    assert [r["charge"] for r in refund] == [-SMS_PRICE], "§9: negative for a refund"
    assert refund[0]["recordType"] == "event"
    assert [r["charge"] for r in by_session[named["debit"]]] == [2 * SMS_PRICE]
    assert sum(r["charge"] for r in by_session[named["beyond"]]) == 3 * SMS_PRICE

    linked = [
        r
        for r in by_session[named["data"]]
        if {u["ratingGroup"] for u in r["listOfMultipleUnitUsage"]} == {10, 20}
    ]
    assert len(linked) == 1, "§5.6: one CDR for the linked report"
    usage = {
        u["ratingGroup"]: u["usedUnitContainers"] for u in linked[0]["listOfMultipleUnitUsage"]
    }
    assert [c["totalVolume"] for c in usage[10]] == [3 * MIB]
    assert [(c["uplinkVolume"], c["downlinkVolume"]) for c in usage[10]] == [(MIB, 2 * MIB)]
    assert [c["totalVolume"] for c in usage[20]] == [5000]
    assert any("THRESHOLD" in t.upper() for t in usage[10][0]["triggers"])
    assert any("LINKED" in t.upper() for t in usage[20][0]["triggers"])
    voice = by_session[named["voice"]]
    assert [
        c["time"]
        for r in voice
        for u in r["listOfMultipleUnitUsage"]
        for c in u["usedUnitContainers"]
    ] == [75]
    assert all(r["sessionId"] != "" for r in records)
    assert datetime.now(UTC) - parse_utc(records[-1]["recordClosingTime"]) < timedelta(minutes=5)
