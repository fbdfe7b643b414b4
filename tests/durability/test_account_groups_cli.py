"""``ocs account group-join|group-leave|statement`` against a server subprocess on the demo
catalog (its package "family"): the CLI in a thread of the test, over a real socket; an SMS of
a member is charged to the group and shows in the member's statement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ocs.cli.main import main
from protocol.codes import CCRequestType
from tests.durability.util import AppProcess, connect_cc, msisdn, sms_ccr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path_factory.mktemp("groups-cli") / "data")
    try:
        yield process.start()
        assert process.terminate() == 0
    finally:
        process.kill()


async def ocs(
    server: AppProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = ["account", *args, "--server", f"127.0.0.1:{server.port}"]
    code = await asyncio.to_thread(main, [*argv, "--origin-host", "admin.test.local"])
    out, err = capsys.readouterr()
    return code, out, err


async def as_json(
    server: AppProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    code, out, _ = await ocs(server, capsys, *args, "--json")
    obj: dict[str, Any] = json.loads(out)
    return code, obj


async def test_join_charge_statement_leave(
    server: AppProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    for account, balance in (("grp-1", "100"), ("mem-11", "5"), ("mem-12", "5")):
        code, _, err = await ocs(
            server, capsys, "create", account, "--msisdn", msisdn(account), "--balance", balance
        )
        assert code == 0, err
    code, obj = await as_json(
        server, capsys, "group-join", "mem-11", "grp-1", "--package", "family"
    )
    assert code == 0 and obj["Result-Code"] == 2001 and obj["Operation-Id"]
    code, obj = await as_json(server, capsys, "group-join", "mem-12", "grp-1")
    assert code == 0, obj

    # an SMS of mem-11 (0.10 EUR, in no service of the package) is charged to grp-1
    client = await connect_cc(server.port, "smsc.test.local")
    try:
        sid = "smsc.test.local;grp-sms-1"
        opened = await client.request(
            sms_ccr("smsc.test.local", sid, CCRequestType.INITIAL, 0, account_id="mem-11")
        )
        assert opened.result_code == 2001
        closed = await client.request(
            sms_ccr("smsc.test.local", sid, CCRequestType.TERMINATION, 1, used=1)
        )
        assert closed.result_code == 2001
    finally:
        await client.close()
    code, obj = await as_json(server, capsys, "get", "grp-1")
    assert obj["Account"]["Balance"] == 100_000_000 - 100_000
    code, obj = await as_json(server, capsys, "get", "mem-11")
    assert obj["Account"]["Balance"] == 5_000_000

    code, obj = await as_json(server, capsys, "statement", "mem-11")
    assert code == 0, obj
    statement = obj["Statement"]
    assert statement["Group-Account-Id"] == "grp-1" and "Share" not in statement  # open
    assert statement["Usage-Charge"] == 100_000
    lines = {s["Service-Name"]: s for s in statement["Statement-Service"]}
    assert lines["other"]["Used-Units"] == 1 and lines["other"]["Usage-Charge"] == 100_000
    assert lines["voice"]["Used-Units"] == 0 and lines["data"]["Used-Units"] == 0
    code, out, _ = await ocs(server, capsys, "statement", "mem-11")
    assert code == 0 and "(open)" in out and "other" in out and "0.10" in out

    code, obj = await as_json(server, capsys, "group-leave", "mem-12", "--operation-id", "lv-12")
    assert code == 0, obj
    code, obj = await as_json(server, capsys, "group-leave", "mem-12", "--operation-id", "lv-12")
    assert code == 0, obj  # a retry: applied once, its first outcome
    code, obj = await as_json(server, capsys, "group-leave", "mem-12")
    assert (
        code == 1 and obj["Result-Code"] == 5004 and obj["Failed-AVP"] == {"Account-Id": "mem-12"}
    )
    code, out, err = await ocs(server, capsys, "group-join", "mem-12", "grp-9", "--package", "x")
    assert code == 1 and "5030" in err and "Group-Account-Id" in err
