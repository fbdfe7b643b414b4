"""The usage reporting rules, driven with a fake clock (int ms) and hand-made CCA MSCCs."""

from __future__ import annotations

from ocs.tools.sim.urr import MsccReport, RuleState, UrrEngine
from protocol.codes import FinalUnitAction, ReportingReason, ResultCode, TariffChangeUsage
from protocol.messages import FinalUnitIndication, MsccAnswer, ServiceUnit
from rating import Unit

S = 1000  # ms
RR = ReportingReason
T0 = 1_800_000_000_000  # a fixed instant, ms


def grant(
    rg: int,
    octets: int,
    *,
    threshold: int | None = None,
    validity: int | None = 3600,
    qht: int | None = None,
    ttc_s: int | None = None,
    final: FinalUnitAction | None = None,
    linked: tuple[int, ...] | None = None,
) -> MsccAnswer:
    return MsccAnswer(
        rating_group=rg,
        result_code=ResultCode.SUCCESS,
        granted_service_unit=ServiceUnit(cc_total_octets=octets),
        volume_quota_threshold=threshold,
        validity_time=validity,
        quota_holding_time=qht,
        tariff_time_change=ttc_s,
        final_unit_indication=(
            FinalUnitIndication(final_unit_action=final) if final is not None else None
        ),
        linked_rating_group=linked,
    )


def opened(*answers: MsccAnswer, now: int = T0) -> UrrEngine:
    engine = UrrEngine({a.rating_group: Unit.OCTETS for a in answers})
    reports = engine.initial(a.rating_group for a in answers)
    assert all(r.request_quota and not r.used for r in reports)
    engine.apply(reports, answers, now)
    return engine


def only(reports: list[MsccReport], rg: int) -> MsccReport:
    (report,) = [r for r in reports if r.rating_group == rg]
    return report


def test_threshold_reports_and_keeps_serving_until_the_quota_is_used() -> None:
    engine = opened(grant(10, 1000, threshold=200))
    assert engine.consume(10, 700, T0, T0 + 1 * S) == 700
    assert engine.poll(T0 + 1 * S) == []
    assert engine.consume(10, 150, T0 + 1 * S, T0 + 2 * S) == 150  # 150 left <= 200
    (report,) = engine.poll(T0 + 2 * S)
    assert report.rating_group == 10 and report.request_quota
    assert [(u.units, u.reason) for u in report.used] == [(850, RR.THRESHOLD)]
    # in flight: the rest of the old quota still serves, nothing is reported twice
    assert engine.consume(10, 500, T0 + 2 * S, T0 + 3 * S) == 150
    assert engine.poll(T0 + 3 * S) == []
    engine.apply([report], [grant(10, 1000, threshold=200)], T0 + 3 * S)
    rule = engine.rule(10)
    assert rule.state is RuleState.ACTIVE and rule.remaining == 850  # 150 used since the report
    assert rule.measured == 150  # goes into the next report
    assert engine.consume(10, 100, T0 + 3 * S, T0 + 4 * S) == 100
    final = engine.final(T0 + 4 * S)
    assert [(u.units, u.reason) for u in only(final, 10).used] == [(250, RR.FINAL)]
    assert not only(final, 10).request_quota


def test_quota_exhausted_blocks_traffic_until_the_new_grant() -> None:
    engine = opened(grant(10, 500))
    assert engine.consume(10, 600, T0, T0 + S) == 500
    assert engine.rule(10).dropped == 100
    (report,) = engine.poll(T0 + S)
    assert report.request_quota
    assert [(u.units, u.reason) for u in report.used] == [(500, RR.QUOTA_EXHAUSTED)]
    assert engine.consume(10, 100, T0 + S, T0 + 2 * S) == 0
    engine.apply([report], [grant(10, 300)], T0 + 2 * S)
    assert engine.consume(10, 100, T0 + 2 * S, T0 + 3 * S) == 100
    assert engine.rule(10).remaining == 200


def test_validity_time_reports_at_its_end() -> None:
    engine = opened(grant(10, 10_000, validity=10))
    engine.consume(10, 100, T0, T0 + S)
    assert engine.poll(T0 + 10 * S - 1) == []
    (report,) = engine.poll(T0 + 10 * S)
    assert report.request_quota
    assert [(u.units, u.reason) for u in report.used] == [(100, RR.VALIDITY_TIME)]
    assert engine.consume(10, 100, T0 + 10 * S, T0 + 11 * S) == 0  # expired quota: no use


def test_quota_holding_time_gives_the_quota_back_then_traffic_asks_again() -> None:
    engine = opened(grant(10, 10_000, qht=5))
    engine.consume(10, 100, T0, T0 + 1 * S)
    assert engine.poll(T0 + 6 * S - 1) == []  # 5 s after the last traffic, not yet
    (report,) = engine.poll(T0 + 6 * S)
    assert not report.request_quota  # given back
    assert [(u.units, u.reason) for u in report.used] == [(100, RR.QHT)]
    engine.apply([report], [MsccAnswer(rating_group=10, result_code=2001)], T0 + 6 * S)
    rule = engine.rule(10)
    assert rule.state is RuleState.IDLE and not rule.holds_grant
    assert engine.poll(T0 + 60 * S) == []  # no traffic, no request
    assert engine.consume(10, 100, T0 + 60 * S, T0 + 61 * S) == 0
    (ask,) = engine.poll(T0 + 61 * S)
    assert ask.request_quota and ask.used == () and ask.reason is None


