"""`ocs sim upf|scp --encoding diameter`: the simulators over standard Diameter bodies (WIRE.md
1.1) against a real server on 127.0.0.1, reconciled with its CDRs by `ocs reconcile`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ocs.cli.main import main
from ocs.edge.client import Client
from protocol.codes import VERSION_DIAMETER
from tests.server.process import ServerProcess


def test_simulators_over_binary_bodies_reconcile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    encodings: list[int] = []
    connect = Client.connect.__func__  # type: ignore[attr-defined]

    async def recording(cls: type[Client], *args: Any, **kw: Any) -> Client:
        encodings.append(kw.get("encoding", -1))
        client: Client = await connect(cls, *args, **kw)
        return client

    monkeypatch.setattr(Client, "connect", classmethod(recording))
    data = tmp_path / "data"
    upf_log, scp_log = tmp_path / "upf.jsonl", tmp_path / "scp.jsonl"
    server = ServerProcess(data).start()
    try:
        common = ["--server", f"127.0.0.1:{server.port}", "--subscribers", "3", "--seed", "5"]
        common += ["--encoding", "diameter"]
        upf = ["--duration", "1.5", "--speed", "500", "--usage-log", str(upf_log)]
        assert main(["sim", "upf", *common, *upf]) == 0
        upf_out = capsys.readouterr().out
        scp = ["--duration", "1.5", "--speed", "200", "--usage-log", str(scp_log), "--calls", "3"]
        assert main(["sim", "scp", *common, *scp, "--sms-rate", "0.2"]) == 0
        scp_out = capsys.readouterr().out
        assert server.terminate() == 0
    finally:
        server.kill()

    assert encodings and set(encodings) == {VERSION_DIAMETER}
    assert "protocol errors 0" in upf_out and "protocol errors 0" in scp_out
    assert "INITIAL" in scp_out
    argv = ["reconcile", "--usage-log", str(upf_log), str(scp_log), "--data-dir", str(data)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("no difference")
    money = re.search(r"money client/CDRs: (\S+)/(\S+) over (\d+) sessions and events", out)
    assert money is not None, out
    assert money[1] == money[2] and money[1] != "0.00" and int(money[3]) > 0


def test_encoding_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sim", "upf", "--encoding", "xml"])
    assert info.value.code == 2
    assert "--encoding" in capsys.readouterr().err
