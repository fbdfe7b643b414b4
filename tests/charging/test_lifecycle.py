"""Account lifecycle (docs/protocol.md, *Identities at CREATE*): identities checked and
normalised when an account is created, refusals that name their cause; in the core and end to
end over 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ocs.core.charging import LIST_PAGE, ChargingCore, Input, InputKind
from ocs.core.ledger import Ledger
from protocol.codec import encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CCRequestType,
    CommandCode,
    SubscriptionIdType,
)
from protocol.messages import AMA, AMR, SubscriptionId
from tests.charging.conftest import DEMO, EUR, PEAK, Harness, amr, ccr, mscc, rsu, usu
from tests.charging.peer import UPF, Peer
from tests.charging.test_server_e2e import running

E164 = SubscriptionIdType.END_USER_E164
IMSI = SubscriptionIdType.END_USER_IMSI
MSISDN_TEXT = "an E.164 Subscription-Id must be 1 to 15 digits (a leading + is removed)"
IMSI_TEXT = "an IMSI Subscription-Id must be 5 to 15 digits"


def create(
    account_id: str, data: str, sub_type: SubscriptionIdType = E164, *, currency: int | None = None
) -> AMR:
    message = amr(
        AccountOperation.CREATE, account_id, amount=EUR, subscriber=data, subscriber_type=sub_type
    )
    return msgspec.structs.replace(message, currency_code=currency)


def test_a_leading_plus_is_removed_and_the_number_charges(h: Harness) -> None:
    answer = h.ama(create("a", "+491700000001"), PEAK)
    assert answer.result_code == 2001 and answer.account is not None
    assert answer.account.subscription_id[0].subscription_id_data == "491700000001"
    # the subscriber is found by its number as the network sends it
    initial = ccr("s", CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber="491700000001")
    assert h.cca(initial, PEAK + 1).result_code == 2001
    # and the same number with a + is the same identity: taken
    again = h.ama(create("b", "491700000001"), PEAK + 2)
    assert again.result_code == 5004 and again.error_message is not None
    assert again.error_message.startswith("the Subscription-Id belongs to another account")


def test_a_number_sent_with_its_plus_finds_the_account(h: Harness) -> None:
    """CREATE stores an E.164 number without its `+`; a network element that sends it with the
    `+` (as it did before the check, when the account kept it) still reaches the account
    (regression: 5030 USER_UNKNOWN)."""
    assert h.ama(create("a", "+491700000001"), PEAK).result_code == 2001
    initial = ccr("s", CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber="+491700000001")
    assert h.cca(initial, PEAK + 1).result_code == 2001


def test_a_create_journaled_before_the_identity_checks_replays_as_it_was_processed() -> None:
    """`InputKind.REQUEST_1_1` (a build before the checks at CREATE) keeps the identities and
    the currency as received, so the account that build acknowledged exists again after replay
    (regression: the upgrade refused it in replay and lost the account); today's kind refuses
    the same CREATE."""
    h = Harness()
    old = create("legacy", "0x3f2a", IMSI, currency=840)  # not digits, not the catalog's EUR
    for kind, code in ((InputKind.REQUEST_1_1, 2001), (InputKind.REQUEST, 5004)):
        core = ChargingCore(Ledger(), DEMO)
        for record in h.inputs:  # the catalog
            core.apply(record)
        record = Input(
            kind=kind,
            now_ms=PEAK,
            origin_host=old.origin_host,
            end_to_end=1,
            command=int(CommandCode.ACCOUNT_MANAGEMENT),
            body=encode_body(old),
        )
        result = core.apply(record)
        assert result is not None and result.answer.result_code == code, kind
        assert (core.ledger.account("legacy") is not None) is (code == 2001)


@pytest.mark.parametrize(
    "data", ["+", "++49", "4917000000000001", "+4917000000000001", "49 170", "49-170", "٤٩"]
)
def test_an_msisdn_outside_its_domain_is_refused(h: Harness, data: str) -> None:
    before = h.ledger.snapshot()
    answer = h.ama(create("a", data), PEAK)
    assert answer.result_code == 5004 and answer.account is None
    assert answer.error_message == f"{MSISDN_TEXT}: {data!r}"
    assert answer.failed_avp == {
        "Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": data}]
    }
    assert h.ledger.snapshot() == before


@pytest.mark.parametrize("data", ["1", "+491700000001"])
def test_the_shortest_and_longest_msisdn_and_plus(h: Harness, data: str) -> None:
    assert h.ama(create("a", data), PEAK).result_code == 2001
    assert h.ama(create("b", "9" * 15), PEAK + 1).result_code == 2001


@pytest.mark.parametrize("data", ["2620", "2620100000000001", "+26201", "26201x"])
def test_an_imsi_outside_its_domain_is_refused(h: Harness, data: str) -> None:
    before = h.ledger.snapshot()
    answer = h.ama(create("a", data, IMSI), PEAK)
    assert answer.result_code == 5004
    assert answer.error_message == f"{IMSI_TEXT}: {data!r}"
    assert answer.failed_avp == {
        "Subscription-Id": [{"Subscription-Id-Type": 1, "Subscription-Id-Data": data}]
    }
    assert h.ledger.snapshot() == before


@pytest.mark.parametrize("data", ["26201", "262010000000001"])
def test_an_imsi_of_5_to_15_digits_is_accepted(h: Harness, data: str) -> None:
    answer = h.ama(create("a", data, IMSI), PEAK)
    assert answer.result_code == 2001 and answer.account is not None
    assert answer.account.subscription_id[0].subscription_id_data == data


def test_a_currency_other_than_the_catalogs_is_refused(h: Harness) -> None:
    before = h.ledger.snapshot()
    answer = h.ama(create("a", "4930", currency=840), PEAK)
    assert answer.result_code == 5004 and answer.failed_avp == {"Currency-Code": 840}
    assert answer.error_message == (
        "the Currency-Code is not the catalog's currency: 840, the catalog's is 978"
    )
    assert h.ledger.snapshot() == before
    assert h.ama(create("a", "4930", currency=978), PEAK + 1).result_code == 2001


async def test_identities_end_to_end(tmp_path: Path) -> None:
    async with running(tmp_path / "data") as app:
        client = await Peer().connect(app.server.port)
        try:
            made = await client.request(
                msgspec.structs.replace(create("e2e", "+4930123"), origin_host=UPF)
            )
            assert isinstance(made, AMA) and made.result_code == 2001 and made.account
            assert made.account.subscription_id[0].subscription_id_data == "4930123"
            bad = await client.request(
                msgspec.structs.replace(create("e2e-2", "12", IMSI), origin_host=UPF)
            )
            assert isinstance(bad, AMA) and bad.result_code == 5004
            assert bad.error_message == f"{IMSI_TEXT}: '12'"
            assert bad.failed_avp == {
                "Subscription-Id": [{"Subscription-Id-Type": 1, "Subscription-Id-Data": "12"}]
            }
        finally:
            await client.close()


# --- UPDATE, CLOSE, LIST, SEARCH ---------------------------------------------------------------

UPDATE, CLOSE, LIST, SEARCH = (
    AccountOperation.UPDATE,
    AccountOperation.CLOSE,
    AccountOperation.LIST,
    AccountOperation.SEARCH,
)


def identities(*pairs: tuple[SubscriptionIdType, str]) -> tuple[SubscriptionId, ...]:
    return tuple(SubscriptionId(subscription_id_type=t, subscription_id_data=d) for t, d in pairs)


def test_update_changes_credit_limit_status_and_identities(h: Harness) -> None:
    h.account("a", "4930", EUR)
    update = msgspec.structs.replace(
        amr(UPDATE, "a", credit_limit=5 * EUR, status=AccountStatus.SUSPENDED),
        subscription_id=identities((E164, "+4931"), (IMSI, "262011234567890")),
    )
    answer = h.ama(update, PEAK)
    assert answer.result_code == 2001 and answer.account is not None
    assert answer.account.credit_limit == 5 * EUR
    assert int(answer.account.account_status) == int(AccountStatus.SUSPENDED)
    assert [s.subscription_id_data for s in answer.account.subscription_id] == [
        "4931",
        "262011234567890",
    ]
    # the old identity is free, the new ones lead to the account
    assert h.ledger.account_for(0, "4930") is None
    assert h.ama(create("b", "4930"), PEAK + 1).result_code == 2001
    found = h.ama(
        msgspec.structs.replace(
            amr(SEARCH, "-"), subscription_id=identities((IMSI, "262011234567890"))
        ),
        PEAK + 2,
    )
    assert found.result_code == 2001 and found.account and found.account.account_id == "a"
    h.ledger.check_invariants()


def test_update_refusals_change_nothing(h: Harness) -> None:
    h.account("a", "4930", EUR)
    h.account("b", "4931", EUR)
    before = h.ledger.snapshot()
    nothing = h.ama(amr(UPDATE, "a"), PEAK)
    assert nothing.result_code == 5005
    taken = h.ama(
        msgspec.structs.replace(
            amr(UPDATE, "a", credit_limit=EUR, status=AccountStatus.BARRED),
            subscription_id=identities((E164, "4932"), (E164, "+4931")),
        ),
        PEAK + 1,
    )
    assert taken.result_code == 5004 and taken.error_message == (
        "the Subscription-Id belongs to another account: 0:4931 is held by account b"
    )
    bad = h.ama(
        msgspec.structs.replace(
            amr(UPDATE, "a", credit_limit=EUR), subscription_id=identities((IMSI, "12"))
        ),
        PEAK + 2,
    )
    assert bad.result_code == 5004 and bad.error_message == f"{IMSI_TEXT}: '12'"
    assert h.ama(amr(UPDATE, "ghost", credit_limit=1), PEAK + 3).result_code == 5030
    assert h.ledger.snapshot() == before


def test_close_is_refused_with_a_balance_or_a_session_and_frees_the_identity(h: Harness) -> None:
    h.account("a", "4930", EUR)
    not_settled = h.ama(amr(CLOSE, "a"), PEAK)
    assert not_settled.result_code == 5012
    assert not_settled.error_message == "the account's balance is not zero: 1000000"
    assert not_settled.failed_avp == {"Account-Id": "a"}
    assert h.ama(amr(AccountOperation.DEBIT, "a", amount=EUR), PEAK + 1).result_code == 2001
    initial = ccr("s", CCRequestType.INITIAL, 0, mscc(10, ask=rsu()), subscriber="4930")
    h.ama(amr(UPDATE, "a", credit_limit=EUR), PEAK + 2)
    assert h.cca(initial, PEAK + 3).result_code == 2001
    in_use = h.ama(amr(CLOSE, "a"), PEAK + 4)
    assert in_use.result_code == 5012 and in_use.error_message == "the account has open sessions"
    term = ccr("s", CCRequestType.TERMINATION, 1, mscc(10, used=(usu(octets=0),)))
    assert h.cca(term, PEAK + 5).result_code == 2001
    assert h.balance("a") == 0
    closed = h.ama(amr(CLOSE, "a", operation_id="close-a"), PEAK + 6)
    assert closed.result_code == 2001 and closed.account is None
    assert h.ledger.account("a") is None and h.ledger.account_for(0, "4930") is None
    # a retry of the same Operation-Id answers the first outcome; another operation under it is
    # refused
    assert h.ama(amr(CLOSE, "a", operation_id="close-a"), PEAK + 7).result_code == 2001
    reused = h.ama(amr(CLOSE, "b", operation_id="close-a"), PEAK + 8)
    assert reused.result_code == 5004 and reused.failed_avp == {"Operation-Id": "close-a"}
    assert h.ama(amr(AccountOperation.GET, "a"), PEAK + 9).result_code == 5030
    h.ledger.check_invariants()
    assert h.ama(create("a2", "4930"), PEAK + 10).result_code == 2001


def test_list_pages_in_order(h: Harness) -> None:
    for i in range(250):
        h.account(f"acc-{i:04d}", f"49{i:04d}", EUR, now_ms=PEAK)
    seen: list[str] = []
    start = "\x00"
    while True:
        answer = h.ama(amr(LIST, start), PEAK + len(seen) + 1)
        assert answer.result_code == 2001 and answer.listed_account_id is not None
        page = [i for i in answer.listed_account_id if i != start]
        seen += page
        if len(answer.listed_account_id) < LIST_PAGE:
            break
        start = answer.listed_account_id[-1]
    assert seen == sorted(f"acc-{i:04d}" for i in range(250))


def test_search_by_identity(h: Harness) -> None:
    h.account("a", "491700000001", EUR)
    for data in ("491700000001", "+491700000001"):
        found = h.ama(
            msgspec.structs.replace(amr(SEARCH, "-"), subscription_id=identities((E164, data))),
            PEAK,
        )
        assert found.result_code == 2001 and found.account is not None
        assert found.account.account_id == "a" and found.account.balance == EUR
    missing = h.ama(
        msgspec.structs.replace(amr(SEARCH, "-"), subscription_id=identities((E164, "4999"))), PEAK
    )
    assert missing.result_code == 5030
    assert missing.error_message == "no account holds this Subscription-Id"
    assert missing.failed_avp == {
        "Subscription-Id": [{"Subscription-Id-Type": 0, "Subscription-Id-Data": "4999"}]
    }
    assert h.ama(amr(SEARCH, "-"), PEAK).result_code == 5005


async def test_lifecycle_end_to_end(tmp_path: Path) -> None:
    """UPDATE, SEARCH, LIST and CLOSE over 127.0.0.1, and after a restart (replay) the same."""
    data = tmp_path / "data"
    async with running(data) as app:
        client = await Peer().connect(app.server.port)
        try:

            async def ask(message: AMR) -> AMA:
                answer = await client.request(msgspec.structs.replace(message, origin_host=UPF))
                assert isinstance(answer, AMA)
                return answer

            assert (await ask(create("x", "+4940"))).result_code == 2001
            assert (await ask(create("y", "4941"))).result_code == 2001
            updated = await ask(amr(UPDATE, "x", credit_limit=3 * EUR, operation_id="u1"))
            assert updated.result_code == 2001 and updated.account
            assert updated.account.credit_limit == 3 * EUR
            assert (await ask(amr(AccountOperation.DEBIT, "y", amount=EUR))).result_code == 2001
            assert (await ask(amr(CLOSE, "y", operation_id="c1"))).result_code == 2001
            listed = await ask(amr(LIST, "\x00"))
            assert listed.listed_account_id == ("x",)
            found = await ask(
                msgspec.structs.replace(
                    amr(SEARCH, "-"), subscription_id=identities((E164, "+4940"))
                )
            )
            assert found.account is not None and found.account.account_id == "x"
        finally:
            await client.close()
    async with running(data) as app:
        client = await Peer().connect(app.server.port)
        try:
            again = await client.request(
                msgspec.structs.replace(amr(LIST, "\x00"), origin_host=UPF)
            )
            assert isinstance(again, AMA) and again.listed_account_id == ("x",)
            got = await client.request(
                msgspec.structs.replace(amr(AccountOperation.GET, "x"), origin_host=UPF)
            )
            assert isinstance(got, AMA) and got.account and got.account.credit_limit == 3 * EUR
        finally:
            await client.close()
