"""The due-time indexes behind reservation expiry and session supervision."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocs.core.due import DueBuckets, DueSet


def test_buckets_pop_in_time_order_and_keep_insertion_order_within_a_time() -> None:
    b: DueBuckets[str] = DueBuckets()
    for time, item in ((5, "x"), (3, "a"), (5, "y"), (3, "b"), (9, "z")):
        b.add(time, item)
    assert len(b) == 5 and b.earliest() == 3
    assert b.peek_earliest() == (3, ["a", "b"])
    assert b.pop_earliest() == (3, ["a", "b"])
    assert b.pop_earliest() == (5, ["x", "y"])
    assert len(b) == 1
    b.rebuild([(1, "q")])
    assert (len(b), b.earliest()) == (1, 1)


@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=60), st.integers(0, 25))
def test_dueset_matches_a_dict_model(ops: list[tuple[int, bool]], now: int) -> None:
    due: DueSet[int] = DueSet()
    model: dict[int, int] = {}  # item -> time
    for item, (time, keep) in enumerate(ops):
        due.add(time, item)
        model[item] = time
        if not keep:  # reschedule or drop the previous item
            prev = item - 1
            if prev in model:
                if time % 2:
                    due.move(model[prev], time + 1, prev)
                    model[prev] = time + 1
                else:
                    due.discard(model[prev], prev)
                    del model[prev]
    assert len(due) == len(model)
    assert due.earliest() == (min(model.values()) if model else None)
    taken = due.pop_due(now)
    expected = sorted((t, i) for i, t in model.items() if t <= now)
    assert sorted((model[i], i) for i in taken) == expected
    assert [model[i] for i in taken] == sorted(model[i] for i in taken)  # earliest first
    assert len(due) == len(model) - len(taken)
    due.discard(999, 1)  # unknown: nothing happens
    assert len(due) == len(model) - len(taken)
