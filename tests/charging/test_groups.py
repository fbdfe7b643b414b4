"""Shared group packages in the core (ocs/core/groups.py): membership, usage charged to the
group, member caps, the period's fee and its apportioning, statements, snapshots and replay.

Every test ends with the books balanced and a replay of the journaled inputs rebuilding the
same state and CDRs (`h` of tests/charging/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from ocs.core.charging_types import CORE_LAYOUT, CoreState
from protocol.codes import AccountOperation, AoCRequestType, FinalUnitAction
from protocol.messages import AMA, AMR, Statement
from tests.charging.conftest import (
    DATA,
    EUR,
    INITIAL,
    TERMINATION,
    VOICE,
    Harness,
    MiB,
    amr,
    ccr,
    epoch_ms,
    mscc,
    only,
    rsu,
    usu,
)
from tests.charging.family import (
    CATALOG,
    GROUP_END,
    GROUP_START,
    SHARES,
    TOTALS,
    USAGE,
    USAGE_CHARGE,
    GiB,
)

NOV_1 = epoch_ms("2026-11-01T09:00:00+01:00")  # the first join: the period's anchor
NOV_15 = epoch_ms("2026-11-15T12:00:00+01:00")
DEC_1 = epoch_ms("2026-12-01T00:00:00+01:00")  # the end of the first period (local midnight)
JAN_1 = epoch_ms("2027-01-01T00:00:00+01:00")
PEAK_MS = epoch_ms("2026-01-05T14:00:00+01:00")  # the conftest's PEAK: the accounts' creation


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness(catalog=CATALOG)
    yield harness
    harness.ledger.check_invariants()
    harness.assert_replays()


def group_amr(
    op: AccountOperation,
    account_id: str,
    *,
    group: str | None = None,
    package: str | None = None,
    period_start_s: int | None = None,
    operation_id: str | None = None,
) -> AMR:
    return msgspec.structs.replace(
        amr(op, account_id, operation_id=operation_id),
        group_account_id=group,
        package_name=package,
        period_start=period_start_s,
    )


def join(h: Harness, member: str, now_ms: int, package: str | None = "family") -> AMA:
    return h.ama(
        group_amr(AccountOperation.GROUP_JOIN, member, group="family", package=package), now_ms
    )


def family(h: Harness, now_ms: int = NOV_1) -> None:
    h.account("family", "491700000100", GROUP_START, now_ms=now_ms)
    for member, msisdn, _, _ in USAGE:
        h.account(member, msisdn, 5 * EUR, now_ms=now_ms)
        assert join(h, member, now_ms).result_code == 2001


def session(h: Harness, name: str, msisdn: str, service: str, rg: int, used: Any, at: int) -> None:
    """A call or a data session: INITIAL asking quota, TERMINATION reporting `used`."""
    ask = rsu(seconds=60) if rg == 40 else rsu(octets=MiB)
    opened = h.cca(ccr(name, INITIAL, 0, mscc(rg, ask=ask), subscriber=msisdn, service=service), at)
    assert only(opened).result_code == 2001, opened
    closed = h.cca(ccr(name, TERMINATION, 1, mscc(rg, used=(used,)), service=service), at + 60_000)
    assert closed.result_code == 2001


def november(h: Harness) -> None:
    for member, msisdn, seconds, octets in USAGE:
        if seconds:
            session(h, f"{member}-call", msisdn, VOICE, 40, usu(seconds=seconds), NOV_15)
        session(h, f"{member}-data", msisdn, DATA, 10, usu(octets=octets), NOV_15)


def statement(h: Harness, member: str, at_ms: int, period_start_s: int | None = None) -> AMA:
    return h.ama(
        group_amr(AccountOperation.STATEMENT, member, period_start_s=period_start_s), at_ms
    )


def shown(answer: AMA) -> dict[str, Any]:
    assert answer.result_code == 2001, answer
    assert isinstance(answer.statement, Statement)
    s = answer.statement
    return {
        "share": s.share,
        "usage_charge": s.usage_charge,
        "services": {
            line.service_name: (line.used_units, line.usage_charge, line.share)
            for line in s.statement_service
        },
    }


def test_the_family_of_three(h: Harness) -> None:
    """docs/accounts.md's worked example, to the micro-unit (numbers: tests/charging/family.py)."""
    family(h)
    november(h)
    # usage was charged to the group, never to the members
    assert h.balance("family") == GROUP_START - 8_668_000
    for member, _, _, _ in USAGE:
        assert h.balance(member) == 5 * EUR
    # the open period: usage so far, no share yet
    open_ = shown(statement(h, "alice", NOV_15 + 3_600_000))
    assert open_["share"] is None
    assert open_["services"] == {
        "voice": (1_000, 1_000_000, None),
        "data": (2 * GiB, 2_048_000, None),
    }
    assert not h.tick(DEC_1 - 1)  # nothing is due before the period's end
    assert h.tick(DEC_1)
    assert h.balance("family") == GROUP_END  # 100 EUR - 8.668 usage - 50 fee
    record = h.cdrs()[-1]
    assert record["recordType"] == "apportionment"
    assert record["accountId"] == "family" and record["charge"] == 50 * EUR
    assert record["recordOpeningTime"] == "2026-11-01T08:00:00.000Z"  # the first join
    assert record["recordClosingTime"] == "2026-11-30T23:00:00.000Z"  # 00:00 Paris
    apportioned = {m["accountId"]: m for m in record["apportionment"]}
    for member, _, seconds, octets in USAGE:
        services = {s["service"]: s for s in apportioned[member]["services"]}
        assert services["voice"]["units"] == seconds and services["data"]["units"] == octets
        assert {n: s["share"] for n, s in services.items()} == SHARES[member]
        assert {n: s["usageCharge"] for n, s in services.items()} == USAGE_CHARGE[member]
        assert apportioned[member]["share"] == TOTALS[member]
        mine = shown(statement(h, member, DEC_1 + 60_000))
        assert mine["share"] == TOTALS[member]
        assert mine["usage_charge"] == sum(USAGE_CHARGE[member].values())
        assert {n: v[2] for n, v in mine["services"].items()} == SHARES[member]
    # the CDRs charge exactly what the group lost: usage and fee
    assert h.cdr_total() == GROUP_START - GROUP_END


