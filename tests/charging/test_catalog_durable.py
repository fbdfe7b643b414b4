"""The catalog in force is durable state (issue 12, item 1): journaled and in snapshots, kept by
a restart without `--catalog`, replaced by a different `--catalog` with a log line naming it,
the demo catalog only for a new data directory (with a warning); `ocs catalog show` and
`ocs catalog diff` ask a running server what is in force."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import msgspec
from structlog.testing import capture_logs

from ocs.cli.catalog import catalog_changes
from ocs.core.charging import ChargingCore, Input, InputKind, catalog_digest
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER, CoreState
from ocs.core.ledger import Ledger
from ocs.edge.catalog_files import demo_catalog_text
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import (
    HEADER_LENGTH,
    MAX_ENCODABLE_LENGTH,
    AccountOperation,
    ApplicationId,
    CCRequestType,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.messages import AMA, AMR, CCA, CCR, MsccRequest, ServiceUnit, SubscriptionId
from rating import parse_catalog
from tests.server.process import ServerProcess

HOST = "durable-catalog.test.local"
SUB = (
    SubscriptionId(
        subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data="4915550077"
    ),
)
DEMO = demo_catalog_text()
# the operator's catalog: the demo with an SMS at 0.08 EUR (the demo's is 0.10)
OPERATOR = DEMO.replace('name = "demo"', 'name = "operator"', 1).replace(
    'price = "0.10"', 'price = "0.08"', 1
)
SMS_DEMO = 100_000
SMS_OPERATOR = 80_000


def _amr(op: AccountOperation, **fields: Any) -> AMR:
    return AMR(
        origin_host=HOST,
        origin_realm="test.local",
        account_operation=op,
        account_id=fields.pop("account_id", "durable-1"),
        **fields,
    )


async def _sms(port: int, number: int, *, create: bool = False) -> int:
    """Debit one SMS (creating the account with 1 EUR first); the balance after it."""
    client = await Client.connect(
        port=port,
        origin_host=HOST,
        applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
    )
    try:
        if create:
            created = await client.request(
                _amr(
                    AccountOperation.CREATE,
                    amount=1_000_000,
                    currency_code=978,
                    subscription_id=SUB,
                )
            )
            assert isinstance(created, AMA) and created.result_code == 2001, created
        event = await client.request(
            CCR(
                session_id=f"{HOST};sms;{number}",
                origin_host=HOST,
                origin_realm="test.local",
                destination_realm="test.local",
                auth_application_id=4,
                service_context_id="32274@3gpp.org",
                cc_request_type=CCRequestType.EVENT,
                cc_request_number=0,
                subscription_id=SUB,
                requested_action=RequestedAction.DIRECT_DEBITING,
                multiple_services_credit_control=(
                    MsccRequest(
                        rating_group=30,
                        requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                    ),
                ),
            )
        )
        assert isinstance(event, CCA) and event.result_code == 2001, event
        got = await client.request(_amr(AccountOperation.GET))
        assert isinstance(got, AMA) and got.account is not None
        return got.account.balance
    finally:
        await client.close()


def _events(log: str) -> list[dict[str, Any]]:
    """The JSON log lines of a server's log (other lines, e.g. a traceback, are skipped)."""
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


async def test_a_restart_without_catalog_keeps_the_operators_prices(tmp_path: Path) -> None:
    """The issue's example: started with the operator's catalog (SMS 0.08 EUR), restarted
    without `--catalog` (a forgotten flag), an SMS was charged the demo's 0.10. Now the
    catalog in force stays, and the start-up log names it."""
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    data = tmp_path / "data"
    first = ServerProcess(data, "--catalog", str(catalog), "--log-json").start()
    try:
        assert await _sms(first.port, 1, create=True) == 1_000_000 - SMS_OPERATOR
        assert first.terminate() == 0
    finally:
        first.kill()
    again = ServerProcess(data, "--log-json").start()  # no --catalog
    try:
        assert await _sms(again.port, 2) == 1_000_000 - 2 * SMS_OPERATOR
        # and after a crash (replay of the journal, no checkpoint at exit), too
        again.kill()
        again.start()
        assert await _sms(again.port, 3) == 1_000_000 - 3 * SMS_OPERATOR
        assert again.terminate() == 0
    finally:
        again.kill()
    events = _events(again.log_text())
    in_force = [e for e in events if e["event"] == "catalog.in_force"]
    assert in_force[0]["name"] == "operator"
    assert in_force[0]["digest"] == catalog_digest(OPERATOR)
    assert in_force[-1]["source"] == "data directory"
    assert not [e for e in events if e["event"] in ("catalog.demo", "catalog.replaced")]


