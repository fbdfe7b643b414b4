"""`make demo`: start the server on the built-in demo catalog and drive traffic at it.

The server runs as a subprocess (`ocs serve`, exactly as an operator starts it) in a fresh data
directory on a free port of 127.0.0.1; the traffic comes from `ocs.tools.demo_traffic`, and whatever
the server supports by now is exercised. The server is always stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from ocs.tools.demo_traffic import drive


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ocs-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        ready = Path(tmp) / "port"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocs",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--ready-file",
                str(ready),
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    print("demo: the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            port = int(ready.read_text())
            print(f"demo: server listening on 127.0.0.1:{port}, data in {data_dir}", flush=True)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                ok = runner.run(drive(port, data_dir))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
                print(f"demo: server stopped (exit {code})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
