"""`ocs serve` as an operator runs it (WIRE.md section 10)."""

from __future__ import annotations

from pathlib import Path

from ocs.edge.client import Client
from protocol.messages import DWR
from tests.server.process import ServerProcess


async def test_serve_answers_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        client = await Client.connect(port=server.port, origin_host="p.test.local")
        answer = await client.request(DWR(origin_host="p.test.local", origin_realm="test.local"))
        assert answer.result_code == 2001 and answer.origin_host == "ocs.test.local"
        code = server.terminate()
        await client.wait_closed()  # the server said DPR and closed
        assert code == 0
    finally:
        server.kill()
