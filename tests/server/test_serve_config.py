"""`ocs serve --config FILE.toml` (issue 12, item 6): every serve option is a key of the file,
read through the option's own argparse definition; the command line overrides the file; a
wrong file is refused with its name and the key path, as one `startup.failed` event (exit
status 2) before anything is touched."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocs.cli.config import options
from ocs.cli.main import build_parser
from ocs.startup import ExitStatus
from tests.conftest import ROOT

# one value of each serve option, in the file and on the command line
SAMPLE: dict[str, tuple[object, list[str]]] = {
    "listen": ("127.0.0.1:3999", ["--listen", "127.0.0.1:3999"]),
    "data-dir": ("/srv/ocs", ["--data-dir", "/srv/ocs"]),
    "catalog": ("/etc/ocs/catalog.toml", ["--catalog", "/etc/ocs/catalog.toml"]),
    "origin-host": ("ocs1.op.net", ["--origin-host", "ocs1.op.net"]),
    "origin-realm": ("op.net", ["--origin-realm", "op.net"]),
    "peer": (
        ["pgw1.op.net=cc@10.0.0.0/8", "ops=admin"],
        ["--peer", "pgw1.op.net=cc@10.0.0.0/8", "--peer", "ops=admin"],
    ),
    "watchdog": (20, ["--watchdog", "20"]),
    "cer-timeout": (2.5, ["--cer-timeout", "2.5"]),
    "max-pending": (64, ["--max-pending", "64"]),
    "max-connections": (1000, ["--max-connections", "1000"]),
    "max-connections-per-peer": (8, ["--max-connections-per-peer", "8"]),
    "max-unopened-connections": (50, ["--max-unopened-connections", "50"]),
    "output-high-water": (65536, ["--output-high-water", "65536"]),
    "sync-interval-ms": (2, ["--sync-interval-ms", "2"]),
    "checkpoint-records": (5000, ["--checkpoint-records", "5000"]),
    "no-fork-checkpoints": (True, ["--no-fork-checkpoints"]),
    "cdr-rotate-bytes": (1024, ["--cdr-rotate-bytes", "1024"]),
    "cdr-rotate-seconds": (60, ["--cdr-rotate-seconds", "60"]),
    "tls-cert": ("/etc/ocs/c.pem", ["--tls-cert", "/etc/ocs/c.pem"]),
    "tls-key": ("/etc/ocs/c.key", ["--tls-key", "/etc/ocs/c.key"]),
    "tls-client-ca": ("/etc/ocs/ca.pem", ["--tls-client-ca", "/etc/ocs/ca.pem"]),
    "tls-require-client-cert": (True, ["--tls-require-client-cert"]),
    "refund-window-s": (3600, ["--refund-window-s", "3600"]),
    "history-limit": (64, ["--history-limit", "64"]),
    "log-json": (True, ["--log-json"]),
    "log-level": ("debug", ["--log-level", "debug"]),
    "ready-file": ("/run/ocs.port", ["--ready-file", "/run/ocs.port"]),
    "debug": (True, ["--debug"]),
}


def toml(table: dict[str, Any]) -> str:
    """A flat TOML table (JSON's strings, numbers, booleans and arrays are TOML's)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


