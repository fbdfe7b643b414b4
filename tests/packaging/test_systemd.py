"""The systemd units of contrib/systemd (docs/operations.md, "Deployment"): the page shows them
verbatim, `systemd-analyze verify` accepts them (skipped where it is not installed), and the
commands they run are command lines `ocs` accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocs.cli.main import build_parser

ROOT = Path(__file__).parents[2]
UNITS = ROOT / "contrib" / "systemd"
NAMES = ("ocs.service", "ocs-cdr-collect.service", "ocs-cdr-collect.timer")
INSTALLED = "/opt/ocs/bin/ocs"


def unit_text(name: str) -> str:
    return (UNITS / name).read_text()


def exec_lines(name: str, key: str) -> list[str]:
    """The values of ``key=`` in a unit, continuation lines joined."""
    text = unit_text(name).replace("\\\n", " ")
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@pytest.mark.parametrize("name", NAMES)
def test_docs_show_the_unit_verbatim(name: str) -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert f"```ini\n{unit_text(name)}```" in docs


def test_the_commands_are_ocs_command_lines() -> None:
    (serve,) = exec_lines("ocs.service", "ExecStart")
    argv = shlex.split(serve)
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert (args.command, str(args.data_dir), str(args.catalog)) == (
        "serve",
        "/var/lib/ocs",
        "/etc/ocs/catalog.toml",
    )
    assert args.log_json
    rotate = exec_lines("ocs-cdr-collect.service", "ExecStart")[0]
    argv = shlex.split(rotate.removeprefix("-"))
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.cdr_command, args.server) == ("cdr", "rotate", ("127.0.0.1", 3868))
    # the admin identity it uses is one the server's peer list allows to administer from there
    assert f"{args.origin_host}=admin@127.0.0.1" in serve


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    ocs = Path(sys.executable).parent / "ocs"  # the installed `ocs` stands in for /opt/ocs's
    if not ocs.exists():
        pytest.skip(f"no ocs script beside {sys.executable}")
    for name in NAMES:
        (tmp_path / name).write_text(unit_text(name).replace(INSTALLED, str(ocs)))
    result = subprocess.run(
        [analyze, "verify", *NAMES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # warnings (an unknown key, a bad value) do not change the exit status: none may name ours
    assert not [line for line in output.splitlines() if any(n in line for n in NAMES)], output
