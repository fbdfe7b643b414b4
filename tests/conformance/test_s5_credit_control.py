"""WIRE.md §5 Credit control (application 4, command 272) with the demo catalog
(docs/catalog.md: RG 10 data, 20 video linked to 10, 30 SMS at 0.10 EUR, 40 voice, 50
zero-rated portal). Money is checked through AMA (§8): Balance is after reservations,
Reserved is what open grants hold. SMS is flat-priced, so its amounts are exact whatever the
wall clock; data and voice depend on the time of day, so their amounts are checked as
balance movements."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.conftest import Connect
from tests.conformance.wire import (
    APP_CC,
    BARRED,
    CCR,
    CHECK_BALANCE,
    CREDIT_CONTROL_NOT_APPLICABLE,
    CREDIT_LIMIT_REACHED,
    DATA,
    DIRECT_DEBITING,
    END_USER_SERVICE_DENIED,
    EVENT,
    FINAL,
    INITIAL,
    INVALID_AVP_VALUE,
    LINKED_USAGE,
    MICRO,
    PRICE_ENQUIRY,
    QUOTA_EXHAUSTED,
    RATING_FAILED,
    REFUND_ACCOUNT,
    SET_STATUS,
    SMS,
    SUCCESS,
    SUSPENDED,
    TERMINATION,
    THRESHOLD,
    UNKNOWN_SESSION_ID,
    UPDATE,
    USER_UNKNOWN,
    VOICE,
    CcSession,
    Msg,
    Peer,
    amr,
    avp,
    balance_of,
    ccr_body,
    create_account,
    get_account,
    micro_of,
    mscc_of,
    new_msisdn,
    new_session_id,
    units_sms,
)
from tests.server.process import ServerProcess

SMS_PRICE = 100_000  # 0.10 EUR per message (docs/catalog.md)
MIB = 1 << 20
# 2026-01-05 is a Monday: 14:00 Paris is peak (0.02 EUR/MiB), 22:00 off-peak (0.01 EUR/MiB)
MONDAY_1400_PARIS = 1767618000  # 2026-01-05T13:00:00Z
MONDAY_2200_PARIS = 1767646800  # 2026-01-05T21:00:00Z
BLACK_FRIDAY_1400_PARIS = 1795784400  # 2026-11-27T13:00:00Z, promotion: half price


def rsu(n: int | None = None) -> dict[str, Any]:
    return {} if n is None else units_sms(n)


def sms(requested: int | None = None, used: list[int] | None = None, **kw: Any) -> dict[str, Any]:
    """An MSCC for RG 30 (SMS): Requested-Service-Unit when `requested` is given (-1: empty),
    a USU per entry of `used`."""
    entry: dict[str, Any] = {"Rating-Group": 30, **kw}
    if requested is not None:
        entry["Requested-Service-Unit"] = {} if requested < 0 else units_sms(requested)
    if used is not None:
        entry["Used-Service-Unit"] = [units_sms(n) for n in used]
    return entry


async def admin_and_peer(server: ServerProcess, connect: Connect) -> tuple[Peer, Peer]:
    return await connect(server.port), await connect(server.port)


def assert_cca(answer: Msg, request_type: int, number: int, result: int = SUCCESS) -> None:
    """WIRE.md §5.2: a CCA always carries Session-Id, Result-Code, Origin-Host, Origin-Realm,
    Auth-Application-Id 4, CC-Request-Type and CC-Request-Number."""
    body = answer.body
    assert answer.result_code == result, body
    assert body["Auth-Application-Id"] == 4
    assert body["CC-Request-Type"] == request_type
    assert body["CC-Request-Number"] == number
    assert isinstance(body["Session-Id"], str)


# --- sessions (§5.3) ---------------------------------------------------------------------------


async def test_s5_initial_update_termination_sms_exact_money(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3/§8: INITIAL reserves the grant before answering; UPDATE charges the used
    units and replaces the reservation with a fresh grant; TERMINATION charges and releases
    everything (Reserved 0)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 1_000_000)
    session = CcSession(peer, account.msisdn)

    answer = await session.initial([sms(2)])
    assert_cca(answer, INITIAL, 0)
    entry = mscc_of(answer, 30)
    assert entry["Result-Code"] == SUCCESS
    assert entry["Granted-Service-Unit"] == units_sms(2)
    assert "Final-Unit-Indication" not in entry
    assert await balance_of(admin, account.account_id) == (800_000, 200_000)
    account_map = await get_account(admin, account.account_id)
    assert account_map["Session-Count"] == 1

    answer = await session.update([sms(3, [1], **avp("Reporting-Reason", QUOTA_EXHAUSTED))])
    assert_cca(answer, UPDATE, 1)
    assert mscc_of(answer, 30)["Granted-Service-Unit"] == units_sms(3)
    assert await balance_of(admin, account.account_id) == (600_000, 300_000)

    answer = await session.terminate([sms(used=[2], **avp("Reporting-Reason", FINAL))])
    assert_cca(answer, TERMINATION, 2)
    assert await balance_of(admin, account.account_id) == (700_000, 0)
    account_map = await get_account(admin, account.account_id)
    assert account_map["Session-Count"] == 0


async def test_s5_grant_default_quantum_validity_and_thresholds(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.2/§5.5: an empty Requested-Service-Unit lets the server choose (the rating
    group's default: RG 10 10 MiB, RG 20 50 MiB, RG 40 300 s); grants carry Validity-Time, the
    quota threshold of the unit (Volume-/Time-Quota-Threshold) and Quota-Holding-Time."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 100 * MICRO)
    data = CcSession(peer, account.msisdn, DATA)
    answer = await data.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {}},
            {"Rating-Group": 20, "Requested-Service-Unit": {}},
        ]
    )
    assert_cca(answer, INITIAL, 0)
    rg10, rg20 = mscc_of(answer, 10), mscc_of(answer, 20)
    assert rg10["Result-Code"] == rg20["Result-Code"] == SUCCESS
    assert rg10["Granted-Service-Unit"] == {"CC-Total-Octets": 10 * MIB}
    assert rg10["Validity-Time"] == 3600
    assert rg10["Volume-Quota-Threshold"] == 10 * MIB // 5  # 20 %
    assert rg10["Quota-Holding-Time"] == 300
    assert rg20["Granted-Service-Unit"] == {"CC-Total-Octets": 50 * MIB}
    assert rg20["Volume-Quota-Threshold"] == 50 * MIB // 10  # 10 %
    balance, reserved = await balance_of(admin, account.account_id)
    assert reserved > 0 and balance + reserved == 100 * MICRO

    voice = CcSession(peer, account.msisdn, VOICE)
    answer = await voice.initial([{"Rating-Group": 40, "Requested-Service-Unit": {}}])
    rg40 = mscc_of(answer, 40)
    assert rg40["Granted-Service-Unit"] == {"CC-Time": 300}
    assert rg40["Validity-Time"] == 3600
    assert rg40["Time-Quota-Threshold"] == 30

    sms_session = CcSession(peer, account.msisdn, SMS)
    answer = await sms_session.initial([sms(-1)])
    rg30 = mscc_of(answer, 30)
    assert rg30["Granted-Service-Unit"] == units_sms(1)
    assert rg30["Validity-Time"] == 600

    for s in (data, voice, sms_session):
        assert (await s.terminate()).result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (100 * MICRO, 0)


async def test_s5_linked_rating_groups_listed_in_grants(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.6 (and vectors.json cca-initial): a grant for a rating group with links
    lists them in Linked-Rating-Group, an array: RG 20 -> [10], RG 10 -> [20]."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 10 * MICRO)
    session = CcSession(peer, account.msisdn, DATA)
    answer = await session.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {"CC-Total-Octets": MIB}},
            {"Rating-Group": 20, "Requested-Service-Unit": {"CC-Total-Octets": MIB}},
        ]
    )
    assert mscc_of(answer, 20)["Linked-Rating-Group"] == [10]
    assert mscc_of(answer, 10)["Linked-Rating-Group"] == [20]
    await session.terminate()


async def test_s5_linked_usage_reporting_charges_every_group(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.6: a THRESHOLD report for RG 10 carries a USU for the linked RG 20 with
    reason 100 LINKED_USAGE (vectors.json ccr-update-linked); the server charges all of them."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 10 * MICRO)
    session = CcSession(peer, account.msisdn, DATA)
    await session.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {}},
            {"Rating-Group": 20, "Requested-Service-Unit": {}},
        ]
    )
    answer = await session.update(
        [
            {
                "Rating-Group": 10,
                "Requested-Service-Unit": {},
                "Used-Service-Unit": [
                    {
                        "CC-Total-Octets": 4 * MIB,
                        "CC-Input-Octets": MIB,
                        "CC-Output-Octets": 3 * MIB,
                        "Reporting-Reason": THRESHOLD,
                    }
                ],
            },
            {
                "Rating-Group": 20,
                "Used-Service-Unit": [
                    {"CC-Total-Octets": 2 * MIB, "Reporting-Reason": LINKED_USAGE}
                ],
            },
        ]
    )
    assert_cca(answer, UPDATE, 1)
    assert mscc_of(answer, 10)["Result-Code"] == SUCCESS
    assert mscc_of(answer, 20)["Result-Code"] == SUCCESS
    assert "Granted-Service-Unit" in mscc_of(answer, 10)
    await session.terminate()
    balance, reserved = await balance_of(admin, account.account_id)
    assert reserved == 0
    # 4 MiB of data (0.01 or 0.02 EUR/MiB, or half on Black Friday) + 2 MiB of video (0.005)
    spent = 10 * MICRO - balance
    assert spent in {
        4 * 10_000 + 2 * 5_000,
        4 * 20_000 + 2 * 5_000,
        4 * 5_000 + 2 * 5_000,
        4 * 10_000 // 2 + 2 * 5_000,
    }


async def test_s5_grant_cut_to_balance_carries_final_unit_indication(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3: the amount asked is cut to what the balance can pay; if the cut leaves
    less than asked, the grant carries Final-Unit-Indication (RG 30: TERMINATE)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 250_000)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([sms(5)])
    entry = mscc_of(answer, 30)
    assert entry["Result-Code"] == SUCCESS
    assert entry["Granted-Service-Unit"] == units_sms(2)
    assert entry["Final-Unit-Indication"] == {"Final-Unit-Action": 0}
    assert await balance_of(admin, account.account_id) == (50_000, 200_000)
    await session.terminate([sms(used=[0])])
    assert await balance_of(admin, account.account_id) == (250_000, 0)


@pytest.mark.parametrize(
    ("rating_group", "fua", "extra"),
    [
        (
            10,
            1,
            {
                "Redirect-Server": {
                    "Redirect-Address-Type": 2,
                    "Redirect-Server-Address": "http://topup.example.com/",
                }
            },
        ),
        (20, 2, {"Filter-Id": ["video-blocked"]}),
    ],
    ids=["redirect", "restrict-access"],
)
async def test_s5_final_unit_indication_actions(
    server: ServerProcess,
    connect: Connect,
    rating_group: int,
    fua: int,
    extra: dict[str, Any],
) -> None:
    """WIRE.md §5.2: Final-Unit-Indication {Final-Unit-Action 1 REDIRECT with
    Redirect-Server; 2 RESTRICT_ACCESS with Filter-Id (an array)} as the catalog says."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 1_000)  # 0.001 EUR: some KiB, never the default
    session = CcSession(peer, account.msisdn, DATA)
    answer = await session.initial([{"Rating-Group": rating_group, "Requested-Service-Unit": {}}])
    entry = mscc_of(answer, rating_group)
    assert entry["Result-Code"] == SUCCESS
    granted = entry["Granted-Service-Unit"]["CC-Total-Octets"]
    assert 0 < granted < 10 * MIB
    assert entry["Final-Unit-Indication"] == {"Final-Unit-Action": fua, **extra}
    balance, reserved = await balance_of(admin, account.account_id)
    assert 0 < reserved <= 1_000 and balance + reserved == 1_000
    await session.terminate()