def _open_close(config: NodeConfig) -> tuple[int, list[MutableMapping[str, Any]]]:
    """Open a node on `config` and close it at once: the journal's last LSN after the start
    (before the shutdown checkpoint) and what was logged."""

    async def run() -> int:
        node = await Node.open(ServerConfig(host="127.0.0.1", port=0), config)
        try:
            return node.store.journal.last_lsn
        finally:
            await node.close()

    with capture_logs() as logs:
        lsn = asyncio.run(run())
    return lsn, logs


def test_the_same_catalog_at_start_journals_nothing(tmp_path: Path) -> None:
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    config = NodeConfig(data_dir=tmp_path / "data", catalog=catalog, fork_checkpoints=False)
    first, _ = _open_close(config)
    assert first == 1  # the catalog, put in force in a new data directory
    again, logs = _open_close(config)
    assert again == first  # nothing journaled: the same catalog is in force already
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.in_force" and line["source"] == "data directory"
    assert line["name"] == "operator" and line["digest"] == catalog_digest(OPERATOR)


def test_a_different_catalog_replaces_it_with_a_log_line(tmp_path: Path) -> None:
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    config = NodeConfig(data_dir=tmp_path / "data", catalog=catalog, fork_checkpoints=False)
    first, logs = _open_close(config)
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.in_force" and line["source"] == "--catalog"
    assert line["file"] == str(catalog)
    cheaper = OPERATOR.replace('name = "operator"', 'name = "operator-2027"', 1)
    catalog.write_text(cheaper)
    again, logs = _open_close(config)
    assert again == first + 1  # one CATALOG input
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.replaced"
    assert line["name"] == "operator-2027" and line["digest"] == catalog_digest(cheaper)
    assert line["previous_name"] == "operator"
    assert line["previous_digest"] == catalog_digest(OPERATOR)
    assert line["file"] == str(catalog)


def test_the_demo_catalog_only_for_a_new_data_directory_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, logs = _open_close(NodeConfig(data_dir=data, fork_checkpoints=False))
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.demo" and line["log_level"] == "warning"
    assert line["name"] == "demo" and line["digest"] == catalog_digest(DEMO)
    # the demo in force is kept like any other: no warning again
    _, logs = _open_close(NodeConfig(data_dir=data, fork_checkpoints=False))
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.in_force" and line["name"] == "demo"
    # an operator's catalog replaces it, and a later start without --catalog keeps that one
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    _, logs = _open_close(NodeConfig(data_dir=data, catalog=catalog, fork_checkpoints=False))
    assert [e["event"] for e in logs if e["event"].startswith("catalog.")] == ["catalog.replaced"]
    _, logs = _open_close(NodeConfig(data_dir=data, fork_checkpoints=False))
    (line,) = [e for e in logs if e["event"].startswith("catalog.")]
    assert line["event"] == "catalog.in_force" and line["name"] == "operator"


