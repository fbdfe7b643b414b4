"""`make demo`: start the server on the built-in demo catalog and drive traffic at it.

The server runs as a subprocess (`ocs serve`, exactly as an operator starts it) in a fresh data
directory on a free port of 127.0.0.1 (`ocs.tools.spawn`); its log lines go to this terminal.
The traffic comes from `ocs.tools.demo_traffic`, and whatever the server supports by now is
exercised. The server is always stopped at the end.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import uvloop

from ocs.tools.demo_traffic import drive
from ocs.tools.spawn import ServerExited, SpawnedServer, serve_argv


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ocs-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        server = SpawnedServer(
            serve_argv(data_dir=data_dir), Path(tmp), name="server", inherit_output=True
        )
        try:
            server.start(timeout=30)
        except (ServerExited, TimeoutError) as exc:
            print(f"demo: the server did not start: {exc}", file=sys.stderr)
            return 1
        try:
            print(
                f"demo: server listening on 127.0.0.1:{server.port}, data in {data_dir}",
                flush=True,
            )
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                ok = runner.run(drive(server.port, data_dir))
        finally:
            code = server.stop(grace=15)
            print(f"demo: server stopped (exit {code})", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
