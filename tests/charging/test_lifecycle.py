"""Account lifecycle (docs/protocol.md, *Identities at CREATE*): identities checked and
normalised when an account is created, refusals that name their cause; in the core and end to
end over 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from protocol.codes import AccountOperation, CCRequestType, SubscriptionIdType
from protocol.messages import AMA, AMR
from tests.charging.conftest import EUR, PEAK, Harness, amr, ccr, mscc, rsu
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
