"""Group commit's fsync thread and release hooks, on a real loop and journal: the callbacks of
a durable batch run between ``before_release`` and ``after_release`` (the server writes the
answers of the batch there, one write per connection), and `aclose` ends the thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

from ocs.edge.group_commit import GroupCommit
from ocs.edge.journal import Journal


async def test_callbacks_of_a_batch_run_between_the_release_hooks(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert list(journal.recover()) == []
    events: list[str] = []
    commit = GroupCommit(
        journal,
        before_release=lambda: events.append("before"),
        after_release=lambda: events.append("after"),
    )

    def answer(i: int, lsn: int) -> None:
        events.append(f"{i}:{journal.durable_lsn >= lsn}")

    for i in range(3):
        commit.defer(functools.partial(answer, i, journal.append(b"r%d" % i)))
    await asyncio.wait_for(commit.durable(), 5)
    # one batch (one loop iteration), one fsync, one release
    assert events == ["before", "0:True", "1:True", "2:True", "after"]
    await commit.aclose()
    journal.close()


async def test_aclose_stops_the_fsync_thread(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert list(journal.recover()) == []
    before = set(threading.enumerate())
    commit = GroupCommit(journal)
    journal.append(b"x")
    await asyncio.wait_for(commit.durable(), 5)
    assert commit.syncs == 1 and journal.durable_lsn == 1
    started = [t for t in set(threading.enumerate()) - before if t.name == "ocs-fsync"]
    assert len(started) == 1
    await commit.aclose()
    assert not started[0].is_alive()
    journal.close()
