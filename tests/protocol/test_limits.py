"""The limits are defined once (protocol/limits.py) and documented once (docs/protocol.md,
"Limits"): the table matches the constants, the derivations it states hold, the limits agree
with the ledger's and the rating engine's own bounds, and the codec's nesting measure agrees
with the actual nesting of any MessagePack value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.limits as limits
from ocs.core import ledger_types
from protocol.codec import nesting_exceeds
from rating import tariff

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _table() -> dict[str, int]:
    """`constant` -> value, from the rows of the Limits table."""
    text = DOC.read_text()
    section = text[text.index("## Limits (section 2)") :]
    rows: dict[str, int] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"`[A-Z0-9_]+`", cells[1]):
            continue
        expression = cells[2].replace(",", "").replace("^", "**")
        assert re.fullmatch(r"[0-9*+\- ()]+", expression), cells[2]
        rows[cells[1].strip("`")] = eval(expression)  # digits and operators only
    return rows


def _constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(limits).items()
        if name.isupper() and isinstance(value, int)
    }


def test_the_docs_table_is_the_constants() -> None:
    assert _table() == _constants()


def test_what_bounds_what() -> None:
    lim = limits
    # usage: per report x reports per session fits a snapshot's int
    assert lim.MAX_USU_UNITS == 2 * lim.MAX_UNITS
    assert lim.MAX_REPORT_UNITS == lim.MAX_USU * lim.MAX_USU_UNITS
    assert (lim.MAX_REQUEST_NUMBER + 1) * lim.MAX_REPORT_UNITS <= lim.MAX_SESSION_UNITS
    assert lim.MAX_SESSION_UNITS <= lim.MAX_INT64
    assert lim.MAX_UNITS >= 2**32 - 1  # CC-Time stays an Unsigned32
    # money: one operation, a session, an account: within Integer64 and the ledger's bounds
    assert lim.MAX_AMOUNT == ledger_types.MAX_AMOUNT
    assert lim.MAX_BALANCE == ledger_types.MAX_TOTAL
    assert lim.MAX_SESSION_CHARGE + lim.MAX_AMOUNT * lim.MAX_MSCC <= lim.MAX_INT64
    # available in [-MAX_BALANCE, MAX_BALANCE]; reserved at most a balance + a credit limit
    assert lim.MAX_BALANCE + lim.MAX_AMOUNT <= lim.MAX_INT64
    # ids: what the ledger keeps
    assert lim.MAX_SUBSCRIPTION_IDS == ledger_types.MAX_SUBSCRIPTIONS
    assert lim.MAX_SUBSCRIPTION_DATA_LENGTH == ledger_types.MAX_ID_LENGTH
    clock_ms = 13  # digits of any now_ms the rating engine rates at (below 2^33 s)
    assert len(str((tariff.MAX_TIME - 1) * 1000)) == clock_ms
    e2e = len(str(2**32 - 1))
    longest = max(
        # event|<Origin-Host>|<End-to-End-Id>|<Session-Id>|<now_ms>
        len("event|||") + lim.MAX_IDENTITY_LENGTH + e2e + lim.MAX_SESSION_ID_LENGTH + 1 + clock_ms,
        # create|<Account-Id>|<Origin-Host>|<End-to-End-Id>|<now_ms>
        len("create||||") + lim.MAX_ACCOUNT_ID_LENGTH + lim.MAX_IDENTITY_LENGTH + e2e + clock_ms,
        len("op|") + lim.MAX_OPERATION_ID_LENGTH,
        # <Session-Id>|<opened_ms>|<number>|debit|<containers>
        lim.MAX_SESSION_ID_LENGTH + clock_ms + len(str(lim.MAX_REQUEST_NUMBER)) + 12,
    )
    assert longest <= ledger_types.MAX_ID_LENGTH
    # time: the rating engine's instants
    assert lim.MAX_TIME_S == tariff.MAX_TIME - 1
    # bodies: an answer may echo what a request nested
    assert lim.MAX_ANSWER_DEPTH >= lim.MAX_BODY_DEPTH + 2
    assert 1 + lim.MAX_OPAQUE_DEPTH <= lim.MAX_BODY_DEPTH


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=40),
        st.binary(max_size=300),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=20), st.dictionaries(st.text(max_size=5), inner, max_size=20)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(value=_VALUES, limit=st.integers(0, 6))
def test_nesting_is_measured_exactly(value: Any, limit: int) -> None:
    body = msgspec.msgpack.encode(value)
    assert nesting_exceeds(body, limit) == (_depth(value) > limit)


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(0, 3000), kind=st.sampled_from([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"]))
def test_nesting_of_a_chain(depth: int, kind: bytes) -> None:
    body = kind * depth + b"\xc0"
    assert nesting_exceeds(body, limits.MAX_BODY_DEPTH) == (depth > limits.MAX_BODY_DEPTH)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), limit=st.integers(0, 40))
def test_nesting_of_any_bytes_never_raises(data: bytes, limit: int) -> None:
    nesting_exceeds(data, limit)
