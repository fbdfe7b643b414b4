"""Peers are identities (WIRE.md 1.1 sections 4, 5.3 and 6), in the core: a Session-Id begins
with its opener's Origin-Host, a session belongs to the peer that opened it, duplicates are
keyed by the peer, and what one peer can pin in the duplicate cache is bounded. The core is
handed the peer's identity (the Origin-Host of its connection's CER) with every request."""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.core.charging import ChargingCore, Input, InputKind, names_peer
from ocs.core.charging_types import CORE_LAYOUT, STATE_DECODER, STATE_ENCODER, ActionKind
from ocs.core.ledger import Ledger
from protocol.codec import encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CCRequestType,
    CommandCode,
    RequestedAction,
)
from protocol.messages import AMA, CCA
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
    WINDOW,
    Harness,
    MiB,
    amr,
    ccr,
    mscc,
    only,
    rsu,
    sid,
    usu,
)

OTHER = "upf2.test.local"
MIN_MS = 60_000


# --- Session-Ids begin with their opener's Origin-Host (WIRE.md 5.3) --------------------------


def test_names_peer_is_the_host_then_a_semicolon_or_the_host_alone() -> None:
    host = "upf1.test.local"
    for ok in (host, f"{host};", f"{host};1700000000;1", f"{host};;x"):
        assert names_peer(ok, host), ok
    for bad in (
        "",
        "upf1",
        "upf1.test",
        f"{host}x;1",
        f"x{host};1",
        f"{host}.;1",
        "UPF1.test.local;1",
    ):
        assert not names_peer(bad, host), bad


@given(host=st.text(min_size=1, max_size=12), rest=st.text(max_size=12))
def test_names_peer_property(host: str, rest: str) -> None:
    session_id = host + rest
    assert names_peer(session_id, host) == (rest == "" or rest.startswith(";"))
    assert names_peer(f"{host};{rest}", host)


@pytest.mark.parametrize("kind", [INITIAL, EVENT])
def test_initial_or_event_with_a_session_id_not_the_peers_is_5004(
    h: Harness, kind: CCRequestType
) -> None:
    h.account("a", SUB, 10 * EUR)
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    for foreign in (f"{OTHER};1", "1700000000;1", f"{UPF}x;1", "upf1;1"):
        message = ccr(
            foreign,
            kind,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.DIRECT_DEBITING if kind is EVENT else None,
        )
        assert message.session_id == foreign and message.origin_host == UPF
        answer = h.cca(message, PEAK)
        assert answer.result_code == 5004
        assert answer.failed_avp == {"Session-Id": foreign}
        assert answer.session_id == foreign
        assert answer.multiple_services_credit_control is None
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert h.cdr_lines == [] and h.take_actions() == []
    # the peer's own name, alone or followed by ";", opens
    assert (
        h.cca(ccr(UPF, INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK).result_code == 2001
    )


# --- sessions belong to their opener (WIRE.md 5.3) ---------------------------------------------


def _open(h: Harness) -> CCA:
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    assert answer.result_code == 2001
    return answer


def _unknown(session_id: str, kind: CCRequestType, number: int) -> CCA:
    """What a peer is answered for a session the server does not hold."""
    return CCA(
        session_id=session_id,
        result_code=5002,
        origin_host="ocs.test.local",
        origin_realm="test.local",
        auth_application_id=4,
        cc_request_type=kind,
        cc_request_number=number,
    )


@pytest.mark.parametrize("kind", [UPDATE, TERMINATION])
@pytest.mark.parametrize("number", [0, 1, 2])
def test_another_peers_update_or_termination_is_5002_and_changes_nothing(
    h: Harness, kind: CCRequestType, number: int
) -> None:
    """The issue's second example: peer B reports usage on A's session (A's subscriber charged
    by B's reports) or closes it. B is answered exactly as for a session that does not exist
    (nothing tells it the session is open), and nothing changes."""
    _open(h)
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    report = mscc(10, ask=rsu(), used=(usu(octets=100 * MiB),))
    theirs = ccr(sid("s"), kind, number, report, origin=OTHER)
    answer = h.cca(theirs, PEAK + 1_000)
    assert answer == _unknown(sid("s"), kind, number)
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert h.cdr_lines == [] and h.take_actions() == []
    # the owner goes on as if nothing happened
    mine = h.cca(ccr("s", UPDATE, 1, report), PEAK + 2_000)
    assert mine.result_code == 2001 and only(mine).result_code == 2001
    assert h.core.sessions[sid("s")].number == 1


def test_another_peer_never_gets_the_sessions_repeated_answer(h: Harness) -> None:
    """(Session-Id, CC-Request-Number) repeats the last answer (WIRE.md 6) to the session's
    own peer only, while it is open and after it closed (its tombstone)."""
    opened = _open(h)
    initial_again = ccr(sid("s"), INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB, origin=UPF)
    assert h.cca(initial_again, PEAK + 1_000) == opened  # its own peer: the same answer
    # another peer naming it in an INITIAL: the Session-Id is not its own
    theirs = ccr(sid("s"), INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB, origin=OTHER)
    answer = h.cca(theirs, PEAK + 1_000)
    assert answer.result_code == 5004 and answer.failed_avp == {"Session-Id": sid("s")}
    term = h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), PEAK + 2_000)
    assert term.result_code == 2001 and sid("s") not in h.core.sessions
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    stolen = h.cca(
        ccr(sid("s"), TERMINATION, 1, mscc(10, used=(usu(octets=MiB),)), origin=OTHER),
        PEAK + 3_000,
    )
    assert stolen == _unknown(sid("s"), TERMINATION, 1)
    again = h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), PEAK + 3_000)
    assert again == term  # the owner's late retransmission still gets its answer
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before


