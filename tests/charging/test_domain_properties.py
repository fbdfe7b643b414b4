"""Properties over the whole accepted domain (docs/protocol.md "Limits"; issue 16 part 1).

Requests drawn at the extremes of every domain (units 0, 1, MAX_UNITS; amounts at +-MAX_AMOUNT;
the longest strings; the Event-Timestamp window's edges; Service-Information at its depth,
item and length bounds; request numbers in and out of order, up to MAX_REQUEST_NUMBER) go
through the codec and the core. Whatever the codec accepts, the core answers with an answer
that encodes and decodes under the answer type, CDRs that serialise, books that balance
(initial + administration = balances + CDR charges + open containers), and a snapshot and
packed sessions that encode and restore; replay rebuilds the same state and CDRs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocs.core.charging import ChargingCore, pack_session, unpack_session
from ocs.core.ledger import Ledger
from protocol.codec import decode_body, encode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    AoCRequestType,
    CCRequestType,
    CommandCode,
    ReportingReason,
    RequestedAction,
    TariffChangeUsage,
)
from protocol.errors import ProtocolError
from protocol.limits import (
    EVENT_TIMESTAMP_FUTURE_S,
    EVENT_TIMESTAMP_PAST_S,
    MAX_AMOUNT,
    MAX_IDENTITY_LENGTH,
    MAX_OPAQUE_KEY_LENGTH,
    MAX_OPAQUE_VALUE_LENGTH,
    MAX_REQUEST_NUMBER,
    MAX_SESSION_ID_LENGTH,
    MAX_UNITS,
    MAX_USU,
)
from protocol.messages import AMR, CCR, MsccRequest, ServiceUnit, UsedServiceUnit
from tests.charging.conftest import DATA, DEMO, EUR, PEAK, SMS, VOICE, Harness, amr, ccr

SERVICES = {DATA: (10, 20, 50), SMS: (30,), VOICE: (40,)}
SUBS = ("491700000001", "491700000002", "491700000003")
HOST = "u" * MAX_IDENTITY_LENGTH
SMS_LARGEST = MAX_AMOUNT // 100_001 - 2  # the largest SMS report one operation admits

UNITS = st.one_of(
    st.sampled_from([0, 1, 2, 1023, SMS_LARGEST, MAX_UNITS // 2, MAX_UNITS - 1, MAX_UNITS]),
    st.integers(0, MAX_UNITS),
)
SECONDS = st.one_of(st.sampled_from([0, 1, 59, 60, 61, 2**32 - 1]), st.integers(0, 2**32 - 1))
AMOUNTS = st.one_of(
    st.sampled_from([1, 2, EUR, MAX_AMOUNT - 1, MAX_AMOUNT]), st.integers(1, MAX_AMOUNT)
)
BALANCES = st.sampled_from([-MAX_AMOUNT, -1, 0, 1, 10 * EUR, MAX_AMOUNT])

_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-(2**63), -1, 0, 2**63 - 1, 2**64 - 1]),
    st.text(max_size=4),
    st.just("v" * MAX_OPAQUE_VALUE_LENGTH),
    st.binary(max_size=4),
    st.just(b"\xff" * MAX_OPAQUE_VALUE_LENGTH),
)
_KEY = st.one_of(st.text(max_size=3), st.just("k" * MAX_OPAQUE_KEY_LENGTH))
OPAQUE = st.one_of(
    st.none(),
    st.dictionaries(
        _KEY,
        st.recursive(
            _LEAF,
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(_KEY, inner, max_size=3)
            ),
            max_leaves=20,
        ),
        max_size=4,
    ),
)


def unit_map(data: st.DataObject, used: bool) -> ServiceUnit | UsedServiceUnit:
    kind = data.draw(st.sampled_from(["octets", "in-out", "seconds", "units", "empty"]))
    values: dict[str, Any] = {}
    if kind == "octets":
        values["cc_total_octets"] = data.draw(UNITS)
    elif kind == "in-out":
        values["cc_input_octets"] = data.draw(UNITS)
        high = MAX_UNITS - values["cc_input_octets"] if not used else MAX_UNITS
        values["cc_output_octets"] = data.draw(st.integers(0, high))
    elif kind == "seconds":
        values["cc_time"] = data.draw(SECONDS)
    elif kind == "units":
        values["cc_service_specific_units"] = data.draw(UNITS)
    if not used:
        return ServiceUnit(**values)
    tcu = data.draw(st.none() | st.sampled_from(list(TariffChangeUsage)))
    reason = data.draw(st.none() | st.sampled_from(list(ReportingReason)))
    return UsedServiceUnit(**values, tariff_change_usage=tcu, reporting_reason=reason)


def msccs(data: st.DataObject, service: str, *, event: bool) -> tuple[MsccRequest, ...]:
    groups = data.draw(st.lists(st.sampled_from([*SERVICES[service], 99]), unique=True, max_size=3))
    out = []
    for rg in groups:
        ask = unit_map(data, used=False) if data.draw(st.booleans()) else None
        used = None
        if not event and data.draw(st.booleans()):
            count = data.draw(st.integers(0, MAX_USU))
            used = tuple(unit_map(data, used=True) for _ in range(count))
        out.append(MsccRequest(rating_group=rg, requested_service_unit=ask, used_service_unit=used))  # type: ignore[arg-type]
    return tuple(out)


class Run:
    """A harness and what the property checks after every step."""

    def __init__(self) -> None:
        self.h = Harness()
        self.now = PEAK
        self.admin = 0  # money administration credited, net of its debits
        self.numbers: dict[str, int] = {}  # next CC-Request-Number per session

    def send(self, message: CCR | AMR) -> None:
        command = (
            CommandCode.CREDIT_CONTROL
            if isinstance(message, CCR)
            else CommandCode.ACCOUNT_MANAGEMENT
        )
        try:
            decode_body(command, True, encode_body(message))
        except ProtocolError as exc:  # outside the domain: the core never sees it
            assert exc.result_code in (3009, 5004, 5005)
            event(f"codec {exc.result_code}")
            return
        result = self.h.send(message, self.now)
        code = result.answer.result_code
        event(f"{type(message).__name__} {code}")
        if isinstance(message, CCR) and code == 2001:
            if any(m.used_service_unit for m in message.multiple_services_credit_control or ()):
                event("usage charged")
            if message.cc_request_type is CCRequestType.EVENT:
                event(f"event {message.requested_action!r}")
        # the answer encodes, and decodes under the answer type (its values in the domain)
        assert decode_body(command, False, result.body) == result.answer
        assert encode_body(result.answer) == result.body
        if isinstance(message, AMR) and result.answer.result_code == 2001:
            if message.account_operation is AccountOperation.CREDIT:
                self.admin += message.amount or 0
            elif message.account_operation is AccountOperation.DEBIT:
                self.admin -= message.amount or 0
        self.check()

    def check(self) -> None:
        h = self.h
        for _, line in h.cdr_lines:
            record = json.loads(line)
            assert isinstance(record["charge"], int)
        h.ledger.check_invariants()
        balances = sum(view.balance for view in h.ledger.accounts())
        pending = sum(c.charge for s in h.core.sessions.values() for c in s.containers)
        assert h.ledger.totals().initial + self.admin - balances == h.cdr_total() + pending
        for view in h.ledger.accounts():
            assert view.available >= -(2**62) and view.balance <= 2**62

    def finish(self) -> None:
        h = self.h
        for sid in list(h.core.sessions):
            session = h.core.sessions[sid]
            assert unpack_session(pack_session(session)) == session
        ledger = Ledger()
        ledger.restore(h.ledger.snapshot())
        core = ChargingCore(ledger, DEMO, min_tcc_s=h.min_tcc_s)
        core.restore(h.core.snapshot())
        assert core.snapshot() == h.core.snapshot()
        assert ledger.snapshot() == h.ledger.snapshot()
        h.assert_replays()


def step(run: Run, data: st.DataObject) -> None:
    what = data.draw(
        st.sampled_from(["session", "session", "session", "event", "admin", "time", "tick"])
    )
    if what == "time":
        run.now += data.draw(st.sampled_from([1, 999, 60_000, 4 * 60_000 + 1, 3 * 3600_000]))
        return
    if what == "tick":
        run.h.tick(run.now)
        run.check()
        return
    sub = data.draw(st.sampled_from(SUBS))
    if what == "admin":
        op = data.draw(
            st.sampled_from(
                [AccountOperation.CREDIT, AccountOperation.DEBIT, AccountOperation.SET_STATUS]
            )
        )
        account = f"acct-{sub}"
        if op is AccountOperation.SET_STATUS:
            status = data.draw(st.sampled_from(list(AccountStatus)))
            run.send(amr(op, account, status=status, origin=HOST))
        else:
            run.send(amr(op, account, amount=data.draw(AMOUNTS), origin=HOST))
        return
    service = data.draw(st.sampled_from(list(SERVICES)))
    aoc = data.draw(st.none() | st.sampled_from(list(AoCRequestType)))
    now_s = run.now // 1000
    stamp = data.draw(
        st.none()
        | st.sampled_from([now_s - EVENT_TIMESTAMP_PAST_S, now_s, now_s + EVENT_TIMESTAMP_FUTURE_S])
    )
    info = data.draw(OPAQUE)
    if what == "event":
        action = data.draw(st.sampled_from(list(RequestedAction)))
        sid = f"{HOST};e{data.draw(st.integers(0, 3))}"
        run.send(
            ccr(
                sid,
                CCRequestType.EVENT,
                0,
                *msccs(data, service, event=True),
                subscriber=sub,
                service=service,
                origin=HOST,
                action=action,
                event_timestamp=stamp,
                aoc=aoc,
                service_information=info,
            )
        )
        return
    sid = f"{HOST};s{data.draw(st.integers(0, 2))}".ljust(MAX_SESSION_ID_LENGTH, "0")
    is_open = run.h.core.has_session(sid)
    kinds = [CCRequestType.UPDATE] * 4 + [CCRequestType.TERMINATION]
    if not is_open or data.draw(st.integers(0, 9)) == 0:
        kinds = [CCRequestType.INITIAL]
    kind = data.draw(st.sampled_from(kinds))
    expected = run.numbers.get(sid, 0)
    number = data.draw(st.sampled_from([expected] * 6 + [expected - 1, MAX_REQUEST_NUMBER]))
    number = max(0, min(number, MAX_REQUEST_NUMBER))
    if kind is CCRequestType.INITIAL:
        number = data.draw(st.sampled_from([0, 0, 0, MAX_REQUEST_NUMBER - 1]))
    if is_open:
        service = run.h.core.sessions[sid].service_context_id
    message = ccr(
        sid,
        kind,
        number,
        *msccs(data, service, event=False),
        subscriber=sub if kind is CCRequestType.INITIAL else None,
        service=service,
        origin=HOST,
        event_timestamp=stamp,
        aoc=aoc,
        service_information=info,
    )
    run.send(message)
    if run.h.core.has_session(sid):
        run.numbers[sid] = run.h.core.sessions[sid].number + 1
    else:
        run.numbers.pop(sid, None)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_whatever_the_codec_accepts_the_core_completes(data: st.DataObject) -> None:
    run = Run()
    for sub in SUBS:
        run.h.account(
            f"acct-{sub}",
            sub,
            data.draw(BALANCES),
            credit_limit=data.draw(st.sampled_from([0, EUR, MAX_AMOUNT])),
        )
    for _ in range(data.draw(st.integers(1, 20))):
        step(run, data)
    run.finish()
