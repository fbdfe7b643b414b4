"""Bounded domains at the door (WIRE.md 1.1 section 2, "Limits"; docs/protocol.md "Limits";
issue 16 part 1). Every value outside its domain is answered 5004 with Failed-AVP (or 3009 for
a body nested too deep) and changes nothing; every value inside is charged exactly, answered
with an answer that encodes, and written to CDRs, snapshots and packed sessions.

The codec refuses static domains (the harness sends every request through the codec, as the
server does); the core refuses what accumulates (per report, session, account) and an
Event-Timestamp outside its window. Every test with the `h` fixture also replays."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from ocs.core.charging import pack_session, unpack_session
from ocs.core.ledger import Credit, Debit
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    AccountOperation,
    AoCRequestType,
    CCRequestType,
    CommandCode,
    RequestedAction,
    SubscriptionIdType,
)
from protocol.errors import ProtocolError
from protocol.limits import (
    EVENT_TIMESTAMP_FUTURE_S,
    EVENT_TIMESTAMP_PAST_S,
    MAX_ACCOUNT_ID_LENGTH,
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_CONTAINERS,
    MAX_IDENTITY_LENGTH,
    MAX_MSCC,
    MAX_OPAQUE_DEPTH,
    MAX_OPAQUE_ITEMS,
    MAX_OPAQUE_KEY_LENGTH,
    MAX_OPAQUE_VALUE_LENGTH,
    MAX_OPERATION_ID_LENGTH,
    MAX_REQUEST_NUMBER,
    MAX_SESSION_ID_LENGTH,
    MAX_SUBSCRIPTION_DATA_LENGTH,
    MAX_TIME_S,
    MAX_UNITS,
    MAX_USU,
)
from protocol.messages import AMR, CCR
from tests.charging.conftest import (
    DATA,
    DEMO,
    EUR,
    EVENT,
    INITIAL,
    PEAK,
    SMS,
    SUB,
    TERMINATION,
    UPDATE,
    WINDOW,
    Harness,
    amr,
    ccr,
    mscc,
    only,
    rsu,
    sid,
    usu,
)

MIN = 60_000
U64 = 2**64 - 1  # the largest Unsigned64: legal on the wire, outside the domain
SMS_PRICE = 100_000  # micro-units per SMS (demo catalog, RG 30)
SMS_LARGEST = MAX_AMOUNT // (SMS_PRICE + 1) - 2  # the most SMS one operation's bound admits


def codec_refusal(message: CCR | AMR) -> ProtocolError:
    """The codec's refusal of a request, as the connection would answer it (the core never
    sees it)."""
    command = CommandCode.CREDIT_CONTROL if isinstance(message, CCR) else 0
    command = command or CommandCode.ACCOUNT_MANAGEMENT
    with pytest.raises(ProtocolError) as info:
        decode_body(command, True, encode_body(message))
    return info.value


def books(h: Harness) -> tuple[bytes, bytes]:
    """What a refused request must leave unchanged (the duplicate cache aside)."""
    return h.ledger.snapshot(), h.core.snapshot(duplicates=False)


def assert_money_identity(h: Harness, admin: int = 0) -> None:
    """What the accounts lost to charging is exactly what CDRs (and the containers of open
    sessions, not yet in a record) charged: initial balances plus what administration
    credited (`admin`, net), less the balances now."""
    h.ledger.check_invariants()
    balances = sum(view.balance for view in h.ledger.accounts())
    pending = sum(c.charge for s in h.core.sessions.values() for c in s.containers)
    assert h.ledger.totals().initial + admin - balances == h.cdr_total() + pending


def open_sms(h: Harness, sid: str = "s", *, now: int = PEAK, balance: int = 10 * EUR) -> None:
    h.account("a", SUB, balance)
    answer = h.cca(ccr(sid, INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS), now)
    assert answer.result_code == 2001


# --- usage per report: issue 16's first example ------------------------------------------------


@pytest.mark.parametrize(
    ("rg", "service", "unit"),
    [(10, DATA, "octets"), (30, SMS, "units")],
    ids=["CC-Total-Octets", "CC-Service-Specific-Units"],
)
def test_a_usage_of_2_64_minus_1_is_refused_at_the_door(
    h: Harness, rg: int, service: str, unit: str
) -> None:
    """Issue 16: a report of 2^64-1 (a legal Unsigned64) was answered 2001 but not charged (the
    ledger refused the post, the CDR container recorded the charge), and every checkpoint
    failed from then on. It is outside the domain of a unit AVP (MAX_UNITS): 5004."""
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(rg, ask=rsu()), subscriber=SUB, service=service), PEAK)
    before = books(h)
    used = usu(octets=U64) if unit == "octets" else usu(units=U64)
    error = codec_refusal(ccr("s", UPDATE, 1, mscc(rg, used=(used,)), service=service))
    key = "CC-Total-Octets" if unit == "octets" else "CC-Service-Specific-Units"
    assert error.result_code == 5004
    assert error.failed_avp == {
        "Multiple-Services-Credit-Control": [{"Used-Service-Unit": [{key: U64}]}]
    }
    assert books(h) == before
    # the session goes on: the same number, within the domain, is charged
    answer = h.cca(
        ccr(
            "s",
            UPDATE,
            1,
            mscc(rg, used=(usu(units=1) if unit == "units" else usu(octets=1),)),
            service=service,
        ),
        PEAK + MIN,
    )
    assert answer.result_code == 2001
    h.restart()  # a checkpoint encodes
    assert_money_identity(h)


def test_a_report_that_could_cost_more_than_one_operation_is_refused_and_changes_nothing(
    h: Harness,
) -> None:
    """MAX_UNITS SMS at 0.10 EUR is 1.1 x 10^17 micro-units: more than one ledger operation
    (MAX_AMOUNT). The core refuses it before anything changes, with the MSCC's usage."""
    open_sms(h)
    before = books(h)
    answer = h.cca(
        ccr("s", UPDATE, 1, mscc(30, used=(usu(units=MAX_UNITS),)), service=SMS), PEAK + MIN
    )
    assert answer.result_code == 5004
    assert answer.failed_avp == {
        "Multiple-Services-Credit-Control": [
            {"Rating-Group": 30, "Used-Service-Unit": [{"CC-Service-Specific-Units": MAX_UNITS}]}
        ]
    }
    assert books(h) == before and h.cdr_lines == []
    # the largest report the bound admits is charged exactly (beyond the grant, overdraft)
    largest = MAX_AMOUNT // (SMS_PRICE + 1) - 2
    answer = h.cca(
        ccr("s", UPDATE, 1, mscc(30, used=(usu(units=largest),)), service=SMS), PEAK + 2 * MIN
    )
    assert answer.result_code == 2001
    assert h.balance("a") == 10 * EUR - largest * SMS_PRICE
    h.cca(ccr("s", TERMINATION, 2, service=SMS), PEAK + 3 * MIN)
    assert h.cdr_total() == largest * SMS_PRICE


