"""Idle sessions are kept packed (memory), and nothing a client or the books can see changes."""

from __future__ import annotations

import hashlib

import pytest

from ocs.core.charging import pack_session, unpack_session
from ocs.core.charging_types import PACK_DICT, PACK_TAG
from protocol.codes import CCRequestType, ReportingReason
from tests.charging.conftest import EUR, PEAK, Harness, MiB, ccr, mscc, rsu, sid, usu

INITIAL = CCRequestType.INITIAL
UPDATE = CCRequestType.UPDATE
TERMINATION = CCRequestType.TERMINATION
MIN = 60_000
WINDOW = 4 * MIN  # the duplicate window (WIRE.md 6)


def packed(h: Harness) -> int:
    return h.core.sessions.packed()


def open_two(h: Harness) -> None:
    h.account("a", "491700000001", 10 * EUR)
    h.account("b", "491700000002", 10 * EUR)
    for name, sub in (("s1", "491700000001"), ("s2", "491700000002")):
        answer = h.cca(ccr(name, INITIAL, 0, mscc(10, ask=rsu()), subscriber=sub), PEAK)
        assert answer.result_code == 2001


def test_a_session_is_packed_once_its_last_answer_leaves_the_duplicate_window(
    h: Harness,
) -> None:
    open_two(h)
    assert packed(h) == 0
    # s2 keeps talking; s1 stays silent
    h.cca(ccr("s2", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + 3 * MIN)
    h.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)  # any request evicts
    assert packed(h) == 1  # s1 only: s2 answered within the window
    raw = h.core._sessions
    one, two = raw[sid("s1")], raw[sid("s2")]
    assert isinstance(one, bytes) and not isinstance(two, bytes)
    # packed small: far below the objects it stands for
    assert len(one) < 200


def test_a_packed_session_goes_on_exactly_as_an_unpacked_one(h: Harness) -> None:
    twin = Harness()
    for harness in (h, twin):
        open_two(harness)
    h.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)
    twin.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)
    twin.core._sessions[sid("s1")] = twin.core.sessions[sid("s1")]  # the twin keeps s1 unpacked
    assert packed(h) == 2 and isinstance(
        twin.core._sessions[sid("s1")], type(h.core.sessions[sid("s1")])
    )
    later = PEAK + 10 * MIN
    update = ccr("s1", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=3 * MiB),)))
    term = ccr(
        "s1", TERMINATION, 2, mscc(10, used=(usu(octets=MiB, reason=ReportingReason.FINAL),))
    )
    for message, at in ((update, later), (term, later + MIN)):
        assert h.send(message, at).body == twin.send(message, at).body
    assert h.balance("a") == twin.balance("a") < 10 * EUR
    assert h.reserved("a") == twin.reserved("a") == 0
    assert h.cdr_lines == twin.cdr_lines and sid("s1") not in h.core.sessions


def test_the_last_request_repeated_after_the_window_gets_the_same_answer(h: Harness) -> None:
    open_two(h)
    first = h.send(ccr("s1", INITIAL, 0, mscc(10, ask=rsu()), subscriber="491700000001"), PEAK)
    h.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)
    assert isinstance(h.core._sessions[sid("s1")], bytes)
    balance, reserved = h.balance("a"), h.reserved("a")
    # new End-to-End-Id, same (Session-Id, CC-Request-Number): answered the same (WIRE.md 6)
    again = h.send(
        ccr("s1", INITIAL, 0, mscc(10, ask=rsu()), subscriber="491700000001"), PEAK + 6 * MIN
    )
    assert again.answer == first.answer
    assert (h.balance("a"), h.reserved("a")) == (balance, reserved)


def test_packed_sessions_survive_a_restart_and_replay_byte_for_byte(h: Harness) -> None:
    open_two(h)
    h.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)
    assert packed(h) == 2
    h.restart()
    assert packed(h) == 2
    assert h.core.sessions[sid("s1")].account_id == "a"
    h.assert_replays()
    answer = h.cca(
        ccr("s2", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + 9 * MIN
    )
    assert answer.result_code == 2001 and packed(h) == 1
    h.assert_replays()


def test_a_silent_packed_session_is_closed_by_supervision_with_its_cdr(h: Harness) -> None:
    open_two(h)
    h.account("c", "491700000003", EUR, now_ms=PEAK + WINDOW + 1)
    assert packed(h) == 2
    tcc_ms = h.core.sessions[sid("s1")].tcc_s * 1000
    assert h.tick(PEAK + tcc_ms + 1)
    assert len(h.core.sessions) == 0
    assert {r["sessionId"] for r in h.cdrs()} == {sid("s1"), sid("s2")}
    assert all(r["causeForRecordClosing"] == "abnormalRelease" for r in h.cdrs())
    assert h.reserved("a") == h.reserved("b") == 0


def test_packing_round_trips_every_field(h: Harness) -> None:
    open_two(h)
    h.cca(ccr("s1", UPDATE, 1, mscc(10, ask=rsu(), used=(usu(octets=MiB),))), PEAK + MIN)
    session = h.core.sessions[sid("s1")]
    assert session.containers and session.rated  # something in every kind of field
    assert unpack_session(pack_session(session)) == session


def test_the_packing_dictionary_is_pinned_to_its_version_tag() -> None:
    """Packed sessions live in snapshots: a new preset dictionary needs a new `PACK_TAG`, or
    a snapshot of the previous build would be refused for the wrong reason (or not at all)."""
    pinned = {1: "cf65d4dfc1bdcb1a"}
    digest = hashlib.sha256(PACK_DICT).hexdigest()[:16]
    assert pinned.get(PACK_TAG) == digest, (
        f"the packing dictionary changed ({digest}): bump PACK_TAG in "
        "ocs/core/charging_types.py and pin the new digest here"
    )


def test_a_session_packed_with_another_dictionary_is_refused(h: Harness) -> None:
    open_two(h)
    packed_ok = pack_session(h.core.sessions[sid("s1")])
    assert packed_ok[0] == PACK_TAG
    with pytest.raises(ValueError, match="dictionary"):
        unpack_session(bytes((PACK_TAG + 1,)) + packed_ok[1:])
    with pytest.raises(ValueError, match="dictionary"):
        unpack_session(b"")
