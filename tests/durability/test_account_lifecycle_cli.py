"""``ocs account update|close|list|search`` against a server subprocess over 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.durability.test_account_cli import Cli
from tests.durability.util import AppProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path_factory.mktemp("lifecycle-cli") / "data")
    try:
        yield process.start()
        assert process.terminate() == 0
    finally:
        process.kill()


@pytest.fixture
def cli(server: AppProcess, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server, capsys)


async def test_update_search_list_close(cli: Cli) -> None:
    code, out, _ = await cli.run("create", "lc-1", "--msisdn", "+4915100000001", "--balance", "1")
    assert code == 0 and "e164:4915100000001" in out
    assert (await cli.run("create", "lc-2", "--imsi", "262019999999999"))[0] == 0
    code, obj = await cli.json(
        "update", "lc-1", "--credit-limit", "2.5", "--status", "suspended", "--operation-id", "u-1"
    )
    assert code == 0 and obj["Operation-Id"] == "u-1"
    assert obj["Account"]["Credit-Limit"] == 2_500_000 and obj["Account"]["Account-Status"] == 1
    code, obj = await cli.json("search", "msisdn:+4915100000001")
    assert code == 0 and obj["Account"]["Account-Id"] == "lc-1"
    code, out, _ = await cli.run("list")
    assert code == 0 and out.splitlines() == ["lc-1", "lc-2"]
    code, out, err = await cli.run("close", "lc-1")
    assert code == 1 and "the account's balance is not zero: 1000000" in err
    assert (await cli.run("debit", "lc-1", "1"))[0] == 0
    code, out, err = await cli.run("close", "lc-1", "--operation-id", "c-1")
    assert code == 0 and out.strip() == "close lc-1: ok"
    code, obj = await cli.json("list", "--from", "lc-1")
    assert code == 0 and obj["Listed-Account-Id"] == ["lc-2"]
    code, _, err = await cli.run("search", "e164:4915100000001")
    assert code == 1 and "no account holds this Subscription-Id" in err


async def test_update_with_nothing_to_update_is_refused_before_sending(cli: Cli) -> None:
    code, _, err = await cli.run("update", "lc-x")
    assert code == 2 and "nothing to update" in err and "operation id" not in err


async def test_import_creates_pipelined_and_a_second_run_completes_it(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.csv"
    rows = [f"im-{i:04d},+4916{i:06d},26202{i:08d},1.50,0.25" for i in range(300)]
    path.write_text("account_id,msisdn,imsi,balance,credit_limit\n" + "\n".join(rows) + "\n")
    code, obj = await cli.json("import", str(path), "--window", "64")
    assert code == 0
    assert {k: obj[k] for k in ("rows", "created", "existed", "refused")} == {
        "rows": 300,
        "created": 300,
        "existed": 0,
        "refused": 0,
    }
    code, got = await cli.json("get", "im-0299")
    assert got["Account"]["Balance"] == 1_500_000 and got["Account"]["Credit-Limit"] == 250_000
    assert got["Account"]["Subscription-Id"][0]["Subscription-Id-Data"] == "4916000299"
    # an interrupted import is finished by running it again: what exists is counted, not refused
    path.write_text(
        "account_id,msisdn,imsi,balance,credit_limit\n"
        + "\n".join(rows)
        + "\nim-bad,12x,,0,0\nim-new,4917000000,,0,0\n"
    )
    code, out, err = await cli.run("import", str(path))
    assert code == 1
    assert "1 created, 300 existed, 1 refused of 302 rows" in out
    assert "line 302: Result-Code 5004: an E.164 Subscription-Id must be 1 to 15 digits" in err


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("id,msisdn\nx,1\n", "the header must name account_id"),
        ("account_id,balance\nx,1.2345678\n", ":2: "),
    ],
)
async def test_a_malformed_file_sends_nothing(
    cli: Cli, tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, err = await cli.run("import", str(path))
    assert code == 2 and why in err
    code, _, _ = await cli.run("get", "x")
    assert code == 1


async def test_import_json_lines_and_one_create_per_row(cli: Cli, tmp_path: Path) -> None:
    """JSON Lines (strings or integers, absent keys for none), in batches of 3 (CREATE_BULK)
    and with --batch 1 (one CREATE per row): the same accounts, the same refusals by line."""
    path = tmp_path / "accounts.jsonl"
    lines = [
        '{"account_id": "jl-1", "msisdn": "+4918000001", "balance": "2.50"}',
        "",
        '{"account_id": "jl-2", "imsi": 262030000000002, "balance": 3, "credit_limit": "0.5"}',
        '{"account_id": "jl-3", "msisdn": "49x"}',
        '{"account_id": "jl-4"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = await cli.run("import", str(path), "--batch", "3")
    assert code == 1 and "3 created, 0 existed, 1 refused of 4 rows" in out
    assert "line 4: Result-Code 5004: an E.164 Subscription-Id" in err
    code, got = await cli.json("get", "jl-2")
    assert got["Account"]["Balance"] == 3_000_000 and got["Account"]["Credit-Limit"] == 500_000
    assert got["Account"]["Subscription-Id"][0]["Subscription-Id-Data"] == "262030000000002"
    code, out, err = await cli.run("import", str(path), "--batch", "1")
    assert code == 1 and "0 created, 3 existed, 1 refused of 4 rows" in out
    assert "line 4: Result-Code 5004" in err
    # a bad line is named, and nothing is sent
    path.write_text('{"account_id": "jl-9"}\n{"account_id": "jl-10", "colour": "red"}\n')
    code, _, err = await cli.run("import", str(path))
    assert code == 2 and ":2: unknown keys colour" in err
    assert (await cli.run("get", "jl-9"))[0] == 1