def test_quota_holding_time_counts_from_the_grant_without_traffic() -> None:
    engine = opened(grant(10, 10_000, qht=5), now=T0)
    (report,) = engine.poll(T0 + 5 * S)
    assert [(u.units, u.reason) for u in report.used] == [(0, RR.QHT)]  # releases the grant


def test_linked_rating_groups_report_together() -> None:
    engine = opened(
        grant(10, 1000, threshold=200, linked=(20,)),
        grant(20, 50_000, threshold=5000, linked=(10,)),
    )
    engine.consume(10, 850, T0, T0 + S)
    engine.consume(20, 3000, T0, T0 + S)
    reports = engine.poll(T0 + S)
    data, video = only(reports, 10), only(reports, 20)
    assert [(u.units, u.reason) for u in data.used] == [(850, RR.THRESHOLD)]
    assert [(u.units, u.reason) for u in video.used] == [(3000, RR.LINKED_USAGE)]
    assert video.request_quota  # its reservation is released too: ask again
    engine.apply(reports, [grant(10, 1000, linked=(20,)), grant(20, 50_000)], T0 + 2 * S)
    assert engine.rule(20).remaining == 50_000


def test_qht_does_not_carry_linked_usage() -> None:
    engine = opened(grant(10, 1000, qht=5, linked=(20,)), grant(20, 50_000, linked=(10,)))
    engine.consume(20, 10, T0, T0 + 6 * S)  # video busy, data idle
    reports = engine.poll(T0 + 6 * S)
    assert [(r.rating_group, r.reason) for r in reports] == [(10, RR.QHT)]


def test_linked_usage_includes_a_linked_group_without_usage_that_holds_a_grant() -> None:
    engine = opened(grant(10, 500, linked=(20,)), grant(20, 50_000, linked=(10,)))
    engine.consume(10, 500, T0, T0 + S)
    reports = engine.poll(T0 + S)
    assert [(u.units, u.reason) for u in only(reports, 20).used] == [(0, RR.LINKED_USAGE)]


def test_usage_is_split_at_the_tariff_time_change() -> None:
    change_s = T0 // S + 10
    engine = opened(grant(10, 10_000, ttc_s=change_s))
    # 1000 octets over [5 s, 15 s]: half before the change, half after
    engine.consume(10, 1000, T0 + 5 * S, T0 + 15 * S, uplink=100)
    engine.consume(10, 300, T0 + 15 * S, T0 + 16 * S)
    final = only(engine.final(T0 + 16 * S), 10)
    assert [(u.units, u.tariff_change_usage, u.uplink) for u in final.used] == [
        (500, TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE, 50),
        (800, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE, 50),
    ]
    assert all(u.reason is RR.FINAL for u in final.used)
    assert sum(u.units for u in final.used) == 1300


