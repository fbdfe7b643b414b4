"""Tcc supervision (WIRE.md 5.3) and server-initiated requests (WIRE.md 7): what the core asks
the edge to send, and when."""

from __future__ import annotations

import pytest

from ocs.core.charging import Action, ActionKind
from protocol.codes import AccountOperation, AccountStatus, CCRequestType, RequestedAction
from tests.charging.conftest import (
    DEMO,
    EUR,
    INITIAL,
    PEAK,
    SMS,
    SUB,
    TERMINATION,
    UPDATE,
    UPF,
    Harness,
    MiB,
    amr,
    by_rg,
    ccr,
    mscc,
    only,
    rsu,
    sid,
    usu,
)

SUB2 = "491700000002"
S = 1000
MIN = 60 * S


# --- Tcc supervision ---------------------------------------------------------------------------


def test_silent_session_is_closed_after_twice_its_validity(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    last = PEAK + 10 * MIN
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), last)
    assert h.reserved("a") == 200_000
    # validity 3600 s: Tcc = 7200 s after the last request
    assert not h.tick(last + 7199 * S)
    assert sid("s") in h.core.sessions and h.cdr_lines == []
    assert h.tick(last + 7200 * S)
    assert sid("s") not in h.core.sessions
    assert h.reserved("a") == 0 and h.ledger.reservation_count == 0
    assert h.balance("a") == 10 * EUR - 20_000
    (cdr,) = h.cdrs()
    assert cdr["causeForRecordClosing"] == "abnormalRelease"
    assert cdr["charge"] == 20_000  # the usage reported before it fell silent
    assert cdr["recordClosingTime"] == "2026-01-05T15:10:00.000Z"
    late = h.cca(ccr("s", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),))), last + 7201 * S)
    assert late.result_code == 5002
    assert h.balance("a") == 10 * EUR - 20_000


@pytest.mark.parametrize(
    ("balance", "rg", "service", "tcc_s"),
    [
        (0, 10, "32251@3gpp.org", 120),  # no grant (4012): the minimum Tcc
        (EUR, 30, SMS, 1200),  # SMS: validity 10 min
    ],
)
def test_tcc_follows_the_longest_validity(
    h: Harness, balance: int, rg: int, service: str, tcc_s: int
) -> None:
    h.account("a", SUB, balance)
    h.cca(ccr("s", INITIAL, 0, mscc(rg, ask=rsu()), subscriber=SUB, service=service), PEAK)
    assert not h.core.due(PEAK + (tcc_s - 1) * S)
    assert h.tick(PEAK + tcc_s * S)
    assert h.cdrs()[0]["causeForRecordClosing"] == "abnormalRelease"
    assert h.reserved("a") == 0


def test_silent_sessions_close_in_an_order_replay_reproduces(h: Harness) -> None:
    h.account("a", SUB, 0)  # no grants: Tcc is the minimum, 120 s
    h.cca(ccr("A", INITIAL, 0, subscriber=SUB), PEAK)
    h.cca(ccr("B", INITIAL, 0, subscriber=SUB), PEAK + 50 * S)
    h.cca(ccr("A", UPDATE, 1), PEAK + 100 * S)  # A's deadline moves from +120 s to +220 s
    # the edge asks whether a tick is due (it is not): only the live core's heap sees this
    assert not h.core.due(PEAK + 150 * S)
    assert h.tick(PEAK + 300 * S)
    # closed by deadline, B (+170 s) before A (+220 s), live and in replay alike
    assert [(c["sessionId"], c["recordSequenceNumber"]) for c in h.cdrs()] == [
        (sid("B"), 1),
        (sid("A"), 2),
    ]
    h.assert_replays()


def test_reservation_that_expires_is_no_longer_a_grant() -> None:
    h = Harness(min_tcc_s=10)
    h.account("a", SUB, 10 * EUR)
    # RG 10 granted once, then the session lives on RG 20 alone
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    now = PEAK
    for n in range(1, 5):
        now += 3000 * S
        h.cca(ccr("s", UPDATE, n, mscc(20, ask=rsu(), used=(usu(octets=MiB),))), now)
        h.tick(now)
    assert 10 not in h.core.sessions[sid("s")].grants  # RG 10's reservation expired meanwhile
    held = sum(g.amount for g in h.core.sessions[sid("s")].grants.values())
    assert h.reserved("a") == held
    h.cca(ccr("s", TERMINATION, 5, mscc(10, used=(usu(octets=MiB),))), now + S)
    assert h.reserved("a") == 0
    assert h.balance("a") + h.cdr_total() == 10 * EUR
    h.assert_replays()


