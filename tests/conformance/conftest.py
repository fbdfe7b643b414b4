"""Fixtures of the conformance suite: `ocs serve` subprocesses on 127.0.0.1 (always stopped)
and peers speaking raw frames to them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.wire import BINARY, ENCODINGS, MSGPACK, Peer
from tests.server.process import ServerProcess

Connect = Callable[..., Awaitable[Peer]]
Spawn = Callable[..., ServerProcess]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test whose peers come from `connect` runs once per body encoding (WIRE.md 1.1):
    MessagePack (0x4D) and standard Diameter AVPs (0x01)."""
    if "encoding" in metafunc.fixturenames:
        metafunc.parametrize("encoding", list(ENCODINGS), scope="function")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test or case marked `msgpack_only` is not run for the binary encoding, one marked
    `binary_only` not for MessagePack."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        encoding = callspec.params.get("encoding") if callspec is not None else None
        only = {"msgpack_only": MSGPACK, "binary_only": BINARY}
        wrong = any(
            item.get_closest_marker(marker) is not None and encoding not in (None, allowed)
            for marker, allowed in only.items()
        )
        (dropped if wrong else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def stop(server: ServerProcess) -> None:
    """SIGTERM, and SIGKILL if that did not end it."""
    try:
        if server.proc is not None and server.proc.poll() is None:
            with contextlib.suppress(Exception):
                server.terminate()
    finally:
        server.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with the demo catalog, shared by the tests of a module (they use distinct
    Origin-Hosts, accounts and Session-Ids)."""
    srv = ServerProcess(tmp_path_factory.mktemp("conformance") / "data").start()
    try:
        yield srv
    finally:
        stop(srv)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Dedicated servers, for flags, timers and restarts: `spawn(*args, name="data")`.
    Starting the same `name` again reuses its data directory (a restart)."""
    servers: list[ServerProcess] = []

    def _spawn(*args: str, name: str = "data") -> ServerProcess:
        srv = ServerProcess(tmp_path / name, *args).start()
        servers.append(srv)
        return srv

    yield _spawn
    for srv in servers:
        stop(srv)


@pytest.fixture
def encoding(request: pytest.FixtureRequest) -> str:
    """The body encoding of the test's peers (parametrized by `pytest_generate_tests`)."""
    value = request.param
    assert isinstance(value, str)
    return value


@pytest.fixture
async def connect(encoding: str) -> AsyncIterator[Connect]:
    """`await connect(port, origin_host=None, cer=True, **kw)`: a peer speaking the test's
    `encoding` (unless `encoding=` is given), closed at the end."""
    peers: list[Peer] = []

    async def _connect(port: int, origin_host: str | None = None, **kw: Any) -> Peer:
        kw.setdefault("encoding", encoding)
        cer = kw.pop("cer", True)
        if cer:
            peer = await Peer.connect(port, origin_host, **kw)
        else:
            peer = await Peer.open(port, origin_host, **kw)
        peers.append(peer)
        return peer

    yield _connect
    for peer in peers:
        await peer.close()
