"""A server process like ``ocs serve``, with the `NodeConfig` knobs the durability tests need
(``ocs serve`` does not expose them): ``python -m tests.durability.serve_app --data-dir DIR
--ready-file FILE [--checkpoint-records N] [--relaxed-sync-ms MS]``. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import uvloop

from ocs.edge.logs import configure_logging
from ocs.edge.server import ServerConfig, serve_until_signalled
from ocs.node import Node, NodeConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--checkpoint-records", type=int, default=500_000)
    parser.add_argument("--relaxed-sync-ms", type=float, default=None)
    args = parser.parse_args()
    configure_logging(json=True, level="info")
    server_config = ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.5)
    app_config = NodeConfig(
        data_dir=args.data_dir,
        checkpoint_records=args.checkpoint_records,
        relaxed_sync_ms=args.relaxed_sync_ms,
    )
    ready_file: Path = args.ready_file

    async def run() -> None:
        app = await Node.open(server_config, app_config)
        try:

            def ready() -> None:
                tmp = ready_file.with_suffix(".tmp")
                tmp.write_text(str(app.server.port))
                os.replace(tmp, ready_file)

            await serve_until_signalled(app, ready=ready)
        finally:
            await app.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


if __name__ == "__main__":
    main()