def test_an_idle_session_another_peer_names_stays_packed(h: Harness) -> None:
    _open(h)
    h.account("b", "491700000002", EUR, now_ms=PEAK + WINDOW + 1)  # the INITIAL's answer leaves
    assert isinstance(h.core._sessions[sid("s")], bytes)
    for number in (0, 1, 5):
        theirs = ccr(sid("s"), UPDATE, number, origin=OTHER)
        assert h.cca(theirs, PEAK + WINDOW + 2).result_code == 5002
    assert isinstance(h.core._sessions[sid("s")], bytes)
    assert h.core.session_owner(sid("s")) == UPF
    assert h.core.session_owner(sid("nothing")) is None


def test_server_initiated_requests_name_the_owner(h: Harness) -> None:
    _open(h)
    h.cca(ccr(sid("s"), UPDATE, 1, mscc(10, ask=rsu()), origin=OTHER), PEAK + 1_000)
    h.ama(amr(AccountOperation.SET_STATUS, "a", status=AccountStatus.SUSPENDED), PEAK + 2_000)
    [action] = h.take_actions()
    assert (action.kind, action.session_id, action.origin_host) == (ActionKind.ASR, sid("s"), UPF)


# --- management intervention: TERMINATE_SESSION -----------------------------------------------


def test_terminate_session_closes_any_peers_session_as_supervision_does(h: Harness) -> None:
    _open(h)
    h.cca(ccr("s", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=2 * MiB),))), PEAK + MIN_MS)
    assert h.reserved("a") > 0
    ama = h.ama(
        amr(AccountOperation.TERMINATE_SESSION, "a", session_id=sid("s")), PEAK + 2 * MIN_MS
    )
    assert ama.result_code == 2001 and ama.account is not None
    assert ama.account.session_count == 0 and ama.account.reserved == 0
    assert sid("s") not in h.core.sessions and h.reserved("a") == 0
    (cdr,) = h.cdrs()
    assert cdr["causeForRecordClosing"] == "managementIntervention"
    assert cdr["sessionId"] == sid("s") and cdr["charge"] == 40_000  # 2 MiB at 0.02
    assert h.balance("a") + h.cdr_total() == 10 * EUR
    [action] = h.take_actions()
    assert (action.kind, action.session_id, action.origin_host) == (ActionKind.ASR, sid("s"), UPF)
    # the client's TERMINATION after its ASA: the session is gone
    late = h.cca(ccr("s", TERMINATION, 2, mscc(10, used=(usu(octets=MiB),))), PEAK + 3 * MIN_MS)
    assert late.result_code == 5002 and h.balance("a") + h.cdr_total() == 10 * EUR