def test_an_update_at_the_largest_usage_with_aoc_is_answered_and_encodes(h: Harness) -> None:
    """Issue 16: an UPDATE with three 2^64-1 units and AoC asked was applied in memory, its
    answer could not be encoded, and the connection dropped without one. Three 2^64-1 are
    refused at the door; three MAX_UNITS are charged, and the answer's cost encodes."""
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    three = tuple(usu(octets=U64) for _ in range(3))
    error = codec_refusal(ccr("s", UPDATE, 1, mscc(10, used=three), aoc=AoCRequestType.FULL))
    assert error.result_code == 5004
    three = tuple(usu(octets=MAX_UNITS) for _ in range(3))
    answer = h.cca(ccr("s", UPDATE, 1, mscc(10, used=three), aoc=AoCRequestType.FULL), PEAK + MIN)
    assert answer.result_code == 2001
    cost = answer.cost_information
    assert cost is not None
    charge = cost.unit_value.value_digits * 10 ** (6 + (cost.unit_value.exponent or 0))
    assert charge == 10 * EUR - h.balance("a") > 0
    assert decode_body(CommandCode.CREDIT_CONTROL, False, encode_body(answer)) == answer


def test_two_largest_usages_then_idle_pack_restart_and_replay(h: Harness) -> None:
    """Issue 16: two 2^64-1 usages, then idling for the duplicate window, made packing raise
    inside another peer's request. 2^64-1 is refused at the door; the largest usages the
    domain admits (octets in + out, MAX_UNITS each) pack, unpack and restart."""
    h.account("a", SUB, 10 * EUR)
    h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    error = codec_refusal(ccr("s", UPDATE, 1, mscc(10, used=(usu(octets=U64),) * 2)))
    assert error.result_code == 5004
    big = usu(uplink=MAX_UNITS, downlink=MAX_UNITS)
    for n in (1, 2):
        answer = h.cca(ccr("s", UPDATE, n, mscc(10, used=(big,) * MAX_USU)), PEAK + n * MIN)
        assert answer.result_code == 2001
    h.account("b", "491700000002", EUR, now_ms=PEAK + 2 * MIN + WINDOW + 1)  # evicts, packs
    assert h.core.sessions.packed() == 1
    session = h.core.sessions[sid("s")]
    assert session.rated[10] == 2 * MAX_USU * 2 * MAX_UNITS
    assert unpack_session(pack_session(session)) == session
    h.restart()
    answer = h.cca(ccr("s", TERMINATION, 3), PEAK + 10 * MIN)
    assert answer.result_code == 2001
    assert_money_identity(h)


