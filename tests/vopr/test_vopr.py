"""The simulator as part of the suite: a bounded run of a few fixed seeds over every hostile
class, the same seed giving the same run, and the simulator finding what it exists to find
(faults injected into the node, each caught by the check named)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ocs.core.ledger
from ocs.core.charging import ChargingCore
from ocs.core.ledger import Ledger, Post
from ocs.edge.journal import Journal, JournalRecord
from ocs.node import Node
from tests.conftest import ROOT
from tests.vopr.__main__ import report
from tests.vopr.rawpack import Pairs, pack
from tests.vopr.simulator import Settings, Summary, simulate
from tests.vopr.workload import HOSTILE

# Every hostile class: the server passes them all (docs/vopr.md, Findings).
PASSING = frozenset(HOSTILE)
SEEDS = (1, 2, 3)
# the core's logic is plain Python (OCS_PURE=1), not mypyc-compiled: its classes can be patched
INTERPRETED = ocs.core.ledger.__file__ is not None and ocs.core.ledger.__file__.endswith(".py")
CORE_FAULT = pytest.mark.skipif(
    not INTERPRETED, reason="compiled core: its classes cannot be patched"
)
STEPS = 2000


def run(seed: int, steps: int, hostile: frozenset[str] = PASSING) -> Summary:
    return simulate(Settings(seed=seed, steps=steps, hostile=hostile))


@pytest.mark.parametrize("seed", SEEDS)
def test_bounded_run(seed: int) -> None:
    summary = run(seed, STEPS)
    assert summary.ok, report(summary)
    counters = summary.counters
    # the run reached what it is meant to exercise
    assert counters["crashes"] + counters["restarts"] >= 3, report(summary)
    assert counters["requests:normal"] > 500 and counters["requests"] > counters["requests:normal"]
    for cls in PASSING:  # every class sent requests, and the checks of its own expectations ran
        assert counters[f"requests:{cls}"] > 0, (cls, report(summary))
    for finding in ("duplicate", "events", "refunds", "ownership", "sequence", "time", "usage"):
        assert counters[f"expected:{finding}"] > 0, (finding, report(summary))
    for path in (
        "cdr:beyond-grant",
        "cdr:REFUND_ACCOUNT",
        "cdr:partialRecord",
        "cdr:abnormalRelease",
    ):
        assert counters[path] > 0, (path, report(summary))


@pytest.mark.parametrize(("seed", "steps"), [(5451, 1807)])
def test_seeds_that_failed_once(seed: int, steps: int) -> None:
    """Seeds a long run found failing, kept as regressions (docs/vopr.md, Long runs): 5451, a
    foreign UPDATE whose usage is outside its domain is refused 5004 at the door, before the
    session is looked up (the simulator expected 5002)."""
    summary = run(seed, steps)
    assert summary.ok, report(summary)


def test_normal_traffic_only() -> None:
    summary = run(4, STEPS, frozenset())
    assert summary.ok, report(summary)
    assert summary.counters["requests"] == summary.counters["requests:normal"]


def test_a_seed_replays_exactly() -> None:
    """Same seed, same run: in this process, and in another one with another hash seed (no
    dependence on set order, the clock or a global random)."""
    first = run(11, 300)
    second = run(11, 300)
    assert first.ok and second.ok, report(first)
    assert first.digest == second.digest
    assert first.counters == second.counters
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    hostile = ",".join(sorted(PASSING))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.vopr",
            "--seed",
            "11",
            "--steps",
            "300",
            "--hostile",
            hostile,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"digest={first.digest}" in out.stdout, out.stdout


# --- the simulator finds what it is there to find --------------------------------------------


@contextmanager
def fault(name: str) -> Iterator[None]:
    """A bug injected into the product, as a wrapper around what it changes."""
    if name == "post-capped":  # a post charges at most what was reserved
        apply = Ledger.apply

        def capped(self: Ledger, cmd: Any, **kw: Any) -> Any:
            if isinstance(cmd, Post):
                held = self.reservation(cmd.reservation_id)
                if held is not None and cmd.amount > held.amount:
                    cmd = Post(
                        id=cmd.id,
                        now_ms=cmd.now_ms,
                        reservation_id=cmd.reservation_id,
                        amount=held.amount,
                    )
            return apply(self, cmd, **kw)

        with mock.patch.object(Ledger, "apply", capped):
            yield
    elif name == "actions-early":  # RAR/ASR sent before the input that caused them is durable
        after_core = Node._after_core

        def early(self: Node, lsn: int | None) -> None:
            actions = self.core.take_actions()
            if actions:
                self._send_actions(actions)
            after_core(self, lsn)

        with mock.patch.object(Node, "_after_core", early):
            yield
    elif name == "last-record-dropped":  # recovery drops the last (durable) record
        recover = Journal.recover_records

        def dropping(self: Journal, after_lsn: int = 0) -> Iterator[JournalRecord]:
            records = list(recover(self, after_lsn))
            yield from records[:-1]

        with mock.patch.object(Journal, "recover_records", dropping):
            yield
    elif name == "packing-flaky":  # live and replay pack idle sessions at different times
        pack_if_idle = ChargingCore._pack_if_idle
        calls = [0]

        def flaky(self: ChargingCore, sid: str, at_ms: int) -> None:
            calls[0] += 1
            if calls[0] % 3:
                pack_if_idle(self, sid, at_ms)

        with mock.patch.object(ChargingCore, "_pack_if_idle", flaky):
            yield
    else:
        raise ValueError(name)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("post-capped", "money", marks=CORE_FAULT),
        ("actions-early", "durability"),
        ("last-record-dropped", "recovery"),
        pytest.param("packing-flaky", "replay", marks=CORE_FAULT),
    ],
)
def test_finds_an_injected_fault(name: str, kind: str) -> None:
    with fault(name):
        summary = run(1, 2000, frozenset())
        assert summary.finding is not None, report(summary)
        assert summary.finding.kind == kind, report(summary)
        # and the reproduction it prints reproduces it: the same finding at the same step
        again = run(1, summary.finding.step + 1, frozenset())
    assert again.finding is not None and again.finding.step == summary.finding.step
    assert again.finding.message == summary.finding.message


# --- the hostile encoder says what msgspec says, where both can ---------------------------------

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=60,
)


@given(_values)
def test_rawpack_agrees_with_msgspec(value: Any) -> None:
    packed = pack(value)
    assert msgspec.msgpack.decode(packed) == value
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(value)) == msgspec.msgpack.decode(packed)


def test_rawpack_says_what_msgspec_does_not() -> None:
    assert msgspec.msgpack.decode(pack(Pairs(((None, 1), (1, 2), ("k", 3), ("k", 4))))) == {
        None: 1,
        1: 2,
        "k": 4,
    }
    deep: Any = "leaf"
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    assert pack(deep).startswith(b"\x91" * 5000)
