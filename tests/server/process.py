"""Run `ocs serve` as a subprocess on 127.0.0.1 with a free port; always stopped.

A thin layer over `ocs.tools.spawn.SpawnedServer`: `ServerProcess(data_dir, *extra)` keeps its
ready file and log beside the data directory (`DATA.port`, `DATA.log`); starting it again after
`terminate` or `kill` restarts the server on the same data directory."""

from __future__ import annotations

from pathlib import Path

from ocs.tools.spawn import SpawnedServer, serve_argv


class ServerProcess(SpawnedServer):
    def __init__(self, data_dir: Path, *extra: str) -> None:
        super().__init__(
            serve_argv(*extra, data_dir=data_dir),
            data_dir.parent,
            name=data_dir.name,
            ready_timeout=20.0,
            stop_grace=10.0,
        )
        self.data_dir = data_dir
        self.extra = extra