# --- usage per session and per account -----------------------------------------------------------


def test_a_report_the_ledger_would_refuse_at_the_balance_bound_is_refused_first() -> None:
    """An account near -MAX_BALANCE (the ledger's bound on a balance): a report that could
    take it past is refused 5004 before anything changes; before, the ledger refused the post
    while the CDR container recorded the charge (the books no longer balanced)."""
    h = Harness()
    open_sms(h)
    # bring the account next to the bound with the ledger's own overdraft debits
    step, n = MAX_AMOUNT, 0
    while h.ledger.account("a").balance - step > -MAX_BALANCE + 2 * MAX_AMOUNT:  # type: ignore[union-attr]
        n += 1
        outcome = h.ledger.apply(
            Debit(id=f"d{n}", now_ms=PEAK, account_id="a", amount=step, allow_overdraft=True)
        )
        assert outcome.ok
    units = MAX_AMOUNT // (SMS_PRICE + 1) - 2  # one operation's worth
    before = books(h)
    cdrs = list(h.cdr_lines)
    for number in (1, 2, 3):  # the third could pass the bound
        answer = h.cca(
            ccr("s", UPDATE, number, mscc(30, used=(usu(units=units),)), service=SMS),
            PEAK + number * MIN,
        )
        if answer.result_code == 5004:
            break
        before, cdrs = books(h), list(h.cdr_lines)
    assert answer.result_code == 5004 and number == 3
    assert answer.failed_avp is not None
    assert "Multiple-Services-Credit-Control" in answer.failed_avp
    assert books(h) == before and h.cdr_lines == cdrs
    view = h.ledger.account("a")
    assert view is not None and view.available >= -MAX_BALANCE
    h.ledger.check_invariants()


def test_a_refund_the_ledger_would_refuse_at_the_balance_bound_is_refused_first() -> None:
    """An account near +MAX_BALANCE: a refund that would take it past is refused 5004 before
    anything changes; before, the ledger refused the credit while the event CDR recorded it.
    (What a refund credits is known exactly: the debits it gives back, WIRE.md 5.4.)"""
    h = Harness()
    h.account("a", SUB, MAX_AMOUNT)
    debit = ccr(
        "d",
        EVENT,
        0,
        mscc(30, ask=rsu(units=1)),
        subscriber=SUB,
        service=SMS,
        action=RequestedAction.DIRECT_DEBITING,
    )
    assert h.cca(debit, PEAK).result_code == 2001
    n = 0
    while h.balance("a") + MAX_AMOUNT <= MAX_BALANCE:
        n += 1
        outcome = h.ledger.apply(Credit(id=f"c{n}", now_ms=PEAK, account_id="a", amount=MAX_AMOUNT))
        assert outcome.ok
    missing = MAX_BALANCE - h.balance("a") - SMS_PRICE + 1  # one micro-unit short of a refund
    assert h.ledger.apply(Credit(id="c", now_ms=PEAK, account_id="a", amount=missing)).ok
    before, cdrs = books(h), list(h.cdr_lines)
    answer = h.cca(
        ccr(
            "r",
            EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.REFUND_ACCOUNT,
        ),
        PEAK,
    )
    assert answer.result_code == 5004
    assert answer.failed_avp == {"Requested-Service-Unit": {"CC-Service-Specific-Units": 1}}
    assert books(h) == before and h.cdr_lines == cdrs
    h.ledger.check_invariants()


