"""A hypothesis state machine over the charging core with random traffic.

A few accounts (random opening balance and credit limit); sessions of the three services open,
report random usage (overuse and tariff-change splits included), ask again or not, terminate;
events of every Requested-Action; administrative credits and debits (some with a reused
Operation-Id); status changes; retransmissions of any earlier request, with its End-to-End-Id or
a new one; another peer naming an open session, or reusing another peer's End-to-End-Id (it
never gets what was answered to the other, and changes nothing); time passing and ticks (Tcc
supervision, reservation expiry); catalog reloads that change a price; checkpoint-and-restart
through `snapshot()`/`restore()`.

After every step:

* The money identity, per account and so in total::

      initial + admin credits - admin debits
          == posted balance + sum of its CDR charges + charges held in open sessions

  where "admin" counts the AMR CREDIT/DEBIT operations that were applied (an Operation-Id is
  applied once; a DEBIT beyond the headroom is refused), the CDR charges include events
  (refunds negative), and the last term is what open sessions charged since their last CDR
  (their containers; the next partial or final record carries it). In the ledger's terms:
  ``totals.initial == sum of opening balances`` and ``totals.credits - totals.debits ==
  admin credits - admin debits - CDR charges - held charges``; the ledger itself checks
  ``initial + credits - debits == sum of posted balances``.
* Per account, ``reserved`` equals the sum of the open grants of its sessions.
* `Ledger.check_invariants()`.
* CDR sequence numbers are 1..N with no gap; a session's records are numbered 1..k.
* Refunds (WIRE.md 5.4), against the machine's own model of what DIRECT_DEBITING took per
  (account, rating group) within the refund window (a random window, journaled as a SETTINGS
  input): a refund of more units than the model holds is 5004 with `Failed-AVP`
  {Requested-Service-Unit} and changes nothing; otherwise it draws newest first and credits
  exactly the model's amount (a whole entry its charge, a part floor(charge x k / u)).
* An EVENT sent again under its Session-Id within the duplicate window, with a new
  End-to-End-Id, gets the first answer and changes nothing.
* A retransmission with the same (Origin-Host, End-to-End-Id) within the 4-minute window gets
  the same answer bytes and changes nothing, across restarts too (every request that is not a
  duplicate is journaled, refusals included); so does a repeat of a session's last
  (Session-Id, CC-Request-Number).

At the end (and at random points), a fresh core fed the inputs the app would have journaled
(every request that was not a duplicate, due ticks, catalogs) reproduces identical
`snapshot()` bytes, an identical ledger snapshot and identical CDR lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ocs.core.charging import DEFAULT_DUPLICATE_WINDOW_MS, Result
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER
from protocol.codec import decode_body
from protocol.codes import (
    AccountOperation,
    AccountStatus,
    CCRequestType,
    CommandCode,
    ReportingReason,
    RequestedAction,
    TariffChangeUsage,
)
from protocol.messages import AMR, CCA, CCR, MsccRequest, ServiceUnit, UsedServiceUnit
from tests.charging.conftest import (
    DATA,
    DEMO,
    EUR,
    SMS,
    VOICE,
    Harness,
    MiB,
    amr,
    ccr,
    epoch_ms,
    mscc,
    rsu,
    usu,
)

CATALOG = (
    DEMO.replace('["5.00", "10.00", "20.00"]', '["0.50", "1.00", "2.00"]')
    .replace('volume_limit = "100 MiB"', 'volume_limit = "20 MiB"')
    .replace('time_limit = "1 h"', 'time_limit = "30 min"')
)
DEARER = CATALOG.replace('price = "0.02"', 'price = "0.03"')
assert CATALOG != DEMO and DEARER != CATALOG

START = epoch_ms("2026-01-05T17:00:00+01:00")  # Monday: peak ends at 20:00 Paris
HORIZON = START + 20 * 3600 * 1000  # ledger operation ids are remembered for 24 h
ACCOUNTS = ("a0", "a1", "a2")
SUBSCRIBER = {a: f"4917000000{i}" for i, a in enumerate(ACCOUNTS)}
SERVICE_RGS = {DATA: (10, 20, 50, 99), VOICE: (40,), SMS: (30,)}
UNIT = {10: "octets", 20: "octets", 50: "octets", 99: "octets", 40: "seconds", 30: "units"}
ORIGINS = ("upf1.test.local", "upf2.test.local")

services = st.sampled_from([DATA, DATA, VOICE, SMS])
accounts = st.sampled_from(ACCOUNTS)
picks = st.integers(0, 1 << 16)


def amounts(rg: int, *, big: bool = True) -> st.SearchStrategy[int]:
    unit = UNIT[rg]
    if unit == "octets":
        return st.integers(0, 30 * MiB if big else 5 * MiB)
    if unit == "seconds":
        return st.integers(0, 900)
    return st.integers(0, 2)


@st.composite
def asks(draw: st.DrawFn, rg: int) -> ServiceUnit | None:
    kind = draw(st.sampled_from(["none", "any", "amount"]))
    if kind == "none":
        return None
    if kind == "any":
        return rsu()
    amount = draw(amounts(rg))
    unit = UNIT[rg]
    if unit == "octets":
        return rsu(octets=amount)
    if unit == "seconds":
        return rsu(seconds=amount)
    return rsu(units=amount)


@st.composite
def used(draw: st.DrawFn, rg: int) -> tuple[UsedServiceUnit, ...] | None:
    if draw(st.booleans()):
        return None
    reports = []
    for _ in range(draw(st.integers(1, 2))):
        amount = draw(amounts(rg))
        tcu = draw(st.sampled_from([None, None, *TariffChangeUsage]))
        reason = draw(st.sampled_from([None, *ReportingReason]))
        unit = UNIT[rg]
        reports.append(
            usu(
                octets=amount if unit == "octets" else None,
                seconds=amount if unit == "seconds" else None,
                units=amount if unit == "units" else None,
                tcu=tcu,
                reason=reason,
            )
        )
    return tuple(reports)


@st.composite
def msccs(draw: st.DrawFn, service: str, *, usage: bool) -> tuple[MsccRequest, ...]:
    rgs = draw(st.lists(st.sampled_from(SERVICE_RGS[service]), max_size=3, unique=True))
    return tuple(mscc(rg, ask=draw(asks(rg)), used=draw(used(rg)) if usage else None) for rg in rgs)


@dataclass
class ClientSession:
    account: str
    service: str
    origin: str
    number: int = 0


@dataclass
class Sent:
    message: CCR | AMR
    e2e: int
    origin: str
    at_ms: int
    result: Result


@dataclass
class Model:
    initial: dict[str, int] = field(default_factory=dict)
    admin: dict[str, int] = field(default_factory=dict)  # credits - debits applied
    # Operation-Id -> (the operation it names, its first Result-Code)
    operations: dict[str, tuple[tuple[AccountOperation, str, int], int]] = field(
        default_factory=dict
    )
    # (account, rating group) -> [at_ms, units, charge] not refunded yet, oldest first
    refundable: dict[tuple[str, int], list[list[int]]] = field(default_factory=dict)
    refunds: int = 0  # refunds applied with a credit (the rules must reach this path)


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(catalog=CATALOG)
        self.now = START
        self.model = Model()
        self.open: dict[str, ClientSession] = {}
        self.sent: list[Sent] = []
        self.cache: dict[tuple[str, int | None], tuple[int, bytes]] = {}
        self.counter = 0
        self.dearer = False
        # (Origin-Host, Session-Id) of each EVENT processed -> (when, its answer)
        self.events: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.window_ms = 24 * 3600 * 1000

    # --- helpers ----------------------------------------------------------------------------

    def _send(self, message: CCR | AMR, *, e2e: int | None = None) -> Result:
        """Send, checking the duplicate cache against the machine's own model of it, and keep
        the model of administrative money up to date."""
        h = self.h
        key = (message.origin_host, e2e)
        cached = self.cache.get(key) if e2e is not None else None
        hit = cached is not None and self.now - cached[0] <= DEFAULT_DUPLICATE_WINDOW_MS
        event = isinstance(message, CCR) and message.cc_request_type is CCRequestType.EVENT
        ekey = (message.origin_host, message.session_id) if isinstance(message, CCR) else None
        first = self.events.get(ekey) if event and ekey is not None else None
        repeat = first is not None and self.now - first[0] <= DEFAULT_DUPLICATE_WINDOW_MS
        before = self._state()
        cdrs_before = len(h.cdr_lines)
        view = h.ledger.account(message.account_id) if isinstance(message, AMR) else None
        result = h.send(message, self.now, e2e=e2e)
        e2e = e2e if e2e is not None else h.e2e
        self.sent.append(Sent(message, e2e, message.origin_host, self.now, result))
        if hit:
            assert cached is not None
            assert result.body == cached[1] and result.duplicate
            assert self._state() == before
            return result
        # every answer is cached, and the cache survives restarts (it is replayed)
        self.cache[(message.origin_host, e2e)] = (self.now, result.body)
        if isinstance(message, CCR) and event:
            assert ekey is not None
            if repeat:  # an EVENT again under its Session-Id (WIRE.md 6)
                assert first is not None
                assert result.body == first[1] and self._state() == before
                return result
            self.events[ekey] = (self.now, result.body)
            self._model_event(message, result, before, cdrs_before)
        if isinstance(message, AMR) and message.account_operation in (
            AccountOperation.CREDIT,
            AccountOperation.DEBIT,
        ):
            assert view is not None and message.amount is not None
            credit = message.account_operation is AccountOperation.CREDIT
            code = result.answer.result_code
            op = message.operation_id
            what = (message.account_operation, message.account_id, message.amount)
            if op is not None and op in self.model.operations:
                first_what, first_code = self.model.operations[op]
                # a retry gets the first outcome; the id on another operation is refused
                assert code == (first_code if what == first_what else 5004)
                return result
            applied = credit or view.headroom >= message.amount
            assert code == (2001 if applied else 4012)
            if applied:
                self.model.admin[message.account_id] += (
                    message.amount if credit else -message.amount
                )
            if op is not None:
                self.model.operations[op] = (what, code)
        return result

    def _usable(self, key: tuple[str, int]) -> list[list[int]]:
        return [e for e in self.model.refundable.get(key, []) if self.now - e[0] <= self.window_ms]

    def _model_event(
        self, message: CCR, result: Result, before: tuple[bytes, bytes, int], cdrs_before: int
    ) -> None:
        """Check a DIRECT_DEBITING or REFUND_ACCOUNT against the model of refundable debits."""
        (request,) = message.multiple_services_credit_control or ()
        rg = request.rating_group
        ask = request.requested_service_unit
        units = 0
        if ask is not None:
            units = {
                "octets": ask.cc_total_octets,
                "seconds": ask.cc_time,
                "units": ask.cc_service_specific_units,
            }[UNIT[rg]] or 0
        account = next(
            a
            for a, sub in SUBSCRIBER.items()
            if message.subscription_id and message.subscription_id[0].subscription_id_data == sub
        )
        key = (account, rg)
        code = result.answer.result_code
        priced = rg not in (50, 99) and rg in SERVICE_RGS[message.service_context_id]
        new = [json.loads(line) for _, line in self.h.cdr_lines[cdrs_before:]]
        if message.requested_action is RequestedAction.DIRECT_DEBITING:
            if code == 2001 and priced and units:
                (record,) = new
                self.model.refundable.setdefault(key, []).append(
                    [self.now, units, record["charge"]]
                )
            return
        if message.requested_action is not RequestedAction.REFUND_ACCOUNT:
            return
        if not priced or not units:
            assert code == 2001 and all(r["charge"] == 0 for r in new)
            return
        usable = self._usable(key)
        if units > sum(e[1] for e in usable):
            assert code == 5004, result.answer
            assert result.answer.failed_avp == {"Requested-Service-Unit": msgspec.to_builtins(ask)}
            assert new == [] and self._state() == before
            return
        assert code == 2001, result.answer
        need, credit = units, 0
        for entry in reversed(usable):  # newest first
            take = min(need, entry[1])
            money = entry[2] if take == entry[1] else entry[2] * take // entry[1]
            entry[1] -= take
            entry[2] -= money
            need -= take
            credit += money
            if not need:
                break
        self.model.refundable[key] = [e for e in self.model.refundable[key] if e[1]]
        (record,) = new
        assert record["charge"] == -credit
        if credit:
            self.model.refunds += 1

    def _sid(self, prefix: str, origin: str = ORIGINS[0]) -> str:
        """A new Session-Id of the peer `origin` (it begins with its Origin-Host)."""
        self.counter += 1
        return f"{origin};{prefix}{self.counter}"

    def _pick(self, index: int) -> tuple[str, ClientSession] | None:
        if not self.open:
            return None
        sid = sorted(self.open)[index % len(self.open)]
        return sid, self.open[sid]

    def _state(self) -> tuple[bytes, bytes, int]:
        h = self.h
        # business state: the duplicate cache and the journal grow with every request; debits
        # that left the refund window are forgotten at any request (they can no longer count)
        core = STATE_DECODER.decode(h.core.snapshot(duplicates=False))
        core.refundable = [
            (account, rg, live)
            for account, rg, entries in core.refundable
            if (live := [e for e in entries if self.now - e.at_ms <= self.window_ms])
        ]
        return STATE_ENCODER.encode(core), h.ledger.snapshot(), len(h.cdr_lines)

    # --- setup ------------------------------------------------------------------------------

    @initialize(
        balances=st.lists(st.integers(0, 3 * EUR), min_size=3, max_size=3),
        limits=st.lists(st.sampled_from([0, 0, 100_000]), min_size=3, max_size=3),
        window_s=st.sampled_from([600, 3600, 24 * 3600]),
    )
    def create_accounts(self, balances: list[int], limits: list[int], window_s: int) -> None:
        if window_s != 24 * 3600:
            self.h.settings(self.now, refund_window_s=window_s)
        self.window_ms = window_s * 1000
        for account, balance, limit in zip(ACCOUNTS, balances, limits, strict=True):
            self.h.account(
                account, SUBSCRIBER[account], balance, now_ms=self.now, credit_limit=limit
            )
            self.model.initial[account] = balance
            self.model.admin[account] = 0

    # --- sessions ---------------------------------------------------------------------------

    @rule(data=st.data(), account=accounts, service=services, origin=st.sampled_from(ORIGINS))
    def open_session(self, data: st.DataObject, account: str, service: str, origin: str) -> None:
        if len(self.open) >= 6:
            return
        sid = self._sid("s", origin)
        requested = data.draw(msccs(service, usage=False))
        message = ccr(
            sid,
            CCRequestType.INITIAL,
            0,
            *requested,
            subscriber=SUBSCRIBER[account],
            service=service,
            origin=origin,
        )
        answer = self._send(message).answer
        view = self.h.ledger.account(account)
        assert view is not None
        if int(view.status) != int(AccountStatus.ACTIVE):
            assert answer.result_code == 4010
            return
        assert answer.result_code == 2001
        assert isinstance(answer, CCA)
        codes = [m.result_code for m in answer.multiple_services_credit_control or ()]
        assert set(codes) <= {2001, 4011, 4012, 5031}
        self.open[sid] = ClientSession(account, service, origin)

    @rule(data=st.data(), index=picks, terminate=st.booleans())
    def report(self, data: st.DataObject, index: int, terminate: bool) -> None:
        picked = self._pick(index)
        if picked is None:
            return
        sid, session = picked
        kind = CCRequestType.TERMINATION if terminate else CCRequestType.UPDATE
        message = ccr(
            sid,
            kind,
            session.number + 1,
            *data.draw(msccs(session.service, usage=True)),
            service=session.service,
            origin=session.origin,
        )
        code = self._send(message).answer.result_code
        if code == 2001:
            session.number += 1
            if terminate:
                del self.open[sid]
                assert sid not in self.h.core.sessions
        else:
            # closed by supervision meanwhile (5002), or that closed session opened again by a
            # late retransmission of its INITIAL (5004)
            assert code in (5002, 5004)
            del self.open[sid]

    @rule(index=picks, offset=st.sampled_from([-1, 2, 3, 9]))
    def out_of_sequence(self, index: int, offset: int) -> None:
        picked = self._pick(index)
        if picked is None or session_number_below_zero(picked[1].number, offset):
            return
        sid, session = picked
        before = self._state()
        number = session.number + offset
        message = ccr(
            sid,
            CCRequestType.UPDATE,
            number,
            mscc(10, used=(usu(octets=MiB),)),
            origin=session.origin,
        )
        answer = self._send(message).answer
        if sid in self.h.core.sessions:
            assert answer.result_code == 5004
            assert answer.failed_avp == {"CC-Request-Number": number}
        else:
            assert answer.result_code == 5002
        assert self._state() == before

    @rule(index=picks, terminate=st.booleans(), repeat=st.booleans())
    def foreign_peer(self, index: int, terminate: bool, repeat: bool) -> None:
        """Another peer names an open session (WIRE.md 5.3): with the next request number, or
        with the last one (which the owner would get the cached answer for). It is answered as
        for a session that does not exist, and nothing changes."""
        picked = self._pick(index)
        if picked is None:
            return
        sid, session = picked
        other = next(o for o in ORIGINS if o != session.origin)
        kind = CCRequestType.TERMINATION if terminate else CCRequestType.UPDATE
        number = session.number if repeat else session.number + 1
        before = self._state()
        message = ccr(
            sid,
            kind,
            number,
            mscc(10, used=(usu(octets=MiB),)),
            service=session.service,
            origin=other,
        )
        answer = self._send(message).answer
        assert isinstance(answer, CCA) and answer.result_code == 5002
        assert answer.failed_avp is None and answer.multiple_services_credit_control is None
        assert self._state() == before

    @rule(index=picks)
    def fish(self, index: int) -> None:
        """A peer sends another peer's End-to-End-Id (WIRE.md 6): it gets an answer of its own,
        never the one cached for the other."""
        if not self.sent:
            return
        earlier = self.sent[index % len(self.sent)]
        fisher = "fisher.test.local"
        if earlier.origin == fisher:
            return
        message = ccr(
            self._sid("p", fisher),
            CCRequestType.EVENT,
            0,
            mscc(30, ask=rsu(units=1)),
            subscriber=SUBSCRIBER[ACCOUNTS[0]],
            service=SMS,
            action=RequestedAction.PRICE_ENQUIRY,
            origin=fisher,
        )
        result = self._send(message, e2e=earlier.e2e)  # (a hit only on its own earlier fish)
        assert result.answer.result_code == 2001 and result.body != earlier.result.body
        assert isinstance(result.answer, CCA)
        assert result.duplicate or result.answer.session_id == message.session_id

    # --- events -----------------------------------------------------------------------------

    @rule(
        data=st.data(),
        account=accounts,
        action=st.sampled_from(RequestedAction),
        service=services,
    )
    def event(
        self, data: st.DataObject, account: str, action: RequestedAction, service: str
    ) -> None:
        rg = data.draw(st.sampled_from(SERVICE_RGS[service]))
        amount = data.draw(amounts(rg, big=False))
        unit = UNIT[rg]
        ask = rsu(
            octets=amount if unit == "octets" else None,
            seconds=amount if unit == "seconds" else None,
            units=amount if unit == "units" else None,
        )
        message = ccr(
            self._sid("e"),
            CCRequestType.EVENT,
            0,
            mscc(rg, ask=ask),
            subscriber=SUBSCRIBER[account],
            service=service,
            action=action,
        )
        before = self._state()
        result = self._send(message)
        assert result.answer.result_code in {2001, 4010, 4012, 5004}
        enquiry = action in (RequestedAction.PRICE_ENQUIRY, RequestedAction.CHECK_BALANCE)
        if enquiry or result.answer.result_code != 2001:
            assert not result.duplicate and self._state() == before

    @rule(data=st.data(), account=accounts, service=services)
    def debit(self, data: st.DataObject, account: str, service: str) -> None:
        """A DIRECT_DEBITING of a priced group (what refunds draw on)."""
        rg = data.draw(st.sampled_from([g for g in SERVICE_RGS[service] if g not in (50, 99)]))
        unit = UNIT[rg]
        amount = data.draw(
            st.integers(1, 3 if unit == "units" else 600 if unit == "seconds" else 3 * MiB)
        )
        ask = rsu(
            octets=amount if unit == "octets" else None,
            seconds=amount if unit == "seconds" else None,
            units=amount if unit == "units" else None,
        )
        message = ccr(
            self._sid("d"),
            CCRequestType.EVENT,
            0,
            mscc(rg, ask=ask),
            subscriber=SUBSCRIBER[account],
            service=service,
            action=RequestedAction.DIRECT_DEBITING,
        )
        assert self._send(message).answer.result_code in {2001, 4010, 4012}

    @rule(data=st.data(), index=picks, more=st.sampled_from(["all", "part", "one more"]))
    def refund(self, data: st.DataObject, index: int, more: str) -> None:
        """A refund of what the model says was debited: all of it, a part, or one unit more."""
        keys = sorted(k for k in self.model.refundable if self._usable(k))
        if not keys:
            return
        account, rg = keys[index % len(keys)]
        have = sum(e[1] for e in self._usable((account, rg)))
        units = {"all": have, "one more": have + 1}.get(more) or data.draw(st.integers(1, have))
        service = next(s for s, rgs in SERVICE_RGS.items() if rg in rgs)
        unit = UNIT[rg]
        ask = rsu(
            octets=units if unit == "octets" else None,
            seconds=units if unit == "seconds" else None,
            units=units if unit == "units" else None,
        )
        message = ccr(
            self._sid("r"),
            CCRequestType.EVENT,
            0,
            mscc(rg, ask=ask),
            subscriber=SUBSCRIBER[account],
            service=service,
            action=RequestedAction.REFUND_ACCOUNT,
        )
        code = self._send(message).answer.result_code
        assert code == (5004 if more == "one more" else 2001)

    # --- administration ---------------------------------------------------------------------

    @rule(
        account=accounts,
        credit=st.booleans(),
        amount=st.integers(1, 2 * EUR),
        operation_id=st.sampled_from([None, None, "op1", "op2"]),
    )
    def admin(self, account: str, credit: bool, amount: int, operation_id: str | None) -> None:
        operation = AccountOperation.CREDIT if credit else AccountOperation.DEBIT
        self._send(amr(operation, account, amount=amount, operation_id=operation_id))

    @rule(account=accounts, status=st.sampled_from([*AccountStatus, AccountStatus.ACTIVE]))
    def set_status(self, account: str, status: AccountStatus) -> None:
        answer = self._send(amr(AccountOperation.SET_STATUS, account, status=status))
        assert answer.answer.result_code == 2001

    # --- retransmissions --------------------------------------------------------------------

    @rule(index=picks, same_id=st.booleans())
    def retransmit(self, index: int, same_id: bool) -> None:
        """Any earlier request again: with its End-to-End-Id (`_send` checks the cache), or with
        a new one (a repeat of a session's last request number is answered the same)."""
        if not self.sent:
            return
        earlier = self.sent[index % len(self.sent)]
        message = earlier.message
        before = self._state()
        was_open = isinstance(message, CCR) and message.session_id in self.h.core.sessions
        expected: bytes | None = None
        if not same_id and isinstance(message, CCR):
            session = self.h.core.sessions.get(message.session_id)
            if (
                session is not None
                and session.origin_host == message.origin_host  # only to the session's peer
                and session.number == message.cc_request_number
            ):
                last = decode_body(CommandCode.CREDIT_CONTROL, False, session.last_answer)
                assert isinstance(last, CCA)
                if last.cc_request_type == message.cc_request_type:
                    expected = session.last_answer
        result = self._send(message, e2e=earlier.e2e if same_id else None)
        if expected is not None:
            assert result.body == expected
            assert self._state() == before
        if (
            isinstance(message, CCR)
            and message.cc_request_type is CCRequestType.INITIAL
            and not was_open
            and message.session_id in self.h.core.sessions
        ):
            # an INITIAL of a session long gone opened it again: the client lost track of it
            self.open.pop(message.session_id, None)

    # --- time, catalogs, restarts -----------------------------------------------------------

    @rule(ms=st.integers(0, 15 * 60 * 1000))
    def advance(self, ms: int) -> None:
        self.now = min(self.now + ms, HORIZON)

    @rule(ms=st.sampled_from([0, 1000, 130_000, 1200 * 1000, 7200 * 1000, 7300 * 1000]))
    def tick(self, ms: int) -> None:
        self.now = min(self.now + ms, HORIZON)
        self.h.tick(self.now)

    @rule()
    def reload_catalog(self) -> None:
        self.dearer = not self.dearer
        self.h.load_catalog(DEARER if self.dearer else CATALOG, self.now)

    @rule()
    def restart(self) -> None:
        self.h.restart()
        # the duplicate cache is part of the snapshot: nothing is forgotten

    @rule()
    def replay(self) -> None:
        self.h.assert_replays()

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        h = self.h
        if not self.model.initial:
            return
        h.ledger.check_invariants()
        records = [json.loads(line) for _, line in h.cdr_lines]
        held_by: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
        reserved_by: dict[str, int] = dict.fromkeys(ACCOUNTS, 0)
        for session in h.core.sessions.values():
            held_by[session.account_id] += sum(c.charge for c in session.containers)
            reserved_by[session.account_id] += sum(g.amount for g in session.grants.values())
        cdr_by = dict.fromkeys(ACCOUNTS, 0)
        for record in records:
            cdr_by[record["accountId"]] += record["charge"]
        for account in ACCOUNTS:
            view = h.ledger.account(account)
            assert view is not None
            expected = self.model.initial[account] + self.model.admin[account]
            assert expected == view.balance + cdr_by[account] + held_by[account], account
            assert view.reserved == reserved_by[account], account
        totals = h.ledger.totals()
        assert totals.initial == sum(self.model.initial.values())
        assert totals.credits - totals.debits == sum(self.model.admin.values()) - sum(
            cdr_by.values()
        ) - sum(held_by.values())

    @invariant()
    def cdrs_are_numbered(self) -> None:
        seqs = [seq for seq, _ in self.h.cdr_lines]
        assert seqs == list(range(1, len(seqs) + 1))
        local: dict[str, list[int]] = {}
        for seq, line in self.h.cdr_lines:
            record = json.loads(line)
            assert record["recordSequenceNumber"] == seq
            if record["recordType"] == "session":
                local.setdefault(record["sessionId"], []).append(record["localSequenceNumber"])
        for numbers in local.values():
            # 1, 2, ... per session; a Session-Id opened again (a late retransmission of its
            # INITIAL once the server forgot it) starts again at 1
            assert all(n in (1, prev + 1) for prev, n in pairwise([0, *numbers]))

    @invariant()
    def sessions_match_the_client(self) -> None:
        for sid, session in self.h.core.sessions.items():
            if sid in self.open:
                assert session.number == self.open[sid].number

    def teardown(self) -> None:
        if self.model.initial:
            self.h.assert_replays()


def session_number_below_zero(number: int, offset: int) -> bool:
    return number + offset < 0


CoreMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreMachine = CoreMachine.TestCase
