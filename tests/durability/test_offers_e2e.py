"""Offers end to end: a server subprocess on 127.0.0.1 with the demo catalog, `ocs account
subscribe|get|unsubscribe`, SMS sessions paid by the bundle's allowance, a crash (SIGKILL) and
recovery through the journal, binary AVP bodies (Offer-Name, Offer-Balance), and the records:
the fee is a charge with a record, so the CDR charges equal the money the account lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.edge.client import Client
from protocol.codes import (
    VERSION_DIAMETER,
    AccountOperation,
    ApplicationId,
    CCRequestType,
    OfferStatus,
)
from tests.durability.test_account_cli import Cli
from tests.durability.util import (
    REALM,
    AppProcess,
    admin,
    cdr_charges,
    connect_cc,
    create_account,
    get_account,
    next_e2e,
    sms_ccr,
)

EUR = 1_000_000
UPF = "scp1.test.local"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppProcess]:
    process = AppProcess(tmp_path / "data")
    try:
        yield process.start()
        assert process.terminate() == 0
    finally:
        process.kill()


async def _sms(client: Client, session: str) -> None:
    """One message: INITIAL reserves one unit, TERMINATION reports it used."""
    sid = f"{UPF};{session}"
    opened = await client.request(
        sms_ccr(UPF, sid, CCRequestType.INITIAL, 0, account_id="of-0001"), end_to_end=next_e2e()
    )
    assert opened.result_code == 2001, opened
    closed = await client.request(
        sms_ccr(UPF, sid, CCRequestType.TERMINATION, 1, used=1), end_to_end=next_e2e()
    )
    assert closed.result_code == 2001, closed


async def test_an_allowance_pays_sms_across_a_crash(
    server: AppProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(server, capsys)
    admin_client = await Client.connect(
        port=server.port,
        origin_host="admin.test.local",
        origin_realm=REALM,
        applications=(ApplicationId.ADMINISTRATION,),
    )
    await create_account(admin_client, "of-0001", 20 * EUR)
    await admin_client.close()
    # subscribing takes the 15 EUR fee: 5 EUR left; 100 SMS on the bundle
    code, obj = await cli.json("subscribe", "of-0001", "bundle-15", "--operation-id", "sub-1")
    assert code == 0, obj
    assert obj["Account"]["Balance"] == 5 * EUR
    sms = [b for b in obj["Account"]["Offer-Balance"] if b["Allowance-Name"] == "sms"]
    assert sms[0]["Allowance-Units"] == 100 and sms[0]["Allowance-Rating-Group"] == [30]
    cc = await connect_cc(server.port, UPF)
    for n in range(3):
        await _sms(cc, f"m{n}")
    await cc.close()
    server.kill()  # a crash: recovery replays the journal (subscription, holds, draws)
    server.start()
    # binary AVP bodies (version 0x01): Offer-Name in the AMR, Offer-Balance in the answer
    binary = await Client.connect(
        port=server.port,
        origin_host="admin.test.local",
        origin_realm=REALM,
        applications=(ApplicationId.ADMINISTRATION,),
        encoding=VERSION_DIAMETER,
    )
    account = await get_account(binary, "of-0001")
    assert account.balance == 5 * EUR  # three SMS paid by the allowance, none in money
    assert account.offer_balance is not None
    left = {b.allowance_name: b.allowance_units for b in account.offer_balance}
    assert left == {"data": 10 * (1 << 30), "voice": 300 * 60, "sms": 97}
    assert all(b.offer_status is OfferStatus.ACTIVE for b in account.offer_balance)
    again = await admin(
        binary, AccountOperation.SUBSCRIBE, "of-0001", offer_name="bundle-15", operation_id="sub-1"
    )
    assert again.result_code == 2001  # the retry of sub-1: applied once, no second fee
    busy = await admin(binary, AccountOperation.SUBSCRIBE, "of-0001", offer_name="bundle-15")
    assert busy.result_code == 5004 and busy.failed_avp == {"Offer-Name": "bundle-15"}
    await binary.close()
    cc = await connect_cc(server.port, UPF)
    await _sms(cc, "m3")
    await cc.close()
    cli = Cli(server, capsys)  # (the restarted server listens on another port)
    code, out, err = await cli.run("get", "of-0001")
    assert code == 0, err
    assert "offer bundle-15 sms: 96 units left, 0 held" in out
    server.terminate()  # CDR files complete
    charges, by_session = cdr_charges(server.data_dir)
    assert charges["of-0001"] == 15 * EUR  # the fee; the messages cost no money
    (fee,) = [r for rs in by_session.values() for r in rs if r["recordType"] == "offerFee"]
    assert fee["offerName"] == "bundle-15" and fee["charge"] == 15 * EUR
    session = by_session[f"{UPF};m0"][0]
    (container,) = session["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert container["balanceUsage"] == [
        {"offerName": "bundle-15", "allowanceName": "sms", "units": 1}
    ]
    assert container["charge"] == 0 and container["moneyUnits"] == 0
    server.start()