def test_the_account_usage_counter_saturates() -> None:
    """Money charged per account (for usage thresholds) only grows: it saturates at
    MAX_BALANCE, so a snapshot always encodes it."""
    h = Harness()
    open_sms(h)
    h.core.usage["a"] = MAX_BALANCE - 1
    h.cca(ccr("s", UPDATE, 1, mscc(30, used=(usu(units=3),)), service=SMS), PEAK + MIN)
    assert h.core.usage["a"] == MAX_BALANCE
    h.restart()


def test_a_record_holds_a_bounded_number_of_containers(h: Harness) -> None:
    """A session's containers are closed into a partial record once there are MAX_CONTAINERS
    of them, whatever the catalog's triggers: a record, and a session's state, stay bounded."""
    open_sms(h, balance=1000 * EUR)
    per_update = MAX_USU
    updates = MAX_CONTAINERS // per_update + 1
    for n in range(1, updates + 1):
        answer = h.cca(
            ccr("s", UPDATE, n, mscc(30, used=(usu(units=1),) * per_update), service=SMS),
            PEAK + n * 1000,
        )
        assert answer.result_code == 2001
    partial = [r for r in h.cdrs() if r["causeForRecordClosing"] == "partialRecord"]
    assert len(partial) == 1
    (usage,) = partial[0]["listOfMultipleUnitUsage"]
    assert len(usage["usedUnitContainers"]) == MAX_CONTAINERS
    assert len(h.core.sessions[sid("s")].containers) == updates * per_update - MAX_CONTAINERS


# --- grants stay inside the domain -------------------------------------------------------------


def test_a_grant_is_at_most_max_units_and_one_operation(h: Harness) -> None:
    """The server's own answers stay in the domain its codec decodes: a catalog quantum above
    MAX_UNITS grants MAX_UNITS; a grant reserves at most MAX_AMOUNT, without Final-Unit-
    Indication when the account could pay more."""
    catalog = DEMO.replace('quantum = "10 MiB"', 'quantum = "2 PiB"'.replace("PiB", "TiB"))
    assert catalog != DEMO
    h.load_catalog(catalog, PEAK - 1)
    h.account("a", SUB, MAX_AMOUNT)
    answer = h.cca(ccr("s", INITIAL, 0, mscc(10, ask=rsu()), subscriber=SUB), PEAK)
    granted = only(answer).granted_service_unit
    assert granted is not None and granted.cc_total_octets == MAX_UNITS
    assert decode_body(CommandCode.CREDIT_CONTROL, False, encode_body(answer)) == answer
    # SMS: MAX_UNITS messages cost 1.1 x 10^17, more than one operation
    h.ama(amr(AccountOperation.CREDIT, "a", amount=MAX_AMOUNT), PEAK)
    answer = h.cca(
        ccr("t", INITIAL, 0, mscc(30, ask=rsu(units=MAX_UNITS)), subscriber=SUB, service=SMS),
        PEAK,
    )
    grant = only(answer)
    assert grant.result_code == 2001 and grant.final_unit_indication is None
    assert grant.granted_service_unit is not None
    units = grant.granted_service_unit.cc_service_specific_units
    assert units == MAX_AMOUNT // SMS_PRICE
    assert h.core.sessions[sid("t")].grants[30].amount <= MAX_AMOUNT


# --- Service-Information --------------------------------------------------------------------


def _nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    value: Any = leaf
    for _ in range(depth):
        value = {"k": value}
    assert isinstance(value, dict)
    return value


