"""`RoundRobin`: the requests a server read, served one per peer in turn."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.fairness import RoundRobin


def test_one_item_per_key_in_turn_each_key_in_order() -> None:
    rr: RoundRobin[str, str] = RoundRobin()
    for i in range(5):
        rr.push("busy", f"b{i}")
    rr.push("quiet", "q0")
    rr.push("other", "o0")
    rr.push("other", "o1")
    assert len(rr) == 8 and rr.queued("busy") == 5
    assert rr.take(4) == ["b0", "q0", "o0", "b1"]
    # the turn goes on where it stopped: "other" is next, "quiet" has nothing left
    assert rr.take(10) == ["o1", "b2", "b3", "b4"]
    assert len(rr) == 0 and rr.take(3) == []


def test_a_key_with_nothing_left_joins_at_the_back() -> None:
    rr: RoundRobin[str, int] = RoundRobin()
    rr.push("a", 1)
    rr.push("b", 1)
    rr.push("b", 2)
    assert rr.take(1) == [1]  # a's
    rr.push("a", 2)  # a had nothing queued: it comes after b
    assert rr.take(3) == [1, 2, 2]


def test_discard_removes_some_items_and_keeps_the_turn() -> None:
    rr: RoundRobin[str, tuple[str, int]] = RoundRobin()
    for i in range(3):
        rr.push("p", ("c1", i))
        rr.push("p", ("c2", i))
    rr.push("q", ("c3", 0))
    assert rr.discard("p", lambda item: item[0] == "c1") == 3
    assert rr.discard("nobody", lambda item: True) == 0
    assert len(rr) == 4
    assert rr.take(2) == [("c2", 0), ("c3", 0)]  # p kept its place, first
    assert rr.discard("p", lambda item: True) == 2
    assert len(rr) == 0 and rr.take(5) == []


@given(st.lists(st.integers(0, 4), max_size=60), st.integers(1, 7))
def test_every_item_once_each_key_in_order_no_key_served_twice_before_another_waiting(
    pushes: list[int], limit: int
) -> None:
    rr: RoundRobin[int, tuple[int, int]] = RoundRobin()
    for n, key in enumerate(pushes):
        rr.push(key, (key, n))
    out: list[tuple[int, int]] = []
    while batch := rr.take(limit):
        assert len(batch) <= limit
        out.extend(batch)
    assert sorted(out, key=lambda item: item[1]) == [(k, n) for n, k in enumerate(pushes)]
    for key in set(pushes):
        mine = [n for k, n in out if k == key]
        assert mine == sorted(mine)
    # between two items of one key, every other key that still had items had one
    left = {key: pushes.count(key) for key in pushes}
    turn: set[int] = set()
    for key, _ in out:
        if key in turn:  # a new round begins: everyone waiting was served in the last
            assert all(left[k] == 0 or k in turn for k in left)
            turn = set()
        turn.add(key)
        left[key] -= 1
