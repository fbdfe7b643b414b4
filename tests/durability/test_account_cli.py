"""``ocs account ...`` against a server subprocess (the CLI runs in a thread of the test, with
its own event loop, over a real socket; the server's logs stay out of its output). One server
for the module: each test uses its own account ids."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocs.cli.main import main
from protocol.codes import CCRequestType
from tests.durability.util import AppProcess, connect_cc, msisdn, next_e2e, sms_ccr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path_factory.mktemp("cli") / "data")
    try:
        yield process.start()
        assert process.terminate() == 0
    finally:
        process.kill()


class Cli:
    def __init__(self, server: AppProcess, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = f"127.0.0.1:{server.port}"
        self.capsys = capsys

    async def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        argv = ["account", *args, "--server", self.server, "--origin-host", "admin.test.local"]
        code = await asyncio.to_thread(main, argv)
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, _ = await self.run(*args, "--json")
        lines = out.splitlines()
        assert len(lines) == 1, out
        obj: dict[str, Any] = json.loads(lines[0])
        return code, obj


@pytest.fixture
def cli(server: AppProcess, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server, capsys)


async def test_create_get_with_exact_decimal_amounts(cli: Cli) -> None:
    code, obj = await cli.json(
        "create",
        "acct-0a",
        "--msisdn",
        "33612345670",
        "--imsi",
        "208011234567890",
        "--sub",
        "nai:alice@example.com",
        "--sub",
        "4:private-1",
        "--balance",
        "12.34",
        "--credit-limit",
        "0.5",
        "--currency",
        "978",
    )
    assert code == 0
    assert obj["Result-Code"] == 2001
    # the demo catalog's usage counters (docs/protocol.md): none used yet; the monthly one's
    # period depends on today
    counters = obj["Account"].pop("Usage-Counter")
    assert [(c["Counter-Name"], c["Counter-Value"]) for c in counters] == [
        ("account", 0),
        ("data-daily", 0),
        ("spend-monthly", 0),
    ]
    assert obj["Account"] == {
        "Account-Id": "acct-0a",
        "Account-Status": 0,
        "Balance": 12_340_000,
        "Reserved": 0,
        "Credit-Limit": 500_000,
        "Currency-Code": 978,
        "Subscription-Id": [
            {"Subscription-Id-Type": 0, "Subscription-Id-Data": "33612345670"},
            {"Subscription-Id-Type": 1, "Subscription-Id-Data": "208011234567890"},
            {"Subscription-Id-Type": 3, "Subscription-Id-Data": "alice@example.com"},
            {"Subscription-Id-Type": 4, "Subscription-Id-Data": "private-1"},
        ],
        "Session-Count": 0,
    }
    code, out, _ = await cli.run("get", "acct-0a")
    assert code == 0
    first, *counter_lines = out.strip().splitlines()
    assert first == (
        "account: acct-0a active balance 12.34 reserved 0.00 credit-limit 0.50 currency 978 "
        "sessions 0 subscriptions e164:33612345670,imsi:208011234567890,"
        "nai:alice@example.com,private:private-1"
    )
    assert counter_lines[:2] == ["  counter account 0.00", "  counter data-daily 0 octets"]
    assert counter_lines[2].startswith("  counter spend-monthly 0.00 since ")


async def test_create_twice_and_bad_values_are_business_failures(cli: Cli) -> None:
    assert (await cli.run("create", "acct-1a", "--msisdn", "3311"))[0] == 0
    code, obj = await cli.json("create", "acct-1a", "--msisdn", "3312")
    assert (code, obj["Result-Code"]) == (1, 5004)
    code, obj = await cli.json("create", "acct-1b", "--currency", "1000")
    assert (code, obj["Result-Code"]) == (1, 5004)
    code, obj = await cli.json("get", "acct-1b")
    assert (code, obj["Result-Code"]) == (1, 5030)
    assert "Account" not in obj


async def test_credit_and_debit_apply_once_per_operation_id(cli: Cli) -> None:
    await cli.run("create", "acct-2a", "--balance", "1")
    code, obj = await cli.json("credit", "acct-2a", "0.25", "--operation-id", "t-1")
    assert (code, obj["Result-Code"], obj["Operation-Id"]) == (0, 2001, "t-1")
    assert obj["Account"]["Balance"] == 1_250_000
    code, obj = await cli.json("credit", "acct-2a", "0.25", "--operation-id", "t-1")
    assert (code, obj["Account"]["Balance"]) == (0, 1_250_000)  # the retry changes nothing

    code, out, err = await cli.run("debit", "acct-2a", "0.05")  # no id: one is made and shown
    assert code == 0
    assert out.strip().startswith("debited 0.05: acct-2a active balance 1.20 ")
    match = re.fullmatch(r"operation id ([0-9a-f-]{36})\n", err)
    assert match is not None, err
    code, obj = await cli.json("debit", "acct-2a", "0.05", "--operation-id", match[1])
    assert (code, obj["Account"]["Balance"]) == (0, 1_200_000)

    code, obj = await cli.json("credit", "acct-2a", "7", "--micro")
    assert (code, obj["Account"]["Balance"]) == (0, 1_200_007)


async def test_refused_debit_and_unknown_account_exit_1(cli: Cli) -> None:
    await cli.run("create", "acct-3a", "--balance", "1", "--credit-limit", "0.5")
    code, out, err = await cli.run("debit", "acct-3a", "1.500001", "--operation-id", "d-1")
    assert code == 1 and out == ""
    assert "Result-Code 4012" in err and "d-1" in err
    code, obj = await cli.json("debit", "acct-3a", "1.5", "--operation-id", "d-2")
    assert (code, obj["Account"]["Balance"]) == (0, -500_000)  # down to the credit limit
    code, obj = await cli.json("credit", "nobody", "1")
    assert (code, obj["Result-Code"]) == (1, 5030)


async def test_status(cli: Cli) -> None:
    await cli.run("create", "acct-4a")
    code, out, _ = await cli.run("status", "acct-4a", "barred")
    assert code == 0 and " acct-4a barred balance 0.00 " in out
    code, obj = await cli.json("status", "acct-4a", "suspended")
    assert (code, obj["Account"]["Account-Status"]) == (0, 1)
    code, obj = await cli.json("get", "acct-4a")
    assert obj["Account"]["Account-Status"] == 1


@pytest.mark.parametrize("amount", ["1.0000001", "1e3", "-1", "0", "1,5", "0.1.2"])
async def test_bad_amounts_are_refused_before_sending(cli: Cli, amount: str) -> None:
    code, _, err = await cli.run("credit", "acct-5a", amount, "--operation-id", "x")
    assert code == 2 and err.startswith("error: ")


async def test_no_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = await asyncio.to_thread(
        main, ["account", "get", "acct-6a", "--server", f"127.0.0.1:{port}", "--timeout", "2"]
    )
    assert code == 2
    assert "cannot connect to 127.0.0.1:" in capsys.readouterr().err


async def test_terminate_session_ends_any_peers_session(cli: Cli, server: AppProcess) -> None:
    """Management intervention: the operator ends a session a network element opened."""
    await cli.run("create", "acct-7a", "--msisdn", msisdn("acct-7a"), "--balance", "1")
    client = await connect_cc(server.port, "smsc7.test.local")
    sid = "smsc7.test.local;1;7"
    initial = sms_ccr(
        client.identity.origin_host, sid, CCRequestType.INITIAL, 0, account_id="acct-7a"
    )
    assert (await client.request(initial, end_to_end=next_e2e())).result_code == 2001
    code, obj = await cli.json("get", "acct-7a")
    assert obj["Account"]["Session-Count"] == 1 and obj["Account"]["Reserved"] > 0
    code, out, _ = await cli.run("terminate-session", "acct-7a", sid)
    assert code == 0, out
    assert out.startswith(f"session terminated {sid}: acct-7a active balance 1.00 reserved 0.00 ")
    assert " sessions 0 " in out
    code, obj = await cli.json("terminate-session", "acct-7a", sid)
    assert (code, obj["Result-Code"], obj["Session-Id"]) == (1, 5002, sid)
    await client.close()


async def test_each_refusal_has_its_own_error_message_and_failed_avp(cli: Cli) -> None:
    """Issue 12: a duplicate account and an MSISDN owned by another account were both
    "invalid (or the account exists)". Each cause has its own Error-Message and Failed-AVP,
    and the CLI prints both (with the Result-Code's name)."""
    created = await cli.run("create", "acct-ra", "--msisdn", "3391")
    assert created[0] == 0, created
    code, out, err = await cli.run("create", "acct-ra")
    assert (code, out) == (1, "")
    assert err == (
        "create acct-ra: Result-Code 5004 DIAMETER_INVALID_AVP_VALUE: an account with this "
        'Account-Id exists already Failed-AVP {"Account-Id": "acct-ra"}\n'
    )
    code, out, err = await cli.run("create", "acct-rb", "--msisdn", "3392", "--msisdn", "3391")
    assert (code, out) == (1, "")
    assert err == (
        "create acct-rb: Result-Code 5004 DIAMETER_INVALID_AVP_VALUE: the Subscription-Id "
        "belongs to another account: 0:3391 is held by account acct-ra Failed-AVP "
        '{"Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": "3391"}]}\n'
    )
    code, obj = await cli.json("create", "acct-rb", "--msisdn", "3391")
    assert (code, obj["Result-Code"]) == (1, 5004)
    assert obj["Error-Message"].startswith("the Subscription-Id belongs to another account")
    assert obj["Failed-AVP"] == {
        "Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": "3391"}]
    }
    code, obj = await cli.json("get", "acct-rb")  # nothing was created
    assert (code, obj["Result-Code"], obj["Error-Message"]) == (
        1,
        5030,
        "no account has this Account-Id",
    )
    assert obj["Failed-AVP"] == {"Account-Id": "acct-rb"}
    code, _, err = await cli.run("debit", "acct-ra", "1", "--operation-id", "d-7")
    assert code == 1 and err == (
        "debit acct-ra: Result-Code 4012 DIAMETER_CREDIT_LIMIT_REACHED: not enough credit for "
        'the Amount Failed-AVP {"Amount": 1000000} (operation id d-7)\n'
    )
    code, _, err = await cli.run("credit", "acct-ra", "2", "--operation-id", "d-7")
    assert (
        code == 1
        and (
            ": the Operation-Id names another operation "
            'Failed-AVP {"Operation-Id": "d-7"} (operation id d-7)\n'
        )
        in err
    )


