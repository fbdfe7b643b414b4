"""CDR records (WIRE.md 9): fields, partial records on the catalog's limits, numbering."""

from __future__ import annotations

from protocol.codes import CCRequestType, ReportingReason, RequestedAction
from tests.charging.conftest import (
    EUR,
    PEAK,
    SMS,
    SUNDAY,
    VOICE,
    Harness,
    MiB,
    ccr,
    mscc,
    rsu,
    sid,
    usu,
)

INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
SUB = "491700000001"
MIN = 60_000

REQUIRED = {
    "recordSequenceNumber",
    "recordType",
    "sessionId",
    "accountId",
    "servedSubscriber",
    "nodeId",
    "localSequenceNumber",
    "recordOpeningTime",
    "recordClosingTime",
    "causeForRecordClosing",
    "listOfMultipleUnitUsage",
    "charge",
}


def test_partial_record_on_the_volume_limit(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), SUNDAY)
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=60 * MiB),))), SUNDAY + MIN)
    assert h.cdr_lines == []  # 60 MiB < 100 MiB
    h.cca(ccr("s", UPDATE, 2, mscc(10, ask=rsu(), used=(usu(octets=50 * MiB),))), SUNDAY + 2 * MIN)
    (partial,) = h.cdrs()
    assert partial["causeForRecordClosing"] == "partialRecord"
    assert partial["localSequenceNumber"] == 1
    assert partial["recordOpeningTime"] == "2026-01-11T13:00:00.000Z"
    assert partial["recordClosingTime"] == "2026-01-11T13:02:00.000Z"
    containers = partial["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert [c["totalVolume"] for c in containers] == [60 * MiB, 50 * MiB]
    assert partial["charge"] == 1_100_000  # 110 MiB off-peak at 0.01 EUR
    h.cca(ccr("s", TERMINATION, 3, mscc(10, used=(usu(octets=MiB),))), SUNDAY + 3 * MIN)
    last = h.cdrs()[1]
    assert last["causeForRecordClosing"] == "normalRelease"
    assert last["localSequenceNumber"] == 2
    assert last["recordOpeningTime"] == partial["recordClosingTime"]
    assert last["charge"] == 10_000
    assert h.cdr_total() == 10 * EUR - h.balance("a")


def test_partial_record_on_the_time_limit(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), SUNDAY)
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), SUNDAY + 30 * MIN)
    assert h.cdr_lines == []
    h.cca(ccr("s", UPDATE, 2, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), SUNDAY + 60 * MIN)
    (partial,) = h.cdrs()  # the record is one hour old
    assert partial["causeForRecordClosing"] == "partialRecord"
    assert partial["charge"] == 20_000
    h.cca(ccr("s", UPDATE, 3, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), SUNDAY + 119 * MIN)
    assert len(h.cdr_lines) == 1
    h.cca(ccr("s", UPDATE, 4, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), SUNDAY + 120 * MIN)
    assert [c["localSequenceNumber"] for c in h.cdrs()] == [1, 2]


def test_every_record_has_the_required_fields_and_numbers_are_contiguous(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.account("b", "491700000002", 10 * EUR)
    h.cca(ccr("d", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("v", INITIAL, 0, mscc(40, ask=rsu()), subscriber="491700000002", service=VOICE), PEAK)
    h.cca(
        ccr(
            "e",
            CCRequestType.EVENT,
            0,
            mscc(30, ask=rsu(units=2)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.DIRECT_DEBITING,
            service_information={"SMS-Information": {"Recipient": "4912"}},
        ),
        PEAK + MIN,
    )
    h.cca(ccr("d", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=200 * MiB),))), PEAK + MIN)
    h.cca(
        ccr(
            "v",
            TERMINATION,
            1,
            mscc(40, used=(usu(seconds=75, reason=ReportingReason.FINAL),)),
        ),
        PEAK + 2 * MIN,
    )
    h.tick(PEAK + 200 * MIN)  # "d" falls silent
    records = h.cdrs()
    assert [r["recordSequenceNumber"] for r in records] == list(range(1, len(records) + 1))
    assert [(r["sessionId"], r["recordType"]) for r in records] == [
        (sid("e"), "event"),
        (sid("d"), "session"),
        (sid("v"), "session"),
        (sid("d"), "session"),
    ]
    for record in records:
        assert set(record) >= REQUIRED, REQUIRED - set(record)
        assert type(record["charge"]) is int
        assert record["currencyCode"] == 978
    assert records[0]["serviceInformation"] == {"SMS-Information": {"Recipient": "4912"}}
    assert [r["localSequenceNumber"] for r in records if r["sessionId"] == sid("d")] == [1, 2]
    assert [r["causeForRecordClosing"] for r in records] == [
        "normalRelease",
        "partialRecord",
        "normalRelease",
        "abnormalRelease",
    ]
    # voice: 75 s on a weekday = 75000 + 50000 fee
    assert records[2]["charge"] == 125_000
    assert records[2]["servedSubscriber"] == "491700000002"
    assert h.cdr_total() == 20 * EUR - h.balance("a") - h.balance("b")
