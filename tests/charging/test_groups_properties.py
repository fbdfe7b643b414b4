"""Shared group packages under random programs (hypothesis): joins, leaves, calls and data
sessions of members and non-members, top-ups, statements, ticks and restarts from snapshots
over a few months. After each program: the books balance, every CDR and apportionment record
together charge exactly what the accounts lost, each record's shares add up to its fee and to
the catalog's service shares, every member's kept statement agrees with its record, and
replaying the journaled inputs rebuilds the same state and records."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import AccountOperation
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
    rsu,
    usu,
)
from tests.charging.family import CATALOG

START = epoch_ms("2026-10-20T10:00:00+02:00")
HOUR = 3_600_000
GROUPS = ("g1", "g2")
MEMBERS = ("m0", "m1", "m2", "m3")
SHARES = {"voice": 20 * EUR, "data": 30 * EUR}

step = st.one_of(
    st.tuples(st.just("join"), st.sampled_from(MEMBERS), st.sampled_from(GROUPS)),
    st.tuples(st.just("leave"), st.sampled_from(MEMBERS)),
    st.tuples(st.just("call"), st.sampled_from(MEMBERS), st.integers(0, 3_000)),
    st.tuples(st.just("data"), st.sampled_from(MEMBERS), st.integers(0, 6_000)),
    st.tuples(st.just("credit"), st.sampled_from(GROUPS), st.integers(1, 80)),
    st.tuples(st.just("statement"), st.sampled_from(MEMBERS)),
    st.tuples(st.just("wait"), st.integers(1, 24 * 12)),  # hours
    st.tuples(st.just("restart")),  # a checkpoint and a restart from the snapshots
)


def msisdn(account: str) -> str:
    return "4917000002" + str(sum(map(ord, account)) % 100).rjust(2, "0")


def run(h: Harness, program: list[tuple[Any, ...]]) -> int:
    """Apply the program; the money credited to accounts (initial balances and top-ups)."""
    now = START
    given_money = 0
    for account in (*GROUPS, *MEMBERS):
        h.account(account, msisdn(account), 10 * EUR, now_ms=now)
        given_money += 10 * EUR
    for n, item in enumerate(program):
        now += 60_000
        kind = item[0]
        if kind == "join":
            message = msgspec.structs.replace(
                amr(AccountOperation.GROUP_JOIN, item[1]),
                group_account_id=item[2],
                package_name="family",
            )
            h.ama(message, now)
        elif kind == "leave":
            h.ama(amr(AccountOperation.GROUP_LEAVE, item[1]), now)
        elif kind in ("call", "data"):
            rg, service = (40, VOICE) if kind == "call" else (10, DATA)
            ask = rsu(seconds=60) if rg == 40 else rsu(octets=MiB)
            used = usu(seconds=item[2]) if rg == 40 else usu(octets=item[2] * MiB)
            name = f"s{n}"
            sub = msisdn(item[1])
            h.cca(ccr(name, INITIAL, 0, mscc(rg, ask=ask), subscriber=sub, service=service), now)
            h.cca(ccr(name, TERMINATION, 1, mscc(rg, used=(used,)), service=service), now + 1)
        elif kind == "credit":
            h.ama(amr(AccountOperation.CREDIT, item[1], amount=item[2] * EUR), now)
            given_money += item[2] * EUR
        elif kind == "statement":
            h.ama(amr(AccountOperation.STATEMENT, item[1]), now)
        elif kind == "restart":
            h.restart()
        else:
            now += item[1] * HOUR
            h.tick(now)
    h.tick(now + 62 * 24 * HOUR)  # every open period ends
    return given_money


@settings(max_examples=25, deadline=None)
@given(st.lists(step, max_size=40))
def test_random_programs_keep_the_books(program: list[tuple[Any, ...]]) -> None:
    h = Harness(catalog=CATALOG)
    given_money = run(h, program)
    h.ledger.check_invariants()
    left = sum(h.balance(a) for a in (*GROUPS, *MEMBERS))
    records = h.cdrs()
    assert sum(r["charge"] for r in records) == given_money - left
    seqs = [r["recordSequenceNumber"] for r in records]
    assert seqs == list(range(1, len(seqs) + 1))
    for record in records:
        if record["recordType"] != "apportionment":
            continue
        members = record["apportionment"]
        assert sum(m["share"] for m in members) == record["charge"] == 50 * EUR
        for name, share in SHARES.items():
            assert (
                sum(s["share"] for m in members for s in m["services"] if s["service"] == name)
                == share
            )
        for m in members:
            kept = h.core.groups.statements.get(m["accountId"], [])
            mine = [s for s in kept if s.record == record["recordSequenceNumber"]]
            if mine:  # (the last 24 only)
                assert mine[0].share == m["share"]
    h.assert_replays()
