"""Shared fixtures: the spec's vectors, and an in-process server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocs.edge.server import Server, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec"


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
