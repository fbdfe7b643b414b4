"""Session procedures (WIRE.md 5.3, 5.5, 5.6) on the demo catalog, money worked out by hand
from docs/catalog.md. Every test also replays (the `h` fixture's teardown)."""

from __future__ import annotations

import pytest

from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    FinalUnitAction,
    RedirectAddressType,
    ReportingReason,
    TariffChangeUsage,
)
from protocol.messages import MsccAnswer, MsccRequest
from tests.charging.conftest import (
    DATA,
    DEMO,
    EUR,
    EVENING,
    INITIAL,
    PEAK,
    PEAK_END_S,
    SMS,
    SUB,
    SUNDAY,
    TERMINATION,
    UPDATE,
    VOICE,
    Harness,
    KiB,
    MiB,
    amr,
    by_rg,
    ccr,
    epoch_ms,
    mscc,
    only,
    rsu,
    sid,
    usu,
)

MIN = 60_000  # ms


def open_session(
    h: Harness, sid: str, now: int, *msccs: MsccRequest, service: str = DATA, sub: str = SUB
) -> dict[int, MsccAnswer]:
    answer = h.cca(ccr(sid, INITIAL, 0, *msccs, subscriber=sub, service=service), now)
    assert answer.result_code == 2001
    return by_rg(answer)


# --- INITIAL: who may open a session -----------------------------------------------------------


def test_unknown_subscriber_is_5030_and_opens_nothing(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber="490000000000"), PEAK)
    assert answer.result_code == 5030
    assert answer.multiple_services_credit_control is None
    assert h.core.sessions == {} and h.reserved("a") == 0
    # the refusal is journaled (its duplicates get it again, across restarts), nothing else
    assert [i.kind.name for i in h.inputs] == ["CATALOG", "REQUEST", "REQUEST"]


@pytest.mark.parametrize("status", [AccountStatus.SUSPENDED, AccountStatus.BARRED])
def test_account_not_active_is_4010(h: Harness, status: AccountStatus) -> None:
    h.account("a", SUB, 10 * EUR)
    ama = h.ama(amr(AccountOperation.SET_STATUS, "a", status=status), PEAK)
    assert ama.result_code == 2001
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    assert answer.result_code == 4010
    assert h.core.sessions == {} and h.reserved("a") == 0


# --- grants ------------------------------------------------------------------------------------