def test_the_fee_is_debited_once_and_the_next_period_starts(h: Harness) -> None:
    family(h)
    assert h.tick(DEC_1 + 5_000)  # late: dated at the instant all the same
    assert h.cdrs()[-1]["recordClosingTime"] == "2026-11-30T23:00:00.000Z"
    assert not h.tick(DEC_1 + 10_000)
    assert h.balance("family") == GROUP_START - 50 * EUR
    # nobody used anything: each service split equally between the three (whole month each)
    shares = {m["accountId"]: m["share"] for m in h.cdrs()[-1]["apportionment"]}
    # voice 20,000,000 / 3 = 6,666,666 r 2 -> alice, bob +1; data 30,000,000 / 3 = 10,000,000
    assert shares == {"alice": 16_666_667, "bob": 16_666_667, "carol": 16_666_666}
    # the December statement is open; January's tick charges December
    assert shown(statement(h, "carol", DEC_1 + 60_000, DEC_1 // 1000 + 1))["share"] is None
    assert h.tick(JAN_1)
    assert h.balance("family") == GROUP_START - 100 * EUR
    assert h.cdrs()[-1]["recordOpeningTime"] == "2026-11-30T23:00:00.000Z"
    # November's statement is still there, by an instant of November
    nov = shown(statement(h, "carol", JAN_1 + 1, NOV_15 // 1000))
    assert nov["share"] == 16_666_666


def test_a_member_that_joined_late_shares_an_unused_service_pro_rata(h: Harness) -> None:
    h.account("family", "491700000100", GROUP_START, now_ms=NOV_1)
    h.account("alice", "491700000101", 5 * EUR, now_ms=NOV_1)
    h.account("bob", "491700000102", 5 * EUR, now_ms=NOV_1)
    assert join(h, "alice", NOV_1).result_code == 2001
    # bob joins on 2026-11-16 at 09:00 Paris (no Package-Name needed: the group has one)
    bob_joins = epoch_ms("2026-11-16T09:00:00+01:00")
    assert join(h, "bob", bob_joins, package=None).result_code == 2001
    assert h.tick(DEC_1)
    shares = {m["accountId"]: m for m in h.cdrs()[-1]["apportionment"]}
    alice_ms = DEC_1 - NOV_1  # 29 days 15 h
    bob_ms = DEC_1 - bob_joins  # 14 days 15 h
    assert shares["alice"]["membershipMs"] == alice_ms
    assert shares["bob"]["membershipMs"] == bob_ms
    # 50 EUR by time of membership, service by service (nobody used either)
    voice_alice = 20 * EUR * alice_ms // (alice_ms + bob_ms)
    data_alice = 30 * EUR * alice_ms // (alice_ms + bob_ms)
    assert abs(shares["alice"]["share"] - (voice_alice + data_alice)) <= 2
    assert shares["alice"]["share"] + shares["bob"]["share"] == 50 * EUR


def test_a_member_that_left_keeps_its_usage_and_time(h: Harness) -> None:
    family(h)
    session(h, "bob-call", "491700000102", VOICE, 40, usu(seconds=600), NOV_15)
    left = h.ama(group_amr(AccountOperation.GROUP_LEAVE, "bob"), NOV_15 + 3_600_000)
    assert left.result_code == 2001
    # bob's next call is his own again
    session(h, "bob-call-2", "491700000102", VOICE, 40, usu(seconds=60), NOV_15 + 7_200_000)
    assert h.balance("bob") == 5 * EUR - 60_000
    assert h.tick(DEC_1)
    shares = {m["accountId"]: m for m in h.cdrs()[-1]["apportionment"]}
    # voice by usage: bob alone called (600 s) while a member, so he pays all 20 EUR of it
    voice = {m: {s["service"]: s for s in shares[m]["services"]}["voice"] for m in shares}
    assert voice["bob"]["share"] == 20 * EUR and voice["bob"]["units"] == 600
    assert shares["bob"]["membershipMs"] == NOV_15 + 3_600_000 - NOV_1
    leave_again = h.ama(group_amr(AccountOperation.GROUP_LEAVE, "bob"), DEC_1 + 1)
    assert leave_again.result_code == 5004 and leave_again.failed_avp == {"Account-Id": "bob"}


def test_the_member_cap_limits_and_then_refuses_grants(h: Harness) -> None:
    family(h)
    # the cap is 10 EUR of usage a month: alice uses 9.5 EUR of data (9,500 MiB)
    session(h, "a1", "491700000101", DATA, 10, usu(octets=9_500 * MiB), NOV_15)
    # she asks 4 GiB (4.096 EUR): cut to the 0.5 EUR left, with Final-Unit-Indication
    asked = h.cca(
        ccr("a2", INITIAL, 0, mscc(10, ask=rsu(octets=4 * GiB)), subscriber="491700000101"),
        NOV_15 + 120_000,
    )
    grant = only(asked)
    assert grant.result_code == 2001 and grant.granted_service_unit is not None
    assert grant.granted_service_unit.cc_total_octets == 500 * MiB
    assert grant.final_unit_indication is not None
    assert grant.final_unit_indication.final_unit_action is FinalUnitAction.TERMINATE
    # while that grant holds the rest of her cap, another session gets nothing: 4012
    other = h.cca(
        ccr("a3", INITIAL, 0, mscc(10, ask=rsu(octets=MiB)), subscriber="491700000101"),
        NOV_15 + 130_000,
    )
    assert only(other).result_code == 4012
    # bob is not limited by alice's cap
    session(h, "b1", "491700000102", DATA, 10, usu(octets=MiB), NOV_15 + 140_000)
    h.cca(ccr("a2", TERMINATION, 1, mscc(10, used=(usu(octets=500 * MiB),))), NOV_15 + 150_000)
    h.cca(ccr("a3", TERMINATION, 1), NOV_15 + 160_000)
    # a new month, a new cap
    assert h.tick(DEC_1)
    session(h, "a4", "491700000101", DATA, 10, usu(octets=MiB), DEC_1 + 60_000)


@pytest.mark.parametrize(
    ("message", "code", "failed"),
    [
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="nobody", package="family"),
            5030,
            {"Group-Account-Id": "nobody"},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="family2"),
            5005,
            {"Package-Name": None},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="family2", package="gold"),
            5004,
            {"Package-Name": "gold"},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="family", package="other"),
            5004,
            {"Package-Name": "other"},
        ),
        (group_amr(AccountOperation.GROUP_JOIN, "dave"), 5005, {"Group-Account-Id": None}),
        (
            group_amr(AccountOperation.GROUP_JOIN, "alice", group="family2", package="family"),
            5004,
            {"Account-Id": "alice"},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "family", group="family2", package="family"),
            5004,
            {"Account-Id": "family"},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="alice", package="family"),
            5004,
            {"Group-Account-Id": "alice"},
        ),
        (
            group_amr(AccountOperation.GROUP_JOIN, "dave", group="dave", package="family"),
            5004,
            {"Group-Account-Id": "dave"},
        ),
        (group_amr(AccountOperation.GROUP_LEAVE, "dave"), 5004, {"Account-Id": "dave"}),
        (group_amr(AccountOperation.GROUP_LEAVE, "nobody"), 5030, {"Account-Id": "nobody"}),
        (group_amr(AccountOperation.STATEMENT, "dave"), 5004, {"Account-Id": "dave"}),
        (
            group_amr(AccountOperation.STATEMENT, "alice", period_start_s=NOV_1 // 1000 - 86_400),
            5004,
            {"Period-Start": NOV_1 // 1000 - 86_400},
        ),
    ],
)
def test_refusals_name_the_key_and_change_nothing(
    h: Harness, message: AMR, code: int, failed: dict[str, Any]
) -> None:
    family(h)
    h.account("dave", "491700000104", EUR, now_ms=NOV_1)
    h.account("family2", "491700000105", EUR, now_ms=NOV_1)
    before = h.core.snapshot(duplicates=False)
    answer = h.ama(message, NOV_1 + 1000)
    assert answer.result_code == code and answer.failed_avp == failed, answer
    assert answer.error_message
    assert h.core.snapshot(duplicates=False) == before


