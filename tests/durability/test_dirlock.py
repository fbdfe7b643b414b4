"""One data directory, one server: a second server on it fails to start with a clear error,
and the lock goes away with the process however it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocs.edge.journal import DataDirLockedError
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from tests.durability.util import AppProcess, connect_admin, create_account, get_account


async def test_second_server_on_the_same_data_dir_fails_to_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = AppProcess(data_dir, name="first")
    second = AppProcess(data_dir, name="second")
    try:
        first.start()
        client = await connect_admin(first.port)
        await create_account(client, "acct-1", 1_000_000)
        await client.close()
        with pytest.raises(RuntimeError, match="exited with 5"):  # ExitStatus.LOCKED
            second.start()
        log = second.log_text()
        assert '"event": "startup.failed"' in log
        assert f"data directory {data_dir} is in use by another server" in log
        assert first.proc is not None and f"(pid {first.proc.pid})" in log
        assert "recovery.done" not in log  # it read nothing
        # the first one is unharmed
        client = await connect_admin(first.port)
        assert (await get_account(client, "acct-1")).balance == 1_000_000
        await client.close()
        first.kill()  # SIGKILL: the kernel drops the lock with the process
        second.start()
        client = await connect_admin(second.port)
        assert (await get_account(client, "acct-1")).balance == 1_000_000
        await client.close()
        assert second.terminate() == 0
    finally:
        first.kill()
        second.kill()


async def test_second_app_in_the_same_process_is_refused(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "data")
    server_config = ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2)
    first = await Node.open(server_config, config)
    try:
        with pytest.raises(DataDirLockedError, match="is in use by another server"):
            await Node.open(server_config, config)
    finally:
        await first.close()
    third = await Node.open(server_config, config)  # released by close()
    await third.close()
