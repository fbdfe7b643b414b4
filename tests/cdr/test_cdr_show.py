"""`ocs cdr show`: CDR files rendered for a person (currency units, names from the catalog),
filtered by subscriber and time, as a table, CSV or JSON lines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ocs.cli.main import main


def session_cdr(seq: int, subscriber: str, closed: str, **extra: Any) -> dict[str, Any]:
    return {
        "recordSequenceNumber": seq,
        "recordType": "session",
        "sessionId": f"ne;{seq}",
        "accountId": f"acct-{subscriber[-1]}",
        "servedSubscriber": subscriber,
        "nodeId": "ne.test.local",
        "localSequenceNumber": 1,
        "recordOpeningTime": closed,
        "recordClosingTime": closed,
        "causeForRecordClosing": "normalRelease",
        "listOfMultipleUnitUsage": [
            {
                "ratingGroup": 10,
                "usedUnitContainers": [
                    {"totalVolume": 3 * (1 << 20), "charge": 30_000},
                    {"totalVolume": 1 << 19, "charge": 5_000},
                ],
            },
            {"ratingGroup": 20, "usedUnitContainers": [{"totalVolume": 1 << 20, "charge": 0}]},
        ],
        "charge": 35_000,
        "currencyCode": 978,
        **extra,
    }


def event_cdr(seq: int, subscriber: str, closed: str, charge: int) -> dict[str, Any]:
    return {
        "recordSequenceNumber": seq,
        "recordType": "event",
        "sessionId": f"ne;ev{seq}",
        "accountId": f"acct-{subscriber[-1]}",
        "servedSubscriber": subscriber,
        "nodeId": "ne.test.local",
        "localSequenceNumber": 1,
        "recordOpeningTime": closed,
        "recordClosingTime": closed,
        "causeForRecordClosing": "normalRelease",
        "requestedAction": "REFUND_ACCOUNT" if charge < 0 else "DIRECT_DEBITING",
        "listOfMultipleUnitUsage": [
            {
                "ratingGroup": 30,
                "usedUnitContainers": [{"serviceSpecificUnits": 1, "charge": charge}],
            }
        ],
        "charge": charge,
        "currencyCode": 978,
    }


@pytest.fixture
def cdr_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cdr"
    directory.mkdir()
    complete = [
        session_cdr(1, "33600000001", "2026-12-01T10:00:00.000Z"),
        event_cdr(2, "33600000002", "2026-12-01T23:59:59.999Z", 100_000),
    ]
    (directory / "cdr-000000000001-000000000002.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in complete)
    )
    current = [
        event_cdr(3, "33600000001", "2026-12-02T08:00:00.000Z", -100_000),
        session_cdr(
            4, "33600000002", "2026-12-02T09:30:00.500Z", causeForRecordClosing="partialRecord"
        ),
    ]
    text = "".join(json.dumps(r) + "\n" for r in current)
    # a write in progress: its incomplete last line is not a record yet
    (directory / "cdr-000000000003.jsonl.current").write_text(text + '{"recordSequenceNumber": 5')
    return directory


def show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["cdr", "show", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_in_currency_units_with_names(
    cdr_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = show(capsys, str(cdr_dir / "cdr-000000000001-000000000002.jsonl"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "SEQ", "CLOSED", "(UTC)", "TYPE", "SUBSCRIBER", "ACCOUNT", "CAUSE", "USAGE", "CHARGE"
    ]  # fmt: skip
    assert lines[1].split() == [
        "1", "2026-12-01", "10:00:00.000", "session", "33600000001", "acct-1", "normalRelease",
        "data", "3.50", "MiB,", "video", "1.00", "MiB", "0.035", "EUR",
    ]  # fmt: skip
    assert lines[2].split() == [
        "2", "2026-12-01", "23:59:59.999", "debit", "33600000002", "acct-2", "normalRelease",
        "sms", "1", "unit", "0.10", "EUR",
    ]  # fmt: skip
    assert lines[3] == "2 records, charge 0.135 EUR"


def test_current_file_and_directory_filters(
    cdr_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = show(capsys, str(cdr_dir), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["recordSequenceNumber"] for r in rows] == [1, 2, 3, 4]  # not the torn line
    assert rows[2]["charge"] == "-0.10" and rows[2]["chargeMicro"] == -100_000
    assert rows[2]["file"] == "cdr-000000000003.jsonl.current"
    assert rows[0]["usage"] == [
        {
            "ratingGroup": 10,
            "name": "data",
            "unit": "octets",
            "units": 3_670_016,
            "charge": "0.035",
        },
        {
            "ratingGroup": 20,
            "name": "video",
            "unit": "octets",
            "units": 1_048_576,
            "charge": "0.00",
        },
    ]

    code, out, _ = show(capsys, str(cdr_dir), "--subscriber", "33600000001", "--json")
    assert [json.loads(line)["recordSequenceNumber"] for line in out.splitlines()] == [1, 3]
    code, out, _ = show(capsys, str(cdr_dir), "--subscriber", "acct-2", "--json")
    assert [json.loads(line)["recordSequenceNumber"] for line in out.splitlines()] == [2, 4]
    code, out, _ = show(capsys, str(cdr_dir), "--since", "2026-12-02T09:00:00+01:00", "--json")
    assert [json.loads(line)["recordSequenceNumber"] for line in out.splitlines()] == [3, 4]
    code, out, _ = show(capsys, str(cdr_dir), "--since", "2026-12-02", "--subscriber", "acct-2")
    assert out.splitlines()[-1] == "1 record, charge 0.035 EUR"


def test_csv(cdr_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = show(capsys, str(cdr_dir / "cdr-000000000003.jsonl.current"), "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["recordSequenceNumber"], r["charge"], r["currency"]) for r in rows] == [
        ("3", "-0.10", "EUR"),
        ("4", "0.035", "EUR"),
    ]
    assert rows[0]["requestedAction"] == "REFUND_ACCOUNT"
    assert rows[1]["usage"] == "data=3670016 octets; video=1048576 octets"


def test_names_from_the_catalog_given(
    cdr_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = (Path(__file__).parents[2] / "ocs/edge/demo_catalog.toml").read_text()
    catalog = tmp_path / "shop.toml"
    catalog.write_text(demo.replace('name = "sms"', 'name = "texto"', 2))
    code, out, _ = show(capsys, str(cdr_dir), "--catalog", str(catalog), "--subscriber", "acct-2")
    assert code == 0
    assert " texto 1 unit " in out and " sms " not in out


def test_unknown_names_and_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = event_cdr(7, "33600000009", "2026-12-01T10:00:00.000Z", 2_500_000)
    record["listOfMultipleUnitUsage"][0]["ratingGroup"] = 99
    record["currencyCode"] = 840
    path = tmp_path / "cdr-000000000007-000000000007.jsonl"
    path.write_text(json.dumps(record) + "\n")
    code, out, _ = show(capsys, str(path))
    assert code == 0
    assert "RG 99 1 unit" in out and out.splitlines()[-1] == "1 record, charge 2.50 USD"

    path.write_text(json.dumps(record) + "\nnot json\n")
    code, _, err = show(capsys, str(path))
    assert code == 1 and "not a JSON line" in err
    code, _, err = show(capsys, str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err
