"""`ocs sim upf`, `ocs sim scp` and `ocs reconcile` as an operator runs them, against `ocs serve`
in a subprocess."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ocs.cli.main import main
from tests.server.process import ServerProcess


def test_simulators_and_reconcile_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    upf_log, scp_log = tmp_path / "upf.jsonl", tmp_path / "scp.jsonl"
    server = ServerProcess(data).start()
    try:
        common = ["--server", f"127.0.0.1:{server.port}", "--subscribers", "3", "--seed", "4"]
        upf = ["--duration", "1.5", "--speed", "500", "--usage-log", str(upf_log)]
        code = main(["sim", "upf", *common, *upf, "--balance", "2.5"])
        upf_out = capsys.readouterr().out
        assert code == 0, upf_out
        scp = ["--duration", "1.5", "--speed", "200", "--usage-log", str(scp_log), "--calls", "3"]
        code = main(["sim", "scp", *common, *scp, "--sms-rate", "0.2", "--failure-rate", "0.2"])
        scp_out = capsys.readouterr().out
        assert code == 0, scp_out
        assert server.terminate() == 0
    finally:
        server.kill()

    assert "ocs sim upf: 3 subscribers" in upf_out and "balance 2.500000 each" in upf_out
    assert "protocol errors 0" in upf_out and "protocol errors 0" in scp_out
    assert "ocs sim scp: 3 subscribers" in scp_out and "INITIAL" in scp_out

    argv = ["reconcile", "--usage-log", str(upf_log), str(scp_log), "--data-dir", str(data)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "upf.sim.test.local" in out and "scp.sim.test.local" in out
    assert out.rstrip().endswith("no difference")
    money = re.search(r"money client/CDRs: (\S+)/(\S+) over (\d+) sessions and events", out)
    assert money is not None, out
    assert money[1] == money[2] and money[1] != "0.00" and int(money[3]) > 0
    assert "per subscriber (client / CDRs):" in out and "<>" not in out

    # every CDR charge multiplied by ten: the units still agree, the money does not
    for path in (data / "cdr").iterdir():
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record in records:
            record["charge"] *= 10
            for usage in record["listOfMultipleUnitUsage"]:
                for container in usage["usedUnitContainers"]:
                    container["charge"] *= 10
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "client cost" in out and "CDRs charge" in out and "<>" in out
    assert "difference(s):" in out and "no difference" not in out


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["sim", "upf", "--balance", "0.0000001"],
        ["sim", "upf", "--server", "nowhere"],
        ["sim", "scp", "--failure-rate", "2"],
        ["sim", "upf", "--speed", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_no_server_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["sim", "upf", "--server", f"127.0.0.1:{port}", "--connect-timeout", "0.3"]
    assert main([*argv, "--usage-log", str(tmp_path / "u.jsonl")]) == 2
    assert "cannot connect" in capsys.readouterr().err
