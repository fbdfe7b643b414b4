"""A network element for the node's end-to-end tests: a client that answers the server's RAR
and ASR 2001 and keeps what it was asked."""

from __future__ import annotations

import asyncio

from ocs.edge.client import Client
from protocol.codes import ApplicationId
from protocol.header import Header
from protocol.messages import ASA, ASR, RAA, RAR, Answer, Request

APPS = (ApplicationId.CREDIT_CONTROL, ApplicationId.ADMINISTRATION)
UPF = "upf1.test.local"


class Peer:
    """A client that answers RAR/ASR 2001 and keeps what it was asked: in `requests`, in
    order, and in `arrived` to wait for the next one."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.arrived: asyncio.Queue[Request] = asyncio.Queue()
        self.client: Client | None = None

    async def connect(self, port: int, origin_host: str = UPF) -> Client:
        self.client = await Client.connect(
            port=port, origin_host=origin_host, applications=APPS, on_request=self.serve
        )
        return self.client

    def serve(self, header: Header, request: Request) -> Answer:
        self.requests.append(request)
        self.arrived.put_nowait(request)
        assert self.client is not None
        me = self.client.identity
        if isinstance(request, RAR):
            return RAA(
                result_code=2001,
                origin_host=me.origin_host,
                origin_realm=me.origin_realm,
                session_id=request.session_id,
            )
        assert isinstance(request, ASR)
        return ASA(
            result_code=2001,
            origin_host=me.origin_host,
            origin_realm=me.origin_realm,
            session_id=request.session_id,
        )
