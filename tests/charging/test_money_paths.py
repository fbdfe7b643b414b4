"""Money paths that the mutation run of `bench/mutate.py` (docs/testing.md) found thin: each test
pins one rule of WIRE.md or docs/catalog.md with amounts worked out by hand, on the demo catalog.
Every test also replays (the `h` fixture's teardown)."""

from __future__ import annotations

from protocol.codes import AoCRequestType, CCRequestType, ReportingReason
from protocol.messages import MsccAnswer, MsccRequest
from tests.charging.conftest import (
    DATA,
    EUR,
    PEAK,
    Harness,
    MiB,
    by_rg,
    ccr,
    epoch_ms,
    mscc,
    rsu,
    usu,
)

INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
SUB = "491700000001"
MIN = 60_000  # ms


def open_session(h: Harness, sid: str, now: int, *msccs: MsccRequest) -> dict[int, MsccAnswer]:
    answer = h.cca(ccr(sid, INITIAL, 0, *msccs, subscriber=SUB, service=DATA), now)
    assert answer.result_code == 2001
    return by_rg(answer)


def containers(h: Harness) -> list[dict[str, object]]:
    (cdr,) = h.cdrs()
    (usage,) = cdr["listOfMultipleUnitUsage"]
    items: list[dict[str, object]] = usage["usedUnitContainers"]
    return items


def test_increments_are_counted_over_the_whole_session(h: Harness) -> None:
    """docs/catalog.md: billing increments are cumulative per session. Three reports of 600 B
    (1,800 B) are billed 2 KiB at 0.02 EUR/MiB, as one report of 1,800 B would be: 1 KiB,
    then 1 KiB, then nothing (600 B + 600 B + 600 B stay within the second started KiB)."""
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    for number in (1, 2):
        h.cca(ccr("s", UPDATE, number, mscc(10, used=(usu(octets=600),))), PEAK + number * MIN)
    h.cca(ccr("s", TERMINATION, 3, mscc(10, used=(usu(octets=600),))), PEAK + 3 * MIN)
    # CUMULATIVE_CEIL at 20,000 micro-units per MiB: 1 KiB costs ceil(19.53) = 20, 2 KiB
    # ceil(39.06) = 40; so 20, 40 - 20 and 40 - 40
    assert [c["charge"] for c in containers(h)] == [20, 20, 0]
    assert h.balance("a") == 10 * EUR - 40
    assert h.ledger.totals().debits == 40


def test_a_grant_that_spans_the_start_of_peak_is_reserved_at_peak_price(h: Harness) -> None:
    """WIRE.md 5.3: quota is reserved at the highest tariff in force during its validity. At
    07:30 on a weekday the rate is off-peak (0.01 EUR/MiB), but the hour of validity reaches
    peak (0.02 EUR/MiB) at 08:00: 10 MiB reserve 0.20 EUR, not 0.10."""
    h.account("a", SUB, 10 * EUR)
    morning = epoch_ms("2026-01-06T07:30:00+01:00")
    grant = open_session(h, "s", morning, mscc(10, ask=rsu()))[10]
    assert grant.granted_service_unit is not None
    assert grant.granted_service_unit.cc_total_octets == 10 * MiB
    assert grant.tariff_time_change == epoch_ms("2026-01-06T08:00:00+01:00") // 1000
    assert h.reserved("a") == 200_000


def test_aoc_cost_is_the_sum_of_every_report_of_the_session(h: Harness) -> None:
    """WIRE.md 5.2: Cost-Information carries the session's charge so far, not the last
    report's: 1 MiB then 2 MiB at peak cost 0.02 + 0.04 = 0.06 EUR."""
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    answer = h.cca(
        ccr(
            "s",
            UPDATE,
            2,
            mscc(10, ask=rsu(), used=(usu(octets=2 * MiB),)),
            aoc=AoCRequestType.COST_ONLY,
        ),
        PEAK + 2 * MIN,
    )
    cost = answer.cost_information
    assert cost is not None
    assert (cost.unit_value.value_digits, cost.unit_value.exponent) == (6, -2)


def test_beyond_grant_counts_the_earlier_usus_of_the_same_report(h: Harness) -> None:
    """A grant of 10 MiB used as 6 MiB then 6 MiB in two USUs of one report: the second
    container is 2 MiB beyond the grant (and the first is not beyond it)."""
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    used = (
        usu(octets=6 * MiB, reason=ReportingReason.QUOTA_EXHAUSTED),
        usu(octets=6 * MiB, reason=ReportingReason.FINAL),
    )
    h.cca(ccr("s", TERMINATION, 1, mscc(10, used=used)), PEAK + MIN)
    first, second = containers(h)
    assert "beyondGrant" not in first
    assert second["beyondGrant"] == 2 * MiB
    assert [first["charge"], second["charge"]] == [120_000, 120_000]
    assert h.balance("a") == 10 * EUR - 240_000


def test_a_session_restored_from_a_snapshot_is_still_supervised(h: Harness) -> None:
    """WIRE.md 5.3: Tcc holds across a restart: a session silent for 2 x its Validity-Time
    (1 h) after the snapshot it was restored from is closed, and its grant released."""
    h.account("a", SUB, 10 * EUR)
    open_session(h, "s", PEAK, mscc(10, ask=rsu()))
    assert h.reserved("a") == 200_000
    h.restart()
    assert not h.tick(PEAK + 7199 * 1000)
    assert h.tick(PEAK + 7200 * 1000)
    assert "s" not in h.core.sessions and h.reserved("a") == 0
    (cdr,) = h.cdrs()
    assert cdr["causeForRecordClosing"] == "abnormalRelease"
