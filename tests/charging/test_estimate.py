"""The `Estimate` extension (docs/protocol.md "Estimate", docs/charging.md 3e; issue 15 item 5)
on the demo catalog, in the core: an estimate runs the charging logic and changes no money."""

from __future__ import annotations

from msgspec.structs import replace

from protocol.codes import (
    AoCRequestType,
    CCRequestType,
    Estimate,
    RequestedAction,
    TariffChangeUsage,
)
from protocol.messages import CCA, CCR, MsccRequest
from tests.charging.conftest import (
    EUR,
    VOICE,
    Harness,
    ccr,
    epoch_ms,
    epoch_s,
    mscc,
    rsu,
    usu,
)
from tests.charging.test_events import event

INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
BEFORE = TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE
AFTER = TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE
# Friday 2026-01-09 23:56 Paris; the weekend (voice at half price) begins at 00:00
T0 = epoch_ms("2026-01-09T23:56:00+01:00")
COST = AoCRequestType.COST_ONLY
WEEKEND_S = epoch_s("2026-01-10T00:00:00+01:00")


def cost_of(answer: CCA) -> int:
    cost = answer.cost_information
    assert cost is not None
    return int(cost.unit_value.value_digits * 10 ** (6 + (cost.unit_value.exponent or 0)))


def call(name: str, sub: str, *, estimate: bool) -> list[tuple[CCR, int]]:
    """The recorded usage pattern of one voice call (the setup fee, a tariff change, several
    UPDATEs), each request with its time."""

    def msg(kind: CCRequestType, number: int, m: MsccRequest, subscriber: str | None = None) -> CCR:
        message = ccr(
            name,
            kind,
            number,
            m,
            subscriber=subscriber,
            service=VOICE,
            aoc=AoCRequestType.COST_ONLY,
        )
        return replace(message, estimate=Estimate.ESTIMATE) if estimate else message

    return [
        (msg(INITIAL, 0, mscc(40, ask=rsu()), subscriber=sub), T0),
        (msg(UPDATE, 1, mscc(40, ask=rsu(), used=(usu(seconds=120),))), T0 + 120_000),
        (
            msg(
                UPDATE,
                2,
                mscc(
                    40, ask=rsu(), used=(usu(seconds=120, tcu=BEFORE), usu(seconds=60, tcu=AFTER))
                ),
            ),
            T0 + 300_000,
        ),
        (msg(TERMINATION, 3, mscc(40, used=(usu(seconds=30),))), T0 + 330_000),
    ]


def test_estimate_of_a_call_equals_its_real_charge_and_changes_no_money(h: Harness) -> None:
    """Hand-computed: the first report, 120 s on Friday (the first minute whole, then per
    second, 1,000 per second) = 120,000 + the 50,000 setup fee = 170,000; the second, 120 s
    before the weekend at 1,000 = 120,000 and 60 s after it at half price, 500 = 30,000, so
    150,000; the last, 30 s on Saturday, 15,000. In all 335,000 (0.335 EUR). The estimate
    answers those costs, with the same grants, and leaves its account, the ledger and the CDRs
    as they were; the real call is charged exactly that."""
    h.account("e", "491700000010", EUR, now_ms=T0 - 1000)
    h.account("r", "491700000011", EUR, now_ms=T0 - 1000)
    ledger_before = h.ledger.account("e")
    estimate = call("estimate", "491700000010", estimate=True)
    real = call("real", "491700000011", estimate=False)
    costs = [(0, 0), (170_000, 170_000), (320_000, 320_000), (335_000, 335_000)]
    for (est, at), (rl, at_real), expected in zip(estimate, real, costs, strict=True):
        assert at == at_real
        a = h.cca(est, at)
        assert h.ledger.account("e") == ledger_before  # nothing reserved, nothing charged
        b = h.cca(rl, at)
        assert a.result_code == b.result_code == 2001
        assert (cost_of(a), cost_of(b)) == expected
        # the same grants (the estimate's headroom is the account's as the call would leave it)
        assert a.multiple_services_credit_control == b.multiple_services_credit_control
    assert h.balance("e") == EUR and h.reserved("e") == 0
    assert h.balance("r") == EUR - 335_000 and h.reserved("r") == 0
    # (the real call's records: a partial one at the tariff change, then the last)
    assert {r["sessionId"] for r in h.cdrs()} == {real[0][0].session_id}
    assert h.cdr_total("r") == 335_000
    h.assert_replays()


def test_estimate_grant_is_cut_as_the_real_one_would_be(h: Harness) -> None:
    """0.20 EUR: the estimate's first grant is the fee (50,000) then 150 s for the remaining
    150,000, final (docs/charging.md 1), as a real INITIAL's; after a report of 100 s (100,000
    + fee = 150,000 charged) the next grant is cut to what the 50,000 left pays: 50 s."""
    h.account("e", "491700000012", 200_000, now_ms=T0 - 1000)
    first = call("cut", "491700000012", estimate=True)[0][0]
    answer = h.cca(first, T0 - 600_000)
    granted = answer.multiple_services_credit_control
    assert granted is not None and granted[0].granted_service_unit is not None
    assert granted[0].granted_service_unit.cc_time == 150
    assert granted[0].final_unit_indication is not None
    update = replace(
        call("cut", "491700000012", estimate=True)[1][0],
        multiple_services_credit_control=(mscc(40, ask=rsu(), used=(usu(seconds=100),)),),
    )
    answer = h.cca(update, T0 - 500_000)
    assert cost_of(answer) == 150_000
    granted = answer.multiple_services_credit_control
    assert granted is not None and granted[0].granted_service_unit is not None
    assert granted[0].granted_service_unit.cc_time == 50
    assert h.balance("e") == 200_000 and h.reserved("e") == 0


def test_estimate_of_a_debit_is_what_the_debit_charges(h: Harness) -> None:
    h.account("a", "491700000013", EUR, now_ms=T0 - 1000)
    message = event(
        "d1", RequestedAction.DIRECT_DEBITING, seconds=90, rg=40, service=VOICE, sub="491700000013"
    )
    answer = h.cca(
        replace(message, session_id=message.session_id + "e", estimate=Estimate.ESTIMATE), T0
    )
    assert cost_of(answer) == 90_000  # a debit pays no setup fee (catalog.md)
    assert h.balance("a") == EUR and h.cdrs() == []
    h.cca(message, T0)
    assert h.balance("a") == EUR - 90_000


def test_an_estimate_session_stays_an_estimate_across_a_snapshot(h: Harness) -> None:
    """The mark is in the core's snapshot (layout 4): restored, the session still reserves and
    charges nothing, and closes without a CDR."""
    h.account("e", "491700000014", EUR, now_ms=T0 - 1000)
    steps = call("snap", "491700000014", estimate=True)
    h.cca(steps[0][0], steps[0][1])
    h.restart()
    for message, at in steps[1:]:
        answer = h.cca(message, at)
    assert cost_of(answer) == 335_000
    assert h.balance("e") == EUR and h.reserved("e") == 0 and h.cdrs() == []
    assert len(h.core.sessions) == 0
