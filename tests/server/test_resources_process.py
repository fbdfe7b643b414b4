"""`ocs serve` against peers that try to exhaust it (issue 11): a flood of idle connections with
a low descriptor limit, and a peer that sends requests and never reads its answers. Real
sockets on 127.0.0.1, bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.edge.client import Client, ClientError
from protocol.codec import encode_frame
from protocol.codes import AccountOperation, ApplicationId, CommandCode, Flag
from protocol.messages import AMA, AMR, CER, DWR
from tests.server.process import ServerProcess, with_descriptor_limit

ADMIN = (ApplicationId.ADMINISTRATION,)
SERVER_DESCRIPTORS = 256
FLOOD = 1_100


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def amr(
    host: str,
    operation: AccountOperation,
    account: str,
    *,
    amount: int,
    operation_id: str | None = None,
) -> AMR:
    return AMR(
        origin_host=host,
        origin_realm="test.local",
        account_operation=operation,
        account_id=account,
        amount=amount,
        operation_id=operation_id,
    )


async def credit(client: Client, host: str, account: str, amount: int, op: str) -> int:
    answer = await client.request(
        amr(host, AccountOperation.CREDIT, account, amount=amount, operation_id=op)
    )
    assert isinstance(answer, AMA) and answer.result_code == 2001, answer
    assert answer.account is not None
    return answer.account.balance


@contextlib.contextmanager
def descriptors_for(count: int) -> Iterator[None]:
    """Let this process hold ``count`` more descriptors (raise the soft limit if needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = len(os.listdir("/proc/self/fd")) + count + 64
    if need > soft:
        if hard != resource.RLIM_INFINITY and need > hard:
            pytest.skip(f"needs {need} descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections that never send anything (connect only)."""
    socks: list[socket.socket] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
    return socks


async def test_idle_connection_flood_with_a_low_descriptor_limit(tmp_path: Path) -> None:
    """1,100 idle TCP connections (no CER) against a server allowed 256 descriptors: the
    server refuses the excess (the oldest connections without CER make room), stays up, stays
    durable (its journal fsync used to dup a descriptor: EMFILE, and the server exited) and
    answers an account CREDIT on a connection opened before the flood and on a fresh one."""
    server = ServerProcess(tmp_path / "data", python=with_descriptor_limit(SERVER_DESCRIPTORS))
    server.start()
    socks: list[socket.socket] = []
    try:
        with descriptors_for(FLOOD):
            host = "ops.test.local"
            admin = await Client.connect(port=server.port, origin_host=host, applications=ADMIN)
            created = await admin.request(amr(host, AccountOperation.CREATE, "acct", amount=0))
            assert created.result_code == 2001
            socks = await asyncio.to_thread(open_idle, server.port, FLOOD)
            assert server.running
            assert len(os.listdir(f"/proc/{server.pid}/fd")) < SERVER_DESCRIPTORS
            assert await credit(admin, host, "acct", 5, "op-1") == 5  # journaled and fsynced
            fresh = await Client.connect(
                port=server.port, origin_host="ops2.test.local", applications=ADMIN
            )
            assert await credit(fresh, "ops2.test.local", "acct", 7, "op-2") == 12
            await fresh.close()
            await admin.close()
    finally:
        for sock in socks:
            sock.close()
        code = server.stop()
    assert code == 0, server.log_tail()
    log = server.log_text()
    refusals = log.count("connection.refused")
    assert 1 <= refusals <= 3, refusals  # counted, not one line per refused connection
    [stopped] = re.findall(r"server\.stopped .*evicted_unopened=(\d+)", log)
    assert int(stopped) >= FLOOD - SERVER_DESCRIPTORS


def cer_frame(host: str) -> bytes:
    cer = CER(
        origin_host=host,
        origin_realm="test.local",
        host_ip_address=("127.0.0.1",),
        vendor_id=0,
        product_name="never-reads",
        auth_application_id=(ApplicationId.CREDIT_CONTROL,),
    )
    return encode_frame(
        cer,
        flags=Flag.REQUEST,
        command_code=CommandCode.CAPABILITIES_EXCHANGE,
        application_id=0,
        hop_by_hop=1,
        end_to_end=1,
    )


def dwr_frames(host: str, count: int) -> bytes:
    dwr = DWR(origin_host=host, origin_realm="test.local")
    return b"".join(
        encode_frame(
            dwr,
            flags=Flag.REQUEST,
            command_code=CommandCode.DEVICE_WATCHDOG,
            application_id=0,
            hop_by_hop=i,
            end_to_end=i,
        )
        for i in range(2, count + 2)
    )


RSS_BOUND_MIB = 32  # growth allowed while a peer that never reads sends up to FLOOD_BYTES
FLOOD_BYTES = 64 * 1024 * 1024


async def test_a_peer_that_never_reads_is_bounded_and_closed_after_tw(tmp_path: Path) -> None:
    """A peer sends requests (DWR: answered by the connection itself, no outstanding limit)
    and never reads the answers. The server's memory used to grow with what it was sent (1.8
    GB for 400 MB); now it stops reading that peer above the output high-water mark, closes it
    after Tw without draining, serves another peer meanwhile and is back to its size after."""
    server = ServerProcess(tmp_path / "data", "--watchdog", "1").start()
    try:
        host = "ops.test.local"
        good = await Client.connect(port=server.port, origin_host=host, applications=ADMIN)
        created = await good.request(amr(host, AccountOperation.CREATE, "acct", amount=0))
        assert created.result_code == 2001
        baseline = rss_mib(server.pid)
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(cer_frame("sink.test.local"))
        chunk = dwr_frames("sink.test.local", 20_000)  # ~1.3 MB
        sent, peak, closed_after = 0, baseline, None
        served: asyncio.Task[int] | None = None
        started = time.monotonic()
        while sent < FLOOD_BYTES and time.monotonic() - started < 30:
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:  # the server is not reading: go on, so as to notice a close
                pass
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
            sent += len(chunk)
            peak = max(peak, rss_mib(server.pid))
            assert peak - baseline < RSS_BOUND_MIB, (peak, baseline, sent)
            if served is None and sent >= 4 * len(chunk):  # another peer, meanwhile
                served = asyncio.create_task(credit(good, host, "acct", 3, "during"))
        assert served is not None and await served == 3
        assert closed_after is not None, f"still open after sending {sent} bytes"
        writer.transport.abort()
        await asyncio.sleep(0.5)
        assert rss_mib(server.pid) - baseline < RSS_BOUND_MIB
        assert await credit(good, host, "acct", 4, "after") == 7
        await good.close()
        code = server.terminate()
    finally:
        server.kill()
    assert code == 0
    assert "output not drained within Tw" in server.log_text()


async def test_serve_options_set_the_bounds(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        "--max-connections",
        "3",
        "--max-connections-per-peer",
        "1",
        "--max-unopened-connections",
        "2",
        "--output-high-water",
        "65536",
    ).start()
    try:
        first = await Client.connect(port=server.port, origin_host="a.test.local")
        with pytest.raises(ClientError, match="3004"):
            await Client.connect(port=server.port, origin_host="a.test.local")
        await first.close()
        code = server.terminate()
    finally:
        server.kill()
    assert code == 0
    log = server.log_text()
    assert "max_connections=3 max_connections_per_peer=1 max_unopened_connections=2" in log
    assert "refused_per_peer=1" in log


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_serve_refuses_a_bound_that_is_not_a_positive_integer(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ocs", "serve", "--max-connections", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "positive integer" in done.stderr