def test_joining_again_and_retries_by_operation_id_change_nothing(h: Harness) -> None:
    family(h)
    before = h.core.snapshot(duplicates=False)
    assert join(h, "alice", NOV_15).result_code == 2001  # a member already
    assert h.core.snapshot(duplicates=False) == before
    leave = group_amr(AccountOperation.GROUP_LEAVE, "carol", operation_id="op-1")
    assert h.ama(leave, NOV_15).result_code == 2001
    assert h.ama(leave, NOV_15 + 1).result_code == 2001  # a retry: its first outcome
    other = group_amr(AccountOperation.GROUP_LEAVE, "bob", operation_id="op-1")
    assert h.ama(other, NOV_15 + 2).failed_avp == {"Operation-Id": "op-1"}


def test_a_checkpoint_mid_period_keeps_the_groups(h: Harness) -> None:
    family(h)
    session(h, "a1", "491700000101", DATA, 10, usu(octets=GiB), NOV_15)
    h.restart()
    assert h.core.groups.payer("alice") == "family"
    session(h, "a2", "491700000101", DATA, 10, usu(octets=GiB), NOV_15 + 3_600_000)
    assert h.tick(DEC_1)
    alice = next(m for m in h.cdrs()[-1]["apportionment"] if m["accountId"] == "alice")
    assert {s["service"]: s["units"] for s in alice["services"]}["data"] == 2 * GiB


