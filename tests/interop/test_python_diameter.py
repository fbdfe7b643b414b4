"""A Diameter implementation this project did not write, against the real server on 127.0.0.1:
python-diameter (PyPI `python-diameter`, installed by the dev extras) encodes every request
and decodes every answer in standard binary AVPs (version byte 0x01): CER, CCR INITIAL /
UPDATE / TERMINATION with Multiple-Services-Credit-Control and Service-Information, an EVENT,
DWR, and an answer to the server's RAR. The same traffic from the project's MessagePack client
against a second server must give the same grants, the same charges and the same CDRs.

python-diameter's message layer is used over an asyncio stream (its `Node` runs its own
threads and timers; the test drives the exchange itself so that the order is the same as the
MessagePack run's)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ocs.edge.cdr_files import iter_records
from ocs.edge.client import Client
from ocs.edge.server import ServerConfig
from ocs.node import Node, NodeConfig
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    ReportingReason,
    RequestedAction,
)
from protocol.header import Header
from protocol.messages import AMA, CCA, RAA, RAR, Answer, Request
from tests.charging.conftest import amr, ccr, mscc, rsu, usu

pytest.importorskip("diameter")

from diameter.message import Message
from diameter.message.avp.grouped import (
    MultipleServicesCreditControl,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    SubscriptionId,
    UsedServiceUnit,
)
from diameter.message.commands import (
    CapabilitiesExchangeRequest,
    CreditControlAnswer,
    CreditControlRequest,
    DeviceWatchdogRequest,
    ReAuthRequest,
)

PGW = "pgw.test.local"
ADMIN = "admin.test.local"
SUBSCRIBER = "491700000042"
MiB = 1 << 20
EVENT_AT = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
PS_INFORMATION = {"Called-Station-Id": "internet", "3GPP-Charging-Id": b"\0\0\0\x07"}

Outcome = dict[str, Any]


@contextlib.asynccontextmanager
async def running(data_dir: Path) -> AsyncIterator[Node]:
    app = await Node.open(
        ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.2), NodeConfig(data_dir=data_dir)
    )
    try:
        await app.start()
        yield app
    finally:
        await app.stop()
        await app.close()


# --- the standard client ------------------------------------------------------------------------


class PyDiameterPeer:
    """A network element speaking binary Diameter through python-diameter's codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.next_id = 0x1000
        self.rars: list[ReAuthRequest] = []

    async def read(self) -> Message:
        head = await asyncio.wait_for(self.reader.readexactly(20), 5)
        assert head[0] == 0x01, f"answer in version {head[0]:#x}"
        rest = await self.reader.readexactly(int.from_bytes(head[1:4], "big") - 20)
        return Message.from_bytes(head + rest)

    async def exchange(self, request: Message) -> Message:
        self.next_id += 1
        request.header.hop_by_hop_identifier = self.next_id
        request.header.end_to_end_identifier = self.next_id
        self.writer.write(request.as_bytes())
        while True:
            message = await self.read()
            if message.header.is_request:  # the server's RAR: answered, kept, then read on
                await self.answer_rar(message)
                continue
            assert message.header.hop_by_hop_identifier == self.next_id
            return message

    async def answer_rar(self, rar: Message) -> None:
        assert isinstance(rar, ReAuthRequest)
        self.rars.append(rar)
        raa = rar.to_answer()
        raa.session_id = rar.session_id
        raa.origin_host = PGW.encode()
        raa.origin_realm = b"test.local"
        raa.result_code = 2001
        self.writer.write(raa.as_bytes())

    async def wait_rar(self) -> None:
        message = await self.read()
        assert message.header.is_request
        await self.answer_rar(message)


def _ccr(kind: int, number: int, session: str) -> CreditControlRequest:
    request = CreditControlRequest()
    request.header.application_id = 4
    request.header.is_proxyable = True
    request.session_id = f"{PGW};{session}"
    request.origin_host = PGW.encode()
    request.origin_realm = b"test.local"
    request.destination_realm = b"test.local"
    request.auth_application_id = 4
    request.service_context_id = "32251@3gpp.org"
    request.cc_request_type = kind
    request.cc_request_number = number
    return request


def _outcome(answer: Message) -> Outcome:
    assert isinstance(answer, CreditControlAnswer), answer
    msccs = []
    for m in answer.multiple_services_credit_control or []:
        gsu = m.granted_service_unit
        fui = m.final_unit_indication
        msccs.append(
            (
                m.rating_group,
                m.result_code,
                gsu.cc_total_octets if gsu is not None else None,
                gsu.cc_service_specific_units if gsu is not None else None,
                fui.final_unit_action if fui is not None else None,
            )
        )
    return {"result": answer.result_code, "msccs": msccs}