def test_no_split_before_the_tariff_change_has_come() -> None:
    engine = opened(grant(10, 10_000, threshold=9500, ttc_s=T0 // S + 100))
    engine.consume(10, 600, T0, T0 + 5 * S)
    (report,) = engine.poll(T0 + 5 * S)
    assert [(u.units, u.tariff_change_usage) for u in report.used] == [(600, None)]


def test_only_the_side_with_usage_is_reported_after_the_change() -> None:
    engine = opened(grant(10, 10_000, ttc_s=T0 // S + 10))
    engine.consume(10, 400, T0 + 20 * S, T0 + 30 * S)
    (report,) = engine.final(T0 + 30 * S)
    assert [(u.units, u.tariff_change_usage) for u in report.used] == [
        (400, TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE)
    ]


def test_final_units_redirect_stop_counting_until_reauthorised() -> None:
    engine = opened(grant(10, 1000, threshold=200, final=FinalUnitAction.REDIRECT))
    engine.consume(10, 900, T0, T0 + S)
    assert engine.poll(T0 + S) == []  # no threshold report on final units
    assert engine.consume(10, 500, T0 + S, T0 + 2 * S) == 100
    (report,) = engine.poll(T0 + 2 * S)
    assert not report.request_quota  # the last units: report, do not ask
    assert [(u.units, u.reason) for u in report.used] == [(1000, RR.QUOTA_EXHAUSTED)]
    engine.apply([report], [MsccAnswer(rating_group=10, result_code=2001)], T0 + 2 * S)
    rule = engine.rule(10)
    assert rule.state is RuleState.FINAL and not engine.terminate_due
    assert engine.consume(10, 5000, T0 + 2 * S, T0 + 3 * S) == 0  # redirected, not counted
    assert rule.uncounted == 5000
    assert engine.poll(T0 + 100 * S) == []
    assert engine.final(T0 + 100 * S) == []  # nothing held, nothing measured
    # RAR: ask again with reason FORCED_REAUTHORISATION
    (again,) = engine.reauthorise(None, T0 + 101 * S)
    assert again.request_quota and again.used == ()
    assert again.reason is RR.FORCED_REAUTHORISATION
    engine.apply([again], [grant(10, 2000)], T0 + 101 * S)
    assert engine.rule(10).state is RuleState.ACTIVE
    assert engine.consume(10, 100, T0 + 101 * S, T0 + 102 * S) == 100


def test_zero_units_with_redirect_are_final_at_once_until_reauthorised() -> None:
    """An inhibit threshold reached (or a state that restricts): 2001, zero units and the
    final-unit action: traffic is redirected, uncounted, without a report, until a RAR."""
    engine = opened(grant(10, 0, final=FinalUnitAction.REDIRECT))
    rule = engine.rule(10)
    assert rule.state is RuleState.FINAL and not rule.holds_grant and rule.inhibited == 1
    assert engine.consume(10, 5000, T0, T0 + S) == 0 and rule.uncounted == 5000
    assert engine.poll(T0 + 2 * S) == [] and engine.final(T0 + 2 * S) == []
    (again,) = engine.reauthorise(None, T0 + 3 * S)  # after a top-up's RAR
    assert again.request_quota and again.used == ()
    engine.apply([again], [grant(10, 2000)], T0 + 3 * S)
    assert engine.rule(10).state is RuleState.ACTIVE
    assert engine.consume(10, 100, T0 + 3 * S, T0 + 4 * S) == 100


def test_final_units_terminate_end_the_session() -> None:
    engine = opened(grant(10, 300, final=FinalUnitAction.TERMINATE))
    engine.consume(10, 200, T0, T0 + S)
    assert not engine.terminate_due
    engine.consume(10, 200, T0 + S, T0 + 2 * S)
    assert engine.terminate_due
    assert engine.poll(T0 + 2 * S) == []
    (report,) = engine.final(T0 + 2 * S)
    assert [(u.units, u.reason) for u in report.used] == [(300, RR.FINAL)]


def test_credit_limit_reached_denies_traffic_and_keeps_usage_for_the_final_report() -> None:
    engine = opened(grant(10, 1000, threshold=200))
    engine.consume(10, 900, T0, T0 + S)
    (report,) = engine.poll(T0 + S)
    engine.consume(10, 50, T0 + S, T0 + 2 * S)  # used while the report was in flight
    engine.apply(
        [report], [MsccAnswer(rating_group=10, result_code=ResultCode.CREDIT_LIMIT_REACHED)], T0
    )
    rule = engine.rule(10)
    assert rule.state is RuleState.DENIED
    assert engine.consume(10, 50, T0 + 2 * S, T0 + 3 * S) == 0
    assert engine.poll(T0 + 10 * S) == []  # waits for a RAR
    (final,) = engine.final(T0 + 10 * S)
    assert [u.units for u in final.used] == [50]


def test_forced_reauthorisation_reports_usage_and_keeps_serving() -> None:
    engine = opened(grant(10, 1000), grant(20, 1000))
    engine.consume(10, 100, T0, T0 + S)
    reports = engine.reauthorise([20], T0 + S)
    assert [r.rating_group for r in reports] == [20]
    assert [(u.units, u.reason) for u in reports[0].used] == [(0, RR.FORCED_REAUTHORISATION)]
    assert engine.consume(20, 10, T0 + S, T0 + 2 * S) == 10  # old quota serves meanwhile


def test_zero_rated_and_unknown_rating_groups() -> None:
    engine = UrrEngine({50: Unit.OCTETS, 99: Unit.OCTETS})
    reports = engine.initial([50, 99])
    engine.apply(
        reports,
        [
            MsccAnswer(rating_group=50, result_code=ResultCode.CREDIT_CONTROL_NOT_APPLICABLE),
            MsccAnswer(rating_group=99, result_code=ResultCode.RATING_FAILED),
        ],
        T0,
    )
    assert engine.rule(50).state is RuleState.FREE
    assert engine.consume(50, 100, T0, T0 + S) == 0 and engine.rule(50).uncounted == 100
    assert engine.rule(99).state is RuleState.DISABLED
    assert engine.poll(T0 + S) == [] and engine.final(T0 + S) == []


def test_seconds_and_units_rules_use_their_unit_map() -> None:
    engine = UrrEngine({40: Unit.SECONDS})
    reports = engine.initial([40])
    engine.apply(
        reports,
        [
            MsccAnswer(
                rating_group=40,
                result_code=2001,
                granted_service_unit=ServiceUnit(cc_time=300),
                time_quota_threshold=30,
            )
        ],
        T0,
    )
    assert engine.consume(40, 270, T0, T0 + 270 * S) == 270
    (report,) = engine.poll(T0 + 270 * S)
    assert report.reason is RR.THRESHOLD
    assert report.used[0].uplink is None and report.used[0].units == 270
