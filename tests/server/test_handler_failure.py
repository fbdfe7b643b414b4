"""A handler that raises something other than `ProtocolError` (a bug): the request is answered
5012 DIAMETER_UNABLE_TO_COMPLY in the short error shape, the failure is logged once, with its
text cut short, and the connection goes on (it used to drop, with a traceback and no answer)."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

import ocs.edge.server as server_module
from ocs.edge.server import RequestContext, Server, ServerConfig
from protocol.codes import Flag
from protocol.messages import Answer, ErrorAnswer
from tests.conftest import frame_of
from tests.server.rawpeer import RawPeer


async def test_a_handler_that_raises_is_answered_5012_and_the_connection_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []

    def handler(ctx: RequestContext, message: Any) -> Answer:
        calls.append(message)
        if len(calls) == 1:
            raise KeyError("k" * 60_000)  # the text may quote what a peer sent
        return ErrorAnswer(
            result_code=2001, origin_host="ocs", origin_realm="r", session_id=message.session_id
        )

    server = Server(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2), handlers={272: handler}
    )
    await server.start()
    try:
        with capture_logs() as events:
            monkeypatch.setattr(server_module, "log", structlog.get_logger("ocs.edge.server"))
            peer = await RawPeer.connect(server.port)
            await peer.send(frame_of("ccr-initial"))
            header, body = await peer.read()
            assert body["Result-Code"] == 5012 and not header.flags & Flag.ERROR
            assert body["Session-Id"] == "upf1.test.local;1700000000;1"
            assert set(body) <= {
                "Session-Id",
                "Origin-Host",
                "Origin-Realm",
                "Result-Code",
                "Error-Message",
            }
            await peer.send(frame_of("ccr-initial"))
            _, body = await peer.read()
            assert body["Result-Code"] == 2001
        (failed,) = [e for e in events if e["event"] == "handler.failed"]
        assert failed["command"] == 272 and failed["error"].startswith("KeyError")
        assert len(failed["error"]) < 300
    finally:
        await server.stop()
