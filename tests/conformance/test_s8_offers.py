"""docs/protocol.md, *Extension: offers*: SUBSCRIBE (14) and UNSUBSCRIBE (15) with `Offer-Name`,
`Offer-Balance` in the Account map, the refusals' Result-Codes and Failed-AVP, in both body
encodings, against the demo catalog's offer bundle-15 (15 EUR: 10 GiB, 300 min, 100 SMS)."""

from __future__ import annotations

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    GET,
    INVALID_AVP_VALUE,
    MISSING_AVP,
    SUCCESS,
    amr,
    create_account,
    get_account,
)
from tests.server.process import ServerProcess

SUBSCRIBE = 14
UNSUBSCRIBE = 15
EUR = 1_000_000
CREDIT_LIMIT_REACHED = 4012
OFFER_BALANCE_KEYS = {
    "Offer-Name",
    "Allowance-Name",
    "Allowance-Rating-Group",
    "Allowance-Units",
    "Allowance-Reserved",
    "Balance-Expiry",
    "Offer-Status",
}


async def test_subscribe_shows_every_balance_then_unsubscribe(
    server: ServerProcess, connect: Connect
) -> None:
    admin = await connect(server.port)
    account = await create_account(admin, 20 * EUR)
    answer = await amr(admin, SUBSCRIBE, account.account_id, Offer_Name="bundle-15")
    assert answer.result_code == SUCCESS, answer.body
    got = answer.body["Account"]
    assert got["Balance"] == 5 * EUR  # 20 - the 15 EUR fee
    balances = {b["Allowance-Name"]: b for b in got["Offer-Balance"]}
    assert set(balances) == {"data", "voice", "sms"}
    for b in balances.values():
        assert set(b) == OFFER_BALANCE_KEYS, b
        assert b["Offer-Name"] == "bundle-15" and b["Offer-Status"] == 0
        assert b["Allowance-Reserved"] == 0 and isinstance(b["Balance-Expiry"], int)
    assert balances["data"]["Allowance-Units"] == 10 * 2**30
    assert balances["data"]["Allowance-Rating-Group"] == [10, 20]
    assert balances["voice"]["Allowance-Units"] == 300 * 60
    assert balances["sms"]["Allowance-Units"] == 100
    assert (await get_account(admin, account.account_id))["Offer-Balance"] == got["Offer-Balance"]
    gone = await amr(admin, UNSUBSCRIBE, account.account_id, Offer_Name="bundle-15")
    assert gone.result_code == SUCCESS and "Offer-Balance" not in gone.body["Account"]


async def test_subscribe_refusals(server: ServerProcess, connect: Connect) -> None:
    admin = await connect(server.port)
    poor = await create_account(admin, 10 * EUR)
    missing = await amr(admin, SUBSCRIBE, poor.account_id)
    assert missing.result_code == MISSING_AVP
    assert missing.body["Failed-AVP"] == {"Offer-Name": None}
    unknown = await amr(admin, SUBSCRIBE, poor.account_id, Offer_Name="gold")
    assert unknown.result_code == INVALID_AVP_VALUE
    assert unknown.body["Failed-AVP"] == {"Offer-Name": "gold"}
    long_name = "x" * 65  # beyond MAX_OFFER_NAME_LENGTH: refused by the codec (section 2)
    too_long = await amr(admin, SUBSCRIBE, poor.account_id, Offer_Name=long_name)
    assert too_long.result_code == INVALID_AVP_VALUE
    assert too_long.body["Failed-AVP"] == {"Offer-Name": long_name}
    unpaid = await amr(admin, SUBSCRIBE, poor.account_id, Offer_Name="bundle-15")
    assert unpaid.result_code == CREDIT_LIMIT_REACHED
    assert unpaid.body["Failed-AVP"] == {"Offer-Name": "bundle-15"}
    not_held = await amr(admin, UNSUBSCRIBE, poor.account_id, Offer_Name="bundle-15")
    assert not_held.result_code == INVALID_AVP_VALUE
    assert (await amr(admin, GET, poor.account_id)).body["Account"]["Balance"] == 10 * EUR
