"""Low-level file writing (the I/O edge): under `ocs.edge.durable.AppendFile`, the append
mechanism the journal and the CDR files share, and the journal's snapshot files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

fdatasync: Final[Callable[[int], None]] = getattr(os, "fdatasync", os.fsync)
"""fdatasync where the platform has it (data and the metadata needed to read it back)."""


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a new, renamed or deleted file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
