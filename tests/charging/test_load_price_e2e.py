"""Load-modulated prices end to end (issue 15 item 4): `ocs serve` on 127.0.0.1 with a catalog
of two bands on the open sessions, killed (SIGKILL, no clean stop) in the middle of the
traffic and restarted on its data directory (recovery replays the journal through `Node`):
every price is the hand-computed one, in both bands and across a hysteresis crossing that
depends on the band in force before the crash; the CDR files and the balance agree.

The credit-control client speaks standard binary AVP bodies (WIRE.md 1.1 section 1), so
`Load-Band` and `Load-Factor` (vendor OCSA, codes 80 and 81) cross the wire as AVPs."""

from __future__ import annotations

import json
from pathlib import Path

from ocs.edge.cdr_files import iter_records
from ocs.edge.client import Client
from protocol.codes import (
    AccountOperation,
    ApplicationId,
    CCRequestType,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    CCR,
    MsccAnswer,
    MsccRequest,
    ServiceUnit,
    SubscriptionId,
    UsedServiceUnit,
)
from tests.charging.test_load_price import LOAD
from tests.observability.test_metrics import get, http_port, running, scrape
from tests.server.process import ServerProcess

HOST = "pgw.load.test.local"
ADMIN = "admin.load.test.local"
MSISDN = "4915550123"
SUB = (
    SubscriptionId(
        subscription_id_type=SubscriptionIdType.END_USER_E164, subscription_id_data=MSISDN
    ),
)
MiB = 1 << 20
EUR = 1_000_000
BINARY = 0x01  # standard Diameter AVP bodies


class Peer:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.numbers: dict[str, int] = {}

    @classmethod
    async def connect(cls, port: int) -> Peer:
        return cls(await Client.connect(port=port, origin_host=HOST, encoding=BINARY))

    async def ccr(self, name: str, kind: CCRequestType, mscc: MsccRequest) -> CCA:
        number = 0 if kind is CCRequestType.INITIAL else self.numbers[name] + 1
        self.numbers[name] = number
        answer = await self.client.request(
            CCR(
                session_id=f"{HOST};{name}",
                origin_host=HOST,
                origin_realm="test.local",
                destination_realm="test.local",
                auth_application_id=4,
                service_context_id="32251@3gpp.org",
                cc_request_type=kind,
                cc_request_number=number,
                subscription_id=SUB if kind is CCRequestType.INITIAL else None,
                multiple_services_credit_control=(mscc,),
            )
        )
        assert isinstance(answer, CCA) and answer.result_code == 2001, answer
        return answer

    async def open(self, name: str) -> MsccAnswer:
        ask = MsccRequest(rating_group=10, requested_service_unit=ServiceUnit())
        return _only(await self.ccr(name, CCRequestType.INITIAL, ask))

    async def used(self, name: str, mib: int, *, again: bool) -> MsccAnswer:
        m = MsccRequest(
            rating_group=10,
            requested_service_unit=ServiceUnit() if again else None,
            used_service_unit=(UsedServiceUnit(cc_total_octets=mib * MiB),),
        )
        kind = CCRequestType.UPDATE if again else CCRequestType.TERMINATION
        return _only(await self.ccr(name, kind, m))

    async def quote(self, name: str, mib: int) -> tuple[str | None, int]:
        answer = await self.client.request(
            CCR(
                session_id=f"{HOST};{name}",
                origin_host=HOST,
                origin_realm="test.local",
                destination_realm="test.local",
                auth_application_id=4,
                service_context_id="32251@3gpp.org",
                cc_request_type=CCRequestType.EVENT,
                cc_request_number=0,
                subscription_id=SUB,
                requested_action=RequestedAction.PRICE_ENQUIRY,
                multiple_services_credit_control=(
                    MsccRequest(
                        rating_group=10,
                        requested_service_unit=ServiceUnit(cc_total_octets=mib * MiB),
                    ),
                ),
            )
        )
        assert isinstance(answer, CCA) and answer.cost_information is not None, answer
        value = answer.cost_information.unit_value
        cost = value.value_digits * 10 ** (6 + (value.exponent or 0))
        return _only(answer).load_band, cost


def _only(answer: CCA) -> MsccAnswer:
    msccs = answer.multiple_services_credit_control
    assert msccs is not None and len(msccs) == 1, answer
    return msccs[0]


async def _admin(port: int, op: AccountOperation, **fields: object) -> AMA:
    client = await Client.connect(
        port=port, origin_host=ADMIN, applications=(ApplicationId.ADMINISTRATION,)
    )
    try:
        answer = await client.request(
            AMR(
                origin_host=ADMIN,
                origin_realm="test.local",
                account_operation=op,
                account_id="load-1",
                **fields,  # type: ignore[arg-type]
            )
        )
        assert isinstance(answer, AMA) and answer.result_code == 2001, answer
        return answer
    finally:
        await client.close()


