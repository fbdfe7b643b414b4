"""Hypothesis strategies built from the message types' own declarations (msgspec.inspect),
so a new field is covered without touching the tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from protocol.messages import Avps

_TEXT = st.text(max_size=24)
_ANY_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), _TEXT)


def _int_strategy(t: mi.IntType) -> st.SearchStrategy[int]:
    lo = t.ge if t.ge is not None else -(2**63)
    hi = t.le if t.le is not None else 2**64 - 1
    return st.integers(lo, hi)


def _strategy(t: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.IntType):
        return _int_strategy(t)
    if isinstance(t, mi.StrType):  # within the type's domain (protocol.limits)
        return st.text(min_size=t.min_length or 0, max_size=min(24, t.max_length or 24))
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=16)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.UnionType):
        return st.one_of(*(_strategy(x) for x in t.types))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.VarTupleType):
        size = min(3, t.max_length if t.max_length is not None else 3)
        least = t.min_length or 0  # (a Bulk-Account has at least one entry)
        return st.lists(_strategy(t.item_type), min_size=least, max_size=size).map(tuple)
    if isinstance(t, mi.ListType):
        return st.lists(_strategy(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_TEXT, _ANY_LEAF, max_size=3)
    if isinstance(t, mi.StructType):
        return struct_strategy(t.cls)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.AnyType):
        return _ANY_LEAF
    raise NotImplementedError(f"no strategy for {t!r}")


@cache
def struct_strategy(cls: type[Avps]) -> st.SearchStrategy[Any]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in info.fields:
        strat = _strategy(f.type)
        if not f.required:
            strat = st.one_of(st.none(), strat) if f.default is None else strat
        fields[f.name] = strat
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def to_wire_map(message: Avps) -> Any:
    """What a message looks like on the wire, as plain data."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(message))