# --- RAR ---------------------------------------------------------------------------------------


def test_top_up_re_authorises_sessions_held_at_final_units(h: Harness) -> None:
    h.account("a", SUB, 500_000)
    held = h.cca(ccr("held", INITIAL, 0, mscc(10, ask=rsu(octets=50 * MiB)), subscriber=SUB), PEAK)
    assert only(held).final_unit_indication is not None
    h.account("b", SUB2, 10 * EUR)
    h.cca(ccr("fine", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB2), PEAK)
    assert h.take_actions() == []
    h.ama(amr(AccountOperation.CREDIT, "a", amount=5 * EUR), PEAK + MIN)
    h.ama(amr(AccountOperation.CREDIT, "b", amount=5 * EUR), PEAK + MIN)
    assert h.take_actions() == [
        Action(
            kind=ActionKind.RAR,
            session_id=sid("held"),
            origin_host=UPF,
            rating_groups=(10,),
            reason="top-up",
        )
    ]
    # the client re-authorises (reason 7) and gets a full grant: no longer held
    again = h.cca(ccr("held", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    assert only(again).final_unit_indication is None
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 2 * MIN)
    assert h.take_actions() == []


def test_top_up_re_authorises_a_refused_group(h: Harness) -> None:
    h.account("a", SUB, 0)
    refused = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    assert only(refused).result_code == 4012
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + MIN)
    (action,) = h.take_actions()
    assert (action.kind, action.rating_groups) == (ActionKind.RAR, (10,))
    assert action.session_id == sid("s")