def test_terminate_session_refusals(h: Harness) -> None:
    _open(h)
    h.account("b", "491700000002", EUR)
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    refusals = [
        ("a", None, 5005, {"Session-Id": None}),
        ("a", sid("nope"), 5002, {"Session-Id": sid("nope")}),
        ("b", sid("s"), 5002, {"Session-Id": sid("s")}),  # not that account's session
        ("nobody", sid("s"), 5030, {"Account-Id": "nobody"}),
    ]
    for account, session_id, code, failed in refusals:
        message = amr(AccountOperation.TERMINATE_SESSION, account, session_id=session_id)
        answer = h.ama(message, PEAK + 1_000)
        assert (answer.result_code, answer.failed_avp) == (code, failed), account
        assert answer.account is None
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert h.take_actions() == [] and h.cdr_lines == []


# --- duplicates keyed by the peer (WIRE.md 6) ---------------------------------------------------


def test_another_peer_with_the_same_end_to_end_id_gets_its_own_answer(h: Harness) -> None:
    """The issue's examples, in the core: the cache is keyed by the peer the edge names (the
    CER's Origin-Host), so a peer reusing another's End-to-End-Id, before or after it, is
    processed on its own and never handed the other's answer."""
    h.account("a", SUB, 10 * EUR)
    admin_view = h.send(amr(AccountOperation.GET, "a"), PEAK, e2e=5)
    assert isinstance(admin_view.answer, AMA) and admin_view.answer.account is not None
    # a credit-control peer fishing with the administrator's End-to-End-Id
    fished = h.send(
        ccr(
            "p",
            EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.PRICE_ENQUIRY,
        ),
        PEAK + 1,
        e2e=5,
    )
    assert not fished.duplicate and isinstance(fished.answer, CCA)
    # B pre-empts the End-to-End-Id A is about to use; A's report is charged all the same
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK + 2)
    h.send(ccr(sid("x", OTHER), UPDATE, 1, origin=OTHER), PEAK + 3, e2e=9)
    report = h.send(ccr("s", UPDATE, 1, mscc(10, used=(usu(octets=100 * MiB),))), PEAK + 4, e2e=9)
    assert not report.duplicate and report.answer.result_code == 2001
    assert h.core.sessions[sid("s")].charge_total == 2 * EUR  # 100 MiB at 0.02


# --- the per-peer bound of the duplicate cache --------------------------------------------------


def _enquiry(name: str, origin: str) -> bytes:
    message = ccr(
        name,
        EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service=SMS,
        action=RequestedAction.PRICE_ENQUIRY,
        origin=origin,
    )
    return encode_body(message)


def _core(bound: int) -> ChargingCore:
    core = ChargingCore(Ledger(), DEMO, max_cached_per_peer=bound)
    core.apply(Input(kind=InputKind.CATALOG, now_ms=0, body=DEMO.encode()))
    return core


def _request(core: ChargingCore, origin: str, e2e: int, now_ms: int) -> tuple[bool, Input]:
    record = Input(
        kind=InputKind.REQUEST,
        now_ms=now_ms,
        origin_host=origin,
        end_to_end=e2e,
        command=int(CommandCode.CREDIT_CONTROL),
        body=_enquiry(f"q{e2e}", origin),
    )
    result = core.apply(record)
    assert result is not None
    return result.duplicate, record


