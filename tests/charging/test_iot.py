"""The IoT low-signalling profile (docs/charging.md, *IoT low-signalling profile*) on the demo
catalog's device class "meter": IMSIs beginning 99901, RG 10, a day (00:00-00:00 UTC), at most
1 MiB and 8 requests, grants reserve at most 0.005 EUR, Quota-Holding-Time 1 d."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs.cli.catalog import catalog_changes
from ocs.core.charging import ActionKind
from protocol.codes import AccountOperation, ReportingReason, SubscriptionIdType, TariffChangeUsage
from rating import CatalogError, parse_catalog
from tests.charging.conftest import (
    DEMO,
    EUR,
    INITIAL,
    PEAK,
    TERMINATION,
    UPDATE,
    Harness,
    KiB,
    MiB,
    amr,
    by_rg,
    ccr,
    epoch_ms,
    epoch_s,
    mscc,
    only,
    rsu,
    usu,
)
from tests.charging.conftest import sid as sid_of

IMSI = "999010000000001"
IMSI_2 = "999010000000002"
PHONE = "491700000001"
IMSI_TYPE = SubscriptionIdType.END_USER_IMSI
TUESDAY_UTC = epoch_ms("2026-01-06T00:00:00+00:00")  # the end of Monday's period


def device(h: Harness, imsi: str = IMSI, account: str = "m1", balance: int = EUR) -> None:
    op = AccountOperation.CREATE
    made = h.ama(amr(op, account, amount=balance, subscriber=imsi, subscriber_type=IMSI_TYPE), PEAK)
    assert made.result_code == 2001


def initial(name: str, now_ms: int, imsi: str = IMSI):  # type: ignore[no-untyped-def]
    return ccr(name, INITIAL, 0, mscc(10, ask=rsu()), subscriber=imsi, subscriber_type=IMSI_TYPE)


def test_within_the_set_large_grant_one_record_per_period(h: Harness) -> None:
    device(h)
    # Monday 2026-01-05 14:00 Paris = 13:00 UTC; the period ends at 00:00 UTC: 11 h = 39,600 s
    g = only(h.cca(initial("d", PEAK), PEAK))
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == MiB  # all of the set's 1 MiB
    assert g.validity_time == 39_600
    assert g.quota_holding_time == 86_400
    assert g.volume_quota_threshold is None
    # priced at peak (0.02 EUR/MiB) = 20,000, reserved at most 5,000 (the class's `reserve`)
    assert h.reserved("m1") == 5_000
    assert g.tariff_time_change == epoch_s("2026-01-05T19:00:00+00:00")  # peak ends 20:00 Paris

    # an hour later: 512 KiB used at peak = 0.5 x 20,000 = 10,000; a normal session would be
    # cut by the catalog's cdr.time_limit (1 h) here, a device's is not
    t1 = PEAK + 3_600_000
    a = by_rg(h.cca(ccr("d", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=512 * KiB),))), t1))
    assert a[10].granted_service_unit is not None
    assert a[10].granted_service_unit.cc_total_octets == MiB - 512 * KiB  # what is left: 524,288
    assert a[10].validity_time == 36_000  # 14:00 UTC to 00:00 UTC
    assert h.cdrs() == []
    assert h.reserved("m1") == 5_000  # min(10,000 for 512 KiB at peak, 5,000)

    # nothing due before the period's end; at 00:00 UTC the period's one record
    assert not h.tick(TUESDAY_UTC - 1_000)
    assert h.tick(TUESDAY_UTC)
    assert h.core.iot.devices == {}  # Monday's count is over: forgotten (memory)
    (record,) = h.cdrs()
    assert record["causeForRecordClosing"] == "partialRecord"
    assert record["iotDeviceClass"] == "meter"
    assert record["charge"] == 10_000
    assert record["recordClosingTime"] == "2026-01-06T00:00:00.000Z"

    # 00:00:05: the validity report of Monday's grant, 256 KiB after the peak (off-peak 0.01
    # EUR/MiB: 2,500); Monday's usage does not count against Tuesday's set: a whole 1 MiB again
    t2 = TUESDAY_UTC + 5_000
    late = usu(octets=256 * KiB, tcu=TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE)
    reason = ReportingReason.VALIDITY_TIME
    b = only(h.cca(ccr("d", UPDATE, 2, mscc(10, ask=rsu(), used=(late,), reason=reason)), t2))
    assert b.granted_service_unit is not None
    assert b.granted_service_unit.cc_total_octets == MiB
    # valid until the second change of price (one Tariff-Time-Change per grant): peak begins
    # at 07:00 UTC and ends at 19:00 UTC, so 19 h less the 5 s = 68,395 s, not until 00:00
    assert b.validity_time == 68_395
    assert b.tariff_time_change == epoch_s("2026-01-06T07:00:00+00:00")
    state = h.core.iot.devices["m1"]
    assert (state.octets, state.reports, state.fallback) == (0, 1, "")

    # Tuesday 10:00 UTC (11:00 Paris, peak): the whole 1 MiB used (20,000): the set is spent,
    # the device falls back. The aggregate so far (the 2,500) is written with `iotFallback`;
    # the usage is charged in full (20,000, beyond the 5,000 reserved) and the new grant is the
    # normal one: 10 MiB, an hour, threshold 20 %, QHT 5 min, reserving 10 x 20,000
    t3 = TUESDAY_UTC + 10 * 3_600_000
    # (reported after the grant's Tariff-Time-Change, 07:00 UTC, 08:00 Paris: at peak)
    after = TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE
    spent = usu(octets=MiB, reason=ReportingReason.QUOTA_EXHAUSTED, tcu=after)
    c = only(h.cca(ccr("d", UPDATE, 3, mscc(10, ask=rsu(), used=(spent,))), t3))
    assert c.granted_service_unit is not None
    assert c.granted_service_unit.cc_total_octets == 10 * MiB
    assert (c.validity_time, c.quota_holding_time) == (3_600, 300)
    assert c.volume_quota_threshold == 2_097_152
    assert h.reserved("m1") == 200_000
    fallback = h.cdrs()[1]
    assert fallback["iotFallback"] == "maxOctets" and fallback["charge"] == 2_500
    assert h.take_actions() == []  # the request renewed its only group itself

    # back in the normal profile, the catalog's triggers cut records again: usage split by
    # Tariff-Change-Usage makes a partial record of the 1 MiB (20,000) at once
    cut = h.cdrs()[2]
    assert cut["causeForRecordClosing"] == "partialRecord" and cut["charge"] == 20_000
    assert "iotFallback" not in cut
    h.cca(ccr("d", TERMINATION, 4, mscc(10, used=(usu(octets=0),))), t3 + 60_000)
    last = h.cdrs()[3]
    assert last["causeForRecordClosing"] == "normalRelease" and last["charge"] == 0
    # 10,000 + 2,500 + 20,000 = 32,500 charged, in the records
    assert h.balance("m1") == EUR - 32_500 == EUR - h.cdr_total("m1")
    assert h.reserved("m1") == 0
    assert "d" not in str(h.core.iot.sessions)


def test_too_many_reports_fall_back_and_the_other_sessions_get_rar(h: Harness) -> None:
    device(h)
    h.cca(initial("a", PEAK), PEAK)  # report 1 of the day
    # report 2: "b" holds video (RG 20, not the class's) as well
    both = (mscc(10, ask=rsu()), mscc(20, ask=rsu()))
    h.cca(ccr("b", INITIAL, 0, *both, subscriber=IMSI, subscriber_type=IMSI_TYPE), PEAK + 1_000)
    # six updates of "a" (reports 3 to 8) stay within the set: each answered by the profile
    for n in range(1, 7):
        at = PEAK + n * 60_000
        m = only(h.cca(ccr("a", UPDATE, n, mscc(10, ask=rsu(), used=(usu(octets=KiB),))), at))
        assert m.quota_holding_time == 86_400
    assert h.take_actions() == []
    # the 9th request of the day: beyond `max_reports` (8); "a" gets the normal grant in its
    # answer, "b" is re-authorised (RAR, reason "iot threshold maxReports")
    at = PEAK + 7 * 60_000
    m = only(h.cca(ccr("a", UPDATE, 7, mscc(10, ask=rsu(), used=(usu(octets=KiB),))), at))
    assert m.quota_holding_time == 300
    (rar,) = h.take_actions()
    assert rar.kind is ActionKind.RAR and rar.session_id.endswith(";b")
    # (only the class's groups: RG 20 was never granted by the profile)
    assert rar.rating_groups == (10,) and rar.reason == "iot threshold maxReports"
    # "a"'s aggregate (six reports of 1 KiB at peak: 6 x ceil(20,000 / 1024) ... as rated) is
    # written at the fall back with the reason; from now on "a" is cut by the normal triggers
    (record,) = h.cdrs()
    assert record["iotFallback"] == "maxReports"
    assert len(record["listOfMultipleUnitUsage"][0]["usedUnitContainers"]) == 6
    # the next day the device is within its set again
    tuesday = TUESDAY_UTC + 60_000
    m = only(h.cca(ccr("b", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=0),))), tuesday))
    assert m.quota_holding_time == 86_400 and m.validity_time == 68_340  # to 19:00 UTC


def test_other_subscribers_and_estimates_are_charged_as_usual(h: Harness) -> None:
    h.account("p", PHONE, EUR)
    g = only(h.cca(ccr("p", INITIAL, 0, mscc(10, ask=rsu()), subscriber=PHONE), PEAK))
    assert g.validity_time == 3_600 and g.quota_holding_time == 300
    assert h.core.iot.sessions == {}


def test_headroom_below_the_reservation_gets_the_normal_grant(h: Harness) -> None:
    device(h, balance=4_000)  # less than the 5,000 a profile grant reserves
    g = only(h.cca(initial("d", PEAK), PEAK))
    # the normal grant cut to the balance: 4,000 / 20,000 x 1,048,576 = 209,715.2 octets, down
    # to a whole KiB (the increment): 204 KiB = 208,896, with Final-Unit-Indication
    assert g.granted_service_unit is not None
    assert g.granted_service_unit.cc_total_octets == 204 * KiB
    assert g.final_unit_indication is not None


def test_snapshot_restart_keeps_the_aggregate_and_counts() -> None:
    h = Harness()
    device(h)
    h.cca(initial("d", PEAK), PEAK)
    h.cca(ccr("d", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=512 * KiB),))), PEAK + 60_000)
    before = h.core.snapshot()
    h.restart()
    assert h.core.snapshot() == before
    assert h.core.iot.devices["m1"].reports == 2
    assert h.tick(TUESDAY_UTC)
    (record,) = h.cdrs()
    assert record["charge"] == 10_000 and record["iotDeviceClass"] == "meter"


def test_device_classes_are_checked() -> None:
    bad = DEMO + '\n[[device_classes]]\nname = "x"\nimsi_prefixes = ["1"]\nrating_groups = [40]\n'
    bad += 'max_octets = "1 MiB"\nmax_reports = 1\nreserve = "0.01"\n'
    try:
        parse_catalog(bad)
    except CatalogError as exc:
        assert "device_classes[1].rating_groups[0]" in str(exc)
    else:
        raise AssertionError("a voice group accepted in a device class")


def test_an_idle_device_session_stays_packed_through_its_period_record(h: Harness) -> None:
    device(h)
    h.cca(initial("d", PEAK), PEAK)
    h.cca(ccr("d", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=512 * KiB),))), PEAK + 60_000)
    # another account's request 5 minutes later: the device's last answer leaves the duplicate
    # window, its session is packed (section 4b)
    h.account("p", PHONE, EUR)
    h.cca(ccr("p", INITIAL, 0, mscc(10, ask=rsu()), subscriber=PHONE), PEAK + 6 * 60_000)
    assert h.core.sessions.packed() == 1
    assert h.tick(TUESDAY_UTC)
    (record,) = [r for r in h.cdrs() if r["accountId"] == "m1"]
    assert record["charge"] == 10_000 and record["localSequenceNumber"] == 1
    # "d" was written from a copy and stays packed ("p", silent for its Tcc of 2 h, was closed
    # by the same tick)
    assert list(h.core.sessions) == [sid_of("d")] and h.core.sessions.packed() == 1
    # its next record starts after this one
    h.cca(ccr("d", TERMINATION, 2, mscc(10, used=(usu(octets=0),))), TUESDAY_UTC + 1_000)
    last = [r for r in h.cdrs() if r["accountId"] == "m1"][-1]
    assert last["localSequenceNumber"] == 2 and last["charge"] == 0
    assert last["recordOpeningTime"] == "2026-01-06T00:00:00.000Z"


def test_a_record_holds_at_most_max_containers_within_the_set() -> None:
    h = Harness(catalog=DEMO.replace("max_reports = 8", "max_reports = 1000"))
    device(h)
    h.cca(initial("d", PEAK), PEAK)
    for n in range(1, 257):  # 256 reports of one octet each: the 256th cuts a record
        used = mscc(10, ask=rsu(), used=(usu(octets=1),))
        h.cca(ccr("d", UPDATE, n, used), PEAK + n * 1_000)
    (record,) = h.cdrs()
    assert len(record["listOfMultipleUnitUsage"][0]["usedUnitContainers"]) == 256
    h.assert_replays()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(min_value=1, max_value=6 * 3_600),  # seconds since the last step
            st.integers(min_value=0, max_value=700 * KiB),  # octets used
            st.booleans(),  # with a quota request
        ),
        max_size=25,
    )
)
def test_any_device_traffic_keeps_the_books_and_replays(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    """Two sessions of one device across days, within and beyond the set, ticks between: the
    records hold every charge exactly once, nothing stays reserved, replay is exact."""
    h = Harness()
    device(h)
    now = PEAK
    numbers = {"a": 0, "b": 0}
    for name in numbers:
        h.cca(initial(name, now), now)
    for name, dt_s, octets, ask in steps:
        now += dt_s * 1_000
        while h.tick(now):
            pass
        if name not in {s.rsplit(";", 1)[1] for s in h.core.sessions}:
            continue  # closed by supervision (Tcc) meanwhile
        numbers[name] += 1
        used = mscc(10, ask=rsu() if ask else None, used=(usu(octets=octets),))
        assert h.cca(ccr(name, UPDATE, numbers[name], used), now).result_code == 2001
    now += 1_000
    for name in numbers:
        if name in {s.rsplit(";", 1)[1] for s in h.core.sessions}:
            h.cca(ccr(name, TERMINATION, numbers[name] + 1), now)
    assert h.reserved("m1") == 0
    assert h.balance("m1") == EUR - h.cdr_total("m1")
    seqs = [r["recordSequenceNumber"] for r in h.cdrs()]
    assert seqs == list(range(1, len(seqs) + 1))
    h.ledger.check_invariants()
    h.assert_replays()


def test_catalog_diff_names_device_class_changes() -> None:
    """`ocs catalog diff` sees a change of a device class (a fact of its own per key)."""
    new = DEMO.replace("max_reports = 8", "max_reports = 12").replace(
        'reserve = "0.005"', 'reserve = "0.01"'
    )
    changes = list(catalog_changes(parse_catalog(DEMO), parse_catalog(new)))
    assert changes == [
        (
            "device class meter threshold set",
            "at most 1 MiB and 8 reports per 24 h",
            "at most 1 MiB and 12 reports per 24 h",
        ),
        ("device class meter reserve", "0.005 EUR", "0.01 EUR"),
    ]
