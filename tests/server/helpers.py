"""What the server tests share: a gate that holds answers, a handler that answers 2001, a
wait for a condition, and vector frames spoken by another peer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ocs.edge.server import RequestContext, Server
from protocol.codec import frame_body
from protocol.framing import FrameBuffer
from protocol.messages import Answer, ErrorAnswer
from tests.conftest import frame_of

ServerFactory = Callable[..., Awaitable[Server]]


class HoldingGate:
    """Holds every answer until released, to keep requests outstanding (as group commit holds
    them until durable)."""

    def __init__(self) -> None:
        self.held: list[Callable[[], None]] = []

    def defer(self, callback: Callable[[], None]) -> None:
        self.held.append(callback)

    def flush(self) -> None:
        held, self.held = self.held, []
        for cb in held:
            cb()


def echo_cca(ctx: RequestContext, message: Any) -> Answer:
    """Answers any credit-control request 2001 with its Session-Id."""
    return ErrorAnswer(
        result_code=2001, origin_host="ocs", origin_realm="r", session_id=message.session_id
    )


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def frame_as(name: str, origin_host: str, **changes: Any) -> bytes:
    """The vector frame `name` with its Origin-Host (and any other keys in `changes`, by AVP
    name with `_` for `-`) replaced: the same request from another peer."""
    frames = FrameBuffer(1 << 20)
    frames.feed(frame_of(name))
    frame = frames.next_frame()
    assert frame is not None
    header, body = frame
    decoded = msgspec.msgpack.decode(body)
    decoded["Origin-Host"] = origin_host
    decoded.update({key.replace("_", "-"): value for key, value in changes.items()})
    return frame_body(
        msgspec.msgpack.encode(decoded),
        flags=header.flags,
        command_code=header.command_code,
        application_id=header.application_id,
        hop_by_hop=header.hop_by_hop,
        end_to_end=header.end_to_end,
    )