def test_catalog_reload_changing_a_price_re_authorises_open_grants(h: Harness) -> None:
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("data", INITIAL, 0, mscc(10, ask=rsu()), mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("video", INITIAL, 0, mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("sms", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    h.load_catalog(DEMO, PEAK + MIN)  # the same catalog: nothing to do
    assert h.take_actions() == []
    dearer = DEMO.replace('price = "0.02"', 'price = "0.03"')
    assert dearer != DEMO
    h.load_catalog(dearer, PEAK + 2 * MIN)
    assert h.take_actions() == [
        Action(
            kind=ActionKind.RAR,
            session_id=sid("data"),
            origin_host=UPF,
            rating_groups=(10,),
            reason="price change",
        )
    ]
    # the new price applies to the next grant: 10 MiB x 0.03
    before = h.reserved("a")
    h.cca(ccr("data", UPDATE, 1, mscc(10, ask=rsu())), PEAK + 3 * MIN)
    assert h.reserved("a") == before - 200_000 + 300_000


THRESHOLDS = DEMO.replace('["5.00", "10.00", "20.00"]', '["0.10", "0.20"]')


def test_account_usage_threshold_re_authorises_the_accounts_sessions() -> None:
    assert THRESHOLDS != DEMO
    h = Harness(catalog=THRESHOLDS)
    h.account("a", SUB, 10 * EUR)
    h.account("b", SUB2, 10 * EUR)
    h.cca(ccr("a1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a2", INITIAL, 0, mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("b1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB2), PEAK)
    report = mscc(10, ask=rsu(), used=(usu(octets=6 * MiB),))  # 0.12 EUR: crosses 0.10
    h.cca(ccr("a1", UPDATE, 1, report), PEAK + MIN)
    actions = h.take_actions()
    assert [(a.kind, a.session_id, a.reason) for a in actions] == [
        (ActionKind.RAR, sid("a1"), "usage threshold"),
        (ActionKind.RAR, sid("a2"), "usage threshold"),
    ]
    assert actions[1].rating_groups == (20,)
    small = mscc(10, ask=rsu(), used=(usu(octets=MiB),))  # 0.14 EUR in all: no threshold
    h.cca(ccr("a1", UPDATE, 2, small), PEAK + 2 * MIN)
    assert h.take_actions() == []
    # an event crosses the next one (0.24 EUR)
    sms = ccr(
        "e",
        CCRequestType.EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service=SMS,
        action=RequestedAction.DIRECT_DEBITING,
    )
    h.cca(sms, PEAK + 3 * MIN)
    assert [a.session_id for a in h.take_actions()] == [sid("a1"), sid("a2")]
    h.assert_replays()


# --- ASR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [AccountStatus.SUSPENDED, AccountStatus.BARRED])
def test_account_suspended_or_barred_aborts_its_sessions(h: Harness, status: AccountStatus) -> None:
    h.account("a", SUB, 10 * EUR)
    h.account("b", SUB2, 10 * EUR)
    h.cca(ccr("a2", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.cca(ccr("a1", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    h.cca(ccr("b1", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB2), PEAK)
    h.ama(amr(AccountOperation.SET_STATUS, "a", status=status), PEAK + MIN)
    assert h.take_actions() == [
        Action(kind=ActionKind.ASR, session_id=sid(n), origin_host=UPF, reason="account not active")
        for n in ("a1", "a2")
    ]
    # the clients end their sessions; nothing more is granted meanwhile
    answer = h.cca(ccr("a2", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    assert by_rg(answer)[10].result_code == 4010
    h.cca(ccr("a2", TERMINATION, 2), PEAK + MIN)
    h.cca(ccr("a1", TERMINATION, 1, mscc(30, used=(usu(units=0),))), PEAK + MIN)
    assert h.reserved("a") == 0 and h.balance("a") == 10 * EUR - 20_000
    h.ama(amr(AccountOperation.SET_STATUS, "b", status=AccountStatus.ACTIVE), PEAK + 2 * MIN)
    assert h.take_actions() == []


def test_actions_are_not_repeated_by_replay(h: Harness) -> None:
    h.account("a", SUB, 0)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + MIN)
    assert len(h.take_actions()) == 1
    assert h.replay().actions == []


SHORT_SMS = DEMO.replace('validity_time = "10 min"', 'validity_time = "30 s"')


def test_tcc_is_twice_the_validity_even_below_the_no_grant_default() -> None:
    assert SHORT_SMS != DEMO
    h = Harness(catalog=SHORT_SMS, min_tcc_s=120)
    h.account("a", SUB, 0)
    refused = h.cca(ccr("s", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    assert only(refused).result_code == 4012  # no grant: Tcc is the default, 120 s
    h.ama(amr(AccountOperation.CREDIT, "a", amount=EUR), PEAK + 10 * S)
    granted = h.cca(ccr("s", UPDATE, 1, mscc(30, ask=rsu())), PEAK + 20 * S)
    assert only(granted).validity_time == 30
    # Tcc = 2 x 30 s from the last request: closed at +80 s, before the +120 s of the INITIAL
    assert not h.tick(PEAK + 79 * S)
    assert h.tick(PEAK + 80 * S)
    assert sid("s") not in h.core.sessions and h.reserved("a") == 0
    assert h.cdrs()[0]["causeForRecordClosing"] == "abnormalRelease"
    h.assert_replays()


def test_tcc_is_twice_the_longest_validity_not_the_last() -> None:
    """A 1 h grant (RG 10) then a 10 min grant (RG 20, shortened in this catalog) in the same
    session: Tcc stays 2 h (the longest Validity-Time granted), not the 20 min of the last
    grant."""
    video = DEMO.index('name = "video"')
    catalog = DEMO[:video] + DEMO[video:].replace(
        'validity_time = "1 h"', 'validity_time = "10 min"', 1
    )
    h = Harness(catalog=catalog)
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    last = PEAK + MIN
    answer = h.cca(ccr("s", UPDATE, 1, mscc(20, ask=rsu())), last)
    assert only(answer).validity_time == 600
    assert not h.core.due(last + 1200 * S)  # the last grant's 2 x 10 min: not yet
    assert not h.tick(last + 7199 * S)
    assert sid("s") in h.core.sessions
    assert h.tick(last + 7200 * S)
    assert sid("s") not in h.core.sessions