async def standard_run(port: int, admin: Client) -> list[Outcome]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    peer = PyDiameterPeer(reader, writer)
    outcomes: list[Outcome] = []
    try:
        cer = CapabilitiesExchangeRequest()
        cer.origin_host = PGW.encode()
        cer.origin_realm = b"test.local"
        cer.host_ip_address = ["127.0.0.1"]
        cer.vendor_id = 10415
        cer.product_name = "python-diameter"
        cer.auth_application_id = [4]
        cea = await peer.exchange(cer)
        outcomes.append({"cea": cea.result_code, "apps": list(cea.auth_application_id)})

        initial = _ccr(1, 0, "s1")
        initial.subscription_id = [
            SubscriptionId(subscription_id_type=0, subscription_id_data=SUBSCRIBER)
        ]
        initial.multiple_services_credit_control = [
            MultipleServicesCreditControl(
                rating_group=20,
                requested_service_unit=RequestedServiceUnit(cc_total_octets=10 * MiB),
            )
        ]
        initial.service_information = ServiceInformation(
            ps_information=PsInformation(
                called_station_id="internet", tgpp_charging_id=b"\0\0\0\x07"
            )
        )
        outcomes.append(_outcome(await peer.exchange(initial)))

        dwa = await peer.exchange(_dwr())
        outcomes.append({"dwa": dwa.result_code})

        await _top_up(admin)
        await peer.wait_rar()
        rar = peer.rars[-1]
        outcomes.append({"rar": rar.session_id, "re_auth": rar.re_auth_request_type})

        update = _ccr(2, 1, "s1")
        update.multiple_services_credit_control = [
            MultipleServicesCreditControl(
                rating_group=20,
                requested_service_unit=RequestedServiceUnit(cc_total_octets=10 * MiB),
                used_service_unit=[UsedServiceUnit(cc_total_octets=5 * MiB)],
                reporting_reason=7,
            )
        ]
        outcomes.append(_outcome(await peer.exchange(update)))

        term = _ccr(3, 2, "s1")
        term.termination_cause = 1
        term.multiple_services_credit_control = [
            MultipleServicesCreditControl(
                rating_group=20,
                used_service_unit=[UsedServiceUnit(cc_total_octets=3 * MiB, reporting_reason=2)],
            )
        ]
        outcomes.append(_outcome(await peer.exchange(term)))

        event = _ccr(4, 0, "e1")
        event.service_context_id = "32274@3gpp.org"
        event.requested_action = 0
        event.event_timestamp = EVENT_AT
        event.subscription_id = [
            SubscriptionId(subscription_id_type=0, subscription_id_data=SUBSCRIBER)
        ]
        event.multiple_services_credit_control = [
            MultipleServicesCreditControl(
                rating_group=30,
                requested_service_unit=RequestedServiceUnit(cc_service_specific_units=1),
            )
        ]
        outcomes.append(_outcome(await peer.exchange(event)))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return outcomes


def _dwr() -> DeviceWatchdogRequest:
    dwr = DeviceWatchdogRequest()
    dwr.origin_host = PGW.encode()
    dwr.origin_realm = b"test.local"
    return dwr


# --- the same traffic from the project's MessagePack client -----------------------------------


def _msgpack_outcome(answer: Answer) -> Outcome:
    assert isinstance(answer, CCA), answer
    msccs = []
    for m in answer.multiple_services_credit_control or ():
        gsu = m.granted_service_unit
        fui = m.final_unit_indication
        msccs.append(
            (
                m.rating_group,
                m.result_code,
                gsu.cc_total_octets if gsu is not None else None,
                gsu.cc_service_specific_units if gsu is not None else None,
                int(fui.final_unit_action) if fui is not None else None,
            )
        )
    return {"result": answer.result_code, "msccs": msccs}


