"""WIRE.md §8 Administration (application 0x4F435341, command 9001)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import pytest

from tests.conformance.conftest import Connect, Spawn
from tests.conformance.wire import (
    ACTIVE,
    AMR,
    APP_ADMIN,
    BARRED,
    CREATE,
    CREDIT,
    DEBIT,
    GET,
    INVALID_AVP_VALUE,
    MICRO,
    MISSING_AVP,
    MSGPACK_ONLY,
    SET_STATUS,
    SUCCESS,
    SUSPENDED,
    USER_UNKNOWN,
    CcSession,
    amr,
    amr_body,
    balance_of,
    create_account,
    get_account,
    new_msisdn,
    subscription,
    uid,
    units_sms,
)
from tests.server.process import ServerProcess

ACCOUNT_KEYS = {
    "Account-Id",
    "Account-Status",
    "Balance",
    "Reserved",
    "Credit-Limit",
    "Currency-Code",
    "Subscription-Id",
    "Session-Count",
}


def check_account_map(account: dict[str, Any]) -> None:
    assert set(account) >= ACCOUNT_KEYS, account
    for key in ("Balance", "Reserved", "Credit-Limit", "Currency-Code", "Session-Count"):
        assert isinstance(account[key], int), key
    assert isinstance(account["Subscription-Id"], list), "§2: Subscription-Id is an array"


async def test_s8_create_and_get(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §8: CREATE (Subscription-Id, Amount = initial balance, Currency-Code) answers
    2001 with the Account map {Account-Id, Account-Status, Balance, Reserved, Credit-Limit,
    Currency-Code, Subscription-Id [..], Session-Count}; GET returns the same."""
    admin = await connect(server.port)
    account_id, msisdn = f"acct-{uid()}", new_msisdn()
    imsi = f"26201{int(uid(), 16) % 10**10:010d}"  # 5 to 15 digits (docs/protocol.md)
    subs = [*subscription(msisdn), {"Subscription-Id-Type": 1, "Subscription-Id-Data": imsi}]
    answer = await amr(
        admin,
        CREATE,
        account_id,
        Subscription_Id=subs,
        Amount=2_500_000,
        Currency_Code=978,
    )
    assert answer.result_code == SUCCESS
    account = answer.body["Account"]
    check_account_map(account)
    assert account["Account-Id"] == account_id
    assert account["Account-Status"] == ACTIVE
    assert (account["Balance"], account["Reserved"]) == (2_500_000, 0)
    assert account["Currency-Code"] == 978
    assert account["Session-Count"] == 0
    assert account["Subscription-Id"] == subs
    got = await get_account(admin, account_id)
    assert got == account