async def test_s5_nothing_grantable_is_4012_per_mscc(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3: if nothing can be granted, that MSCC's Result-Code is 4012
    DIAMETER_CREDIT_LIMIT_REACHED; the top-level Result-Code stays 2001."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 50_000)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([sms(1)])
    assert_cca(answer, INITIAL, 0)
    entry = mscc_of(answer, 30)
    assert entry["Result-Code"] == CREDIT_LIMIT_REACHED
    assert "Granted-Service-Unit" not in entry
    assert await balance_of(admin, account.account_id) == (50_000, 0)
    await session.terminate()


async def test_s5_top_level_2001_with_per_mscc_codes(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.2/§5.3: one MSCC answer per MSCC of the request, each with Rating-Group and
    its own Result-Code: 2001 granted, 4011 zero-rated (RG 50), 5031 unknown rating group
    (99, and RG 30 which the data service does not allow); top level 2001."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn, DATA)
    answer = await session.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {}},
            {"Rating-Group": 50, "Requested-Service-Unit": {}},
            {"Rating-Group": 99, "Requested-Service-Unit": {}},
            {"Rating-Group": 30, "Requested-Service-Unit": {}},
        ]
    )
    assert_cca(answer, INITIAL, 0)
    entries = answer.body["Multiple-Services-Credit-Control"]
    assert isinstance(entries, list) and len(entries) == 4
    assert all(isinstance(e["Result-Code"], int) for e in entries)
    assert mscc_of(answer, 10)["Result-Code"] == SUCCESS
    assert mscc_of(answer, 50)["Result-Code"] == CREDIT_CONTROL_NOT_APPLICABLE
    assert mscc_of(answer, 99)["Result-Code"] == RATING_FAILED
    assert mscc_of(answer, 30)["Result-Code"] == RATING_FAILED
    for code in (50, 99, 30):
        assert "Granted-Service-Unit" not in mscc_of(answer, code)
    await session.terminate()