async def msgpack_run(port: int, admin: Client) -> list[Outcome]:
    rars: asyncio.Queue[RAR] = asyncio.Queue()

    def serve(header: Header, request: Request) -> Answer:
        assert isinstance(request, RAR)
        rars.put_nowait(request)
        return RAA(
            result_code=2001,
            origin_host=PGW,
            origin_realm="test.local",
            session_id=request.session_id,
        )

    client = await Client.connect(
        port=port, origin_host=PGW, applications=(ApplicationId.CREDIT_CONTROL,), on_request=serve
    )
    outcomes: list[Outcome] = []
    try:
        assert client.peer is not None
        outcomes.append(
            {"cea": client.peer.result_code, "apps": list(client.peer.auth_application_id or ())}
        )
        initial = ccr(
            "s1",
            CCRequestType.INITIAL,
            0,
            mscc(20, ask=rsu(octets=10 * MiB)),
            subscriber=SUBSCRIBER,
            origin=PGW,
            service_information={"PS-Information": PS_INFORMATION},
        )
        outcomes.append(_msgpack_outcome(await client.request(initial)))
        dwa = await client.request(client.conn.dwr())
        outcomes.append({"dwa": dwa.result_code})
        await _top_up(admin)
        rar = await asyncio.wait_for(rars.get(), 5)
        outcomes.append({"rar": rar.session_id, "re_auth": int(rar.re_auth_request_type)})
        reauth = ReportingReason.FORCED_REAUTHORISATION
        update = ccr(
            "s1",
            CCRequestType.UPDATE,
            1,
            mscc(20, ask=rsu(octets=10 * MiB), used=(usu(octets=5 * MiB),), reason=reauth),
            origin=PGW,
        )
        outcomes.append(_msgpack_outcome(await client.request(update)))
        final = usu(octets=3 * MiB, reason=ReportingReason.FINAL)
        term = msgspec.structs.replace(
            ccr("s1", CCRequestType.TERMINATION, 2, mscc(20, used=(final,)), origin=PGW),
            termination_cause=1,
        )
        outcomes.append(_msgpack_outcome(await client.request(term)))
        event = ccr(
            "e1",
            CCRequestType.EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUBSCRIBER,
            service="32274@3gpp.org",
            origin=PGW,
            action=RequestedAction.DIRECT_DEBITING,
            event_timestamp=int(EVENT_AT.timestamp()),
        )
        outcomes.append(_msgpack_outcome(await client.request(event)))
    finally:
        await client.close()
    return outcomes


# --- both ----------------------------------------------------------------------------------------


async def _top_up(admin: Client) -> None:
    credit = amr(AccountOperation.CREDIT, "acct-42", amount=1_000_000, operation_id="t1")
    assert (await admin.request(credit)).result_code == 2001


_TIMES = ("recordOpeningTime", "recordClosingTime", "reportTime", "timeOfFirstUsage")


def _cdr(record: Any) -> Any:
    """A CDR without the instants it was written at."""
    if isinstance(record, dict):
        return {k: _cdr(v) for k, v in record.items() if k not in _TIMES and "Time" not in k}
    if isinstance(record, list):
        return [_cdr(v) for v in record]
    return record


async def _session(
    data_dir: Path, run: Callable[[int, Client], Any]
) -> tuple[list[Outcome], int, list[dict[str, Any]]]:
    async with running(data_dir) as app:
        admin = await Client.connect(
            port=app.server.port, origin_host=ADMIN, applications=(ApplicationId.ADMINISTRATION,)
        )
        try:
            create = amr(AccountOperation.CREATE, "acct-42", amount=30_000, subscriber=SUBSCRIBER)
            assert (await admin.request(create)).result_code == 2001
            outcomes = await run(app.server.port, admin)
            got = await admin.request(amr(AccountOperation.GET, "acct-42"))
            assert isinstance(got, AMA) and got.account is not None
            balance = got.account.balance
        finally:
            await admin.close()
    records = [_cdr(r) for r in iter_records(data_dir / "cdr")]
    return outcomes, balance, records


async def test_python_diameter_charges_as_the_msgpack_client(tmp_path: Path) -> None:
    standard, standard_balance, standard_cdrs = await _session(tmp_path / "std", standard_run)
    packed, packed_balance, packed_cdrs = await _session(tmp_path / "msgpack", msgpack_run)
    # what the standard client saw, step by step
    assert standard[0] == {"cea": 2001, "apps": [4]}
    initial = standard[1]
    assert initial["result"] == 2001
    (rg, rc, octets, _, fui) = initial["msccs"][0]
    assert (rg, rc) == (20, 2001) and octets is not None and 0 < octets < 10 * MiB
    assert fui is not None  # cut to the balance: final units
    assert standard[2] == {"dwa": 2001}
    assert standard[3] == {"rar": f"{PGW};s1", "re_auth": 0}
    assert standard[4]["msccs"][0][:3] == (20, 2001, 10 * MiB)
    assert standard[5]["result"] == 2001 and standard[6]["result"] == 2001
    # and the same as over MessagePack: grants, charges, CDRs
    assert standard == packed
    assert standard_balance == packed_balance < 1_030_000
    assert standard_cdrs == packed_cdrs
    assert len(standard_cdrs) == 2
    assert sum(r["charge"] for r in standard_cdrs) == 1_030_000 - standard_balance