async def test_s8_credit_debit_set_status(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §8: CREDIT and DEBIT move Balance by Amount (micro-units); SET_STATUS sets
    Account-Status (0 ACTIVE, 1 SUSPENDED, 2 BARRED); each answers with the Account map."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    answer = await amr(admin, CREDIT, account.account_id, Amount=250_000)
    assert answer.result_code == SUCCESS and answer.body["Account"]["Balance"] == 1_250_000
    answer = await amr(admin, DEBIT, account.account_id, Amount=1_000_001)
    assert answer.result_code == SUCCESS and answer.body["Account"]["Balance"] == 249_999
    for status in (SUSPENDED, BARRED, ACTIVE):
        answer = await amr(admin, SET_STATUS, account.account_id, Account_Status=status)
        assert answer.result_code == SUCCESS
        assert answer.body["Account"]["Account-Status"] == status
        assert (await get_account(admin, account.account_id))["Account-Status"] == status
    assert await balance_of(admin, account.account_id) == (249_999, 0)


@pytest.mark.parametrize(
    ("operation", "extra"),
    [
        (GET, {}),
        (CREDIT, {"Amount": 1}),
        (DEBIT, {"Amount": 1}),
        (SET_STATUS, {"Account_Status": 1}),
    ],
    ids=["get", "credit", "debit", "set-status"],
)
async def test_s8_unknown_account_5030(
    server: ServerProcess, connect: Connect, operation: int, extra: dict[str, Any]
) -> None:
    """WIRE.md §8: 5030 for an unknown account."""
    admin = await connect(server.port)
    answer = await amr(admin, operation, f"nobody-{uid()}", **extra)
    assert answer.result_code == USER_UNKNOWN
    assert "Account" not in answer.body


async def test_s8_create_existing_account_is_5004(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §8: 5004 for a CREATE of an existing Account-Id; the account is unchanged."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    answer = await amr(
        admin,
        CREATE,
        account.account_id,
        Subscription_Id=subscription(new_msisdn()),
        Amount=5 * MICRO,
        Currency_Code=978,
    )
    assert answer.result_code == INVALID_AVP_VALUE
    account_map = await get_account(admin, account.account_id)
    assert account_map["Balance"] == MICRO
    assert account_map["Subscription-Id"] == subscription(account.msisdn)


@pytest.mark.parametrize("key", ["Origin-Host", "Origin-Realm", "Account-Operation", "Account-Id"])
async def test_s8_missing_key_is_5005(server: ServerProcess, connect: Connect, key: str) -> None:
    """WIRE.md §8/§2: 5005 for a missing required key, Failed-AVP {name: nil}."""
    admin = await connect(server.port)
    body = amr_body(admin, GET, "whoever")
    del body[key]
    answer = await admin.request(AMR, APP_ADMIN, body)
    assert answer.result_code == MISSING_AVP
    assert answer.body["Failed-AVP"] == {key: None}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Account-Operation", 99),
        ("Account-Status", 7),
        pytest.param("Amount", "ten", marks=MSGPACK_ONLY),  # no Integer64 holds a str
        pytest.param("Account-Id", 5, marks=MSGPACK_ONLY),
    ],
)
async def test_s8_bad_value_is_5004(
    server: ServerProcess, connect: Connect, key: str, value: Any
) -> None:
    """WIRE.md §8/§2: 5004 for a bad value, Failed-AVP {name: value as received}."""
    admin = await connect(server.port)
    body = {**amr_body(admin, SET_STATUS, "whoever", Account_Status=1), key: value}
    answer = await admin.request(AMR, APP_ADMIN, body)
    assert answer.result_code == INVALID_AVP_VALUE
    assert answer.body["Failed-AVP"] == {key: value}


@pytest.mark.parametrize("amount", [0, -5])
async def test_s8_credit_of_a_bad_amount_is_5004(
    server: ServerProcess, connect: Connect, amount: int
) -> None:
    """WIRE.md §8: 5004 for a bad value: a CREDIT/DEBIT Amount that is not positive changes
    nothing."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    for op in (CREDIT, DEBIT):
        answer = await amr(admin, op, account.account_id, Amount=amount)
        assert answer.result_code == INVALID_AVP_VALUE
    assert await balance_of(admin, account.account_id) == (MICRO, 0)


async def test_s8_operation_id_applied_once(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §8: CREDIT/DEBIT with an Operation-Id are applied once, however often sent
    (each send here is a new request, with a new End-to-End-Id)."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    credit_id, debit_id = f"op-{uid()}", f"op-{uid()}"
    for _ in range(3):
        answer = await amr(
            admin, CREDIT, account.account_id, Amount=400_000, Operation_Id=credit_id
        )
        assert answer.result_code == SUCCESS
        answer = await amr(admin, DEBIT, account.account_id, Amount=100_000, Operation_Id=debit_id)
        assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (1_300_000, 0)
    other = await connect(server.port)  # another operator tool, same Operation-Id
    await amr(other, CREDIT, account.account_id, Amount=400_000, Operation_Id=credit_id)
    assert await balance_of(admin, account.account_id) == (1_300_000, 0)


async def test_s8_operation_id_applied_once_across_a_restart(
    spawn: Spawn, connect: Connect
) -> None:
    """WIRE.md §8/§6: an Operation-Id is remembered across a restart (SIGKILL here)."""
    srv = spawn()
    admin = await connect(srv.port)
    account = await create_account(admin, 0)
    op_id = f"op-{uid()}"
    answer = await amr(admin, CREDIT, account.account_id, Amount=700_000, Operation_Id=op_id)
    assert answer.result_code == SUCCESS
    await admin.close()
    srv.kill()
    srv = spawn()
    admin = await connect(srv.port)
    answer = await amr(admin, CREDIT, account.account_id, Amount=700_000, Operation_Id=op_id)
    assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (700_000, 0)


async def test_s8_balance_is_after_reservations(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §8: Balance is what is left after reservations; Reserved is what open grants
    hold; Session-Count counts open sessions."""
    admin = await connect(server.port)
    peer = await connect(server.port)
    account = await create_account(admin, MICRO)
    sessions = [CcSession(peer, account.msisdn) for _ in range(2)]
    for n, session in enumerate(sessions, start=1):
        await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": units_sms(n)}])
    account_map = await get_account(admin, account.account_id)
    assert (account_map["Balance"], account_map["Reserved"]) == (700_000, 300_000)
    assert account_map["Session-Count"] == 2
    for session in sessions:
        await session.terminate([{"Rating-Group": 30, "Used-Service-Unit": [units_sms(1)]}])
    account_map = await get_account(admin, account.account_id)
    assert (account_map["Balance"], account_map["Reserved"]) == (800_000, 0)
    assert account_map["Session-Count"] == 0