def parse(argv: list[str]) -> dict[str, Any]:
    """The namespace `ocs` runs `argv` with (as `ocs.cli.main.main` builds it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args = args.settings(parser, argv, args)
    found = dict(vars(args))
    for key in ("config", "settings", "func"):
        found.pop(key, None)
    return found


def serve_leaf() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    leaf: argparse.ArgumentParser = sub.choices["serve"]
    return leaf


def test_every_serve_option_is_a_key() -> None:
    """Read from the argparse definitions: the keys are the long options, but --help and
    --config (so an option added to `ocs serve` is a key the day it is added)."""
    keys = set(options(serve_leaf()))
    flags = {
        flag[2:]
        for action in serve_leaf()._actions
        for flag in action.option_strings
        if flag.startswith("--")
    }
    assert keys == flags - {"help", "config"}
    assert set(SAMPLE) <= keys


def test_a_file_gives_what_the_command_line_gives(tmp_path: Path) -> None:
    file = tmp_path / "ocs.toml"
    file.write_text(toml({k: v for k, (v, _) in SAMPLE.items()}))
    from_file = parse(["serve", "--config", str(file)])
    from_line = parse(["serve", *(arg for _, args in SAMPLE.values() for arg in args)])
    assert from_file == from_line
    assert from_file["peer"][0][0] == "pgw1.op.net" and from_file["fork_checkpoints"] is False
    assert "config_error" not in from_file


def test_the_command_line_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "ocs.toml"
    file.write_text(
        toml({"watchdog": 20, "peer": ["a.test", "b.test"], "log-level": "debug", "debug": True})
    )
    got = parse(["serve", "--config", str(file), "--watchdog", "5", "--peer", "c.test"])
    assert got["watchdog"] == 5.0  # the line's
    assert [host for host, _ in got["peer"]] == ["c.test"]  # replaced, not appended to
    assert got["log_level"] == "debug" and got["debug"] is True  # the file's
    # an explicit value equal to the built-in default still wins over the file
    got = parse(["serve", "--config", str(file), "--log-level", "info"])
    assert got["log_level"] == "info" and [h for h, _ in got["peer"]] == ["a.test", "b.test"]
    got = parse(["serve", "--watchdog", "7"])  # no file: as before
    assert got["watchdog"] == 7.0 and got["peer"] is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("lissten = '127.0.0.1:1'\n", "lissten: unknown key (did you mean 'listen'?)"),
        ("zzz = 1\n", "zzz: unknown key (the keys are the long options: catalog, "),
        ("watchdog = 'soon'\n", "watchdog: expected a number, got 'soon'"),
        ("max-pending = 0\n", "max-pending: expected a positive integer, got '0'"),
        ("listen = 3868\n", "listen: expected HOST:PORT, got '3868'"),
        ("log-json = 'yes'\n", "log-json: expected true or false, got 'yes'"),
        ("peer = 'a.test'\n", "peer: expected an array, got 'a.test'"),
        ("peer = ['a.test', 'b=voice']\n", "peer[1]: unknown application 'voice'"),
        ("peer = [['a']]\n", "peer[0]: expected a string or a number, got ['a']"),
        ("data-dir = 1.5\n", ""),  # a number is text for a path: accepted
        ("refund-window-s = 0\n", "refund-window-s: must be 1 .. 7776000 seconds"),
        ("[tls]\ncert = 'x'\n", "tls: expected a string or a number, got {'cert': 'x'}"),
        ("listen = \n", "invalid TOML: "),
    ],
)
def test_errors_name_the_file_and_the_key_path(tmp_path: Path, text: str, error: str) -> None:
    file = tmp_path / "ocs.toml"
    file.write_text(text)
    got = parse(["serve", "--config", str(file)]).get("config_error")
    if not error:
        assert got is None
        return
    if text.startswith("[tls]"):  # a table is no option: an unknown key
        error = "tls: unknown key"
    assert got is not None and got.startswith(f"{file}: {error}"), got


def test_a_wrong_file_is_one_startup_failed_event_in_the_files_log_format(
    tmp_path: Path,
) -> None:
    """The file asks for JSON logs and names a data directory: its error is reported as one
    JSON `startup.failed` event (exit status 2), nothing is created; a missing file too."""
    data = tmp_path / "data"
    file = tmp_path / "ocs.toml"
    file.write_text(toml({"log-json": True, "data-dir": str(data), "watchdog": "soon"}))
    argv = [sys.executable, "-m", "ocs", "serve", "--config", str(file), "--log-json"]
    for config in (file, tmp_path / "missing.toml"):
        argv[-2] = str(config)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == ExitStatus.USAGE, done.stderr
        (event,) = [json.loads(line) for line in done.stderr.splitlines()]
        assert event["event"] == "startup.failed" and event["cause"] == "configuration"
        assert event["error"].startswith(f"{file}: watchdog: ") or event["error"].startswith(
            f"cannot read {config}: No such file"
        )
        assert "data_dir" not in event
    assert not data.exists()


def test_a_file_configures_a_server_that_runs(tmp_path: Path) -> None:
    """A whole start from a file: its options are in force (the log format, the ready file,
    the data directory; the catalog is missing, so it stops there with its own status)."""
    data = tmp_path / "data"
    file = tmp_path / "ocs.toml"
    file.write_text(
        toml(
            {
                "listen": "127.0.0.1:0",
                "data-dir": str(data),
                "log-json": True,
                "catalog": str(tmp_path / "none.toml"),
            }
        )
    )
    argv = [sys.executable, "-m", "ocs", "serve", "--config", str(file)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == ExitStatus.CONFIG, done.stderr
    (event,) = [json.loads(line) for line in done.stderr.splitlines()]  # JSON: from the file
    assert event["cause"] == "catalog" and event["data_dir"] == str(data)
    assert str(tmp_path / "none.toml") in event["error"]


def test_simulators_read_the_server_address_but_not_the_origin_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`ocs sim` connects where OCS_SERVER (or the client file) says; its Origin-Host is the
    simulated element's, never the operator's OCS_ORIGIN_HOST."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("OCS_CLIENT_CONFIG", raising=False)
    monkeypatch.setenv("OCS_SERVER", "127.0.0.1:4000")
    monkeypatch.setenv("OCS_ORIGIN_HOST", "ocs-admin.ops1")
    got = parse(["sim", "upf"])
    assert got["server"] == ("127.0.0.1", 4000) and got["origin_host"] == "upf.sim.test.local"
    assert parse(["sim", "scp", "--server", "127.0.0.1:4001"])["server"] == ("127.0.0.1", 4001)
