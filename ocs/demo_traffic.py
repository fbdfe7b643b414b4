"""The demo's traffic: a short exchange of every procedure the server serves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ocs.client import Client
from protocol.codes import ApplicationId
from protocol.messages import DWR


async def drive(port: int, data_dir: Path) -> bool:
    client = await Client.connect(
        port=port,
        origin_host="demo.test.local",
        applications=(ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION),
    )
    assert client.peer is not None
    print(
        f"demo: CER/CEA done with {client.peer.origin_host}, "
        f"applications {list(client.peer.auth_application_id or ())}",
        flush=True,
    )
    dwr = DWR(origin_host="demo.test.local", origin_realm="test.local")
    n = 2000
    start = time.perf_counter()
    answers = await asyncio.gather(*(client.request(dwr) for _ in range(n)))
    elapsed = time.perf_counter() - start
    ok = all(a.result_code == 2001 for a in answers)
    print(f"demo: {n} watchdogs answered in {elapsed * 1000:.0f} ms, all 2001: {ok}", flush=True)
    await client.close()
    print("demo: DPR/DPA done", flush=True)
    return ok
