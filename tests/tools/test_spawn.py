"""`ocs.tools.spawn`: start a server on a free port, wait for it, stop it; and the failures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ocs.edge.client import Client
from ocs.tools.spawn import ServerExited, SpawnedServer, echo_argv, serve_argv
from protocol.messages import DWR


def test_argv_of_serve_and_echo(tmp_path: Path) -> None:
    argv = serve_argv("--catalog", "c.toml", data_dir=tmp_path / "d", log_json=True)
    assert argv == [
        sys.executable,
        "-m",
        "ocs",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "d"),
        "--log-json",
        "--catalog",
        "c.toml",
    ]
    assert serve_argv(python=["py", "-X", "dev"])[:4] == ["py", "-X", "dev", "-m"]
    assert echo_argv() == [sys.executable, "-m", "ocs.tools.echo", "--listen", "127.0.0.1:0"]
    server = SpawnedServer(echo_argv(), tmp_path, name="e")
    assert server.argv[-2:] == ["--ready-file", str(tmp_path / "e.port")]
    assert server.log_path == tmp_path / "e.log"
    assert server.stop() is None and server.kill() is None  # never started: nothing to do
    with pytest.raises(RuntimeError, match="never started"):
        server.terminate()


async def test_echo_starts_answers_and_stops(tmp_path: Path) -> None:
    with SpawnedServer(echo_argv(), tmp_path, name="echo", ready_timeout=20.0) as echo:
        assert echo.running and echo.port > 0
        client = await Client.connect(port=echo.port, origin_host="p.test.local")
        answer = await client.request(DWR(origin_host="p.test.local", origin_realm="test.local"))
        assert answer.result_code == 2001
        await client.close()
        assert echo.stop() == 0
    assert not echo.running


async def test_serve_restarts_on_the_same_data_dir(tmp_path: Path) -> None:
    server = SpawnedServer(serve_argv(data_dir=tmp_path / "data", log_json=True), tmp_path)
    with server:
        first = server.port
        client = await Client.connect(port=first, origin_host="p.test.local")
        answer = await client.request(DWR(origin_host="p.test.local", origin_realm="test.local"))
        assert answer.result_code == 2001 and answer.origin_host == "ocs.test.local"
        assert server.kill() == -9  # a crash
        await client.wait_closed()
        server.start()  # the same command line: the same data directory, a new port
        assert server.running and server.port > 0
        assert server.terminate() == 0
    log = server.log_text()
    assert log.count('"event": "recovery.done"') == 2  # both runs logged, JSON


def test_context_exit_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(KeyError), SpawnedServer(echo_argv(), tmp_path) as echo:
        raise KeyError("boom")
    assert echo.proc is not None and echo.proc.returncode == 0


def test_exit_before_ready_raises_with_the_log_tail(tmp_path: Path) -> None:
    server = SpawnedServer(serve_argv("--no-such-option", data_dir=tmp_path / "d"), tmp_path)
    with pytest.raises(ServerExited, match="exited with 2 before it was ready") as info:
        server.start()
    assert info.value.returncode == 2
    assert "unrecognized arguments: --no-such-option" in str(info.value)
    assert str(server.log_path) in str(info.value)
    assert not server.running


def test_not_ready_in_time_is_killed(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    server = SpawnedServer(argv, tmp_path, name="sleeper")
    with pytest.raises(TimeoutError, match="sleeper did not become ready"):
        server.start(timeout=0.5)
    assert server.proc is not None and server.proc.returncode == -9