@pytest.mark.parametrize(
    ("operation", "key"),
    [(CREDIT, "Amount"), (DEBIT, "Amount"), (SET_STATUS, "Account-Status")],
    ids=["credit", "debit", "set-status"],
)
async def test_s8_key_the_operation_needs_missing_is_5005(
    server: ServerProcess, connect: Connect, operation: int, key: str
) -> None:
    """WIRE.md §8: keys "as the operation needs" (Amount for CREDIT/DEBIT, Account-Status for
    SET_STATUS): without it, 5005 missing key (Failed-AVP {name: nil}); nothing changes."""
    admin = await connect(server.port)
    account = await create_account(admin, MICRO)
    answer = await amr(admin, operation, account.account_id)
    assert answer.result_code == MISSING_AVP
    assert answer.body.get("Failed-AVP") == {key: None}
    account_map = await get_account(admin, account.account_id)
    assert (account_map["Balance"], account_map["Account-Status"]) == (MICRO, ACTIVE)


async def test_s8_create_with_a_taken_subscription_is_5004(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §8: 5004 for a bad value: a CREATE whose Subscription-Id another account already
    holds is refused (a subscriber resolves to one account, §5.3); nothing is created and the
    subscriber still charges the first account."""
    admin = await connect(server.port)
    first = await create_account(admin, MICRO)
    other_id = f"acct-{uid()}"
    answer = await amr(
        admin,
        CREATE,
        other_id,
        Subscription_Id=subscription(first.msisdn),
        Amount=5 * MICRO,
        Currency_Code=978,
    )
    assert answer.result_code == INVALID_AVP_VALUE
    assert (await amr(admin, GET, other_id)).result_code == USER_UNKNOWN
    peer = await connect(server.port)
    session = CcSession(peer, first.msisdn)
    await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": units_sms(1)}])
    await session.terminate([{"Rating-Group": 30, "Used-Service-Unit": [units_sms(1)]}])
    assert await balance_of(admin, first.account_id) == (MICRO - 100_000, 0)


# --- extension (docs/protocol.md): Account-Operation 6 TERMINATE_SESSION -----------------------

TERMINATE_SESSION = 6


async def test_s8_terminate_session_extension(server: ServerProcess, connect: Connect) -> None:
    """docs/protocol.md: an operator ends any peer's session with Account-Operation 6
    TERMINATE_SESSION and its Session-Id: reservations released, the CDR closed with
    "managementIntervention", ASR sent to the session's own peer; the AMA carries the
    account. Unknown session (or another account's): 5002 with Failed-AVP {"Session-Id": ...};
    no Session-Id: 5005."""
    admin = await connect(server.port)
    owner = await connect(server.port)
    account = await create_account(admin, MICRO)
    session = CcSession(owner, account.msisdn)
    await session.initial([{"Rating-Group": 30, "Requested-Service-Unit": units_sms(3)}])
    assert await balance_of(admin, account.account_id) == (MICRO - 300_000, 300_000)
    other = await create_account(admin, MICRO)
    for account_id, extra, code, failed in (
        (account.account_id, {}, MISSING_AVP, {"Session-Id": None}),
        (
            account.account_id,
            {"Session-Id": f"{owner.origin_host};none"},
            5002,
            {"Session-Id": f"{owner.origin_host};none"},
        ),
        (
            other.account_id,
            {"Session-Id": session.session_id},
            5002,
            {"Session-Id": session.session_id},
        ),
    ):
        body = {**amr_body(admin, TERMINATE_SESSION, account_id), **extra}
        answer = await admin.request(AMR, APP_ADMIN, body)
        assert answer.result_code == code and answer.body.get("Failed-AVP") == failed
    body = amr_body(admin, TERMINATE_SESSION, account.account_id)
    answer = await admin.request(AMR, APP_ADMIN, {**body, "Session-Id": session.session_id})
    assert answer.result_code == SUCCESS
    check_account_map(answer.body["Account"])
    assert answer.body["Account"]["Session-Count"] == 0
    assert answer.body["Account"]["Reserved"] == 0 and answer.body["Account"]["Balance"] == MICRO
    asr = await owner.expect_request(274)
    assert asr.body["Session-Id"] == session.session_id
    assert asr.body["Destination-Host"] == owner.origin_host
    await owner.answer(asr, {**owner.base_answer(), "Session-Id": session.session_id})
    late = await session.terminate([{"Rating-Group": 30, "Used-Service-Unit": [units_sms(1)]}])
    assert late.result_code == 5002
    records: list[dict[str, Any]] = []
    for _ in range(100):
        records = [r for r in read_records(server) if r["sessionId"] == session.session_id]
        if records:
            break
        await asyncio.sleep(0.05)
    [record] = records
    assert record["causeForRecordClosing"] == "managementIntervention" and record["charge"] == 0
    assert not admin.inbox


# --- extension (docs/protocol.md): Account-Operation 7 CATALOG_SHOW -----------------------------

CATALOG_SHOW = 7


async def test_s8_catalog_show_extension(server: ServerProcess, connect: Connect) -> None:
    """docs/protocol.md: Account-Operation 7 CATALOG_SHOW answers 2001 with `Catalog`: the
    name, the SHA-256 of the text, since when (Time) and the text of the catalog in force
    (the module's server runs the demo catalog); no `Account`, whatever the Account-Id."""
    admin = await connect(server.port)
    answer = await amr(admin, CATALOG_SHOW, "*")
    assert answer.result_code == SUCCESS and "Account" not in answer.body
    shown = answer.body["Catalog"]
    assert set(shown) == {"Catalog-Name", "Catalog-Digest", "Catalog-Since", "Catalog-Source"}
    text = shown["Catalog-Source"]
    assert shown["Catalog-Name"] == "demo" and 'name = "demo"' in text
    assert shown["Catalog-Digest"] == hashlib.sha256(text.encode()).hexdigest()
    assert isinstance(shown["Catalog-Since"], int) and 0 < shown["Catalog-Since"] <= time.time()


def read_records(server: ServerProcess) -> list[dict[str, Any]]:
    """The whole lines of the CDR files so far (§9; a line being written is left out)."""
    records: list[dict[str, Any]] = []
    for path in sorted((server.data_dir / "cdr").glob("cdr-*")):
        *lines, _partial = path.read_text().split("\n")
        records.extend(json.loads(line) for line in lines)
    return records
