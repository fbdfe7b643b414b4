"""Service control by account state and the low-balance thresholds (issue 15, items 1 and 2;
ocs/core/policy.py, rating/policies.py), through the charging core with hand-computed numbers.

The catalog is flat (UTC, no periods): data RG 10 costs 0.01 EUR per MiB (10,000 micro-units),
video RG 20 0.005 EUR per MiB (5,000), SMS RG 30 0.10 EUR a message. `[status]`: inhibit
threshold 1.00 EUR, notification threshold 2.00 EUR; a low balance redirects data to the top-up
page (and video, by default, does what its grant policy says: restrict to "video-blocked");
a suspended account is redirected to customer care for data (SMS: denied by default); the
operator-defined state "in_arrears" denies everything but data, which is restricted to a
walled garden.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs.cli.catalog import catalog_facts
from ocs.core.charging import Action, ActionKind, ChargingCore
from ocs.core.charging_types import CORE_LAYOUT, CoreState
from ocs.edge.audit import audit_fields
from protocol.avp import decode_avps, encode_avps
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CommandCode,
    FinalUnitAction,
    LowBalanceIndication,
    RedirectAddressType,
    ReportingReason,
    RequestedAction,
)
from protocol.dictionary import BY_NAME, VENDOR_OCS
from protocol.messages import (
    AMA,
    AMR,
    CCA,
    FinalUnitIndication,
    MsccAnswer,
    RedirectServer,
    ServiceUnit,
    UnitValue,
)
from rating import CatalogError, parse_catalog
from rating.policies import PolicyAction, status_policies
from tests.charging.conftest import (
    DEMO,
    EUR,
    EVENT,
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

POLICY_CATALOG = """
version = 1
name = "policy-test"
timezone = "UTC"

[currency]
code = 978

[[services]]
context_id = "32251@3gpp.org"
rating_groups = [10, 20]

[[services]]
context_id = "32274@3gpp.org"
rating_groups = [30]

[[rating_groups]]
id = 10
name = "data"
unit = "octets"
price = "0.01"
block = "1 MiB"
increment = "1 KiB"

[rating_groups.grant]
quantum = "10 MiB"
validity_time = "1 h"
final_unit_action = "redirect"
redirect_server = "http://topup.example.com/"

[[rating_groups]]
id = 20
name = "video"
unit = "octets"
price = "0.005"
block = "1 MiB"
increment = "1 KiB"

[rating_groups.grant]
quantum = "20 MiB"
validity_time = "1 h"
final_unit_action = "restrict_access"
filter_ids = ["video-blocked"]

[[rating_groups]]
id = 30
name = "sms"
unit = "units"
price = "0.10"

[rating_groups.grant]
quantum = 1
validity_time = "10 min"
final_unit_action = "terminate"

[status]
states = ["in_arrears"]
inhibit_threshold = "1.00"
notify_threshold = "2.00"

[[status.policies]]
state = "low_balance"
rating_groups = [10]
action = "redirect"
redirect_server = "http://topup.example.com/"

[[status.policies]]
state = "suspended"
services = ["32251@3gpp.org"]
action = "redirect"
redirect_server = "http://care.example.com/"

[[status.policies]]
state = "in_arrears"
action = "deny"

