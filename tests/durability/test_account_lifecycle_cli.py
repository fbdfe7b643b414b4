"""``ocs account update|close|list|search`` against a server subprocess over 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

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