def test_a_peer_keeps_at_most_its_bound_and_others_keep_theirs() -> None:
    core = _core(3)
    journal: list[Input] = []
    for e2e in range(1, 6):  # A: 1..5, B: 1 in between
        duplicate, record = _request(core, UPF, e2e, PEAK + e2e)
        assert not duplicate
        journal.append(record)
        if e2e == 2:
            duplicate, record = _request(core, OTHER, 1, PEAK + e2e)
            journal.append(record)
    # A's three latest are held, its two oldest were dropped; B's one is untouched
    assert [_request(core, UPF, e2e, PEAK + 10)[0] for e2e in (3, 4, 5)] == [True] * 3
    assert _request(core, OTHER, 1, PEAK + 10)[0]
    snapshot = core.snapshot()
    state = STATE_DECODER.decode(snapshot)
    assert [(h, e) for h, e, _ in state.seen] == [(OTHER, 1), (UPF, 3), (UPF, 4), (UPF, 5)]
    dropped, record = _request(core, UPF, 1, PEAK + 11)
    assert not dropped  # processed again: it was forgotten
    journal.append(record)
    # replay of what was journaled, and a restart from the snapshot, agree with the live core
    replayed = _core(3)
    for record in journal:
        replayed.apply(record)
    assert replayed.snapshot() == core.snapshot()


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([UPF, OTHER, "smsc.test.local"]),
            st.integers(0, 6),
            st.integers(0, 90_000),
        ),
        max_size=40,
    ),
    bound=st.integers(1, 4),
    restart_at=st.integers(0, 40),
)
def test_duplicate_cache_matches_its_model(
    steps: list[tuple[str, int, int]], bound: int, restart_at: int
) -> None:
    """Against a model: an answer is a duplicate iff its (peer, End-to-End-Id) is among the
    peer's last `bound` answers and within the window; a restart from a snapshot changes
    nothing, and replaying the journaled requests rebuilds the same cache."""
    core = _core(bound)
    model: dict[str, deque[tuple[int, int]]] = {}  # peer -> (e2e, at) in order
    journal: list[Input] = []
    now = PEAK
    for i, (origin, e2e, advance_ms) in enumerate(steps):
        if i == restart_at:
            restored = ChargingCore(core.ledger, DEMO, max_cached_per_peer=bound)
            restored.restore(core.snapshot())
            assert restored.snapshot() == core.snapshot()
            core = restored
        now += advance_ms
        for held in model.values():
            while held and held[0][1] < now - WINDOW:
                held.popleft()
        held = model.setdefault(origin, deque())
        expected = any(e == e2e for e, _ in held)
        duplicate, record = _request(core, origin, e2e, now)
        assert duplicate == expected
        if not duplicate:
            journal.append(record)
            held.append((e2e, now))
            if len(held) > bound:
                held.popleft()
    replayed = _core(bound)
    for record in journal:
        replayed.apply(record)
    assert replayed.snapshot() == core.snapshot()


# --- data directories of a build before peer identities ----------------------------------------


def test_every_input_kind_has_its_own_number() -> None:
    """A journal record's kind is one byte of the `Input`: two kinds on one number would be an
    alias (the later one replayed as the earlier). REQUEST and SETTINGS were both new in one
    release; kind 1 stays the requests of older builds, kind 4 those of builds before the
    identity checks at CREATE."""
    assert len(InputKind.__members__) == len(set(InputKind))
    assert {k.name: k.value for k in InputKind} == {
        "REQUEST": 6,
        "REQUEST_1_1": 4,
        "REQUEST_1_0": 1,
        "TICK": 2,
        "CATALOG": 3,
        "SETTINGS": 5,
    }


