"""The simulator reads what the node logs through `structlog.testing.capture_logs`. A command
run earlier in the same pytest process (`ocs sim`, `ocs serve` in-process) may have configured
structlog with `cache_logger_on_first_use` and a stream that pytest has closed since: a
module's logger used after that is bound to that configuration for good, bypasses the capture
and raises on the closed stream. Each test here starts from structlog's defaults with the
product's module loggers not cached (as tests/tls/test_tls_server.py does for its one logger)."""

from __future__ import annotations

import sys

import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy


@pytest.fixture(autouse=True)
def fresh_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    structlog.reset_defaults()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("ocs.", "protocol.", "rating.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, BoundLoggerLazyProxy) and "bind" in vars(value):
                monkeypatch.delattr(value, "bind")  # the cached logger: assembled again
