"""Assembles the running system: the server, its handlers, and the stores behind them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocs.server import Server, ServerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    data_dir: Path = Path("ocs-data")
    catalog: Path | None = None


class App:
    def __init__(self, server: Server, config: AppConfig) -> None:
        self.server = server
        self.config = config

    async def open(self) -> None:
        """Recover state from the data directory (journal, snapshots)."""

    async def close(self) -> None:
        """Flush and release the data directory."""


def build_app(server_config: ServerConfig, config: AppConfig) -> App:
    return App(Server(server_config), config)
