"""Run `ocs serve` as a subprocess on 127.0.0.1 with a free port; always stopped.

A thin layer over `ocs.tools.spawn.SpawnedServer`: `ServerProcess(data_dir, *extra)` keeps its
ready file and log beside the data directory (`DATA.port`, `DATA.log`); starting it again after
`terminate` or `kill` restarts the server on the same data directory. `python` replaces the
interpreter's command (`with_descriptor_limit(256)`: the server runs with that
RLIMIT_NOFILE)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ocs.tools.spawn import SpawnedServer, serve_argv


class ServerProcess(SpawnedServer):
    def __init__(self, data_dir: Path, *extra: str, python: Sequence[str] | None = None) -> None:
        super().__init__(
            serve_argv(*extra, data_dir=data_dir, python=python),
            data_dir.parent,
            name=data_dir.name,
            ready_timeout=20.0,
            stop_grace=10.0,
        )
        self.data_dir = data_dir
        self.extra = extra


def with_descriptor_limit(limit: int) -> list[str]:
    """An interpreter command for `ServerProcess(python=...)` that runs `-m ocs ...` with
    RLIMIT_NOFILE set to ``limit`` (soft and hard) first."""
    code = (
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
        "sys.argv = ['ocs', *sys.argv[3:]]; "  # ['-c', '-m', 'ocs', 'serve', ...]
        "runpy.run_module('ocs', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code]