def test_a_snapshot_of_layout_4_loads_without_groups() -> None:
    h = Harness(catalog=CATALOG)
    family(h)
    layout = CoreState.__struct_fields__.index("layout")
    groups = CoreState.__struct_fields__.index("groups")
    raw = msgspec.msgpack.decode(h.core.snapshot())
    assert raw[groups] is not None and raw[layout] == CORE_LAYOUT == 5
    old = raw[:groups]  # as a build of layout 4 wrote it: no `groups` (nor what follows it)
    old[layout] = 4
    h.core.restore(msgspec.msgpack.encode(old))
    assert h.core.groups.groups == {} and h.core.groups.payer("alice") == "alice"


def test_close_waits_for_the_group(h: Harness) -> None:
    family(h)
    h.ama(amr(AccountOperation.DEBIT, "carol", amount=5 * EUR), NOV_15)
    close = amr(AccountOperation.CLOSE, "carol")
    refused = h.ama(close, NOV_15 + 1)
    assert refused.result_code == 5012 and refused.failed_avp == {"Account-Id": "carol"}
    assert h.ama(group_amr(AccountOperation.GROUP_LEAVE, "carol"), NOV_15 + 2).result_code == 2001
    assert h.ama(close, NOV_15 + 3).result_code == 2001
    # the group account waits for the end of the period its last member left in
    for member in ("alice", "bob"):
        assert (
            h.ama(group_amr(AccountOperation.GROUP_LEAVE, member), NOV_15 + 4).result_code == 2001
        )
    h.ama(amr(AccountOperation.DEBIT, "family", amount=GROUP_START), NOV_15 + 5)
    assert h.ama(amr(AccountOperation.CLOSE, "family"), NOV_15 + 6).result_code == 5012
    assert h.tick(DEC_1)  # charged for November (its members were members), then ended
    assert h.cdrs()[-1]["charge"] == 50 * EUR
    assert not h.core.groups.is_group("family") and not h.tick(JAN_1)
    h.ama(amr(AccountOperation.CREDIT, "family", amount=50 * EUR), DEC_1 + 1)
    assert h.ama(amr(AccountOperation.CLOSE, "family"), DEC_1 + 2).result_code == 2001