async def test_s5_unknown_subscriber_5030(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.3: INITIAL for a Subscription-Id no account has: 5030
    DIAMETER_USER_UNKNOWN; no session is opened (an UPDATE then gets 5002)."""
    peer = await connect(server.port)
    session = CcSession(peer, new_msisdn())
    answer = await session.initial([sms(1)])
    assert_cca(answer, INITIAL, 0, USER_UNKNOWN)
    answer = await session.update([sms(1)])
    assert_cca(answer, UPDATE, 1, UNKNOWN_SESSION_ID)


@pytest.mark.parametrize("status", [SUSPENDED, BARRED])
async def test_s5_inactive_account_4010(
    server: ServerProcess, connect: Connect, status: int
) -> None:
    """WIRE.md §5.3: INITIAL for an account that is not active: 4010
    DIAMETER_END_USER_SERVICE_DENIED; nothing reserved."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    answer = await amr(admin, SET_STATUS, account.account_id, Account_Status=status)
    assert answer.result_code == SUCCESS
    answer = await CcSession(peer, account.msisdn).initial([sms(1)])
    assert_cca(answer, INITIAL, 0, END_USER_SERVICE_DENIED)
    assert await balance_of(admin, account.account_id) == (MICRO, 0)


async def test_s5_second_initial_is_5004_failed_avp_request_type(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3: a second INITIAL for an open Session-Id is answered 5004 with Failed-AVP
    CC-Request-Type (sent after an UPDATE, so it is not a §6 duplicate of the last request)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(1)])
    await session.update([sms(1, [1])])
    before = await balance_of(admin, account.account_id)
    body = session.body(INITIAL, 0, msisdn=account.msisdn, mscc=[sms(1)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, INITIAL, 0, INVALID_AVP_VALUE)
    assert answer.body["Failed-AVP"] == {"CC-Request-Type": INITIAL}
    assert await balance_of(admin, account.account_id) == before
    assert (await session.terminate([sms(used=[1])])).result_code == SUCCESS


async def test_s5_request_number_discipline(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.3: CC-Request-Number MUST be the previous one + 1; any other value that is
    not a duplicate is answered 5004 with Failed-AVP CC-Request-Number, and changes nothing."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(1)])
    state = await balance_of(admin, account.account_id)
    for number, kind in ((2, UPDATE), (5, UPDATE), (0, UPDATE), (3, TERMINATION), (7, TERMINATION)):
        body = session.body(kind, number, mscc=[sms(1, [1])])
        answer = await peer.request(CCR, APP_CC, body)
        assert_cca(answer, kind, number, INVALID_AVP_VALUE)
        assert answer.body["Failed-AVP"] == {"CC-Request-Number": number}
        assert await balance_of(admin, account.account_id) == state, "changes nothing"
    answer = await session.update([sms(1, [1])])  # number 1: accepted
    assert_cca(answer, UPDATE, 1)
    answer = await peer.request(CCR, APP_CC, session.body(UPDATE, 3, mscc=[sms(1, [1])]))
    assert_cca(answer, UPDATE, 3, INVALID_AVP_VALUE)
    answer = await session.terminate([sms(used=[1])])  # number 2
    assert_cca(answer, TERMINATION, 2)
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


async def test_s5_unknown_session_5002(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.3: UPDATE/TERMINATION for a session the server does not hold: 5002
    DIAMETER_UNKNOWN_SESSION_ID (also once a session was terminated)."""
    admin, peer = await admin_and_peer(server, connect)
    for kind in (UPDATE, TERMINATION):
        body = ccr_body(peer, new_session_id(peer), kind, 1, mscc=[sms(used=[1])])
        answer = await peer.request(CCR, APP_CC, body)
        assert_cca(answer, kind, 1, UNKNOWN_SESSION_ID)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(1)])
    await session.terminate([sms(used=[1])])
    answer = await session.update([sms(1, [1])])
    assert_cca(answer, UPDATE, 2, UNKNOWN_SESSION_ID)
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


async def test_s5_session_id_begins_with_the_openers_origin_host(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3 (RFC 6733 §8.8): an INITIAL or EVENT whose Session-Id does not begin with
    the peer's Origin-Host is answered 5004 with Failed-AVP {Session-Id} and changes nothing;
    the Origin-Host followed by ";", or alone, is accepted."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    other = f"other-{peer.origin_host}"
    host = peer.origin_host
    for foreign in (f"{other};1;2", f"{host}x;1", f"1;{host};1", host.upper() + ";1"):
        initial = ccr_body(peer, foreign, INITIAL, 0, msisdn=account.msisdn, mscc=[sms(1)])
        debit = ccr_body(
            peer,
            foreign,
            EVENT,
            0,
            msisdn=account.msisdn,
            mscc=[sms(1)],
            **avp("Requested-Action", DIRECT_DEBITING),
        )
        for body, kind in ((initial, INITIAL), (debit, EVENT)):
            answer = await peer.request(CCR, APP_CC, body)
            assert_cca(answer, kind, 0, INVALID_AVP_VALUE)
            assert answer.body["Failed-AVP"] == {"Session-Id": foreign}
            assert answer.body["Session-Id"] == foreign
    assert await balance_of(admin, account.account_id) == (MICRO, 0)
    assert (await get_account(admin, account.account_id))["Session-Count"] == 0
    alone = CcSession(peer, account.msisdn, session_id=host)
    assert_cca(await alone.initial([sms(1)]), INITIAL, 0)
    assert_cca(await alone.terminate([sms(used=[1])]), TERMINATION, 1)
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


async def test_s5_another_peers_session_is_5002_and_changes_nothing(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3: a session belongs to the peer that opened it. Another peer's UPDATE or
    TERMINATION (its usage would be charged to the owner's subscriber, its TERMINATION would
    close the owner's session) is answered 5002, the same as for a session that does not exist,
    and changes nothing; the owner goes on. Once the session is closed, another peer repeating
    its last request does not get the owner's answer either (§6)."""
    admin, owner = await admin_and_peer(server, connect)
    intruder = await connect(server.port)
    account = await create_account(admin, MICRO)
    session = CcSession(owner, account.msisdn)
    await session.initial([sms(2)])
    state = await balance_of(admin, account.account_id)
    absent = new_session_id(intruder)
    for number, kind in ((1, UPDATE), (1, TERMINATION), (0, UPDATE), (2, TERMINATION)):
        body = ccr_body(intruder, session.session_id, kind, number, mscc=[sms(1, [2])])
        answer = await intruder.request(CCR, APP_CC, body)
        assert_cca(answer, kind, number, UNKNOWN_SESSION_ID)
        nothing = await intruder.request(
            CCR, APP_CC, ccr_body(intruder, absent, kind, number, mscc=[sms(1, [2])])
        )
        assert {k: v for k, v in answer.body.items() if k != "Session-Id"} == {
            k: v for k, v in nothing.body.items() if k != "Session-Id"
        }, "reveals nothing: the answer for a session that does not exist"
    assert await balance_of(admin, account.account_id) == state
    answer = await session.update([sms(1, [1])])
    assert_cca(answer, UPDATE, 1)
    term = await session.terminate([sms(used=[1])])
    assert_cca(term, TERMINATION, 2)
    repeat = ccr_body(intruder, session.session_id, TERMINATION, 2, mscc=[sms(used=[1])])
    answer = await intruder.request(CCR, APP_CC, repeat)
    assert_cca(answer, TERMINATION, 2, UNKNOWN_SESSION_ID)
    assert answer.body != term.body
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


async def test_s5_usage_beyond_the_grant_is_charged(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.3: used units are charged even beyond the grant; the balance may then fall
    below zero."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 150_000)
    session = CcSession(peer, account.msisdn)
    answer = await session.initial([sms(1)])
    assert mscc_of(answer, 30)["Granted-Service-Unit"] == units_sms(1)
    answer = await session.terminate([sms(used=[3])])
    assert answer.result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (150_000 - 3 * SMS_PRICE, 0)


async def test_s5_termination_releases_everything(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.3/§5.4: TERMINATION releases everything the session still holds and closes
    it (Reserved 0); zero used units give the reservation back."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 5 * MICRO)
    data = CcSession(peer, account.msisdn, DATA)
    await data.initial(
        [
            {"Rating-Group": 10, "Requested-Service-Unit": {}},
            {"Rating-Group": 20, "Requested-Service-Unit": {}},
        ]
    )
    text = CcSession(peer, account.msisdn, SMS)
    await text.initial([sms(3)])
    _, reserved = await balance_of(admin, account.account_id)
    assert reserved > 3 * SMS_PRICE
    assert (await data.terminate()).result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (5 * MICRO - 3 * SMS_PRICE, 3 * SMS_PRICE)
    assert (await text.terminate([sms(used=[0])])).result_code == SUCCESS
    assert await balance_of(admin, account.account_id) == (5 * MICRO, 0)
    assert (await get_account(admin, account.account_id))["Session-Count"] == 0


async def test_s5_aoc_cost_and_remaining_balance(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.2: with AoC-Request-Type 1 (full), the CCA carries Cost-Information (the
    session's charge so far) and Remaining-Balance {Unit-Value, Currency-Code}."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    session = CcSession(peer, account.msisdn)
    await session.initial([sms(2)])
    answer = await session.terminate([sms(used=[2])], **avp("AoC-Request-Type", 1))
    assert answer.result_code == SUCCESS
    cost = answer.body["Cost-Information"]
    assert micro_of(cost["Unit-Value"]) == 2 * SMS_PRICE
    assert cost["Currency-Code"] == 978
    remaining = answer.body["Remaining-Balance"]
    assert remaining["Currency-Code"] == 978
    assert micro_of(remaining["Unit-Value"]) == MICRO - 2 * SMS_PRICE
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


# --- events (§5.4) -----------------------------------------------------------------------------


def event_body(
    peer: Peer,
    msisdn: str,
    action: int,
    mscc: list[dict[str, Any]],
    *,
    service: str = SMS,
    **extra: Any,
) -> dict[str, Any]:
    return ccr_body(
        peer,
        new_session_id(peer),
        EVENT,
        0,
        service=service,
        msisdn=msisdn,
        mscc=mscc,
        **avp("Requested-Action", action),
        **extra,
    )


async def test_s5_direct_debiting_debits_at_once(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.4: DIRECT_DEBITING rates the Requested-Service-Unit and debits it at once;
    the answer's Granted-Service-Unit is what was debited."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    body = event_body(peer, account.msisdn, DIRECT_DEBITING, [sms(2)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, EVENT, 0)
    assert mscc_of(answer, 30)["Granted-Service-Unit"] == units_sms(2)
    assert await balance_of(admin, account.account_id) == (MICRO - 2 * SMS_PRICE, 0)


@pytest.mark.parametrize(
    ("at", "price"),
    [
        (MONDAY_1400_PARIS, 200_000),
        (MONDAY_2200_PARIS, 100_000),
        (BLACK_FRIDAY_1400_PARIS, 100_000),
    ],
    ids=["peak", "off-peak", "black-friday"],
)
async def test_s5_event_rated_at_event_timestamp(
    server: ServerProcess, connect: Connect, at: int, price: int
) -> None:
    """WIRE.md §5.4 and §2 (Time = seconds since 1970, not the NTP epoch): DIRECT_DEBITING is
    rated at Event-Timestamp: 10 MiB of data costs 0.20 EUR at Monday 14:00 Paris, 0.10 EUR
    at 22:00 and on Black Friday (docs/catalog.md rows 1, 2, 9)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    mscc = [{"Rating-Group": 10, "Requested-Service-Unit": {"CC-Total-Octets": 10 * MIB}}]
    body = event_body(
        peer, account.msisdn, DIRECT_DEBITING, mscc, service=DATA, **avp("Event-Timestamp", at)
    )
    answer = await peer.request(CCR, APP_CC, body)
    assert answer.result_code == SUCCESS
    assert mscc_of(answer, 10)["Granted-Service-Unit"] == {"CC-Total-Octets": 10 * MIB}
    assert await balance_of(admin, account.account_id) == (MICRO - price, 0)


async def test_s5_direct_debiting_short_is_4012_nothing_debited(
    server: ServerProcess, connect: Connect
) -> None:
    """WIRE.md §5.4: DIRECT_DEBITING without enough credit: top-level 4012, nothing debited."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 150_000)
    body = event_body(peer, account.msisdn, DIRECT_DEBITING, [sms(2)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, EVENT, 0, CREDIT_LIMIT_REACHED)
    assert await balance_of(admin, account.account_id) == (150_000, 0)


async def test_s5_refund_credits_the_price(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.4: REFUND_ACCOUNT credits back the price of the Requested-Service-Unit and
    answers 2001 (applied once however often retransmitted: test_s6_refund_applied_once)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    debit = event_body(peer, account.msisdn, DIRECT_DEBITING, [sms(3)])
    assert_cca(await peer.request(CCR, APP_CC, debit), EVENT, 0)
    body = event_body(peer, account.msisdn, REFUND_ACCOUNT, [sms(2)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, EVENT, 0)
    assert mscc_of(answer, 30)["Granted-Service-Unit"] == units_sms(2)
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)


@pytest.mark.parametrize("debited", [0, 1])
async def test_s5_refund_beyond_what_was_debited_is_5004(
    server: ServerProcess, connect: Connect, debited: int
) -> None:
    """WIRE.md 1.1 §5.4: a refund gives back only what was taken: more than DIRECT_DEBITING
    charged the subscriber for the group (within the refund window, not refunded yet) is
    answered 5004 with Failed-AVP {Requested-Service-Unit: value}, and credits nothing; so is
    the largest refund a unit AVP admits (2^40, docs/protocol.md "Limits": beyond it, §2's
    5004 with the path to the value)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    if debited:
        debit = event_body(peer, account.msisdn, DIRECT_DEBITING, [sms(debited)])
        assert_cca(await peer.request(CCR, APP_CC, debit), EVENT, 0)
    for units in (debited + 1, 2**40):
        body = event_body(peer, account.msisdn, REFUND_ACCOUNT, [sms(units)])
        answer = await peer.request(CCR, APP_CC, body)
        assert_cca(answer, EVENT, 0, INVALID_AVP_VALUE)
        assert answer.body["Failed-AVP"] == {"Requested-Service-Unit": units_sms(units)}
    assert await balance_of(admin, account.account_id) == (MICRO - debited * SMS_PRICE, 0)


@pytest.mark.parametrize(("balance", "expected"), [(MICRO, 0), (150_000, 1)])
async def test_s5_check_balance(
    server: ServerProcess, connect: Connect, balance: int, expected: int
) -> None:
    """WIRE.md §5.4: CHECK_BALANCE reserves nothing; Check-Balance-Result says whether the
    units could be paid (0 ENOUGH_CREDIT, 1 NO_CREDIT)."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, balance)
    body = event_body(peer, account.msisdn, CHECK_BALANCE, [sms(2)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, EVENT, 0)
    assert answer.body["Check-Balance-Result"] == expected
    assert await balance_of(admin, account.account_id) == (balance, 0)


async def test_s5_price_enquiry_changes_nothing(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.4: PRICE_ENQUIRY: no balance check, no reservation, no charge; only
    Cost-Information {Unit-Value, Currency-Code (ISO 4217 numeric: EUR 978)}."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, 0)  # no credit at all: no balance check
    body = event_body(peer, account.msisdn, PRICE_ENQUIRY, [sms(3)])
    answer = await peer.request(CCR, APP_CC, body)
    assert_cca(answer, EVENT, 0)
    cost = answer.body["Cost-Information"]
    assert micro_of(cost["Unit-Value"]) == 3 * SMS_PRICE
    assert cost["Currency-Code"] == 978
    mscc = [{"Rating-Group": 10, "Requested-Service-Unit": {"CC-Total-Octets": 10 * MIB}}]
    body = event_body(
        peer,
        account.msisdn,
        PRICE_ENQUIRY,
        mscc,
        service=DATA,
        **avp("Event-Timestamp", MONDAY_1400_PARIS),
    )
    answer = await peer.request(CCR, APP_CC, body)
    assert micro_of(answer.body["Cost-Information"]["Unit-Value"]) == 200_000
    assert await balance_of(admin, account.account_id) == (0, 0)


async def test_s5_sms_with_reservation_via_session(server: ServerProcess, connect: Connect) -> None:
    """WIRE.md §5.4: event charging with unit reservation uses a session: INITIAL reserves,
    TERMINATION with the used units debits; zero used units give the reservation back."""
    admin, peer = await admin_and_peer(server, connect)
    account = await create_account(admin, MICRO)
    delivered = CcSession(peer, account.msisdn)
    await delivered.initial([sms(1)])
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, SMS_PRICE)
    await delivered.terminate([sms(used=[1])])
    undelivered = CcSession(peer, account.msisdn)
    await undelivered.initial([sms(1)])
    await undelivered.terminate([sms(used=[0])])
    assert await balance_of(admin, account.account_id) == (MICRO - SMS_PRICE, 0)