[[status.policies]]
state = "in_arrears"
rating_groups = [10]
action = "restrict"
filter_ids = ["walled-garden"]
"""

#: The same without the catalog's thresholds (accounts may have their own)
NO_THRESHOLDS = POLICY_CATALOG.replace('inhibit_threshold = "1.00"\n', "").replace(
    'notify_threshold = "2.00"\n', ""
)
MIN = 60_000
TOPUP = FinalUnitIndication(
    final_unit_action=FinalUnitAction.REDIRECT,
    redirect_server=RedirectServer(
        redirect_address_type=RedirectAddressType.URL,
        redirect_server_address="http://topup.example.com/",
    ),
)
CARE = FinalUnitIndication(
    final_unit_action=FinalUnitAction.REDIRECT,
    redirect_server=RedirectServer(
        redirect_address_type=RedirectAddressType.URL,
        redirect_server_address="http://care.example.com/",
    ),
)
VIDEO_BLOCKED = FinalUnitIndication(
    final_unit_action=FinalUnitAction.RESTRICT_ACCESS, filter_id=("video-blocked",)
)
WALLED = FinalUnitIndication(
    final_unit_action=FinalUnitAction.RESTRICT_ACCESS, filter_id=("walled-garden",)
)
INHIBIT = LowBalanceIndication.INHIBIT_THRESHOLD_REACHED
NOTIFY = LowBalanceIndication.NOTIFY_THRESHOLD_REACHED
REAUTH = ReportingReason.FORCED_REAUTHORISATION
ZERO = ServiceUnit(cc_total_octets=0)


@pytest.fixture
def p() -> Iterator[Harness]:
    """A core on the policy catalog; afterwards the books balance and replay gives the same
    state, byte for byte (what the app would journal, replayed into a fresh core)."""
    harness = Harness(catalog=POLICY_CATALOG)
    yield harness
    harness.ledger.check_invariants()
    harness.assert_replays()


def state_amr(account_id: str, **keys: object) -> AMR:
    """SET_STATUS (or, with `op`, another operation) carrying the state keys."""
    op = keys.pop("op", AccountOperation.SET_STATUS)
    assert isinstance(op, AccountOperation)
    return AMR(
        origin_host="admin.test.local",
        origin_realm="test.local",
        account_operation=op,
        account_id=account_id,
        **keys,  # type: ignore[arg-type]
    )


def rar(name: str, groups: tuple[int, ...], reason: str) -> Action:
    return Action(
        kind=ActionKind.RAR,
        session_id=sid(name),
        origin_host=UPF,
        rating_groups=groups,
        reason=reason,
    )


def asr(name: str, reason: str) -> Action:
    return Action(kind=ActionKind.ASR, session_id=sid(name), origin_host=UPF, reason=reason)


# --- item 2: the inhibit threshold, and a top-up lifting it -----------------------------------


def test_grant_cut_at_the_inhibit_threshold_then_inhibited_until_a_top_up(p: Harness) -> None:
    p.account("a", SUB, 1_100_000)  # 1.10 EUR
    answer = p.cca(
        ccr(
            "s", INITIAL, 0, mscc(10, ask=rsu(octets=50 * MiB)), mscc(20, ask=rsu()), subscriber=SUB
        ),
        PEAK,
    )
    data, video = by_rg(answer)[10], by_rg(answer)[20]
    # RG 10: 1.10 - 1.00 kept back = 0.10 EUR = 100,000 / 10,000 per MiB = 10 MiB, the final
    # units, then the low-balance policy: redirect to the top-up page
    assert data.result_code == 2001
    assert data.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
    assert data.final_unit_indication == TOPUP
    # RG 20, next: the headroom is now 1.10 - 0.10 reserved = 1.00, at the threshold: the
    # account is "low_balance", video gets its own final-unit action at once, zero units
    assert video.result_code == 2001 and video.granted_service_unit == ZERO
    assert video.final_unit_indication == VIDEO_BLOCKED and video.validity_time == 3600
    # both carry the indication, and the answer the balance left (1.00 EUR = 1 x 10^0)
    assert data.low_balance_indication == video.low_balance_indication == INHIBIT
    assert answer.remaining_balance is not None
    assert answer.remaining_balance.unit_value == UnitValue(value_digits=1, exponent=0)
    assert p.reserved("a") == 100_000
    # the final units used, it asks again: charged 10 MiB = 100,000, balance 1.00 EUR: zero
    # units and the redirect, nothing reserved
    used = (usu(octets=10 * MiB, reason=ReportingReason.QUOTA_EXHAUSTED),)
    g = only(p.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=used)), PEAK + MIN))
    assert g.result_code == 2001 and g.granted_service_unit == ZERO
    assert g.final_unit_indication == TOPUP and g.low_balance_indication == INHIBIT
    assert p.balance("a") == 1_000_000 and p.reserved("a") == 0
    account = p.ama(amr(AccountOperation.GET, "a"), PEAK + MIN).account
    assert account is not None and account.account_state == "low_balance"
    assert (account.inhibit_threshold, account.notify_threshold) == (1_000_000, 2_000_000)
    assert p.take_actions() == []
    # a top-up of 5 EUR: 6.00 EUR, active again: one RAR for both inhibited groups
    assert p.ama(amr(AccountOperation.CREDIT, "a", amount=5 * EUR), PEAK + 2 * MIN).result_code == (
        2001
    )
    assert p.take_actions() == [rar("s", (10, 20), "top-up")]
    answer = p.cca(
        ccr("s", UPDATE, 2, mscc(10, ask=rsu(), reason=REAUTH), mscc(20, ask=rsu(), reason=REAUTH)),
        PEAK + 2 * MIN,
    )
    data, video = by_rg(answer)[10], by_rg(answer)[20]
    # whole quanta: 10 MiB = 0.10 EUR and 20 MiB x 0.005 = 0.10 EUR, 5.80 EUR left: no
    # indication (above 2.00)
    assert data.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
    assert video.granted_service_unit == ServiceUnit(cc_total_octets=20 * MiB)
    assert data.final_unit_indication is None and video.final_unit_indication is None
    assert data.low_balance_indication is None and answer.remaining_balance is None
    end = ccr(
        "s",
        TERMINATION,
        3,
        mscc(10, used=(usu(octets=MiB),)),
        mscc(20, used=(usu(octets=2 * MiB),)),
    )
    assert p.cca(end, PEAK + 3 * MIN).result_code == 2001
    # 1.10 + 5.00 - 0.10 - (0.01 + 2 x 0.005) = 5.98 EUR; the CDRs charge exactly that
    assert p.balance("a") == 5_980_000 and p.cdr_total("a") == 120_000


def test_crossing_the_notification_threshold_re_authorises_the_other_sessions(
    p: Harness,
) -> None:
    p.account("n", SUB, 2_500_000)
    a = only(p.cca(ccr("a", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    b = only(p.cca(ccr("b", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    # 2.50 - 0.10 - 0.10 = 2.30 EUR left: above 2.00, nothing said
    assert a.low_balance_indication is None and b.low_balance_indication is None
    # a: 10 MiB used (0.10), 50 MiB asked (0.50): 2.50 - 0.10 - 0.10 (b) - 0.50 = 1.80 <= 2.00
    report = mscc(10, ask=rsu(octets=50 * MiB), used=(usu(octets=10 * MiB),))
    g = only(p.cca(ccr("a", UPDATE, 1, report), PEAK + MIN))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=50 * MiB)
    assert g.final_unit_indication is None and g.low_balance_indication == NOTIFY
    # b is told to come back (its answer will carry the indication); a has its answer
    assert p.take_actions() == [rar("b", (10,), "low balance")]
    g = only(p.cca(ccr("b", UPDATE, 1, mscc(10, ask=rsu(), reason=REAUTH)), PEAK + MIN))
    assert g.low_balance_indication == NOTIFY
    # no second RAR while it stays below
    p.cca(ccr("a", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),))), PEAK + 2 * MIN)
    p.cca(ccr("b", TERMINATION, 2, mscc(10, used=(usu(octets=0),))), PEAK + 2 * MIN)
    assert p.take_actions() == []
    assert p.balance("n") == 2_500_000 - 100_000 - 10_000


# --- item 1: service control by state; the push after a change --------------------------------


def test_suspension_redirects_data_and_aborts_sms_then_reactivation_re_authorises(
    p: Harness,
) -> None:
    p.account("s", SUB, 10 * EUR)
    p.cca(ccr("d", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    p.cca(ccr("m", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    suspend = amr(AccountOperation.SET_STATUS, "s", status=AccountStatus.SUSPENDED)
    assert p.ama(suspend, PEAK + MIN).result_code == 2001
    # data: redirected to care (RAR, to learn it); SMS: denied by default (ASR)
    assert p.take_actions() == [
        rar("d", (10,), "account suspended"),
        asr("m", "account not active"),
    ]
    g = only(p.cca(ccr("d", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN))
    assert g.result_code == 2001 and g.granted_service_unit == ZERO
    assert g.final_unit_indication == CARE
    # a new SMS session is refused as a whole; a new data session opens, redirected
    refused = p.cca(ccr("m2", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    assert refused.result_code == 4010
    g = only(p.cca(ccr("d2", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK + MIN))
    assert g.granted_service_unit == ZERO and g.final_unit_indication == CARE
    p.cca(ccr("m", TERMINATION, 1, mscc(30, used=(usu(units=1),))), PEAK + MIN)
    activate = amr(AccountOperation.SET_STATUS, "s", status=AccountStatus.ACTIVE)
    assert p.ama(activate, PEAK + 2 * MIN).result_code == 2001
    assert p.take_actions() == [
        rar("d", (10,), "account active"),
        rar("d2", (10,), "account active"),
    ]
    g = only(p.cca(ccr("d", UPDATE, 2, mscc(10, ask=rsu(), reason=REAUTH)), PEAK + 2 * MIN))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
    assert g.final_unit_indication is None
    p.cca(ccr("d", TERMINATION, 3, mscc(10, used=(usu(octets=0),))), PEAK + 3 * MIN)
    p.cca(ccr("d2", TERMINATION, 1), PEAK + 3 * MIN)
    # 1 MiB of data (0.01) and one SMS (0.10)
    assert p.balance("s") == 10 * EUR - 10_000 - 100_000 and p.reserved("s") == 0


def test_an_operator_defined_state_restricts_and_denies(p: Harness) -> None:
    p.account("o", SUB, 10 * EUR)
    p.cca(ccr("d", INITIAL, 0, mscc(10, ask=rsu()), mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    p.cca(ccr("m", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK)
    unknown = p.ama(state_amr("o", account_state="vip"), PEAK + MIN)
    assert unknown.result_code == 5004 and unknown.failed_avp == {"Account-State": "vip"}
    assert p.take_actions() == []
    assert p.ama(state_amr("o", account_state="in_arrears"), PEAK + MIN).result_code == 2001
    # data is not denied everything (RG 10 restricted): RAR; SMS is: ASR
    assert p.take_actions() == [
        rar("d", (10, 20), "account in_arrears"),
        asr("m", "account in_arrears"),
    ]
    answer = p.cca(
        ccr("d", UPDATE, 1, mscc(10, ask=rsu(), reason=REAUTH), mscc(20, ask=rsu(), reason=REAUTH)),
        PEAK + MIN,
    )
    data, video = by_rg(answer)[10], by_rg(answer)[20]
    assert data.granted_service_unit == ZERO and data.final_unit_indication == WALLED
    assert video.result_code == 4010 and video.granted_service_unit is None
    assert (
        p.cca(
            ccr("m2", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), PEAK
        ).result_code
        == 4010
    )
    account = p.ama(amr(AccountOperation.GET, "o"), PEAK + MIN).account
    assert account is not None and account.account_state == "in_arrears"
    assert account.inhibit_threshold == 1_000_000  # the catalog's
    assert account.account_status == AccountStatus.ACTIVE  # the two layers: status, state
    # "active" clears the operator-defined state: the sessions come back
    assert p.ama(state_amr("o", account_state="active"), PEAK + 2 * MIN).result_code == 2001
    assert p.take_actions() == [
        rar("d", (10, 20), "account active"),
        rar("m", (30,), "account active"),
    ]
    answer = p.cca(ccr("d", UPDATE, 2, mscc(10, ask=rsu()), mscc(20, ask=rsu())), PEAK + 2 * MIN)
    assert [m.result_code for m in answer.multiple_services_credit_control or ()] == [2001, 2001]
    assert by_rg(answer)[20].granted_service_unit == ServiceUnit(cc_total_octets=20 * MiB)
    p.cca(ccr("d", TERMINATION, 3), PEAK + 3 * MIN)
    p.cca(ccr("m", TERMINATION, 1, mscc(30, used=(usu(units=0),))), PEAK + 3 * MIN)
    assert p.balance("o") == 10 * EUR and p.reserved("o") == 0


def test_thresholds_per_account_through_update_applied_once(p: Harness) -> None:
    p.account("t", SUB, 10 * EUR)
    update = state_amr(
        "t",
        op=AccountOperation.UPDATE,
        inhibit_threshold=9_950_000,
        notify_threshold=0,
        operation_id="thr-1",
    )
    account = p.ama(update, PEAK).account
    assert account is not None and account.account_state == "active"
    assert (account.inhibit_threshold, account.notify_threshold) == (9_950_000, 0)
    # 10.00 - 9.95 = 0.05 EUR above the account's own threshold: 5 MiB, then redirected
    g = only(p.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=5 * MiB)
    assert g.final_unit_indication == TOPUP and g.low_balance_indication == INHIBIT
    # the retry of the same operation: its first outcome, nothing done again
    assert p.ama(update, PEAK + MIN).result_code == 2001
    assert p.take_actions() == []
    reused = state_amr("t", op=AccountOperation.UPDATE, inhibit_threshold=1, operation_id="thr-1")
    refused = p.ama(reused, PEAK + MIN)
    assert refused.result_code == 5004 and refused.failed_avp == {"Operation-Id": "thr-1"}
    # back to the catalog's threshold (1.00): 9.95 left, active again, the session re-authorised
    back = state_amr(
        "t",
        op=AccountOperation.UPDATE,
        inhibit_threshold=-1,
        notify_threshold=-1,
        operation_id="thr-2",
    )
    account = p.ama(back, PEAK + MIN).account
    assert account is not None and account.account_state == "active"
    assert (account.inhibit_threshold, account.notify_threshold) == (1_000_000, 2_000_000)
    assert p.take_actions() == [rar("s", (10,), "account active")]
    p.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=5 * MiB),))), PEAK + 2 * MIN)
    assert p.balance("t") == 10 * EUR - 50_000


def test_the_state_survives_a_restart_from_snapshots(p: Harness) -> None:
    p.account("r", SUB, 10 * EUR)
    p.ama(state_amr("r", account_state="in_arrears", inhibit_threshold=3 * EUR), PEAK)
    before = p.ama(amr(AccountOperation.GET, "r"), PEAK).account
    p.restart()
    after = p.ama(amr(AccountOperation.GET, "r"), PEAK + MIN).account
    assert before == after and after is not None
    assert (after.account_state, after.inhibit_threshold) == ("in_arrears", 3 * EUR)


def test_without_a_status_section_answers_are_as_before() -> None:
    """A catalog without `[status]` (the demo's, without it): accounts carry no state keys,
    nothing is indicated, grants are as they always were."""
    head, rest = DEMO.split("# --- service control by account state", 1)
    plain = head + "# --- account-wide" + rest.split("# --- account-wide", 1)[1]
    assert "[status]" not in plain
    h = Harness(catalog=plain)
    h.account("a", SUB, 500_000)
    g = only(h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=200 * MiB)), subscriber=SUB), PEAK))
    assert g.final_unit_indication is not None and g.low_balance_indication is None
    account = h.ama(amr(AccountOperation.GET, "a"), PEAK).account
    assert account is not None and account.account_state is None
    h.cca(ccr("s", TERMINATION, 1), PEAK)
    h.assert_replays()


# --- the catalog section ------------------------------------------------------------------------


def test_the_catalog_section_is_parsed() -> None:
    policies = status_policies(parse_catalog(POLICY_CATALOG))
    assert policies.states == ("in_arrears",)
    assert (policies.inhibit_threshold, policies.notify_threshold) == (1_000_000, 2_000_000)
    assert policies.policy("in_arrears", "32274@3gpp.org", 30) is not None
    found = policies.policy("in_arrears", "32251@3gpp.org", 10)
    assert found is not None and found.action is PolicyAction.RESTRICT


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ('state = "nope"\naction = "deny"', "status.policies[0].state"),
        ('state = "suspended"\naction = "allow"', "status.policies[0].action"),
        ('state = "barred"\naction = "restrict"', "status.policies[0].filter_ids"),
        ('state = "active"\naction = "redirect"', "status.policies[0].redirect_server"),
        (
            'state = "active"\naction = "deny"\nrating_groups = [99]',
            "status.policies[0].rating_groups[0]",
        ),
        (
            'state = "active"\naction = "deny"\nrating_groups = [10]\nservices = ["x"]',
            "status.policies[0]",
        ),
    ],
)
def test_bad_policies_are_refused_with_their_path(entry: str, path: str) -> None:
    base = POLICY_CATALOG.split("[status]")[0]
    with pytest.raises(CatalogError) as caught:
        parse_catalog(f"{base}[status]\n[[status.policies]]\n{entry}\n")
    assert caught.value.path == path


def test_a_builtin_state_cannot_be_redefined() -> None:
    base = POLICY_CATALOG.split("[status]")[0]
    with pytest.raises(CatalogError) as caught:
        parse_catalog(f'{base}[status]\nstates = ["barred"]\n')
    assert caught.value.path == "status.states[0]"


def test_a_catalog_with_other_policies_re_authorises_the_sessions_it_changes(p: Harness) -> None:
    p.account("c", SUB, 10 * EUR)
    p.account("d", "491700000002", 10 * EUR)
    p.cca(ccr("x", INITIAL, 0, mscc(10, ask=rsu()), mscc(20, ask=rsu()), subscriber=SUB), PEAK)
    p.cca(ccr("y", INITIAL, 0, mscc(10, ask=rsu()), subscriber="491700000002"), PEAK)
    p.ama(state_amr("c", account_state="in_arrears"), PEAK)
    p.take_actions()
    p.load_catalog(POLICY_CATALOG, PEAK + MIN)  # the same policies: nothing to tell
    assert p.take_actions() == []
    # in arrears, data is now redirected to care instead of the walled garden: only x, whose
    # account is in that state, and only for RG 10 (RG 20 stays denied)
    redirected = POLICY_CATALOG.replace(
        'action = "restrict"\nfilter_ids = ["walled-garden"]',
        'action = "redirect"\nredirect_server = "http://care.example.com/"',
    )
    assert redirected != POLICY_CATALOG
    p.load_catalog(redirected, PEAK + 2 * MIN)
    assert p.take_actions() == [rar("x", (10,), "policy change")]
    g = by_rg(p.cca(ccr("x", UPDATE, 1, mscc(10, ask=rsu(), reason=REAUTH)), PEAK + 2 * MIN))[10]
    assert g.granted_service_unit == ZERO and g.final_unit_indication == CARE
    p.cca(ccr("x", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),))), PEAK + 3 * MIN)
    p.cca(ccr("y", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), PEAK + 3 * MIN)


# --- any sequence: the books balance, replay agrees, zero grants hold nothing -----------------

_STEP = st.one_of(
    st.tuples(st.just("state"), st.sampled_from(["in_arrears", "active"])),
    st.tuples(st.just("status"), st.sampled_from([AccountStatus.ACTIVE, AccountStatus.SUSPENDED])),
    st.tuples(
        st.just("thresholds"),
        st.sampled_from([None, -1, 0, 500_000, 1_000_000, 3 * EUR]),
        st.sampled_from([None, -1, 0, 2 * EUR, 4 * EUR]),
    ),
    st.tuples(st.just("credit"), st.integers(1, 3 * EUR)),
    st.tuples(st.just("open"), st.integers(0, 2), st.sampled_from([(10,), (20,), (10, 20)])),
    st.tuples(st.just("report"), st.integers(0, 2), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("close"), st.integers(0, 2)),
    st.tuples(st.just("event"), st.integers(1, 3)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(_STEP, max_size=30),
    balance=st.integers(0, 4 * EUR),
    catalog=st.sampled_from([POLICY_CATALOG, NO_THRESHOLDS]),
)
def test_any_sequence_keeps_the_books_and_replays(
    steps: list[tuple[Any, ...]], balance: int, catalog: str
) -> None:
    p = Harness(catalog=catalog)
    p.account("z", SUB, balance)
    numbers: dict[int, int] = {}  # open sessions: the next CC-Request-Number
    groups: dict[int, tuple[int, ...]] = {}
    now = PEAK
    for step in steps:
        now += 1_000
        kind = step[0]
        if kind == "state":
            p.ama(state_amr("z", account_state=step[1]), now)
        elif kind == "status":
            p.ama(amr(AccountOperation.SET_STATUS, "z", status=step[1]), now)
        elif kind == "thresholds":
            keys = {"inhibit_threshold": step[1], "notify_threshold": step[2]}
            if step[1] is not None or step[2] is not None:
                p.ama(state_amr("z", **{k: v for k, v in keys.items() if v is not None}), now)
        elif kind == "credit":
            p.ama(amr(AccountOperation.CREDIT, "z", amount=step[1]), now)
        elif kind == "open" and step[1] not in numbers:
            asks = [mscc(rg, ask=rsu()) for rg in step[2]]
            answer = p.cca(ccr(f"q{step[1]}", INITIAL, 0, *asks, subscriber=SUB), now)
            if answer.result_code == 2001:
                numbers[step[1]], groups[step[1]] = 1, step[2]
        elif kind == "report" and step[1] in numbers:
            n = step[1]
            used = (usu(octets=step[2] * MiB),)
            reports = [mscc(rg, ask=rsu() if step[3] else None, used=used) for rg in groups[n]]
            answer = p.cca(ccr(f"q{n}", UPDATE, numbers[n], *reports), now)
            numbers[n] += 1
            for m in answer.multiple_services_credit_control or ():
                if m.granted_service_unit == ZERO:  # inhibited: an action, nothing held
                    assert m.final_unit_indication is not None
                    assert m.final_unit_indication.final_unit_action != FinalUnitAction.TERMINATE
        elif kind == "event":
            sms = ccr(f"ev{now}", EVENT, 0, mscc(30, ask=rsu(units=step[1])), subscriber=SUB)
            sms = msgspec.structs.replace(
                sms, service_context_id=SMS, requested_action=RequestedAction.DIRECT_DEBITING
            )
            assert p.cca(sms, now).result_code in (2001, 4010, 4012)
        elif kind == "close" and step[1] in numbers:
            n = step[1]
            p.cca(
                ccr(
                    f"q{n}",
                    TERMINATION,
                    numbers.pop(n),
                    mscc(groups[n][0], used=(usu(octets=MiB),)),
                ),
                now,
            )
        p.take_actions()
    for n, number in sorted(numbers.items()):
        p.cca(ccr(f"q{n}", TERMINATION, number), now + 1_000)
    p.ledger.check_invariants()
    assert p.reserved("z") == 0
    # every micro-unit the account lost to charging is in a CDR
    view = p.ledger.account("z")
    assert view is not None
    credits = sum(
        step[1] for step in steps if step[0] == "credit"
    )  # (every CREDIT of a positive amount is applied)
    assert balance + credits - view.balance == p.cdr_total("z")
    p.assert_replays()


def test_money_given_back_by_supervision_lifts_the_inhibition_of_the_other_sessions(
    p: Harness,
) -> None:
    p.account("e", SUB, 1_500_000)
    # a: 1.50 - 1.00 = 0.50 EUR above the threshold: 50 MiB of the 100 asked, then redirected
    g = only(p.cca(ccr("a", INITIAL, 0, mscc(10, ask=rsu(octets=100 * MiB)), subscriber=SUB), PEAK))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=50 * MiB)
    # b: nothing left above it: inhibited at once
    g = only(p.cca(ccr("b", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK))
    assert g.granted_service_unit == ZERO and g.final_unit_indication == TOPUP
    assert p.take_actions() == []
    # b keeps talking (its Tcc is 120 s); a stays silent past its Tcc, 2 x 3600 s
    p.cca(ccr("b", UPDATE, 1, mscc(10, ask=rsu())), PEAK + 7_190_000)
    assert p.tick(PEAK + 7_201_000)
    # a is closed, its 0.50 given back: 1.50 > 1.00, active: b is told
    assert p.take_actions() == [rar("b", (10,), "account active")]
    g = only(p.cca(ccr("b", UPDATE, 2, mscc(10, ask=rsu(), reason=REAUTH)), PEAK + 7_202_000))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=10 * MiB)
    p.cca(ccr("b", TERMINATION, 3, mscc(10, used=(usu(octets=MiB),))), PEAK + 7_203_000)
    assert p.balance("e") == 1_500_000 - 10_000


def test_a_reservation_expired_lifts_the_inhibition(p: Harness) -> None:
    p.account("x", SUB, 1_500_000)
    asks = (mscc(10, ask=rsu(octets=100 * MiB)), mscc(20, ask=rsu()))
    answer = p.cca(ccr("a", INITIAL, 0, *asks, subscriber=SUB), PEAK)
    # RG 10 holds the 0.50 above the threshold; RG 20 is then restricted
    assert by_rg(answer)[10].granted_service_unit == ServiceUnit(cc_total_octets=50 * MiB)
    assert by_rg(answer)[20].final_unit_indication == VIDEO_BLOCKED
    # the session talks about RG 20 only; RG 10's reservation expires at 7,200 + 60 s
    for n, at_s in enumerate((3_000, 6_000, 7_250), start=1):
        p.cca(ccr("a", UPDATE, n, mscc(20, ask=rsu())), PEAK + at_s * 1000)
    assert p.take_actions() == []
    assert p.tick(PEAK + 7_261_000)
    assert p.reserved("x") == 0
    # 1.50 again: active; the session is told, for both groups
    assert p.take_actions() == [rar("a", (10, 20), "account active")]
    p.cca(ccr("a", TERMINATION, 4), PEAK + 7_262_000)


def test_the_new_avps_go_through_binary_bodies() -> None:
    """Account-State, the thresholds (-1 included) and Low-Balance-Indication as vendor AVPs of
    `VENDOR_OCS` (codes 60-63) in a standard Diameter body, and back."""
    request = state_amr("b", account_state="in_arrears", inhibit_threshold=-1, notify_threshold=0)
    assert decode_avps(CommandCode.ACCOUNT_MANAGEMENT, True, encode_avps(request)) == request
    answer = CCA(
        result_code=2001,
        origin_host="ocs",
        origin_realm="r",
        multiple_services_credit_control=(
            MsccAnswer(
                rating_group=10,
                result_code=2001,
                granted_service_unit=ZERO,
                final_unit_indication=WALLED,
                low_balance_indication=INHIBIT,
            ),
        ),
    )
    assert decode_avps(CommandCode.CREDIT_CONTROL, False, encode_avps(answer)) == answer
    assert {BY_NAME[n].code for n in ("Account-State", "Inhibit-Threshold")} == {60, 61}
    assert {BY_NAME[n].code for n in ("Notify-Threshold", "Low-Balance-Indication")} == {62, 63}
    assert BY_NAME["Account-State"].vendor_id == VENDOR_OCS


def test_catalog_facts_show_the_status_section() -> None:
    """`ocs catalog show|diff` list the `[status]` section, so a change of policy is a diff."""
    facts = catalog_facts(parse_catalog(POLICY_CATALOG))
    assert facts["status states"] == "in_arrears"
    assert facts["status inhibit threshold"] == "1.00 978"
    assert facts["status in_arrears rating group 10"] == "restrict walled-garden"
    assert facts["status suspended service 32251@3gpp.org"] == "redirect http://care.example.com/"
    assert facts["status in_arrears every service"] == "deny"


def test_a_snapshot_of_layout_4_is_restored_without_states(p: Harness) -> None:
    """A snapshot of the build before the policies (layout 4: no `policies`) still loads."""
    p.account("l", SUB, 10 * EUR)
    p.ama(state_amr("l", account_state="in_arrears"), PEAK)
    raw = msgspec.msgpack.decode(p.core.snapshot())
    fields = CoreState.__struct_fields__
    assert raw[fields.index("layout")] == CORE_LAYOUT == 5
    old = raw[: fields.index("policies")]
    old[fields.index("layout")] = 4
    core = ChargingCore(p.ledger, POLICY_CATALOG)
    core.restore(msgspec.msgpack.encode(old))
    assert core.policy.accounts == {}
    got = core.handle_amr(PEAK, "admin", 1, amr(AccountOperation.GET, "l")).answer
    assert isinstance(got, AMA) and got.account is not None
    assert got.account.account_state == "active"  # no operator-defined state any more


def test_an_event_in_a_denying_state_is_refused_without_any_threshold() -> None:
    """Regression: the state of an account without thresholds was not looked at for a
    DIRECT_DEBITING (the check hung on the money marks, taken only with a threshold)."""
    h = Harness(catalog=NO_THRESHOLDS)
    h.account("v", SUB, 10 * EUR)
    h.ama(state_amr("v", account_state="in_arrears"), PEAK)
    sms = ccr("e1", EVENT, 0, mscc(30, ask=rsu(units=1)), subscriber=SUB, service=SMS)
    sms = msgspec.structs.replace(sms, requested_action=RequestedAction.DIRECT_DEBITING)
    assert h.cca(sms, PEAK).result_code == 4010 and h.balance("v") == 10 * EUR
    h.ama(state_amr("v", account_state="active"), PEAK)
    again = msgspec.structs.replace(sms, session_id=sid("e2"))
    assert h.cca(again, PEAK).result_code == 2001 and h.balance("v") == 10 * EUR - 100_000
    h.assert_replays()


def test_allowances_still_serve_an_account_at_its_money_threshold() -> None:
    """The inhibit threshold is about money: an offer's allowance keeps paying data while the
    money is at the threshold; once it is used, the top-up page."""
    catalog = POLICY_CATALOG.replace(
        "[status]",
        '[[offers]]\nname = "small"\nfee = "0.20"\nperiod = "daily"\n\n'
        '[[offers.allowances]]\nname = "data"\nrating_groups = [10]\nunits = "5 MiB"\n\n'
        "[status]",
    )
    h = Harness(catalog=catalog)
    h.account("o", SUB, 1_200_000)
    subscribe = msgspec.structs.replace(
        amr(AccountOperation.SUBSCRIBE, "o", operation_id="s1"), offer_name="small"
    )
    assert h.ama(subscribe, PEAK).result_code == 2001
    assert h.balance("o") == 1_000_000  # 1.20 - the fee 0.20: at the threshold, low_balance
    # 10 MiB asked: the allowance's 5 MiB (no money above the threshold), final, redirect after
    g = only(h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu(octets=10 * MiB)), subscriber=SUB), PEAK))
    assert g.granted_service_unit == ServiceUnit(cc_total_octets=5 * MiB)
    assert g.final_unit_indication == TOPUP and h.reserved("o") == 0
    # used: the allowance is empty, the money still at the threshold: zero units, redirected
    used = (usu(octets=5 * MiB),)
    g = only(h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=used)), PEAK + MIN))
    assert g.granted_service_unit == ZERO and g.final_unit_indication == TOPUP
    h.cca(ccr("s", TERMINATION, 2), PEAK + 2 * MIN)
    assert h.balance("o") == 1_000_000  # the data was the allowance's
    h.ledger.check_invariants()
    h.assert_replays()


def test_the_audit_line_names_the_state_and_thresholds() -> None:
    fields = audit_fields(state_amr("a", account_state="in_arrears", inhibit_threshold=-1))
    assert fields["operation"] == "SET_STATUS" and fields["state"] == "in_arrears"
    assert fields["inhibit_threshold"] == -1 and "notify_threshold" not in fields


def test_on_loan_is_a_derived_state_with_its_policy() -> None:
    """`on_loan` (a loan owed, ocs/core/loans.py) through the derived-state hook: video is
    restricted while the loan is owed; the LOAN pushes it to the open session."""
    catalog = NO_THRESHOLDS.replace(
        "[status]",
        '[loan_policy]\namounts = ["1.00"]\nthreshold = "0.50"\n\n[status]',
    ) + (
        '\n[[status.policies]]\nstate = "on_loan"\nrating_groups = [20]\naction = "restrict"\n'
        'filter_ids = ["loan-video"]\n'
    )
    h = Harness(catalog=catalog)
    h.account("l", SUB, 400_000)  # 0.40 EUR: at or below the loan threshold
    answer = h.cca(ccr("s", INITIAL, 0, mscc(20, ask=rsu(octets=MiB)), subscriber=SUB), PEAK)
    assert by_rg(answer)[20].granted_service_unit == ServiceUnit(cc_total_octets=MiB)
    loan = amr(AccountOperation.LOAN, "l", amount=EUR, operation_id="loan-1")
    assert h.ama(loan, PEAK + MIN).result_code == 2001
    assert h.take_actions() == [rar("s", (20,), "account on_loan")]
    account = h.ama(amr(AccountOperation.GET, "l"), PEAK + MIN).account
    assert account is not None and account.account_state == "on_loan"
    g = only(h.cca(ccr("s", UPDATE, 1, mscc(20, ask=rsu(), reason=REAUTH)), PEAK + 2 * MIN))
    assert g.granted_service_unit == ZERO
    assert g.final_unit_indication == FinalUnitIndication(
        final_unit_action=FinalUnitAction.RESTRICT_ACCESS, filter_id=("loan-video",)
    )
    h.cca(ccr("s", TERMINATION, 2), PEAK + 3 * MIN)
    h.ledger.check_invariants()
    h.assert_replays()