def _raw_ccr_with(key: str, raw: bytes, base: CCR) -> bytes:
    """`base` encoded, with one more key whose value is the raw MessagePack `raw` (values the
    message types cannot build: nil keys, extensions, floats)."""
    body = msgspec.msgpack.decode(encode_body(base))
    assert len(body) < 15
    head = msgspec.msgpack.encode(body)
    assert head[0] == 0x80 | len(body)  # fixmap: add one to its count
    return bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode(key) + raw


@pytest.mark.parametrize(
    ("raw", "failed"),
    [
        (b"\x81\xc0\x01", None),  # {nil: 1}
        (b"\x81\xa1a\x81\xc0\x01", {"a": None}),  # {"a": {nil: 1}}: issue 16
        (b"\x81\xa1a\x81\x01\x01", {"a": None}),  # an int key
        (msgspec.msgpack.encode({"a": [1.5]}), {"a": [None]}),  # no float AVP type
        (msgspec.msgpack.encode({"a": msgspec.msgpack.Ext(1, b"x")}), {"a": None}),
        (msgspec.msgpack.encode(_nested(MAX_OPAQUE_DEPTH + 1)), _nested(MAX_OPAQUE_DEPTH, None)),
        (msgspec.msgpack.encode({"k" * (MAX_OPAQUE_KEY_LENGTH + 1): 1}), None),
        (
            msgspec.msgpack.encode({"a": "v" * (MAX_OPAQUE_VALUE_LENGTH + 1)}),
            {"a": "v" * (MAX_OPAQUE_VALUE_LENGTH + 1)},
        ),
        (
            msgspec.msgpack.encode({"a": list(range(MAX_OPAQUE_ITEMS))}),
            {"a": [MAX_OPAQUE_ITEMS - 2]},
        ),
    ],
    ids=[
        "nil-key",
        "nested-nil-key",
        "int-key",
        "float",
        "ext",
        "too-deep",
        "long-key",
        "long-value",
        "too-many",
    ],
)
def test_service_information_outside_its_domain_is_5004(
    h: Harness, raw: bytes, failed: Any
) -> None:
    """Issue 16: Service-Information with a nil key was accepted, and the CDR could not be
    written when the session closed (the server exited; every restart failed)."""
    h.account("a", SUB, 10 * EUR)
    base = ccr("s", INITIAL, 0, mscc(30, ask=rsu()), subscriber=SUB, service=SMS)
    with pytest.raises(ProtocolError) as info:
        decode_body(
            CommandCode.CREDIT_CONTROL, True, _raw_ccr_with("Service-Information", raw, base)
        )
    assert info.value.result_code == 5004
    assert info.value.failed_avp == {"Service-Information": failed}
    assert h.core.sessions == {}


def test_service_information_nested_1000_deep_is_3009() -> None:
    """Issue 16: nested 1,000 deep, the connection dropped with a traceback and no answer.
    A body nested deeper than MAX_BODY_DEPTH is refused before it is decoded (3009)."""
    base = ccr("s", INITIAL, 0, subscriber=SUB, service=SMS)
    raw = b"\x81\xa1k" * 1000 + b"\x01"
    with pytest.raises(ProtocolError) as info:
        decode_body(
            CommandCode.CREDIT_CONTROL, True, _raw_ccr_with("Service-Information", raw, base)
        )
    assert info.value.result_code == 3009


def _largest_service_information() -> dict[str, Any]:
    """At every bound at once: depth, items, key and value lengths, every type."""
    info: dict[str, Any] = _nested(MAX_OPAQUE_DEPTH - 1, "v" * MAX_OPAQUE_VALUE_LENGTH)
    info["b"] = b"\xff" * MAX_OPAQUE_VALUE_LENGTH
    info["k" * MAX_OPAQUE_KEY_LENGTH] = [None, True, -(2**63), U64]
    used = MAX_OPAQUE_DEPTH + 1 + 5  # the nested maps and leaf, "b", the list and its items
    info["pad"] = list(range(MAX_OPAQUE_ITEMS - used - 1))
    return info