async def test_a_replacing_catalog_at_start_reauthorises_open_grants_as_a_reload(
    tmp_path: Path,
) -> None:
    """`--catalog` that replaces the catalog in force treats open grants as SIGHUP does: a
    session holding a grant that the new catalog prices differently is re-authorised (RAR);
    at start-up no peer is connected yet, so it is logged as undeliverable."""
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    config = NodeConfig(data_dir=tmp_path / "data", catalog=catalog, fork_checkpoints=False)
    server_config = ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2)
    node = await Node.open(server_config, config)
    await node.start()
    client = await Client.connect(
        port=node.server.port,
        origin_host=HOST,
        applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
    )
    try:
        created = await client.request(
            _amr(AccountOperation.CREATE, amount=1_000_000, currency_code=978, subscription_id=SUB)
        )
        assert isinstance(created, AMA) and created.result_code == 2001
        opened = await client.request(
            CCR(
                session_id=f"{HOST};sms;open",
                origin_host=HOST,
                origin_realm="test.local",
                destination_realm="test.local",
                auth_application_id=4,
                service_context_id="32274@3gpp.org",
                cc_request_type=CCRequestType.INITIAL,
                cc_request_number=0,
                subscription_id=SUB,
                multiple_services_credit_control=(
                    MsccRequest(
                        rating_group=30,
                        requested_service_unit=ServiceUnit(cc_service_specific_units=1),
                    ),
                ),
            )
        )
        assert isinstance(opened, CCA) and opened.result_code == 2001
    finally:
        await client.close()
        await node.stop()
        await node.close()
    catalog.write_text(DEMO)  # the SMS back at 0.10: the open grant is priced differently
    with capture_logs() as logs:
        node = await Node.open(server_config, config)
        try:
            await node.drain()
        finally:
            await node.close()
    (replaced,) = [e for e in logs if e["event"] == "catalog.replaced"]
    assert replaced["sessions"] == 1 and replaced["name"] == "demo"
    (rar,) = [e for e in logs if e["event"] == "request.undeliverable"]
    assert rar["kind"] == "rar" and rar["session"] == f"{HOST};sms;open"
    assert rar["reason"] == "price change"


async def test_sighup_without_catalog_keeps_the_catalog_in_force(tmp_path: Path) -> None:
    """A server started without `--catalog` has no file to reload: SIGHUP used to put the
    demo catalog in force over the operator's."""
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    data = tmp_path / "data"
    config = NodeConfig(data_dir=data, catalog=catalog, fork_checkpoints=False)
    server_config = ServerConfig(host="127.0.0.1", port=0)
    node = await Node.open(server_config, config)
    await node.close()
    node = await Node.open(server_config, NodeConfig(data_dir=data, fork_checkpoints=False))
    try:
        with capture_logs() as logs:
            assert not node.reload_catalog()
        assert [e["event"] for e in logs] == ["catalog.reload_refused"]
        assert node.core.catalog.name == "operator"
    finally:
        await node.close()


# --- the core: since when, in snapshots --------------------------------------------------------


def test_the_catalog_and_since_when_are_in_the_snapshot() -> None:
    core = ChargingCore(Ledger(), DEMO)
    assert core.catalog_since_ms is None
    core.apply(Input(kind=InputKind.CATALOG, now_ms=1_700_000_000_123, body=OPERATOR.encode()))
    assert core.catalog_since_ms == 1_700_000_000_123
    restored = ChargingCore(Ledger(), DEMO)
    restored.restore(core.snapshot())
    assert restored.catalog_journaled
    assert restored.catalog_text == OPERATOR and restored.catalog.name == "operator"
    assert restored.catalog_since_ms == 1_700_000_000_123
    assert restored.catalog_digest == catalog_digest(OPERATOR)