def test_default_quantum_with_the_catalogs_quota_details(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    assert answer.result_code == 2001
    assert answer.session_id == sid("s") and answer.cc_request_number == 0
    assert answer.auth_application_id == 4 and answer.cc_request_type == INITIAL
    g = only(answer)
    assert g.result_code == 2001
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 10 * MiB  # quantum "10 MiB"
    assert g.validity_time == 3600  # "1 h"
    assert g.volume_quota_threshold == 2_097_152  # floor(0.2 x 10485760)
    assert g.quota_holding_time == 300  # "5 min"
    assert g.time_quota_threshold is None and g.unit_quota_threshold is None
    assert g.final_unit_indication is None
    assert g.tariff_time_change is None  # 14:00-15:00 is all peak
    assert g.linked_rating_group == (20,)  # RG 20 links to RG 10 (WIRE.md 5.6)
    # reserved at peak: 10 MiB x 0.02 EUR
    assert h.reserved("a") == 200_000 and h.balance("a") == 10 * EUR
    (reservation,) = h.ledger.reservations()
    assert reservation.amount == 200_000 and reservation.account_id == "a"


def test_requested_amounts_and_each_groups_policy(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    data = open_session(h, "d", PEAK, mscc(20, ask=rsu(octets=5 * MiB)))
    video = data[20]
    assert video.granted_service_unit is not None
    assert video.granted_service_unit.cc_total_octets == 5 * MiB
    assert video.volume_quota_threshold == 524_288  # floor(0.1 x 5 MiB)
    assert video.quota_holding_time == 300 and video.validity_time == 3600
    assert video.linked_rating_group == (10,)
    assert h.reserved("a") == 25_000  # 5 MiB x 0.005

    voice = open_session(h, "v", PEAK, mscc(40, ask=rsu()), service=VOICE)[40]
    assert voice.granted_service_unit is not None
    assert voice.granted_service_unit.cc_time == 300  # "5 min"
    assert voice.time_quota_threshold == 30 and voice.volume_quota_threshold is None
    assert voice.quota_holding_time is None  # the catalog sets none
    assert voice.linked_rating_group is None
    # 300 s x 0.001 EUR + setup fee 0.05 EUR, held until the call reports usage
    assert h.reserved("a") == 25_000 + 350_000

    sms = open_session(h, "m", PEAK, mscc(30, ask=rsu(units=1)), service=SMS)[30]
    assert sms.granted_service_unit is not None
    assert sms.granted_service_unit.cc_service_specific_units == 1
    assert sms.validity_time == 600 and sms.unit_quota_threshold is None
    assert h.reserved("a") == 25_000 + 350_000 + 100_000


def test_grant_cut_by_balance_carries_redirect_fui(h: Harness) -> None:
    h.account("a", SUB, 500_000)  # 0.50 EUR
    g = open_session(h, "s", PEAK, mscc(10, ask=rsu(octets=50 * MiB)))[10]
    # 0.50 EUR at 0.02 EUR/MiB: 25 MiB exactly, on the KiB grid
    assert g.result_code == 2001
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 25 * MiB
    fui = g.final_unit_indication
    assert fui is not None
    assert fui.final_unit_action == FinalUnitAction.REDIRECT
    assert fui.redirect_server is not None
    assert fui.redirect_server.redirect_address_type == RedirectAddressType.URL
    assert fui.redirect_server.redirect_server_address == "http://topup.example.com/"
    assert fui.filter_id is None
    assert h.reserved("a") == 500_000
    view = h.ledger.account("a")
    assert view is not None and view.available == 0


def test_grant_cut_by_balance_restrict_access_and_terminate(h: Harness) -> None:
    h.account("a", SUB, 10_000)  # 0.01 EUR
    video = open_session(h, "s", PEAK, mscc(20, ask=rsu()))[20]
    # default 50 MiB would cost 0.25; 0.01 EUR buys 2 MiB of video
    assert video.granted_service_unit is not None
    assert video.granted_service_unit.cc_total_octets == 2 * MiB
    fui = video.final_unit_indication
    assert fui is not None and fui.final_unit_action == FinalUnitAction.RESTRICT_ACCESS
    assert fui.filter_id == ("video-blocked",) and fui.redirect_server is None

    h.account("b", "491700000002", 200_000)  # 0.20 EUR
    voice = open_session(h, "v", PEAK, mscc(40, ask=rsu()), service=VOICE, sub="491700000002")
    # setup fee 0.05 first, then 0.15 EUR at 0.001 EUR/s: 150 s
    assert voice[40].granted_service_unit is not None
    assert voice[40].granted_service_unit.cc_time == 150
    fui = voice[40].final_unit_indication
    assert fui is not None and fui.final_unit_action == FinalUnitAction.TERMINATE
    assert h.reserved("b") == 200_000


def test_grant_within_balance_has_no_fui(h: Harness) -> None:
    h.account("a", SUB, 200_000)  # exactly the price of the default data quantum at peak
    g = open_session(h, "s", PEAK, mscc(10, ask=rsu()))[10]
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 10 * MiB
    assert g.final_unit_indication is None


def test_credit_limit_counts_as_headroom(h: Harness) -> None:
    h.account("a", SUB, 0, credit_limit=100_000)
    g = open_session(h, "s", PEAK, mscc(10, ask=rsu()))[10]
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 5 * MiB  # 0.10 EUR of credit at peak
    assert g.final_unit_indication is not None


@pytest.mark.parametrize(
    ("balance", "rg", "service"),
    [
        (0, 10, DATA),
        (19, 10, DATA),  # one KiB at peak costs 20 micro-units
        (109_999, 40, VOICE),  # setup fee + the first whole minute = 0.11 EUR
    ],
)
def test_nothing_grantable_is_4012_per_mscc(
    h: Harness, balance: int, rg: int, service: str
) -> None:
    h.account("a", SUB, balance)
    answer = h.cca(ccr("s", INITIAL, 0, mscc(rg, ask=rsu()), subscriber=SUB, service=service), PEAK)
    assert answer.result_code == 2001  # the request as a whole was processed
    g = only(answer)
    assert g.result_code == 4012 and g.granted_service_unit is None
    assert h.reserved("a") == 0 and h.balance("a") == balance
    assert sid("s") in h.core.sessions  # the session is open, and may ask again after a top-up


def test_zero_rated_is_4011_and_usage_costs_nothing(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    g = open_session(h, "s", PEAK, mscc(50, ask=rsu()))[50]
    assert g.result_code == 4011 and g.granted_service_unit is None
    assert h.reserved("a") == 0
    term = h.cca(ccr("s", TERMINATION, 1, mscc(50, used=(usu(octets=1 << 30),))), PEAK + MIN)
    assert only(term).result_code == 4011
    assert h.balance("a") == 10 * EUR
    (cdr,) = h.cdrs()
    assert cdr["charge"] == 0
    (container,) = cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert container == {
        "totalVolume": 1 << 30,
        "triggers": [],
        "charge": 0,
        "reportTime": "2026-01-05T13:01:00.000Z",
    }


DEMO_WITH_FREE_SMS = (
    DEMO.replace("rating_groups = [30]", "rating_groups = [30, 31]")
    + """
[[rating_groups]]
id = 31
name = "free-sms"
unit = "units"
zero_rated = true
"""
)


def test_zero_rated_group_of_a_test_catalog() -> None:
    h = Harness(catalog=DEMO_WITH_FREE_SMS)
    h.account("a", SUB, 10 * EUR)
    answer = open_session(
        h, "s", PEAK, mscc(31, ask=rsu(units=5)), mscc(30, ask=rsu()), service=SMS
    )
    assert answer[31].result_code == 4011 and answer[31].granted_service_unit is None
    assert answer[30].result_code == 2001
    assert h.reserved("a") == 100_000  # the paying SMS only
    h.assert_replays()


def test_unknown_rating_group_is_5031_per_mscc(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    answer = open_session(
        h, "s", PEAK, mscc(10, ask=rsu()), mscc(99, ask=rsu()), mscc(30, ask=rsu())
    )
    assert answer[10].result_code == 2001
    assert answer[99].result_code == 5031  # not in the catalog
    assert answer[30].result_code == 5031  # SMS is not a rating group of the data service
    assert answer[99].granted_service_unit is None
    assert h.reserved("a") == 200_000


# --- request discipline ------------------------------------------------------------------------


def test_second_initial_for_an_open_session_is_5004(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    before = (h.core.snapshot(duplicates=False), h.ledger.snapshot())
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK + 2 * MIN)
    assert answer.result_code == 5004
    assert answer.failed_avp == {"CC-Request-Type": 1}
    assert answer.multiple_services_credit_control is None
    assert (h.core.snapshot(duplicates=False), h.ledger.snapshot()) == before


@pytest.mark.parametrize("number", [0, 1, 3, 7])
def test_out_of_sequence_request_number_is_5004_and_changes_nothing(
    h: Harness, number: int
) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    assert h.balance("a") == 10 * EUR - 20_000
    # expected 2; 1 is the last processed (a duplicate), so use a different type for it
    kind = TERMINATION if number == 1 else UPDATE
    before = (h.core.snapshot(duplicates=False), h.ledger.snapshot(), len(h.cdr_lines))
    bad = ccr("s", kind, number, mscc(10, ask=rsu(), used=(usu(octets=MiB),)))
    answer = h.cca(bad, PEAK + 2 * MIN)
    assert answer.result_code == 5004
    assert answer.failed_avp == {"CC-Request-Number": number}
    assert answer.multiple_services_credit_control is None
    assert (h.core.snapshot(duplicates=False), h.ledger.snapshot(), len(h.cdr_lines)) == before
    # the right number still works
    ok = h.cca(ccr("s", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),))), PEAK + 3 * MIN)
    assert ok.result_code == 2001
    assert h.balance("a") == 10 * EUR - 40_000


@pytest.mark.parametrize("kind", [UPDATE, TERMINATION])
def test_unknown_session_is_5002(h: Harness, kind: CCRequestType) -> None:
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(ccr("nope", kind, 1, mscc(10, used=(usu(octets=MiB),))), PEAK)
    assert answer.result_code == 5002 and answer.session_id == sid("nope")
    assert h.balance("a") == 10 * EUR and h.cdr_lines == []


# --- usage -------------------------------------------------------------------------------------


def test_usage_beyond_the_grant_is_charged_and_may_overdraw(h: Harness) -> None:
    h.account("a", SUB, 500_000)
    g = open_session(h, "s", PEAK, mscc(10, ask=rsu(octets=50 * MiB)))[10]
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 25 * MiB
    used = (usu(octets=30 * MiB, reason=ReportingReason.FINAL),)
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=used)), PEAK + MIN)
    assert h.balance("a") == 500_000 - 600_000  # 30 MiB x 0.02, below zero
    assert h.reserved("a") == 0
    (cdr,) = h.cdrs()
    (container,) = cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert container["charge"] == 600_000 and cdr["charge"] == 600_000
    assert container["beyondGrant"] == 5 * MiB
    assert container["triggers"] == ["FINAL"]
    get = h.ama(amr(AccountOperation.GET, "a"), PEAK + 2 * MIN)
    assert get.account is not None and get.account.balance == -100_000


