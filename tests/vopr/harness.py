"""The node under simulation: the real `ocs.node.Node` and the real `ocs.edge.server.PeerHandle`,
with group commit replaced by one the simulator drives.

`SimNode.open` is `Node.open` itself (recovery, the catalog put in force, `Node.__init__`) run on
a private event loop that otherwise never runs: the simulator calls the node's handlers through
`PeerHandle.data_received` (framing, header checks, the codec, dispatch: the wire path), and its
own methods for what the node's timers do. Group commit is `SimGate`: the callbacks the node
defers (answers, CDR moves, RAR/ASR) wait until the simulator commits the journal, so an answer
counts as acknowledged only once the records up to it are durable, and a crash drops what was
not committed. What `Node` does on its timer loop (ticks) is mirrored in `SimNode.tick`; the
checkpoint and the close are the node's own (`Node._checkpoint`, `Node.close`), run to the end
on the private loop.

The wall clock the edge reads (`now_ms` of a batch, the time of a catalog input) is the
simulator's clock while a run is active (`sim_clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol
from unittest import mock

import ocs.edge.server
import ocs.node
from ocs.core.charging import Action, Input, InputKind
from ocs.edge.group_commit import GroupCommit
from ocs.edge.server import PeerHandle, RequestContext, ServerConfig
from ocs.node import Node, NodeConfig, Recovered
from protocol.messages import Answer

Callback = Callable[[], object]


class Hooks(Protocol):
    """What the simulator is told while the node runs."""

    def journaled(self, lsn: int, record: Input) -> None:
        """An input was appended to the journal (before or after the core applied it)."""

    def produced(self, cdrs: list[tuple[int, int, bytes]]) -> None:
        """CDRs (lsn, sequence number, line) the core produced for the last input."""

    def actions(self, actions: list[Action], durable_lsn: int, last_lsn: int) -> None:
        """RAR/ASR the node releases (it must do so only once their input is durable)."""

    def answered(self, ctx: RequestContext, answer: Answer | bytes) -> None:
        """A handler returned an answer (it leaves once the journal is durable)."""

    def fatal(self, event: str, exc: BaseException) -> None:
        """The node would stop (`Node._fatal`)."""

    def built(self, node: SimNode) -> None:
        """`Node.open` built the node: recovery is done, the catalog not yet put in force."""


class SimGate(GroupCommit):
    """Group commit driven by the simulator: `defer`red callbacks run at `release`, after the
    journal was committed (flush + fsync). Nothing runs on its own."""

    def __init__(self, node: SimNode) -> None:  # (GroupCommit's needs a running loop)
        self._node = node
        self._held: list[Callback] = []
        self.releases = 0
        self.batches = 0  # (what `Node.close` logs)
        self.syncs = 0

    @property
    def failed(self) -> BaseException | None:
        return None

    @property
    def held(self) -> int:
        return len(self._held)

    def defer(self, callback: Callback) -> None:
        self._held.append(callback)

    def schedule(self) -> None:
        pass  # records appended without a callback go out with the next release

    def durable(self) -> asyncio.Future[None]:
        self.release()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def aclose(self) -> None:
        pass

    def release(self) -> None:
        """Commit the journal, then run what waited for it, in order (one batch: the answers
        leave together, as `Node` releases them)."""
        node = self._node
        node.store.commit()
        self.releases += 1
        self.batches += 1
        self.syncs += 1
        held, self._held = self._held, []
        node.server.hold_flushes()
        try:
            for callback in held:
                callback()
        finally:
            node.server.release_flushes()

    def drop(self) -> int:
        """The process died: what waited is never run. Returns how many callbacks."""
        dropped = len(self._held)
        self._held = []
        return dropped


class SimNode(Node):
    """`Node` with `SimGate` for group commit and the simulator told what happens."""

    opening: ClassVar[Hooks | None] = None  # the hooks of the node `open` builds next

    def __init__(
        self, server_config: ServerConfig, config: NodeConfig, recovered: Recovered
    ) -> None:
        super().__init__(server_config, config, recovered)
        hooks = SimNode.opening
        assert hooks is not None, "set SimNode.opening before SimNode.open"
        self.hooks = hooks
        self.gate = SimGate(self)
        self.commit = self.gate
        self.server.gate = self.gate
        # PeerHandles read the loop's clock for the connection timers; the server never
        # listens (`Server.start` would set this), the simulator calls `data_received`
        self.server._loop = asyncio.get_running_loop()
        handlers = dict(self.server.handlers)
        self.server.handlers = {code: self._observed(h) for code, h in handlers.items()}
        hooks.built(self)

    def _observed(self, handler: Any) -> Any:
        def handle(ctx: RequestContext, message: Any) -> Answer | bytes:
            answer: Answer | bytes = handler(ctx, message)
            self.hooks.answered(ctx, answer)
            return answer

        return handle

    # --- what the simulator watches ------------------------------------------------------------

    def _journal_input(self, record: Input) -> int:
        lsn = super()._journal_input(record)
        self.hooks.journaled(lsn, record)
        return lsn

    def _after_core(self, lsn: int | None) -> None:
        before = len(self._pending_cdrs)
        super()._after_core(lsn)
        self.hooks.produced(list(itertools.islice(self._pending_cdrs, before, None)))

    def _send_actions(self, actions: list[Action]) -> None:
        journal = self.store.journal
        self.hooks.actions(actions, journal.durable_lsn, journal.last_lsn)

    def _fatal(self, event: str, exc: BaseException) -> None:
        self.hooks.fatal(event, exc)

    # --- what Node's timers do -----------------------------------------------------------------

    def tick(self, now_ms: int) -> bool:
        """Supervision and expiry, as `Node._timer_loop` does each second (journaled only when
        due). Returns whether a tick was journaled."""
        core = self.core
        if not core.due(now_ms):
            return False
        lsn = self._journal_input(Input(kind=InputKind.TICK, now_ms=now_ms))
        core.tick(now_ms)
        self._after_core(lsn)
        self.commit.schedule()
        return True


class SimTransport(asyncio.Transport):
    """The socket of one peer: what the server writes is kept for the simulator to read."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.out = bytearray()
        self.closing = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    # Flow control: what the simulator sends is fed whatever the server asked (it stands for
    # the kernel's buffers; the server answers requests beyond a peer's budget 3004).
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", self.port)
        return default