def test_a_snapshot_of_an_earlier_build_restores_without_since() -> None:
    """A snapshot written before `catalog_since_ms` existed (same layout, one field fewer) is
    restored: the catalog it holds is in force, since when is unknown."""
    core = ChargingCore(Ledger(), DEMO)
    core.apply(Input(kind=InputKind.CATALOG, now_ms=1_700_000_000_000, body=OPERATOR.encode()))
    fields = msgspec.msgpack.decode(core.snapshot())
    assert len(fields) == len(CoreState.__struct_fields__)
    since = CoreState.__struct_fields__.index("catalog_since_ms")
    older = msgspec.msgpack.encode(fields[:since])  # as the previous build wrote it
    assert STATE_DECODER.decode(older).catalog_since_ms is None
    restored = ChargingCore(Ledger(), DEMO)
    restored.restore(older)
    assert restored.catalog.name == "operator" and restored.catalog_since_ms is None
    # and a build without the field reads this build's snapshot (it ignores the trailing one)
    kept = msgspec.structs.fields(CoreState)[:since]
    previous = msgspec.defstruct(
        "PreviousCoreState",
        [
            (f.name, f.type)
            if f.required
            else (f.name, f.type, f.default_factory())
            if f.default is msgspec.NODEFAULT
            else (f.name, f.type, f.default)
            for f in kept
        ],
        kw_only=True,
        array_like=True,
    )
    read = msgspec.msgpack.decode(STATE_ENCODER.encode(STATE_DECODER.decode(older)), type=previous)
    assert read.catalog_text == OPERATOR  # type: ignore[attr-defined]
    assert msgspec.msgpack.decode(core.snapshot(), type=previous).catalog_text == OPERATOR  # type: ignore[attr-defined]


def test_catalog_show_answers_the_catalog_in_force() -> None:
    core = ChargingCore(Ledger(), DEMO)
    core.apply(Input(kind=InputKind.CATALOG, now_ms=1_700_000_000_999, body=OPERATOR.encode()))
    amr = AMR(
        origin_host=HOST,
        origin_realm="test.local",
        account_operation=AccountOperation.CATALOG_SHOW,
        account_id="*",
    )
    result = core.handle_amr(1_700_000_001_000, HOST, 7, amr)
    answer = result.answer
    assert isinstance(answer, AMA) and answer.result_code == 2001 and answer.account is None
    assert answer.catalog is not None
    assert answer.catalog.catalog_name == "operator"
    assert answer.catalog.catalog_digest == catalog_digest(OPERATOR)
    assert answer.catalog.catalog_since == 1_700_000_000  # Time: whole seconds
    assert answer.catalog.catalog_source == OPERATOR
    wire = msgspec.msgpack.decode(result.body)
    assert set(wire["Catalog"]) == {
        "Catalog-Name",
        "Catalog-Digest",
        "Catalog-Since",
        "Catalog-Source",
    }
    # a retransmission (same End-to-End-Id) gets the same answer
    assert core.handle_amr(1_700_000_002_000, HOST, 7, amr).body == result.body


# --- the command line --------------------------------------------------------------------------


def _ocs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocs", *args], capture_output=True, text=True, timeout=60
    )