def test_advice_of_charge_shows_the_group_balance(h: Harness) -> None:
    family(h)
    asked = h.cca(
        ccr(
            "aoc",
            INITIAL,
            0,
            mscc(10, ask=rsu(octets=MiB)),
            subscriber="491700000103",
            aoc=AoCRequestType.FULL,
        ),
        NOV_15,
    )
    remaining = asked.remaining_balance
    assert remaining is not None
    # 100 EUR less the 1 MiB grant reserved (0.001 EUR): 99.999 EUR = 99999 x 10^-3
    assert (remaining.unit_value.value_digits, remaining.unit_value.exponent) == (99_999, -3)
    h.cca(ccr("aoc", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), NOV_15 + 1)


def test_a_busy_midnight_is_closed_over_several_ticks(
    monkeypatch: pytest.MonkeyPatch, h: Harness
) -> None:
    monkeypatch.setattr("ocs.core.groups.MAX_CLOSES_PER_TICK", 2)
    for g in ("g1", "g2", "g3"):
        h.account(g, f"4917000002{g[1]}0", GROUP_START, now_ms=NOV_1)
        h.account(f"{g}m", f"4917000002{g[1]}1", EUR, now_ms=NOV_1)
        joined = h.ama(
            group_amr(AccountOperation.GROUP_JOIN, f"{g}m", group=g, package="family"), NOV_1
        )
        assert joined.result_code == 2001
    assert h.tick(DEC_1)  # two of the three
    assert [r["accountId"] for r in h.cdrs()] == ["g1", "g2"]
    assert h.core.due(DEC_1 + 1000)  # the third is still due: the next tick closes it
    assert h.tick(DEC_1 + 1000)
    assert [r["accountId"] for r in h.cdrs()] == ["g1", "g2", "g3"]
    # dated at the instant all the same
    assert {r["recordClosingTime"] for r in h.cdrs()} == {"2026-11-30T23:00:00.000Z"}
    assert not h.core.due(DEC_1 + 2000)


def test_a_members_report_after_the_end_closes_its_group_first(h: Harness) -> None:
    family(h)
    # before any tick, a report of alice after the end: November is closed first (with what
    # was reported in November), then the report counts for December
    session(h, "late", "491700000101", DATA, 10, usu(octets=GiB), DEC_1 + 60_000)
    first = h.cdrs()
    # the apportionment record comes first: the report closed November before it was recorded
    assert [r["recordType"] for r in first][-2:] == ["apportionment", "session"]
    record = next(r for r in first if r["recordType"] == "apportionment")
    alice = next(m for m in record["apportionment"] if m["accountId"] == "alice")
    assert {s["service"]: s["units"] for s in alice["services"]}["data"] == 0
    december = shown(statement(h, "alice", DEC_1 + 120_000, DEC_1 // 1000 + 60))
    assert december["share"] is None  # the open period: December
    assert december["services"]["data"][0] == GiB


def test_a_group_accounts_offer_pays_its_members_sessions() -> None:
    """A package with allowances: the group account holds the demo bundle (10 GiB of data a
    month), and a member's data session draws on the group's allowance, not on money: the
    member's money and the group's money (less the bundle's fee) are untouched, the group's
    data allowance is 5 MiB less, and the member's statement counts the 5 MiB at no charge."""
    h = Harness()  # the demo catalog: the bundle-15 offer and the family package
    h.account("fam", "491700000100", 30 * EUR)
    h.account("kid", "491700000101", 1 * EUR)
    joined = group_amr(AccountOperation.GROUP_JOIN, "kid", group="fam", package="family")
    assert h.ama(joined, PEAK_MS).result_code == 2001
    bundle = msgspec.structs.replace(
        amr(AccountOperation.SUBSCRIBE, "fam", operation_id="b1"), offer_name="bundle-15"
    )
    assert h.ama(bundle, PEAK_MS).result_code == 2001  # 15.00 EUR from the group's money
    session(h, "kid-data", "491700000101", DATA, 10, usu(octets=5 * MiB), PEAK_MS + 1_000)
    assert h.balance("kid") == 1 * EUR
    assert h.balance("fam") == 30 * EUR - 15 * EUR
    got = h.ama(amr(AccountOperation.GET, "fam"), PEAK_MS + 120_000).account
    assert got is not None and got.offer_balance is not None
    data = {b.allowance_name: b.allowance_units for b in got.offer_balance}["data"]
    assert data == 10 * GiB - 5 * MiB
    lines = shown(statement(h, "kid", PEAK_MS + 120_000))["services"]
    assert lines["data"][:2] == (5 * MiB, 0)  # used, charged nothing: the allowance paid
    h.ledger.check_invariants()
    h.assert_replays()