def connect(node: SimNode, port: int) -> tuple[PeerHandle, SimTransport]:
    """A new accepted connection to the node (no CER yet)."""
    transport = SimTransport(port)
    handle = PeerHandle(node.server)
    handle.connection_made(transport)
    return handle, transport


class SimClock:
    """The simulator's clock in ms since the epoch, read by the edge while patched in."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def time_ns(self) -> int:
        return self.now_ms * 1_000_000

    def time(self) -> float:
        return self.now_ms / 1000


@contextlib.contextmanager
def sim_clock(clock: SimClock) -> Iterator[None]:
    """The edge reads the simulator's clock: `now_ms` of each batch of requests
    (`ocs.edge.server`) and the time of a catalog input (`ocs.node`)."""
    with (
        mock.patch.object(ocs.edge.server, "time", clock),
        mock.patch.object(ocs.node, "_now_ms", lambda: clock.now_ms),
    ):
        yield


def open_node(
    loop: asyncio.AbstractEventLoop,
    hooks: Hooks,
    server_config: ServerConfig,
    config: NodeConfig,
) -> SimNode:
    """`Node.open` (recovery, catalog, the node built whole), its timer task stopped."""
    SimNode.opening = hooks
    try:
        node = loop.run_until_complete(SimNode.open(server_config, config))
    finally:
        SimNode.opening = None
    assert isinstance(node, SimNode)
    stop_timers(loop, node)
    return node


def stop_timers(loop: asyncio.AbstractEventLoop, node: Node) -> None:
    timer = node._timer
    node._timer = None
    if timer is not None:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(timer)


def run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


def newest(directory: Path, pattern: str) -> Path | None:
    files = sorted(directory.glob(pattern))
    return files[-1] if files else None