def test_usage_within_the_grant_has_no_beyond_grant(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=10 * MiB),))), PEAK + MIN)
    (cdr,) = h.cdrs()
    (container,) = cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert "beyondGrant" not in container and container["charge"] == 200_000


def test_update_charges_then_replaces_the_reservation(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    answer = h.cca(
        ccr("s", UPDATE, 1, mscc(10, ask=rsu(octets=MiB), used=(usu(octets=3 * MiB),))),
        PEAK + MIN,
    )
    g = only(answer)
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == MiB
    assert h.balance("a") == 10 * EUR - 60_000  # 3 MiB x 0.02
    assert h.reserved("a") == 20_000  # the new grant only: 1 MiB x 0.02
    assert h.ledger.reservation_count == 1


def test_grant_sized_at_the_dearer_side_carries_tariff_time_change(h: Harness) -> None:
    h.account("a", SUB, EUR)
    g = open_session(h, "s", EVENING, mscc(10, ask=rsu(octets=100 * MiB)))[10]
    # 19:30 + 1 h crosses the end of peak at 20:00: 1 EUR is sized at 0.02 EUR/MiB
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 50 * MiB
    assert g.tariff_time_change == PEAK_END_S
    assert g.final_unit_indication is not None
    assert h.reserved("a") == EUR


def test_tariff_change_usage_split_before_after_indeterminate(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    g = open_session(h, "s", EVENING, mscc(10, ask=rsu()))[10]
    assert g.tariff_time_change == PEAK_END_S
    assert h.reserved("a") == 200_000  # 10 MiB at the dearer (peak) price
    used = (
        usu(octets=4 * MiB, tcu=TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
        usu(octets=2 * MiB, tcu=TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
        usu(octets=MiB, tcu=TariffChangeUsage.UNIT_INDETERMINATE),
    )
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=used)), EVENING + 60 * MIN)
    # before: 4 MiB x 0.02 = 80000; after: 2 MiB x 0.01 = 20000;
    # indeterminate: 1 MiB at the dearer side (peak) = 20000
    assert h.balance("a") == 10 * EUR - 120_000
    (cdr,) = h.cdrs()
    containers = cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert [c["tariffChangeUsage"] for c in containers] == [0, 1, 2]
    assert [c["charge"] for c in containers] == [80_000, 20_000, 20_000]
    assert cdr["charge"] == 120_000


def test_usage_without_split_is_apportioned_over_the_grant_window(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    at = epoch_ms("2026-01-05T19:50:00+01:00")
    open_session(h, "s", at, mscc(10, ask=rsu(octets=20 * MiB)))
    end = epoch_ms("2026-01-05T20:10:00+01:00")
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=20 * MiB),))), end)
    # catalog.md row 7: 10 MiB x 0.02 + 10 MiB x 0.01
    assert h.balance("a") == 10 * EUR - 300_000