async def test_a_local_refusal_prints_no_operation_id(cli: Cli) -> None:
    """Issue 12: `ocs account credit X -5` printed an operation id, then refused locally; an
    id is printed only for a request that is sent (the one a retry needs)."""
    code, out, err = await cli.run("credit", "acct-rc", "-5")
    assert (code, out, err) == (2, "", "error: negative amount '-5'\n")
    code, out, err = await cli.run("debit", "acct-rc", "0")
    assert (code, out, err) == (2, "", "error: the amount must be positive, not '0'\n")


@pytest.fixture
def no_client_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No client settings from this machine: an empty XDG_CONFIG_HOME, no OCS_ variables."""
    for name in ("OCS_CLIENT_CONFIG", "OCS_SERVER", "OCS_ORIGIN_HOST", "OCS_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


async def account(*args: str) -> int:
    code: int = await asyncio.to_thread(main, ["account", *args])
    return code


async def test_the_server_address_from_the_environment_or_a_client_file(
    server: AppProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_client_config: Path,
) -> None:
    """Issue 12: every `ocs account` call on a non-default port repeated --server. The address
    (and Origin-Host, TLS options) come from OCS_SERVER, ... or a client file; the command
    line overrides the environment, which overrides the file."""
    good = f"127.0.0.1:{server.port}"
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        bad = f"127.0.0.1:{sock.getsockname()[1]}"
    assert await account("create", "acct-ca", "--server", good) == 0

    # the user's client file ($XDG_CONFIG_HOME/ocs/client.toml)
    (no_client_config / "ocs").mkdir(parents=True)
    (no_client_config / "ocs" / "client.toml").write_text(
        f'server = "{good}"\norigin-host = "admin-from-file.test.local"\n'
    )
    capsys.readouterr()
    assert await account("get", "acct-ca", "--json") == 0
    assert json.loads(capsys.readouterr().out)["Result-Code"] == 2001

    monkeypatch.setenv("OCS_SERVER", bad)  # the environment overrides the file
    assert await account("get", "acct-ca", "--timeout", "2") == 2
    assert f"cannot connect to {bad}" in capsys.readouterr().err
    assert await account("get", "acct-ca", "--server", good) == 0  # the line overrides both

    other = no_client_config / "other.toml"  # OCS_CLIENT_CONFIG names another file
    other.write_text(f'server = "{good}"\n')
    monkeypatch.delenv("OCS_SERVER")
    monkeypatch.setenv("OCS_CLIENT_CONFIG", str(other))
    assert await account("credit", "acct-ca", "1", "--operation-id", "env-1") == 0


@pytest.mark.parametrize(
    ("variable", "value", "file", "error"),
    [
        ("OCS_SERVER", "nowhere", "", "OCS_SERVER: expected HOST:PORT, got 'nowhere'"),
        ("OCS_SERVER", "127.0.0.1:0", "", "OCS_SERVER: expected HOST:PORT, got '127.0.0.1:0'"),
        (None, None, 'sever = "x:1"\n', ": sever: unknown key (did you mean 'server'?)"),
        (None, None, "server = 3868\n", ": server: expected HOST:PORT, got '3868'"),
        (None, None, "json = true\n", ": json: unknown key"),  # not a connection setting
    ],
)
async def test_wrong_client_settings_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_client_config: Path,
    variable: str | None,
    value: str | None,
    file: str,
    error: str,
) -> None:
    if variable is not None and value is not None:
        monkeypatch.setenv(variable, value)
    if file:
        path = no_client_config / "client.toml"
        path.parent.mkdir(parents=True)
        path.write_text(file)
        monkeypatch.setenv("OCS_CLIENT_CONFIG", str(path))
        error = f"{path}{error}"
    with pytest.raises(SystemExit) as exited:
        await account("get", "acct-x")
    assert exited.value.code == 2
    assert f"error: {error}" in capsys.readouterr().err