def test_requests_journaled_before_session_owners_replay_as_they_were_processed() -> None:
    """`InputKind.REQUEST_1_0` (records of a build before WIRE.md 1.1's peer rules) replays
    without the Session-Id and ownership checks, so an old data directory recovers to the state
    that build acknowledged; the same requests under today's rules are refused."""
    h = Harness()
    h.account("a", SUB, 10 * EUR)
    old = [
        ccr("legacy-1;x", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB),
        ccr("legacy-1;x", UPDATE, 1, mscc(10, used=(usu(octets=MiB),)), origin=OTHER),
    ]
    for kind, expected in (
        (InputKind.REQUEST_1_0, [2001, 2001]),
        (InputKind.REQUEST, [5004, 5002]),
    ):
        core = ChargingCore(Ledger(), DEMO)
        for record in h.inputs:  # the catalog and the account
            core.apply(record)
        codes = []
        for e2e, message in enumerate(old, start=1):
            record = Input(
                kind=kind,
                now_ms=PEAK + e2e,
                origin_host=message.origin_host,
                end_to_end=e2e,
                command=int(CommandCode.CREDIT_CONTROL),
                body=encode_body(message),
            )
            result = core.apply(record)
            assert result is not None
            codes.append(result.answer.result_code)
        assert codes == expected, kind


class _CoreStateBeforeOwners(msgspec.Struct, kw_only=True, array_like=True):
    """`CoreState` as a build of layout 1 wrote it (no owners, no `tombstones`)."""

    catalog_text: str
    cdr_seq: int
    sessions: list[msgspec.Raw]
    seen: list[msgspec.Raw]
    closed: list[tuple[str, int, int, bytes]]
    usage: dict[str, int]
    operations: dict[str, str] = {}
    reservation_seq: int = 0


class _CoreStateLayout2(_CoreStateBeforeOwners, kw_only=True, array_like=True):
    """`CoreState` as a build of layout 2 wrote it (refunds, still no `tombstones`)."""

    refund_window_s: int
    refundable: list[msgspec.Raw]
    layout: int


@pytest.mark.parametrize("layout", [1, 2])
def test_a_snapshot_without_session_owners_still_restores(layout: int) -> None:
    """A snapshot of a build before owners (layouts 1 and 2): its closed sessions (`closed`)
    have no owner; a repeat is then answered to the peer the Session-Id names, and to no
    other."""
    h = Harness()
    _open(h)
    term = h.cca(ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),))), PEAK + 1_000)
    state = STATE_DECODER.decode(h.core.snapshot())
    assert [t[0] for t in state.tombstones] == [sid("s")] and state.closed == []
    fields: dict[str, Any] = {
        "catalog_text": state.catalog_text,
        "cdr_seq": state.cdr_seq,
        "sessions": [msgspec.Raw(STATE_ENCODER.encode(s)) for s in state.sessions],
        "seen": [msgspec.Raw(STATE_ENCODER.encode(s)) for s in state.seen],
        "closed": [t[:4] for t in state.tombstones],
        "usage": state.usage,
        "operations": state.operations,
        "reservation_seq": state.reservation_seq,
    }
    old: _CoreStateBeforeOwners
    if layout == 1:  # (its cached answers lack `event_session_id`: restored all the same)
        old = _CoreStateBeforeOwners(**fields)
    else:
        old = _CoreStateLayout2(
            **fields,
            refund_window_s=state.refund_window_s,
            refundable=[msgspec.Raw(STATE_ENCODER.encode(r)) for r in state.refundable],
            layout=2,
        )
    core = ChargingCore(h.ledger, DEMO)
    core.restore(STATE_ENCODER.encode(old))
    again = ccr("s", TERMINATION, 1, mscc(10, used=(usu(octets=MiB),)))
    assert core.handle_ccr(PEAK + 2_000, UPF, 99, again).answer == term
    theirs = ccr(sid("s"), TERMINATION, 1, mscc(10, used=(usu(octets=MiB),)), origin=OTHER)
    assert core.handle_ccr(PEAK + 2_000, OTHER, 99, theirs).answer.result_code == 5002
    # written again, its owner stays unknown (and the Session-Id decides) until it expires
    written = STATE_DECODER.decode(core.snapshot())
    assert written.tombstones[0][4] == "" and written.layout == CORE_LAYOUT == 5


