"""The server tests' fixture: in-process servers on 127.0.0.1, stopped at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ocs.edge.server import ImmediateGate, Server, ServerConfig
from tests.server.helpers import ServerFactory


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """`await make_server(**config)`: a started `Server` (`handlers=`, `gate=` besides the
    `ServerConfig` fields; a short shutdown grace), stopped when the test ends."""
    servers: list[Server] = []

    async def make(**kw: Any) -> Server:
        handlers = kw.pop("handlers", {})
        gate = kw.pop("gate", None) or ImmediateGate()
        kw.setdefault("shutdown_grace_s", 0.2)
        srv = Server(ServerConfig(host="127.0.0.1", port=0, **kw), handlers=handlers, gate=gate)
        await srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()
