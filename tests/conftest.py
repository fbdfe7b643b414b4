"""Shared fixtures: the spec's vectors, an in-process server on 127.0.0.1, and fresh logging
for every test."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy

from ocs.edge.server import Server, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec"


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from structlog's defaults, the product's module loggers not cached.

    A command run in-process by an earlier test (`ocs sim`, `ocs serve`, `ocs cdr`) configures
    structlog with `cache_logger_on_first_use` and the stderr pytest gave that test, closed
    since: a module's logger first used after that is bound to that configuration for good and
    raises "I/O operation on closed file" in whichever later test logs through it (seen in
    tests/sim, tests/vopr and tests/tls, depending on the order of the suite)."""
    structlog.reset_defaults()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("ocs.", "protocol.", "rating.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, BoundLoggerLazyProxy) and "bind" in vars(value):
                monkeypatch.delattr(value, "bind")  # the cached logger: assembled again


def load_vectors() -> list[dict[str, Any]]:
    data = json.loads((SPEC / "vectors.json").read_text())
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


VECTORS = load_vectors()
VECTOR = {v["name"]: v for v in VECTORS}


def frame_of(name: str) -> bytes:
    return bytes.fromhex(VECTOR[name]["hex"])


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()
