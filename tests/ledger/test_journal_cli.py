"""`ocs journal show` and `ocs journal check`: decoded records around a position, torn tail
versus damage, and nothing written, cut or locked."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from ocs.cli.main import main
from ocs.core.charging import Input, InputKind, encode_input
from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.journal import RECORD_HEADER, DirLock, JournalRecord, iter_entries
from ocs.edge.store import Store
from ocs.node import KIND_CORE
from protocol.codec import encode_body
from protocol.codes import AccountOperation, CommandCode
from protocol.messages import AMR

T0 = 1_796_227_254_000


class Inputs:
    """Stands in for the core: keeps nothing, replays anything."""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass

    def replay(self, body: bytes, lsn: int) -> None:
        pass


def _credit(amount: int, operation_id: str) -> bytes:
    return encode_body(
        AMR(
            origin_host="admin.test.local",
            origin_realm="test.local",
            account_operation=AccountOperation.CREDIT,
            account_id="acct-1",
            amount=amount,
            operation_id=operation_id,
        )
    )


HOSTILE = msgspec.msgpack.encode(
    {
        "Origin-Host": "evil\x1b[2J" + "x" * 5_000,
        7: {"nested": [1, 2, {"deep": b"\x00" * 100}]},
        "Session-Id": b"\xff" * 40,
    }
)


def _write(data_dir: Path) -> None:
    inputs = [
        Input(kind=InputKind.CATALOG, now_ms=T0, body=demo_catalog_text().encode()),
        Input(
            kind=InputKind.REQUEST,
            now_ms=T0 + 1,
            origin_host="admin.test.local",
            end_to_end=11,
            command=CommandCode.ACCOUNT_MANAGEMENT,
            body=_credit(250_000, "credit-1"),
        ),
        Input(kind=InputKind.TICK, now_ms=T0 + 2),
        Input(
            kind=InputKind.REQUEST,
            now_ms=T0 + 3,
            origin_host="pgw\n1",
            end_to_end=12,
            command=CommandCode.CREDIT_CONTROL,
            body=HOSTILE,
        ),
        Input(
            kind=InputKind.REQUEST,
            now_ms=T0 + 4,
            origin_host="admin.test.local",
            end_to_end=13,
            command=CommandCode.ACCOUNT_MANAGEMENT,
            body=_credit(1, "credit-2"),
        ),
    ]
    with Store.open(data_dir, components={KIND_CORE: Inputs()}) as store:
        for record in inputs:
            store.append(KIND_CORE, encode_input(record))
        store.commit()


def _segment(data_dir: Path) -> Path:
    return sorted((data_dir / "journal").glob("*.log"))[-1]


def _records(data_dir: Path) -> list[JournalRecord]:
    return [e for e in iter_entries(data_dir / "journal") if isinstance(e, JournalRecord)]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["journal", *argv])
    return code, capsys.readouterr().out


def _tree(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "data")
    return tmp_path / "data"


def test_show_prints_the_last_records_decoded(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "show", str(data_dir), "--around", "1")
    assert code == 0
    lines = out.splitlines()
    assert "durability mark LSN 5" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["4", "5"]
    last = lines[2]
    assert "core REQUEST ACCOUNT_MANAGEMENT" in last
    assert "2026-12-02T16:00:54.004Z" in last
    assert "Account-Operation=3" in last and "Amount=1" in last
    assert "Operation-Id='credit-2'" in last


def test_show_around_an_lsn_and_as_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "show", str(data_dir), "--lsn", "2", "--around", "1", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["durable_mark"] == 5 and shown["snapshot_lsn"] is None
    entries = shown["entries"]
    assert [e["lsn"] for e in entries] == [1, 2, 3]
    assert entries[0]["input"]["kind"] == "CATALOG"
    assert entries[0]["input"]["catalog_bytes"] == len(demo_catalog_text().encode())
    credit = entries[1]["input"]
    assert credit["command"] == "ACCOUNT_MANAGEMENT" and credit["end_to_end"] == 11
    assert credit["body"]["Amount"] == 250_000
    assert credit["body"]["Operation-Id"] == "credit-1"
    assert entries[2]["kind"] == "core TICK"


def test_show_cuts_and_escapes_what_peers_wrote(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "show", str(data_dir), "--lsn", "4", "--around", "0")
    assert code == 0
    line = out.splitlines()[1]
    assert "\x1b" not in out and "\\x1b" in line
    assert "origin='pgw\\n1'" in line
    assert len(line) < 700  # the 5,000-character Origin-Host is cut
    assert "(5008 chars)" in line
    code, out = _run(capsys, "show", str(data_dir), "--lsn", "4", "--around", "0", "--json")
    body = json.loads(out)["entries"][0]["input"]["body"]
    assert body["7"]["nested"][2]["deep"] == {"hex": "00" * 100}
    assert body["Session-Id"] == {"hex": "ff" * 40}


def test_check_says_clean_torn_or_damaged(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, "check", str(data_dir))
    assert code == 0 and "clean" in out and "LSN 1..5" in out

    segment = _segment(data_dir)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(b"\x01\x02\x03")  # a write cut short after the last fsync
    code, out = _run(capsys, "check", str(data_dir), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["verdict"] == "torn_tail"
    assert (report["offset"], report["lsn"], report["dropped_bytes"]) == (size, 6, 3)

    record = _records(data_dir)[1]
    raw = bytearray(segment.read_bytes())
    raw[record.offset + RECORD_HEADER.size + 5] ^= 0x20
    segment.write_bytes(bytes(raw))
    code, out = _run(capsys, "check", str(data_dir))
    assert code == 1
    assert "DAMAGE" in out and "record LSN 2" in out and f"byte {record.offset}" in out
    code, out = _run(capsys, "show", str(data_dir), "--lsn", "2", "--around", "0")
    assert "UNREADABLE" in out and "unverified content: core REQUEST" in out


def test_check_refuses_an_input_that_does_not_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store.open(tmp_path, components={KIND_CORE: Inputs()}) as store:
        store.append(KIND_CORE, b"\xc1 not an input")
        store.commit()
    code, out = _run(capsys, "check", str(tmp_path), "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "undecodable" and report["lsn"] == 1


def test_show_and_check_only_read_and_take_no_lock(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _segment(data_dir).open("ab") as f:
        f.write(b"\x00" * 10)  # a torn tail recovery would cut
    (data_dir / "journal" / "00000000000000000009.snap.1.tmp").write_bytes(b"left over")
    before = _tree(data_dir)
    with DirLock(data_dir):  # a server holds the directory
        assert _run(capsys, "show", str(data_dir))[0] == 0
        assert _run(capsys, "show", str(data_dir), "--json", "--lsn", "1")[0] == 0
        assert _run(capsys, "check", str(data_dir))[0] == 0
        assert _run(capsys, "check", str(data_dir), "--json")[0] == 0
    after = _tree(data_dir)
    assert {k: v for k, v in after.items() if k != "LOCK"} == {
        k: v for k, v in before.items() if k != "LOCK"
    }


def test_a_directory_without_a_journal_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "check", str(tmp_path)]) == 2
    assert main(["journal", "show", str(tmp_path / "nothing")]) == 2
    assert "not a journal directory" in capsys.readouterr().err