def test_setup_fee_once_per_call_with_cumulative_increments(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    g = open_session(h, "v", PEAK, mscc(40, ask=rsu()), service=VOICE)[40]
    assert g.granted_service_unit is not None and g.granted_service_unit.cc_time == 300
    assert h.reserved("a") == 350_000  # 300 s + the fee
    answer = h.cca(ccr("v", UPDATE, 1, mscc(40, ask=rsu(), used=(usu(seconds=10),))), PEAK + MIN)
    # catalog.md row 13: 60 s billed + 0.05 setup fee
    assert h.balance("a") == 10 * EUR - 110_000
    g = only(answer)
    assert g.granted_service_unit is not None and g.granted_service_unit.cc_time == 300
    # the new grant: billed 60 -> 310 s = 250 s, no fee any more
    assert h.reserved("a") == 250_000
    h.cca(ccr("v", TERMINATION, 2, mscc(40, used=(usu(seconds=55),))), PEAK + 2 * MIN)
    # row 14: 65 - 60 = 5 s, no fee
    assert h.balance("a") == 10 * EUR - 115_000
    (cdr,) = h.cdrs()
    containers = cdr["listOfMultipleUnitUsage"][0]["usedUnitContainers"]
    assert [c["charge"] for c in containers] == [110_000, 5_000]
    assert [c.get("setupFee") for c in containers] == [50_000, None]
    assert [c["time"] for c in containers] == [10, 55]
    assert cdr["charge"] == 115_000


def test_setup_fee_not_charged_for_zero_usage(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "v", SUNDAY, mscc(40, ask=rsu()), service=VOICE)
    # weekend: 300 s at 0.0005 EUR/s + fee
    assert h.reserved("a") == 150_000 + 50_000
    answer = h.cca(ccr("v", UPDATE, 1, mscc(40, ask=rsu(), used=(usu(seconds=0),))), SUNDAY + MIN)
    assert h.balance("a") == 10 * EUR  # nothing used, no fee
    assert h.reserved("a") == 200_000  # the fee is still due: held again with the new grant
    assert only(answer).result_code == 2001
    h.cca(ccr("v", TERMINATION, 2, mscc(40, used=(usu(seconds=90),))), SUNDAY + 2 * MIN)
    # catalog.md row 15: 90 x 0.0005 + 0.05
    assert h.balance("a") == 10 * EUR - 95_000
    assert h.reserved("a") == 0

    open_session(h, "w", SUNDAY, mscc(40, ask=rsu()), service=VOICE)
    h.cca(ccr("w", TERMINATION, 1, mscc(40, used=(usu(seconds=0),))), SUNDAY + MIN)
    assert h.balance("a") == 10 * EUR - 95_000
    assert [c["charge"] for c in h.cdrs()] == [95_000, 0]


def test_termination_releases_every_reservation(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()), mscc(20, ask=rsu()))
    assert h.reserved("a") == 200_000 + 250_000
    answer = h.cca(
        ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=KiB, reason=ReportingReason.FINAL),))),
        PEAK + MIN,
    )
    assert answer.result_code == 2001
    assert h.reserved("a") == 0 and h.ledger.reservation_count == 0
    assert h.balance("a") == 10 * EUR - 20
    assert sid("s") not in h.core.sessions
    (cdr,) = h.cdrs()
    assert cdr["causeForRecordClosing"] == "normalRelease" and cdr["charge"] == 20
    get = h.ama(amr(AccountOperation.GET, "a"), PEAK + 2 * MIN)
    assert get.account is not None
    assert get.account.reserved == 0 and get.account.session_count == 0