def test_catalog_show_and_diff_ask_the_running_server(tmp_path: Path) -> None:
    catalog = tmp_path / "operator.toml"
    catalog.write_text(OPERATOR)
    started = int(time.time())
    server = ServerProcess(tmp_path / "data", "--catalog", str(catalog)).start()
    try:
        address = f"127.0.0.1:{server.port}"
        shown = _ocs("catalog", "show", "--server", address, "--json")
        assert shown.returncode == 0, shown.stderr
        info = json.loads(shown.stdout)
        assert info["name"] == "operator" and info["digest"] == catalog_digest(OPERATOR)
        assert started - 1 <= info["since"] <= int(time.time())
        text = _ocs("catalog", "show", "--server", address)
        assert text.returncode == 0, text.stderr
        assert f"sha256 {catalog_digest(OPERATOR)}" in text.stdout
        assert "operator" in text.stdout
        source = _ocs("catalog", "show", "--server", address, "--source")
        assert source.stdout == OPERATOR
        # the address from the environment, as for `ocs account` (regression: only --server)
        env = {**os.environ, "OCS_SERVER": address, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
        env.pop("OCS_CLIENT_CONFIG", None)
        from_env = subprocess.run(
            [sys.executable, "-m", "ocs", "catalog", "show", "--json", "--timeout", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert from_env.returncode == 0, from_env.stderr
        assert json.loads(from_env.stdout)["digest"] == catalog_digest(OPERATOR)
        # the file in force: no difference
        same = _ocs("catalog", "diff", str(catalog), "--server", address)
        assert same.returncode == 0, same.stdout + same.stderr
        assert "no difference" in same.stdout
        # the demo file against it: the SMS price and the name, in currency units
        demo = tmp_path / "demo.toml"
        demo.write_text(DEMO)
        diff = _ocs("catalog", "diff", str(demo), "--server", address)
        assert diff.returncode == 1, diff.stdout + diff.stderr
        assert "~ rating group 30 price: 0.08 EUR per 1 unit -> 0.10 EUR per 1 unit" in (
            diff.stdout
        )
        assert "~ name: operator -> demo" in diff.stdout
        assert "2 changes" in diff.stdout
        as_json = json.loads(
            _ocs("catalog", "diff", str(demo), "--server", address, "--json").stdout
        )
        assert as_json["same"] is False
        assert {
            "what": "rating group 30 price",
            "in_force": "0.08 EUR per 1 unit",
            "file": "0.10 EUR per 1 unit",
        } in as_json["changes"]
        # an invalid file, and no server: exit 2
        bad = tmp_path / "bad.toml"
        bad.write_text("name = 1")
        assert _ocs("catalog", "diff", str(bad), "--server", address).returncode == 2
        assert server.terminate() == 0
    finally:
        server.kill()
    gone = _ocs("catalog", "show", "--server", address, "--timeout", "2")
    assert gone.returncode == 2 and "error:" in gone.stderr


def test_catalog_show_leaves_out_a_text_too_long_for_one_message() -> None:
    """A catalog whose text would not fit the 24-bit Message-Length is shown without it (its
    name, digest and since still), rather than with an answer that cannot be framed."""
    huge = OPERATOR + "# " + "x" * MAX_ENCODABLE_LENGTH + "\n"
    core = ChargingCore(Ledger(), DEMO)
    core.apply(Input(kind=InputKind.CATALOG, now_ms=1_700_000_000_000, body=huge.encode()))
    amr = AMR(
        origin_host=HOST,
        origin_realm="test.local",
        account_operation=AccountOperation.CATALOG_SHOW,
        account_id="*",
    )
    result = core.handle_amr(1_700_000_001_000, HOST, 8, amr)
    assert HEADER_LENGTH + len(result.body) <= MAX_ENCODABLE_LENGTH
    answer = result.answer
    assert isinstance(answer, AMA) and answer.catalog is not None
    assert answer.catalog.catalog_source is None
    assert answer.catalog.catalog_digest == catalog_digest(huge)
    assert answer.catalog.catalog_name == "operator"


def test_catalog_changes_name_prices_in_currency_units() -> None:
    """`ocs catalog diff`'s comparison: one line per thing that changes, money in EUR."""
    new = (
        DEMO.replace('setup_fee = "0.05"', 'setup_fee = "0.075"', 1)
        .replace('from = "1 GiB"', 'from = "2 GiB"', 1)
        .replace('usage_thresholds = ["5.00", "10.00", "20.00"]', 'usage_thresholds = ["5"]', 1)
        .replace('quantum = "10 MiB"', 'quantum = "20 MiB"', 1)
    )
    changes = list(catalog_changes(parse_catalog(DEMO), parse_catalog(new)))
    assert changes == [
        ("rating group 10 tier from 1 GiB", "x 1/2", None),
        ("rating group 10 grant quantum", "10 MiB", "20 MiB"),
        ("rating group 40 setup fee", "0.05 EUR", "0.075 EUR"),
        ("account usage thresholds", "5.00 EUR, 10.00 EUR, 20.00 EUR", "5.00 EUR"),
        ("rating group 10 tier from 2 GiB", None, "x 1/2"),
    ]
    assert list(catalog_changes(parse_catalog(DEMO), parse_catalog(DEMO + "\n# a comment\n"))) == []
