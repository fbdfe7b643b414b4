"""The package as an operator installs it: a wheel built from the tracked sources, installed
into a fresh virtual environment away from the source tree, runs the `ocs` command and charges.

A missing package or data file, an import that only works from the source tree, or a command
module that fails to import shows here (an editable install hides all three)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from protocol.codes import CCRequestType
from tests.conftest import ROOT
from tests.durability.util import connect_cc, msisdn, next_e2e, sms_ccr

SMS_PRICE = 100_000  # the demo catalog's SMS, 0.10 EUR in micro-units


@dataclass(frozen=True, slots=True)
class Installed:
    venv: Path
    home: Path  # a working directory with no source tree in sight

    @property
    def ocs(self) -> str:
        return str(self.venv / "bin" / "ocs")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.ocs, *args],
            cwd=self.home,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def clean_env() -> dict[str, str]:
    """The environment without what points Python at this tree."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def tracked_sources() -> list[str]:
    """What a clean clone holds: tracked files, and new ones not ignored (during development)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in tracked_sources():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), "."],
        cwd=source,
        env=clean_env(),
        check=True,
        timeout=540,
    )
    (wheel,) = (work / "dist").glob("ocs-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        cwd=work,
        env=clean_env(),
        check=True,
        timeout=300,
    )
    home = work / "home"
    home.mkdir()
    yield Installed(venv=venv, home=home)


def test_the_command_runs_from_the_wheel(installed: Installed) -> None:
    for args in (["--help"], ["serve", "--help"], ["account", "--help"], ["sim", "--help"]):
        done = installed.run(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "usage: ocs" in done.stdout
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.strip() == "ocs 0.1.0", version


def test_the_modules_come_from_the_wheel_not_the_tree(installed: Installed) -> None:
    probe = (
        "import ocs.node, ocs.core.charging, rating.engine, protocol.codec, ocs.edge.catalog_files"
        " as c; print(ocs.node.__file__); print(ocs.core.charging.__file__);"
        " print(rating.engine.__file__); print(len(c.demo_catalog_text()))"
    )
    done = subprocess.run(
        [installed.python, "-c", probe],
        cwd=installed.home,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    node, charging, engine, catalog_chars = done.stdout.split()
    site = str(installed.venv)
    assert all(path.startswith(site) for path in (node, charging, engine)), done.stdout
    assert int(catalog_chars) > 0  # the demo catalog is package data
    # the default build compiles the core and rating (mypyc); OCS_PURE=1 leaves them Python
    compiled = os.environ.get("OCS_PURE", "").strip() in ("", "0")
    assert charging.endswith(".so") == compiled and engine.endswith(".so") == compiled


async def test_a_charging_exchange_with_the_installed_server(installed: Installed) -> None:
    data_dir = installed.home / "data"
    ready = installed.home / "ready"
    serve = ("serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--log-json")
    server = subprocess.Popen(
        [installed.ocs, *serve, "--ready-file", str(ready)],
        cwd=installed.home,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the installed server did not start"
            time.sleep(0.05)
        address = f"127.0.0.1:{ready.read_text()}"
        created = installed.run(
            "account", "create", "acct-1", "--msisdn", msisdn("acct-1"), "--balance", "5",
            "--server", address, "--json",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        client = await connect_cc(int(ready.read_text()), "smsc.test.local")
        try:
            for kind, number, used in (
                (CCRequestType.INITIAL, 0, None),
                (CCRequestType.TERMINATION, 1, 1),
            ):
                ccr = sms_ccr(
                    "smsc.test.local", "smsc.test.local;w1", kind, number,
                    account_id="acct-1", used=used,
                )  # fmt: skip
                answer = await client.request(ccr, end_to_end=next_e2e())
                assert answer.result_code == 2001, answer
        finally:
            await client.close()
        shown = installed.run("account", "get", "acct-1", "--server", address, "--json")
        assert shown.returncode == 0, shown.stderr
        account = json.loads(shown.stdout)["Account"]
        assert account["Balance"] == 5_000_000 - SMS_PRICE, account
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    records = [
        json.loads(line)
        for path in sorted((data_dir / "cdr").iterdir())
        for line in path.read_text().splitlines()
    ]
    assert [r["charge"] for r in records] == [SMS_PRICE]
