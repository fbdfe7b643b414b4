"""Run `ocs serve` as a subprocess on 127.0.0.1 with a free port; always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class ServerProcess:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.ready_file = data_dir.parent / f"{data_dir.name}.port"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.ready_file.unlink(missing_ok=True)
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocs",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                "--ready-file",
                str(self.ready_file),
                *self.extra,
            ],
            stdout=self.log,
            stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("server did not become ready")
            time.sleep(0.02)
        self.port = int(self.ready_file.read_text())
        return self

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "log"):
            self.log.close()