def test_service_information_at_its_bounds_reaches_the_cdrs(h: Harness) -> None:
    info = _largest_service_information()
    h.account("a", SUB, 10 * EUR)
    answer = h.cca(
        ccr(
            "s",
            INITIAL,
            0,
            mscc(30, ask=rsu()),
            subscriber=SUB,
            service=SMS,
            service_information=info,
        ),
        PEAK,
    )
    assert answer.result_code == 2001
    h.account("b", "491700000002", EUR, now_ms=PEAK + WINDOW + 1)  # packs the session
    assert h.core.sessions.packed() == 1
    h.restart()
    h.cca(ccr("s", TERMINATION, 1, mscc(30, used=(usu(units=1),)), service=SMS), PEAK + WINDOW + 2)
    debit = h.cca(
        ccr(
            "e",
            EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.DIRECT_DEBITING,
            service_information=info,
        ),
        PEAK + WINDOW + 3,
    )
    assert debit.result_code == 2001
    records = h.cdrs()
    assert len(records) == 2
    for record in records:
        assert record["serviceInformation"] == json.loads(msgspec.json.encode(info))


# --- Event-Timestamp ----------------------------------------------------------------------------


def test_an_event_timestamp_of_2_33_is_refused_at_the_door(h: Harness) -> None:
    """Issue 16: an Event-Timestamp of 2^33 or more (past what the rating engine rates) dropped
    the connection with a traceback. It is outside the Time domain of a request: 5004."""
    h.account("a", SUB, 10 * EUR)
    for at in (MAX_TIME_S + 1, 2**40, 2**63 - 1):
        error = codec_refusal(
            ccr(
                "e",
                EVENT,
                0,
                mscc(30, ask=rsu(units=1)),
                subscriber=SUB,
                service=SMS,
                action=RequestedAction.DIRECT_DEBITING,
                event_timestamp=at,
            )
        )
        assert error.result_code == 5004 and error.failed_avp == {"Event-Timestamp": at}


@pytest.mark.parametrize("kind", [EVENT, INITIAL])
def test_the_event_timestamp_window_around_the_servers_clock(
    h: Harness, kind: CCRequestType
) -> None:
    """The core knows `now_ms` (journaled): an Event-Timestamp more than EVENT_TIMESTAMP_PAST_S
    before it, or EVENT_TIMESTAMP_FUTURE_S after it, is 5004 and changes nothing; the edges
    are accepted. Replay decides the same (the fixture replays)."""
    h.account("a", SUB, 10 * EUR)
    now_s = PEAK // 1000
    number = iter(range(100))

    def send(at: int) -> int:
        sid = f"e{next(number)}"
        message = ccr(
            sid,
            kind,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.DIRECT_DEBITING if kind is EVENT else None,
            event_timestamp=at,
        )
        before = books(h)
        answer = h.cca(message, PEAK)
        if answer.result_code == 5004:
            assert answer.failed_avp == {"Event-Timestamp": at}
            assert books(h) == before
        return answer.result_code

    assert send(now_s - EVENT_TIMESTAMP_PAST_S - 1) == 5004
    assert send(now_s + EVENT_TIMESTAMP_FUTURE_S + 1) == 5004
    assert send(MAX_TIME_S) == 5004
    assert send(0) == 5004
    assert send(now_s - EVENT_TIMESTAMP_PAST_S) == 2001
    assert send(now_s + EVENT_TIMESTAMP_FUTURE_S) == 2001


# --- money per operation ------------------------------------------------------------------------


def test_a_refund_worth_more_than_one_operation_is_refused(h: Harness) -> None:
    """Issue 16: a REFUND of 10^13 SMS units credited 10^12 EUR, beyond the ledger's own
    per-operation limit. 10^13 units is outside a unit AVP's domain (the codec refuses it); a
    refund inside it is bounded by what was debited (and MAX_AMOUNT), not by a catalog price:
    5004 with WIRE.md 5.4's Failed-AVP, nothing credited."""
    h.account("a", SUB, 0)

    def refund(units: int) -> CCR:
        return ccr(
            "r",
            EVENT,
            0,
            mscc(30, ask=rsu(units=units)),
            subscriber=SUB,
            service=SMS,
            action=RequestedAction.REFUND_ACCOUNT,
        )

    error = codec_refusal(refund(10**13))
    assert error.result_code == 5004
    before = books(h)
    answer = h.cca(refund(10**12), PEAK)
    assert answer.result_code == 5004
    assert answer.failed_avp == {"Requested-Service-Unit": {"CC-Service-Specific-Units": 10**12}}
    assert books(h) == before and h.cdr_lines == []