# --- what one peer holds: open sessions and tombstones, bounded per peer -----------------------


def _bounded(sessions: int, tombstones: int) -> Harness:
    h = Harness(max_sessions_per_peer=sessions, max_tombstones_per_peer=tombstones)
    h.account("a", SUB, 10 * EUR)
    return h


def _initial(h: Harness, name: str, now_ms: int, origin: str = UPF) -> CCA:
    return h.cca(ccr(name, INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB, origin=origin), now_ms)


def _termination(h: Harness, name: str, now_ms: int, origin: str = UPF) -> CCA:
    used = mscc(10, used=(usu(octets=MiB),))
    return h.cca(ccr(name, TERMINATION, 1, used, origin=origin), now_ms)


def test_an_initial_beyond_the_peers_limit_of_open_sessions_is_5006_and_changes_nothing() -> None:
    """protocol.limits.MAX_SESSIONS_PER_PEER (here 2): a peer holding its limit of open
    sessions gets 5006 DIAMETER_RESOURCES_EXCEEDED for another INITIAL, nothing reserved; other
    peers are not affected; a session ending makes room; the count survives a restart and
    replay."""
    h = _bounded(sessions=2, tombstones=8)
    assert [_initial(h, name, PEAK).result_code for name in ("s1", "s2")] == [2001, 2001]
    before = (h.ledger.snapshot(), h.core.snapshot(duplicates=False))
    refused = _initial(h, "s3", PEAK + 1)
    assert refused.result_code == 5006
    assert refused.session_id == sid("s3") and refused.multiple_services_credit_control is None
    assert (h.ledger.snapshot(), h.core.snapshot(duplicates=False)) == before
    assert _initial(h, "o1", PEAK + 2, origin=OTHER).result_code == 2001  # a budget of its own
    assert _termination(h, "s1", PEAK + 3).result_code == 2001
    assert _initial(h, "s3", PEAK + 4).result_code == 2001  # room again
    h.restart()
    assert _initial(h, "s4", PEAK + 5).result_code == 5006
    assert _termination(h, "s2", PEAK + 6).result_code == 2001
    assert _initial(h, "s4", PEAK + 7).result_code == 2001
    h.ledger.check_invariants()
    h.assert_replays()


def test_a_peer_keeps_at_most_its_bound_of_tombstones_its_oldest_forgotten() -> None:
    """protocol.limits.MAX_TOMBSTONES_PER_PEER (here 2): a peer's third closed session drops
    its oldest tombstone (a late repeat of that TERMINATION is then answered 5002, as for a
    session not held); the newer ones still answer their repeats, and another peer's are
    untouched; the same after a restart and in replay."""
    h = _bounded(sessions=8, tombstones=2)
    assert _initial(h, "o1", PEAK, origin=OTHER).result_code == 2001
    other_end = _termination(h, "o1", PEAK + 1, origin=OTHER)
    ends = {}
    for i, name in enumerate(("s1", "s2", "s3")):
        assert _initial(h, name, PEAK + 10 * i).result_code == 2001
        ends[name] = _termination(h, name, PEAK + 10 * i + 1)
        assert ends[name].result_code == 2001
    assert _termination(h, "s1", PEAK + 100) == _unknown(sid("s1"), TERMINATION, 1)
    for restarted in (False, True):
        if restarted:
            h.restart()
        assert _termination(h, "s2", PEAK + 101) == ends["s2"]
        assert _termination(h, "s3", PEAK + 102) == ends["s3"]
        assert _termination(h, "o1", PEAK + 103, origin=OTHER) == other_end
    h.ledger.check_invariants()
    h.assert_replays()