async def test_prices_in_two_bands_survive_a_crash_with_the_band_in_force(tmp_path: Path) -> None:
    catalog = tmp_path / "load.toml"
    catalog.write_text(LOAD)
    data = tmp_path / "data"
    server = ServerProcess(data, "--catalog", str(catalog), "--log-json").start()
    try:
        await _admin(
            server.port,
            AccountOperation.CREATE,
            amount=10 * EUR,
            currency_code=978,
            subscription_id=SUB,
        )
        peer = await Peer.connect(server.port)
        # 1 and 2 open sessions: "normal"; the third reaches "busy" (enter 3, factor 3/2)
        assert (await peer.open("s1")).load_band == "normal"
        assert (await peer.open("s2")).load_band == "normal"
        g3 = await peer.open("s3")
        assert (g3.load_band, g3.load_factor) == ("busy", "3/2")
        # reserved: 10 MiB at 10,000/MiB twice, 10 MiB at 15,000/MiB once
        got = await _admin(server.port, AccountOperation.GET)
        assert got.account is not None and got.account.reserved == 350_000
        assert await peer.quote("q1", 1) == ("busy", 15_000)
        # s1 ends with 4 MiB on its normal grant: 40,000
        await peer.used("s1", 4, again=False)
        await peer.client.close()
        server.kill()  # SIGKILL: no checkpoint, no clean stop; the journal is replayed
        server.start()
        peer = await Peer.connect(server.port)
        peer.numbers = {"s2": 0, "s3": 0}
        # 2 sessions open: below busy's enter (3) but not below its leave (2). The band in
        # force before the crash was "busy", so it still is: the new grant is busy (a core
        # that lost the band would say "normal"). s2's 2 MiB were on its normal grant: 20,000
        assert (await peer.used("s2", 2, again=True)).load_band == "busy"
        # s3 ends with 6 MiB on its busy grant: 6 x 15,000 = 90,000
        await peer.used("s3", 6, again=False)
        # s2: 2 MiB on its busy grant after 2 MiB: ceil(4 x 15,000) - ceil(2 x 15,000) =
        # 30,000; 1 session open < leave 2: its new grant is "normal"
        assert (await peer.used("s2", 2, again=True)).load_band == "normal"
        assert await peer.quote("q2", 1) == ("normal", 10_000)
        # s2 ends with 1 MiB at normal: ceil(5 x 10,000) - ceil(4 x 10,000) = 10,000
        await peer.used("s2", 1, again=False)
        await peer.client.close()
        got = await _admin(server.port, AccountOperation.GET)
        assert got.account is not None
        # 40,000 + 90,000 + (20,000 + 30,000 + 10,000) = 190,000
        assert (got.account.balance, got.account.reserved) == (10 * EUR - 190_000, 0)
        assert server.terminate() == 0
    finally:
        server.kill()
    # the operators' log: busy entered before the crash, normal again after it (the restart
    # itself logs nothing: the recovered band is the one in force)
    changes = [
        (e["band"], e["previous"])
        for e in (json.loads(line) for line in server.log_text().splitlines() if line[:1] == "{")
        if e.get("event") == "load.band"
    ]
    assert changes == [("busy", "normal"), ("normal", "busy")]
    records = list(iter_records(data / "cdr"))
    assert [r["recordSequenceNumber"] for r in records] == [1, 2, 3]
    charges = {r["sessionId"].split(";")[1]: r["charge"] for r in records}
    assert charges == {"s1": 40_000, "s3": 90_000, "s2": 60_000}
    bands = [
        (c["loadBand"], c["loadFactor"], c["charge"])
        for r in records
        for usage in r["listOfMultipleUnitUsage"]
        for c in usage["usedUnitContainers"]
    ]
    assert bands == [
        ("normal", "1", 40_000),
        ("busy", "3/2", 90_000),
        ("normal", "1", 20_000),
        ("busy", "3/2", 30_000),
        ("normal", "1", 10_000),
    ]


async def test_the_band_in_force_is_a_metric_and_in_status(tmp_path: Path) -> None:
    """The demo catalog prices RG 20 by load: a node on it shows its base band."""
    async with running(tmp_path / "data") as node:
        port = http_port(node)
        samples = await scrape(port)
        assert samples["ocs_load_band_info", (("band", "normal"),)] == 1
        status, _, body = await get(port, "/status")
        assert status == 200 and json.loads(body)["load_band"] == "normal"