@pytest.mark.parametrize(
    "action",
    [RequestedAction.DIRECT_DEBITING, RequestedAction.PRICE_ENQUIRY, RequestedAction.CHECK_BALANCE],
)
def test_an_event_worth_more_than_one_operation_is_refused(
    h: Harness, action: RequestedAction
) -> None:
    h.account("a", SUB, MAX_AMOUNT)
    before = books(h)
    answer = h.cca(
        ccr(
            "e",
            EVENT,
            0,
            mscc(30, ask=rsu(units=MAX_UNITS)),
            subscriber=SUB,
            service=SMS,
            action=action,
        ),
        PEAK,
    )
    assert answer.result_code == 5004 and books(h) == before and h.cdr_lines == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", MAX_AMOUNT + 1),
        ("amount", -MAX_AMOUNT - 1),
        ("amount", 2**63 - 1),
        ("credit_limit", -1),
        ("credit_limit", MAX_AMOUNT + 1),
    ],
)
def test_amounts_outside_one_operation_are_refused_at_the_door(field: str, value: int) -> None:
    message = amr(AccountOperation.CREATE, "a", subscriber=SUB, amount=0)
    error = codec_refusal(msgspec.structs.replace(message, **{field: value}))
    name = "Amount" if field == "amount" else "Credit-Limit"
    assert error.result_code == 5004 and error.failed_avp == {name: value}


def test_a_credit_past_the_balance_bound_is_5004_with_failed_avp(h: Harness) -> None:
    """The ledger refuses a balance above MAX_BALANCE; the answer names the Amount."""
    h.account("a", SUB, MAX_AMOUNT)
    n = 0
    while True:
        n += 1
        ama = h.ama(amr(AccountOperation.CREDIT, "a", amount=MAX_AMOUNT), PEAK + n)
        if ama.result_code != 2001:
            break
    assert ama.result_code == 5004 and ama.failed_avp == {"Amount": MAX_AMOUNT}
    assert h.balance("a") <= MAX_BALANCE < h.balance("a") + MAX_AMOUNT


# --- identities, numbers, arrays --------------------------------------------------------------


def test_the_longest_identities_complete_every_operation(h: Harness) -> None:
    """Every id the core derives from the longest accepted strings (ledger operation ids,
    reservation owners) fits the ledger: CREATE, CREDIT with an Operation-Id, a session, an
    event debit and refund all complete, and the books balance."""
    host = "h" * MAX_IDENTITY_LENGTH
    sid = (host + ";").ljust(MAX_SESSION_ID_LENGTH, "9")
    account = "a" * MAX_ACCOUNT_ID_LENGTH
    sub = "4" * MAX_SUBSCRIPTION_DATA_LENGTH
    late = PEAK  # (any clock the rating engine rates at has 13 digits of ms)
    private = SubscriptionIdType.END_USER_PRIVATE  # kept as received (an E.164 is 15 digits)
    create = amr(
        AccountOperation.CREATE,
        account,
        amount=EUR,
        subscriber=sub,
        subscriber_type=private,
        origin=host,
    )
    assert h.ama(create, late, e2e=2**32 - 1).result_code == 2001
    credit = amr(
        AccountOperation.CREDIT,
        account,
        amount=EUR,
        origin=host,
        operation_id="o" * MAX_OPERATION_ID_LENGTH,
    )
    assert h.ama(credit, late, e2e=2**32 - 2).result_code == 2001
    for number, kind, used in ((0, INITIAL, None), (1, UPDATE, 1), (2, TERMINATION, 2)):
        message = ccr(
            sid,
            kind,
            number,
            mscc(
                30,
                ask=rsu() if kind is not TERMINATION else None,
                used=(usu(units=used),) if used else None,
            ),
            subscriber=sub if kind is INITIAL else None,
            subscriber_type=private,
            service=SMS,
            origin=host,
        )
        assert h.cca(message, late + number, e2e=2**32 - 3 - number).result_code == 2001
    for action in (RequestedAction.DIRECT_DEBITING, RequestedAction.REFUND_ACCOUNT):
        message = ccr(  # one Session-Id each: an EVENT's Session-Id is its duplicate key
            sid[:-1] + str(int(action)),
            EVENT,
            0,
            mscc(30, ask=rsu(units=2)),
            subscriber=sub,
            subscriber_type=private,
            service=SMS,
            origin=host,
            action=action,
        )
        assert (
            h.cca(message, late + 10 + int(action), e2e=2**32 - 10 - int(action)).result_code
            == 2001
        )
    view = h.ledger.account(account)
    assert view is not None and view.balance == 2 * EUR - 3 * SMS_PRICE
    assert h.cdr_total() == 3 * SMS_PRICE


