"""Helpers of the simulator tests: an in-process server, a catalog built for them, an operator."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import (
    HEADER_LENGTH,
    AccountOperation,
    AccountStatus,
    ApplicationId,
    CommandCode,
)
from protocol.header import unpack_header
from protocol.messages import AMA, AMR

# Data rating groups as in the demo, with small quanta, a short validity (video) and QHT (so
# that a few seconds at high speed go through many grants), a promotion whose start is a tariff
# change some way ahead (`change_in_s`; within the data validity, so that grants carry it as
# Tariff-Time-Change), and a low account usage threshold (RAR).
DATA_CATALOG = """
version = 1
name = "sim-test"
timezone = "UTC"

[currency]
code = 978

[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10, 20]

[[rating_groups]]
id = 10
unit = "octets"
price = "0.01"
block = "1 MiB"
increment = "1 KiB"

[rating_groups.grant]
quantum = "4 MiB"
validity_time = "1 h"
threshold = "0.2"
quota_holding_time = "2 min"
final_unit_action = "redirect"
redirect_server = "http://topup.example.com/"

[[rating_groups.promotions]]
name = "later"
start = {change}
end = {end}
factor = "0.5"

[[rating_groups]]
id = 20
unit = "octets"
price = "0.005"
block = "1 MiB"
increment = "1 KiB"
linked_rating_groups = [10]

[rating_groups.grant]
quantum = "8 MiB"
validity_time = "3 min"
threshold = "0.1"
quota_holding_time = "2 min"
final_unit_action = "restrict_access"
filter_ids = ["video-blocked"]

[account]
usage_thresholds = ["0.5"]
"""


def data_catalog(path: Path, *, change_in_s: int) -> Path:
    change = int(time.time()) + change_in_s
    path.write_text(DATA_CATALOG.format(change=change, end=change + 30 * 86400))
    return path


@asynccontextmanager
async def running_app(data_dir: Path, catalog: Path | None = None) -> AsyncIterator[Node]:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2),
        NodeConfig(data_dir=data_dir, catalog=catalog),
    )
    try:
        await app.start()
        try:
            yield app
        finally:
            await app.stop()
    finally:
        await app.close()


class Operator:
    """An operator tool on the administration application."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ops = 0

    @classmethod
    async def connect(cls, port: int) -> Operator:
        client = await Client.connect(
            port=port,
            origin_host="operator.test.local",
            applications=(ApplicationId.ADMINISTRATION,),
        )
        return cls(client)

    async def amr(self, op: AccountOperation, account: str, **kw: object) -> AMA:
        self.ops += 1
        answer = await self.client.request(
            AMR(
                origin_host="operator.test.local",
                origin_realm="test.local",
                account_operation=op,
                account_id=account,
                **kw,  # type: ignore[arg-type]
            )
        )
        assert isinstance(answer, AMA)
        return answer

    async def top_up(self, account: str, amount: int) -> None:
        answer = await self.amr(
            AccountOperation.CREDIT, account, amount=amount, operation_id=f"top-up-{self.ops}"
        )
        assert answer.result_code == 2001

    async def suspend(self, account: str) -> None:
        answer = await self.amr(
            AccountOperation.SET_STATUS, account, account_status=AccountStatus.SUSPENDED
        )
        assert answer.result_code == 2001

    async def close(self) -> None:
        await self.client.close()


class LossyProxy:
    """A TCP proxy in front of the server that can lose answers: after `lose_next_answer()`, the
    next CCA the server sends is swallowed and the client's connection cut, as if the network
    failed right after the server charged the request. Records every CCR that passes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.to_lose = 0
        self.lost: list[int] = []  # End-to-End-Ids of the answers lost
        self.requests: list[tuple[int, bool]] = []  # (End-to-End-Id, T flag) of each CCR
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def lose_next_answer(self) -> None:
        self.to_lose += 1

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up = asyncio.create_task(self._pump(creader, swriter, upstream=True))
        down = asyncio.create_task(self._pump(sreader, cwriter, upstream=False))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (cwriter, swriter):
                writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(HEADER_LENGTH)
                body = await reader.readexactly(int.from_bytes(head[1:4], "big") - HEADER_LENGTH)
                header = unpack_header(head)
                if header.command_code == CommandCode.CREDIT_CONTROL:
                    if upstream:
                        self.requests.append((header.end_to_end, header.is_retransmit))
                    elif self.to_lose > 0:
                        self.to_lose -= 1
                        self.lost.append(header.end_to_end)
                        return  # swallowed; the connection is cut
                writer.write(head + body)
                await writer.drain()
