"""Clear start-up failures (issue 12, item 3): `ocs serve`, run as a process, exits with the
documented status of each cause (docs/operations.md, *Exit status*) after exactly one
`startup.failed` event, prints no traceback unless `--debug`, keeps every line of a JSON log
JSON, and creates nothing on disk when the address, the configuration or the catalog is at
fault."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ocs.edge.journal import DirLock
from ocs.startup import ExitStatus
from ocs.tools.spawn import serve_argv
from tests.conftest import ROOT


class Run:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.returncode = done.returncode
        self.stderr = done.stderr
        self.stdout = done.stdout
        # every line is JSON (json.loads raises otherwise)
        self.events: list[dict[str, Any]] = [json.loads(x) for x in done.stderr.splitlines()]

    def failed(self) -> dict[str, Any]:
        """The one startup.failed event."""
        (event,) = [e for e in self.events if e["event"] == "startup.failed"]
        assert event["level"] == "critical"
        return event


def serve(
    data_dir: Path, *extra: str, listen: str = "127.0.0.1:0", wrap: Sequence[str] = ()
) -> Run:
    argv = [*wrap, *serve_argv(*extra, data_dir=data_dir, listen=listen, log_json=True)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    return Run(done)


def assert_failed(run: Run, status: ExitStatus, cause: str) -> dict[str, Any]:
    assert run.returncode == status, run.stderr
    event = run.failed()
    assert event["cause"] == cause and event["exit_status"] == status
    assert "Traceback" not in run.stderr and "exception" not in event  # only with --debug
    assert run.stdout == ""
    return event


def test_a_port_in_use_is_refused_before_the_data_directory_is_created(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = serve(data, listen=f"127.0.0.1:{port}")
    event = assert_failed(run, ExitStatus.LISTEN, "listen")
    assert event["error"] == (
        f"cannot listen on 127.0.0.1:{port}: the address is already in use (another server on "
        "that port?)"
    )
    assert not data.exists()  # nothing created, nothing journaled
    assert [e["event"] for e in run.events] == ["startup.failed"]


def test_a_metrics_port_in_use_is_refused_before_the_data_directory_is_created(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = serve(data, "--metrics", f"127.0.0.1:{port}")
    event = assert_failed(run, ExitStatus.LISTEN, "listen")
    assert event["error"].startswith(f"cannot listen on 127.0.0.1:{port}: the address is already")
    assert not data.exists()


def test_an_address_of_another_machine_is_refused(tmp_path: Path) -> None:
    run = serve(tmp_path / "data", listen="192.0.2.1:3868")  # TEST-NET-1, never local
    event = assert_failed(run, ExitStatus.LISTEN, "listen")
    assert "not an address of this machine" in event["error"]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "No such file or directory"),
        ("not toml", "invalid TOML"),
        ("[catalog]\nname = 'x'\n", ""),  # valid TOML, not a catalog
    ],
)
def test_a_missing_or_invalid_catalog(tmp_path: Path, text: str | None, says: str) -> None:
    catalog = tmp_path / "catalog.toml"
    if text is not None:
        catalog.write_text(text)
    data = tmp_path / "data"
    run = serve(data, "--catalog", str(catalog))
    event = assert_failed(run, ExitStatus.CONFIG, "catalog")
    assert (
        event["error"].startswith(f"the catalog {catalog} cannot be used: ")
        and says in (event["error"])
    )
    assert not data.exists()


@pytest.mark.parametrize("under", [True, False])
def test_a_data_directory_that_cannot_be_created(tmp_path: Path, under: bool) -> None:
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data" if under else tmp_path / "file"
    run = serve(data)
    event = assert_failed(run, ExitStatus.DATA_DIR, "data-directory")
    assert event["error"] == (
        f"cannot use the data directory {data}: not a directory (a file is in the way)"
    )


def _read_only(directory: Path) -> list[str]:
    """A command prefix under which `directory` is read-only: chmod for a normal user; for
    root (who writes anyway) a read-only bind mount in a user and mount namespace."""
    if os.geteuid() != 0:
        for path in sorted(directory.rglob("*"), reverse=True):  # files, then their folders
            path.chmod(0o555 if path.is_dir() else 0o444)
        directory.chmod(0o555)
        return []
    unshare = shutil.which("unshare")
    probe = [
        "unshare",
        "-rm",
        "sh",
        "-c",
        f'mount --bind "{directory}" "{directory}" && '
        f'mount -o remount,bind,ro "{directory}" "{directory}" && exec "$@"',
        "sh",
    ]
    if unshare is None or subprocess.run([*probe, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without user namespaces: cannot make a read-only directory")
    return probe


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_data_directory(tmp_path: Path, existing: bool) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    data = parent / "data"
    if existing:  # a data directory a server used before, now read-only
        DirLock(data).release()
        (data / "journal").mkdir()
        wrap = _read_only(data)
    else:
        wrap = _read_only(parent)
    run = serve(data, wrap=wrap)
    event = assert_failed(run, ExitStatus.DATA_DIR, "data-directory")
    assert event["error"].startswith(f"cannot use the data directory {data}: ")
    assert "read-only file system" in event["error"] or "permission denied" in event["error"]


def test_a_locked_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with DirLock(data):
        before = sorted(p.name for p in data.iterdir())
        run = serve(data)
    event = assert_failed(run, ExitStatus.LOCKED, "data-directory-locked")
    assert f"data directory {data} is in use by another server" in event["error"]
    assert sorted(p.name for p in data.iterdir()) == before == ["LOCK"]


def test_debug_adds_the_traceback_to_the_one_event_and_json_stays_json(tmp_path: Path) -> None:
    run = serve(tmp_path / "data", "--catalog", str(tmp_path / "missing.toml"), "--debug")
    assert run.returncode == ExitStatus.CONFIG
    event = run.failed()  # every line parsed as JSON
    assert event["exception"].startswith("Traceback") and "CatalogError" in event["exception"]
    assert len(run.stderr.splitlines()) == 1


def test_a_duplicate_peer_is_a_usage_error_logged_as_startup_failed(tmp_path: Path) -> None:
    run = serve(tmp_path / "data", "--peer", "a.test", "--peer", "a.test=admin")
    event = assert_failed(run, ExitStatus.USAGE, "configuration")
    assert event["error"] == "--peer a.test is given twice"
    assert not (tmp_path / "data").exists()


def test_an_address_taken_after_the_check_fails_the_start_once(tmp_path: Path) -> None:
    """The race the check leaves (another process binds between the check and the listen):
    the start fails after recovery with the same cause and status, one event, no traceback."""
    code = (
        "import runpy, sys, ocs.cli.serve; "
        "ocs.cli.serve.check_listen = lambda host, port: None; "  # as if it had passed
        "sys.argv = ['ocs', *sys.argv[3:]]; "  # ['-c', '-m', 'ocs', 'serve', ...]
        "runpy.run_module('ocs', run_name='__main__', alter_sys=True)"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = serve_argv(data_dir=tmp_path / "d", listen=f"127.0.0.1:{port}", log_json=True)
        argv[:1] = [sys.executable, "-c", code]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    run = Run(done)
    event = assert_failed(run, ExitStatus.LISTEN, "listen")
    assert "already in use" in event["error"]
    assert [e["event"] for e in run.events][-1] == "app.closed"  # the node was closed


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["--bogus"], "ocs serve: unrecognized arguments: --bogus"),
        (["--max-pending", "0"], "ocs serve: argument --max-pending: expected a positive "),
    ],
)
def test_a_command_line_argparse_refuses_stays_json(
    tmp_path: Path, extra: list[str], error: str
) -> None:
    """With --log-json, a wrong command line is one JSON startup.failed (exit status 2), not
    argparse's usage text; without it, argparse's usage and error as usual."""
    run = serve(tmp_path / "data", *extra)
    assert run.returncode == ExitStatus.USAGE
    event = run.failed()
    assert event["cause"] == "configuration" and event["error"].startswith(error)
    assert len(run.events) == 1 and not (tmp_path / "data").exists()
    plain = [sys.executable, "-m", "ocs", "serve", *extra]
    done = subprocess.run(plain, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.startswith("usage: ocs serve ")