@pytest.mark.parametrize(
    ("message", "failed"),
    [
        (
            ccr("x" * (MAX_SESSION_ID_LENGTH + 1), UPDATE, 1),
            {"Session-Id": sid("x" * (MAX_SESSION_ID_LENGTH + 1))},
        ),
        (
            ccr("s", UPDATE, 1, origin="h" * (MAX_IDENTITY_LENGTH + 1)),
            {"Origin-Host": "h" * (MAX_IDENTITY_LENGTH + 1)},
        ),
        (ccr("s", UPDATE, MAX_REQUEST_NUMBER + 1), {"CC-Request-Number": MAX_REQUEST_NUMBER + 1}),
        (
            ccr("s", UPDATE, 1, mscc(10), mscc(10)),
            {"Multiple-Services-Credit-Control": [{"Rating-Group": 10}]},
        ),
        (ccr("s", UPDATE, 1, mscc(10, used=(usu(octets=1),) * (MAX_USU + 1))), None),
        (ccr("s", UPDATE, 1, *(mscc(rg) for rg in range(MAX_MSCC + 1))), None),
        (ccr("s", UPDATE, 1, mscc(10, ask=rsu(octets=MAX_UNITS + 1))), None),
        (
            amr(AccountOperation.GET, "a" * (MAX_ACCOUNT_ID_LENGTH + 1)),
            {"Account-Id": "a" * (MAX_ACCOUNT_ID_LENGTH + 1)},
        ),
        (amr(AccountOperation.CREDIT, "a", amount=1, operation_id=""), {"Operation-Id": ""}),
    ],
    ids=[
        "session-id",
        "origin-host",
        "request-number",
        "rating-group-twice",
        "usu-count",
        "mscc-count",
        "requested-units",
        "account-id",
        "empty-operation-id",
    ],
)
def test_strings_numbers_and_arrays_outside_their_domain_are_5004(
    message: CCR | AMR, failed: dict[str, Any] | None
) -> None:
    error = codec_refusal(message)
    assert error.result_code == 5004 and error.failed_avp is not None
    if failed is not None:
        assert error.failed_avp == failed


def test_requested_octets_in_and_out_count_together() -> None:
    """CC-Input-Octets + CC-Output-Octets is the amount asked: at most MAX_UNITS, so the grant
    (CC-Total-Octets) stays in the domain."""
    asked = rsu()
    asked = msgspec.structs.replace(asked, cc_input_octets=MAX_UNITS, cc_output_octets=1)
    error = codec_refusal(ccr("s", UPDATE, 1, mscc(10, ask=asked)))
    assert error.result_code == 5004
    assert error.failed_avp == {
        "Multiple-Services-Credit-Control": [
            {"Requested-Service-Unit": {"CC-Input-Octets": MAX_UNITS, "CC-Output-Octets": 1}}
        ]
    }


def test_the_last_request_number_is_accepted(h: Harness) -> None:
    open_sms(h)
    h2 = ccr("t", INITIAL, MAX_REQUEST_NUMBER - 1, mscc(30, ask=rsu()), subscriber=SUB, service=SMS)
    assert h.cca(h2, PEAK).result_code == 2001
    answer = h.cca(ccr("t", TERMINATION, MAX_REQUEST_NUMBER, service=SMS), PEAK + MIN)
    assert answer.result_code == 2001