def test_sms_unit_reservation_session(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    g = open_session(h, "m1", PEAK, mscc(30, ask=rsu(units=1)), service=SMS)[30]
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_service_specific_units == 1
    assert h.reserved("a") == 100_000
    h.cca(ccr("m1", TERMINATION, 1, mscc(30, used=(usu(units=1),))), PEAK + 1000)
    assert h.balance("a") == 10 * EUR - 100_000 and h.reserved("a") == 0
    # a message that could not be delivered: zero used units give the reservation back
    open_session(h, "m2", PEAK, mscc(30, ask=rsu(units=1)), service=SMS)
    assert h.reserved("a") == 100_000
    h.cca(ccr("m2", TERMINATION, 1, mscc(30, used=(usu(units=0),))), PEAK + 2000)
    assert h.balance("a") == 10 * EUR - 100_000 and h.reserved("a") == 0
    assert [(c["sessionId"], c["charge"]) for c in h.cdrs()] == [
        (sid("m1"), 100_000),
        (sid("m2"), 0),
    ]
    assert (
        h.cdrs()[0]["listOfMultipleUnitUsage"][0]["usedUnitContainers"][0]["serviceSpecificUnits"]
        == 1
    )


def test_suspended_account_gets_4010_per_mscc_but_usage_is_charged(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    h.ama(amr(AccountOperation.SET_STATUS, "a", status=AccountStatus.SUSPENDED), PEAK + 1000)
    answer = h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    assert answer.result_code == 2001
    assert only(answer).result_code == 4010
    assert h.balance("a") == 10 * EUR - 20_000 and h.reserved("a") == 0


# --- AoC ---------------------------------------------------------------------------------------


def test_aoc_cost_information_and_remaining_balance(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    first = h.cca(
        ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB, aoc=AoCRequestType.FULL), PEAK
    )
    assert first.cost_information is not None
    assert first.cost_information.unit_value.value_digits == 0
    assert first.cost_information.currency_code == 978
    assert first.remaining_balance is not None
    # 10 EUR - 0.20 reserved = 9.8 EUR = 98 x 10^-1
    assert first.remaining_balance.unit_value.value_digits == 98
    assert first.remaining_balance.unit_value.exponent == -1
    assert first.remaining_balance.currency_code == 978
    second = h.cca(
        ccr(
            "s",
            UPDATE,
            1,
            mscc(10, ask=rsu(), used=(usu(octets=3 * MiB),)),
            aoc=AoCRequestType.COST_ONLY,
        ),
        PEAK + MIN,
    )
    cost = second.cost_information
    assert cost is not None and cost.cost_unit == "EUR"
    # the session's charge so far: 3 MiB x 0.02 = 0.06 EUR = 6 x 10^-2
    assert (cost.unit_value.value_digits, cost.unit_value.exponent) == (6, -2)
    plain = h.cca(ccr("s", TERMINATION, 2), PEAK + 2 * MIN)
    assert plain.cost_information is None and plain.remaining_balance is None


# --- linked usage (WIRE.md 5.6) ----------------------------------------------------------------


def test_linked_usage_is_charged_in_full_in_one_cdr(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    grants = open_session(h, "s", PEAK, mscc(10, ask=rsu()), mscc(20, ask=rsu(octets=10 * MiB)))
    assert grants[10].linked_rating_group == (20,)
    assert grants[20].linked_rating_group == (10,)
    assert h.reserved("a") == 200_000 + 50_000
    report = ccr(
        "s",
        UPDATE,
        1,
        mscc(
            10,
            ask=rsu(),
            used=(
                usu(
                    octets=4 * MiB,
                    uplink=194_304,
                    downlink=4_000_000,
                    reason=ReportingReason.THRESHOLD,
                ),
            ),
        ),
        mscc(20, used=(usu(octets=1000, reason=ReportingReason.LINKED_USAGE),)),
    )
    answer = h.cca(report, PEAK + MIN)
    assert [m.result_code for m in answer.multiple_services_credit_control or ()] == [2001, 2001]
    # 4 MiB at peak = 80000; 1000 octets of video = 1 KiB billed at 0.005/MiB = 4.88 -> 5
    assert h.balance("a") == 10 * EUR - 80_005
    assert h.reserved("a") == 200_000  # RG 20's grant was used up and not renewed
    (cdr,) = h.cdrs()
    assert cdr["causeForRecordClosing"] == "partialRecord" and cdr["charge"] == 80_005
    usage = {u["ratingGroup"]: u["usedUnitContainers"] for u in cdr["listOfMultipleUnitUsage"]}
    assert set(usage) == {10, 20}
    (c10,) = usage[10]
    (c20,) = usage[20]
    assert c10["triggers"] == ["THRESHOLD"] and c20["triggers"] == ["LINKED_USAGE"]
    assert c10["totalVolume"] == 4 * MiB and c20["totalVolume"] == 1000
    assert c10["uplinkVolume"] == 194_304 and c10["downlinkVolume"] == 4_000_000
    assert (c10["charge"], c20["charge"]) == (80_000, 5)


def test_linked_usage_with_mscc_level_reason(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(20, ask=rsu()))
    report = ccr(
        "s",
        UPDATE,
        1,
        mscc(20, used=(usu(octets=MiB),), reason=ReportingReason.QUOTA_EXHAUSTED),
        mscc(10, used=(usu(octets=MiB),), reason=ReportingReason.LINKED_USAGE),
    )
    h.cca(report, PEAK + MIN)
    assert h.balance("a") == 10 * EUR - 5_000 - 20_000
    (cdr,) = h.cdrs()
    triggers = {
        u["ratingGroup"]: u["usedUnitContainers"][0]["triggers"]
        for u in cdr["listOfMultipleUnitUsage"]
    }
    assert triggers == {20: ["QUOTA_EXHAUSTED"], 10: ["LINKED_USAGE"]}
