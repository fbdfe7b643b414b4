"""A hypothesis state machine over the charging core with random traffic.

A few accounts (random opening balance, often small, and credit limit); sessions of the three
services open and report usage as a client would, from the grants it was answered: nothing,
zero, within, exactly at and beyond each grant, usage of groups it holds no grant for, reports
split by Tariff-Change-Usage around a grant's Tariff-Time-Change (or left to be apportioned),
linked usage (WIRE.md 5.6); events of every Requested-Action, and DIRECT_DEBITING followed by
refunds of all, part or one unit more than it took (WIRE.md 5.4); administrative credits
(top-ups that re-authorise sessions held at their final units) and debits (some with a reused
Operation-Id); status changes; retransmissions of any earlier request, with its End-to-End-Id
or a new one; another peer naming an open session, or reusing another peer's End-to-End-Id (it
never gets what was answered to the other, and changes nothing); time passing, up to a tariff
change, to a session's Tcc deadline and to a reservation's expiry, and ticks; catalog reloads
that change a price; checkpoint-and-restart
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
* CDR sequence numbers are 1..N with no gap; a session's records are numbered 1..k (a
  Session-Id opened again after its final record starts at 1); an event's record is 1.
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

And at the step that does it, from what the client saw alone (the answers, the rating engine as
the price list, WIRE.md):

* A grant reserves the price of its units at the dearest rate in force during its validity
  (after the units the session already reported), plus the setup fee if not yet charged.
* A session is closed by a tick exactly when it has been silent for Tcc = 2 x the longest
  Validity-Time it was granted (the configured minimum until its first grant), whole seconds.
* A top-up re-authorises (RAR) exactly the account's sessions held at final units or refused.
* AoC Cost-Information is the session's charge so far (all its containers, in CDRs or held).
* When a session closes, what each of its rating groups charged over all its reports is the
  price of all their units as one (increments are cumulative, CUMULATIVE_CEIL), plus the setup
  fee once, if the rate stayed the same all along.

At the end (and at random points), a fresh core fed the inputs the app would have journaled
(every request that was not a duplicate, due ticks, catalogs) reproduces identical
`snapshot()` bytes, an identical ledger snapshot and identical CDR lines.

How often each money path is reached is counted (hypothesis ``event()``; the totals of a run are
printed with ``pytest -s``, see docs/testing.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ocs.core.charging import DEFAULT_DUPLICATE_WINDOW_MS, ActionKind, Result
from ocs.core.charging_types import STATE_DECODER, STATE_ENCODER
from protocol.codec import decode_body
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
from protocol.messages import (
    AMR,
    CCA,
    CCR,
    MsccAnswer,
    MsccRequest,
    ServiceUnit,
    UsedServiceUnit,
)
from rating import Catalog, RatingGroup, next_tariff_change, parse_catalog, price_at, price_dearest
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

# Data (RG 10) and video (RG 20, linked to RG 10) get shorter and different Validity-Times: a
# session's Tcc depends on which grant was the longest, not the last, and reservations of grants
# a session leaves alone expire within a run.
# Data changes price every hour from 21:00 to 06:00 (besides peak, 08:00-20:00 on weekdays).
NIGHT = "".join(
    f'[[rating_groups.periods]]\nname = "night{h}"\ndays = ["all"]\nstart = "{h:02d}:00"\n'
    f'end = "{h + 1:02d}:00"\nprice = "{price}"\n\n'
    for h, price in ((21, "0.015"), (23, "0.005"), (1, "0.015"), (3, "0.005"), (5, "0.015"))
)
CATALOG = (
    DEMO.replace('["5.00", "10.00", "20.00"]', '["0.50", "1.00", "2.00"]')
    .replace('volume_limit = "100 MiB"', 'volume_limit = "20 MiB"')
    .replace('time_limit = "1 h"', 'time_limit = "30 min"')
    .replace('"10 MiB"\nvalidity_time = "1 h"', '"10 MiB"\nvalidity_time = "30 min"')
    .replace('"50 MiB"\nvalidity_time = "1 h"', '"50 MiB"\nvalidity_time = "10 min"')
    .replace("Friday 08:00-20:00 Paris time\n", "Friday 08:00-20:00 Paris time\n\n" + NIGHT)
)
DEARER = CATALOG.replace('price = "0.02"', 'price = "0.03"')
assert CATALOG.count('validity_time = "10 min"') == 2 and DEARER != CATALOG
assert CATALOG.count('validity_time = "30 min"') == 1 and CATALOG.count("night") == 5
CATALOGS = {False: parse_catalog(CATALOG), True: parse_catalog(DEARER)}

# Monday 19:20 Paris: data grants of an hour span the end of peak at 20:00 (Tariff-Time-Change).
START = epoch_ms("2026-01-05T19:20:00+01:00")
DAY_MS = 24 * 3600 * 1000
HORIZON = START + 5 * DAY_MS  # to Saturday: voice is cheaper at weekends
# The ledger remembers an Operation-Id for 24 h: the client reuses one for less than that.
OPERATION_ID_USE_MS = DAY_MS - 3600 * 1000
MIN_TCC_S = 120  # the harness's `min_tcc_s`
ACCOUNTS = ("a0", "a1", "a2")
SUBSCRIBER = {a: f"4917000000{i}" for i, a in enumerate(ACCOUNTS)}
SERVICE_RGS = {DATA: (10, 20, 50, 99), VOICE: (40,), SMS: (30,)}
UNIT = {10: "octets", 20: "octets", 50: "octets", 99: "octets", 40: "seconds", 30: "units"}
ORIGINS = ("upf1.test.local", "upf2.test.local")
LINKED = {20: 10}  # the catalog's links: usage of RG 20 is reported with RG 10's (WIRE.md 5.6)
TRIGGERS = (
    ReportingReason.THRESHOLD,
    ReportingReason.QUOTA_EXHAUSTED,
    ReportingReason.VALIDITY_TIME,
    ReportingReason.FINAL,
)
S = 1000

services = st.sampled_from([DATA, DATA, VOICE, SMS])
accounts = st.sampled_from(ACCOUNTS)
picks = st.integers(0, 1 << 16)
balances = st.one_of(st.integers(0, 400_000), st.integers(EUR, 10 * EUR))

#: How often each path was taken, over the whole run (printed by the fixture below with -s).
PATHS: Counter[str] = Counter()


def amounts(rg: int, *, big: bool = True) -> st.SearchStrategy[int]:
    unit = UNIT[rg]
    if unit == "octets":
        return st.integers(0, 30 * MiB if big else 5 * MiB)
    if unit == "seconds":
        return st.integers(0, 900 if big else 300)
    return st.integers(0, 2)


def unit_map(rg: int, amount: int) -> ServiceUnit:
    unit = UNIT[rg]
    if unit == "octets":
        return rsu(octets=amount)
    if unit == "seconds":
        return rsu(seconds=amount)
    return rsu(units=amount)


def used_units(
    rg: int,
    amount: int,
    *,
    tcu: TariffChangeUsage | None = None,
    reason: ReportingReason | None = None,
) -> UsedServiceUnit:
    unit = UNIT[rg]
    return usu(
        octets=amount if unit == "octets" else None,
        seconds=amount if unit == "seconds" else None,
        units=amount if unit == "units" else None,
        tcu=tcu,
        reason=reason,
    )


def granted_units(answer: MsccAnswer) -> int:
    gsu = answer.granted_service_unit
    assert gsu is not None
    for amount in (gsu.cc_total_octets, gsu.cc_time, gsu.cc_service_specific_units):
        if amount is not None:
            return amount
    raise AssertionError(f"an empty grant: {answer}")


@st.composite
def asks(draw: st.DrawFn, rg: int) -> ServiceUnit | None:
    kind = draw(st.sampled_from(["none", "any", "any", "amount", "amount"]))
    if kind == "none":
        return None
    if kind == "any":
        return rsu()
    return unit_map(rg, draw(amounts(rg)))


@dataclass
class ClientGrant:
    """A grant as the client knows it from the answer."""

    units: int
    at_ms: int
    tariff_change_s: int | None


@dataclass
class ClientSession:
    account: str
    service: str
    origin: str
    opened_ms: int
    number: int = 0
    last_ms: int = 0
    tcc_s: int = MIN_TCC_S  # 2 x the longest Validity-Time granted (WIRE.md 5.3)
    granted_once: bool = False
    grants: dict[int, ClientGrant] = field(default_factory=dict)
    reported: dict[int, int] = field(default_factory=dict)  # units reported per rating group
    cdr_from: int = 0  # index of the first CDR line that can be this session's
    catalogs: int = 0  # catalog reloads when opened

    def deadline_s(self) -> int:
        return self.last_ms // S + self.tcc_s


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


def path(name: str) -> None:
    PATHS[name] += 1
    event(name)


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(catalog=CATALOG, min_tcc_s=MIN_TCC_S)
        self.now = START
        self.model = Model()
        self.open: dict[str, ClientSession] = {}
        self.sent: list[Sent] = []
        self.cache: dict[tuple[str, int | None], tuple[int, bytes]] = {}
        self.counter = 0
        self.dearer = False
        self.catalogs = 0  # reloads so far
        self.cdrs_counted = 0
        self.generations: dict[str, int] = {}  # Operation-Ids: the generation of each name
        self.first_used: dict[str, int] = {}  # Operation-Id -> when first used
        # (Origin-Host, Session-Id) of each EVENT processed -> (when, its answer)
        self.events: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.window_ms = 24 * 3600 * 1000

    # --- helpers ----------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        return CATALOGS[self.dearer]

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
            path("duplicate answered from the cache")
            return result
        # every answer is cached, and the cache survives restarts (it is replayed)
        self.cache[(message.origin_host, e2e)] = (self.now, result.body)
        if isinstance(message, CCR) and event:
            assert ekey is not None
            if repeat:  # an EVENT again under its Session-Id (WIRE.md 6)
                assert first is not None
                assert result.body == first[1] and self._state() == before
                path("EVENT repeated under its Session-Id answered the same")
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

    def _operation_id(self, name: str) -> str:
        """The Operation-Id the client uses under `name` now: the same one for less than a day
        after its first use, then a new one."""
        generation = self.generations.get(name, 0)
        operation_id = f"{name}.{generation}"
        first = self.first_used.setdefault(operation_id, self.now)
        if self.now - first < OPERATION_ID_USE_MS:
            return operation_id
        self.generations[name] = generation + 1
        return self._operation_id(name)

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
                path("DIRECT_DEBITING recorded as refundable")
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
            path("refund beyond the debits refused (5004)")
            return
        assert code == 2001, result.answer
        need, credit = units, 0
        for entry in reversed(usable):  # newest first
            take = min(need, entry[1])
            money = entry[2] if take == entry[1] else entry[2] * take // entry[1]
            if take < entry[1]:
                path("refund of part of a debit (rounded down)")
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
            path("refund credited")

    def _sid(self, prefix: str, origin: str = ORIGINS[0]) -> str:
        """A new Session-Id of the peer `origin` (it begins with its Origin-Host)."""
        self.counter += 1
        return f"{origin};{prefix}{self.counter}"

    def _pick(self, index: int) -> tuple[str, ClientSession]:
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

    def _granted(self, sid: str, session: ClientSession, answer: CCA) -> None:
        """What the client learns from an answer: its grants (replacing those it reported on or
        gave back), the Tcc they imply; and that each reserves its price at the dearest rate
        of its validity, plus the setup fee not yet charged."""
        core_session = self.h.core.sessions[sid]
        now_s = self.now // S
        for m in answer.multiple_services_credit_control or ():
            if m.final_unit_indication is not None:
                path("grant cut to the balance (Final-Unit-Indication)")
            elif m.result_code == 4012:
                path("nothing grantable (4012)")
            if m.granted_service_unit is None:
                continue
            path("quota granted")
            units = granted_units(m)
            assert m.validity_time is not None
            validity = m.validity_time
            session.tcc_s = (
                max(session.tcc_s, 2 * validity) if session.granted_once else 2 * validity
            )
            session.granted_once = True
            session.grants[m.rating_group] = ClientGrant(units, self.now, m.tariff_time_change)
            if m.tariff_time_change is not None:
                path("grant spanning a tariff change")
            rg = self.catalog.rating_group(session.service, m.rating_group)
            assert rg is not None
            prior = session.reported.get(m.rating_group, 0)
            fee = 0 if prior else rg.setup_fee  # charged with the first units used
            expected = price_dearest(rg, units, now_s, now_s + validity, prior).total + fee
            grant = core_session.grants[m.rating_group]
            reservation = self.h.ledger.reservation(grant.reservation_id)
            assert reservation is not None
            assert grant.amount == reservation.amount == expected, (m, expected)

    def _charges(self, sid: str, session: ClientSession, rg_id: int) -> list[int]:
        """The charges of the session's used-unit containers for `rg_id` so far: in its CDRs,
        and held."""
        out: list[int] = []
        for _, line in self.h.cdr_lines[session.cdr_from :]:
            record = json.loads(line)
            if record["recordType"] != "session" or record["sessionId"] != sid:
                continue
            for usage in record["listOfMultipleUnitUsage"]:
                if usage["ratingGroup"] == rg_id:
                    out.extend(c["charge"] for c in usage["usedUnitContainers"])
        if sid in self.h.core.sessions:
            containers = self.h.core.sessions[sid].containers
            out.extend(c.charge for c in containers if c.rating_group == rg_id)
        return out

    def _closed(self, sid: str, session: ClientSession) -> None:
        """The session is closed: what each rating group charged over all its reports is the
        price of all their units at once (increments and money are cumulative, WIRE.md 5.5 and
        docs/catalog.md), plus the setup fee once, if one rate applied all along."""
        del self.open[sid]
        if self.catalogs != session.catalogs:
            return
        opened_s, closed_s = session.opened_ms // S, self.now // S
        for rg_id, units in session.reported.items():
            rg = self.catalog.rating_group(session.service, rg_id)
            if rg is None or next_tariff_change(rg, opened_s, closed_s + 1) is not None:
                continue
            charged = sum(self._charges(sid, session, rg_id))
            fee = rg.setup_fee if units else 0
            assert charged == price_at(rg, units, opened_s, 0).total + fee, (rg_id, units)
            path("session total checked against one price")

    def _reconcile(self) -> None:
        """After a tick: a session is closed exactly when it has been silent for its Tcc; a
        grant whose reservation expired is gone."""
        now_s = self.now // S
        for sid, session in list(self.open.items()):
            due = now_s >= session.deadline_s()
            assert (sid not in self.h.core.sessions) == due, (sid, session, self.now)
            if due:
                path("session closed by Tcc supervision")
                self._closed(sid, session)
                continue
            held = self.h.core.sessions[sid].grants
            for rg_id in [g for g in session.grants if g not in held]:
                path("grant expired")
                del session.grants[rg_id]

    def _tick(self, now_ms: int) -> None:
        self.now = max(self.now, min(now_ms, HORIZON))
        if self.h.tick(self.now):
            path("tick")
        self._reconcile()

    # --- setup ------------------------------------------------------------------------------

    @initialize(
        opening=st.lists(balances, min_size=3, max_size=3),
        limits=st.lists(st.sampled_from([0, 0, 100_000]), min_size=3, max_size=3),
        window_s=st.sampled_from([600, 3600, 24 * 3600]),
    )
    def create_accounts(self, opening: list[int], limits: list[int], window_s: int) -> None:
        if window_s != 24 * 3600:
            self.h.settings(self.now, refund_window_s=window_s)
        self.window_ms = window_s * 1000
        for account, balance, limit in zip(ACCOUNTS, opening, limits, strict=True):
            self.h.account(
                account, SUBSCRIBER[account], balance, now_ms=self.now, credit_limit=limit
            )
            self.model.initial[account] = balance
            self.model.admin[account] = 0

    # --- sessions ---------------------------------------------------------------------------

    # The rules that move money draw everything from one `data` argument: hypothesis orders
    # rules by their number of arguments and picks the first ones more often.

    @rule(data=st.data())
    def a_whole_session(self, data: st.DataObject) -> None:
        """A session opened, perhaps reported on a few times as time passes (and the server
        ticks), perhaps terminated. A focused client reports on one rating group only and
        leaves its other grants alone (until their reservations expire)."""
        account = data.draw(accounts)
        service = data.draw(services)
        origin = data.draw(st.sampled_from(ORIGINS))
        reports = data.draw(st.integers(0, 4))
        end = not data.draw(st.integers(0, 2))
        focused = data.draw(st.booleans())
        # data shortly before a tariff change: the grant (30 min) spans it
        near_a_change = service == DATA and data.draw(st.integers(0, 3)) > 0
        if near_a_change:
            self._approach_tariff_change(data.draw(st.sampled_from([60, 600, 1500])))
        # focused on data, the client holds video's grant (10 min) besides data's
        rgs = (20, 10) if focused and service == DATA else (10,) if near_a_change else None
        sid = self._open(data, account, service, origin, rgs=rgs)
        if sid is None:
            return
        session = self.open[sid]
        kinds = [CCRequestType.UPDATE] * reports + [CCRequestType.TERMINATION] * end
        for kind in kinds:
            changes = [
                g.tariff_change_s * S
                for g in session.grants.values()
                if g.tariff_change_s is not None and g.tariff_change_s * S > self.now
            ]
            if changes and data.draw(st.integers(0, 3)) > 0:  # past a tariff change in a grant
                later = min(changes) + data.draw(st.integers(0, 10 * 60 * S))
            else:
                later = self.now + data.draw(st.integers(0, 20 * 60 * S))
            if data.draw(st.booleans()):
                self._tick(later)
                if sid not in self.open:  # silent for its Tcc
                    return
            starved = bool(self.h.core.sessions[sid].starved)
            if starved and data.draw(st.booleans()):
                # held at its final units: the subscriber tops up (the server re-authorises)
                self._admin(account, True, data.draw(st.integers(1, 5 * EUR)), None)
            self.now = min(later, HORIZON)
            self._report(data, sid, kind, focused=focused)

    def _open(
        self,
        data: st.DataObject,
        account: str,
        service: str,
        origin: str,
        *,
        rgs: tuple[int, ...] | None = None,
    ) -> str | None:
        if len(self.open) >= 8:  # the client ends one first
            self._report(data, sorted(self.open)[0], CCRequestType.TERMINATION)
        sid = self._sid("s", origin)
        if rgs is None:
            asked = data.draw(
                st.lists(st.sampled_from(SERVICE_RGS[service]), min_size=1, max_size=3, unique=True)
            )
            msccs = [mscc(rg, ask=data.draw(asks(rg))) for rg in asked]
        else:
            msccs = [mscc(rg, ask=rsu(octets=MiB)) for rg in rgs]
        message = ccr(
            sid,
            CCRequestType.INITIAL,
            0,
            *msccs,
            subscriber=SUBSCRIBER[account],
            service=service,
            origin=origin,
        )
        cdr_from = len(self.h.cdr_lines)
        answer = self._send(message).answer
        view = self.h.ledger.account(account)
        assert view is not None
        if int(view.status) != int(AccountStatus.ACTIVE):
            assert answer.result_code == 4010
            return None
        assert answer.result_code == 2001
        assert isinstance(answer, CCA)
        codes = [m.result_code for m in answer.multiple_services_credit_control or ()]
        assert set(codes) <= {2001, 4011, 4012, 5031}
        session = ClientSession(
            account,
            service,
            origin,
            opened_ms=self.now,
            last_ms=self.now,
            cdr_from=cdr_from,
            catalogs=self.catalogs,
        )
        self.open[sid] = session
        self._granted(sid, session, answer)
        return sid

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def report(self, data: st.DataObject) -> None:
        self._report(data, self._pick(data.draw(picks))[0], CCRequestType.UPDATE)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def terminate(self, data: st.DataObject) -> None:
        self._report(data, self._pick(data.draw(picks))[0], CCRequestType.TERMINATION)

    def _usage(
        self, data: st.DataObject, session: ClientSession, rg_id: int
    ) -> tuple[UsedServiceUnit, ...] | None:
        """Usage of one rating group, placed against the client's grant."""
        grant = session.grants.get(rg_id)
        if grant is None:
            kind = data.draw(st.sampled_from(["none", "zero", "some"]))
        else:
            kind = data.draw(st.sampled_from(["none", "zero", "within", "at", "beyond", "beyond"]))
        if kind == "none":
            path("grant given back unused" if grant is not None else "no usage, no grant")
            return None
        if kind == "zero":
            units = 0
        elif kind == "some":
            units = data.draw(amounts(rg_id, big=False))
        else:
            assert grant is not None
            g = grant.units
            if kind == "within" and g > 1:
                units = data.draw(st.integers(1, g - 1))
            elif kind == "beyond":
                units = g + data.draw(st.integers(1, max(1, g // 2)))
            else:
                units = g
        if grant is None:
            path("usage without a grant" if units else "zero usage without a grant")
        elif units == 0:
            path("zero usage against a grant")
        else:
            where = "within" if units < grant.units else "at" if units == grant.units else "beyond"
            path(f"usage {where} the grant")
        reason = data.draw(st.sampled_from([None, *TRIGGERS, ReportingReason.OTHER_QUOTA_TYPE]))
        change = grant.tariff_change_s if grant is not None else None
        if units and change is not None and self.now // S > change:
            split = data.draw(
                st.sampled_from(["apportioned", "apportioned", "before-after", "three", "unsure"])
            )
            path(f"usage across a tariff change: {split}")
            if split == "apportioned":
                return (used_units(rg_id, units, reason=reason),)
            if split == "unsure":
                return (used_units(rg_id, units, tcu=TariffChangeUsage.UNIT_INDETERMINATE),)
            before = data.draw(st.integers(0, units))
            rest = units - before
            third = data.draw(st.integers(0, rest)) if split == "three" else 0
            parts = [
                used_units(rg_id, before, tcu=TariffChangeUsage.UNIT_BEFORE_TARIFF_CHANGE),
                used_units(rg_id, rest - third, tcu=TariffChangeUsage.UNIT_AFTER_TARIFF_CHANGE),
            ]
            if split == "three":
                parts.append(used_units(rg_id, third, tcu=TariffChangeUsage.UNIT_INDETERMINATE))
            return tuple(parts)
        if units and data.draw(st.booleans()):  # the same usage in two USUs
            first = data.draw(st.integers(0, units))
            return (
                used_units(rg_id, first, reason=reason),
                used_units(rg_id, units - first, reason=reason),
            )
        return (used_units(rg_id, units, reason=reason),)

    def _report(
        self, data: st.DataObject, sid: str, kind: CCRequestType, *, focused: bool = False
    ) -> None:
        session = self.open[sid]
        terminate = kind is CCRequestType.TERMINATION
        # mostly the groups the client holds grants for, sometimes another of the service
        rgs = [rg for rg in session.grants if data.draw(st.integers(0, 4))]
        if focused and not terminate:
            rgs = sorted(session.grants)[:1]
        elif not rgs or not data.draw(st.integers(0, 3)):
            rgs.append(data.draw(st.sampled_from(SERVICE_RGS[session.service])))
        msccs: dict[int, MsccRequest] = {}
        for rg_id in dict.fromkeys(rgs):
            used = self._usage(data, session, rg_id)
            ask = None if terminate else data.draw(asks(rg_id))
            msccs[rg_id] = mscc(rg_id, ask=ask, used=used)
        for rg_id, linked in LINKED.items():
            used = msccs[rg_id].used_service_unit if rg_id in msccs else None
            if not used or used[0].reporting_reason not in TRIGGERS:
                continue
            if linked not in msccs and data.draw(st.integers(0, 3)):
                path("linked usage reported")
                amount = data.draw(amounts(linked, big=False))
                msccs[linked] = mscc(
                    linked,
                    used=(used_units(linked, amount, reason=ReportingReason.LINKED_USAGE),),
                )
        aoc = data.draw(st.sampled_from([None, None, None, AoCRequestType.COST_ONLY]))
        message = ccr(
            sid,
            kind,
            session.number + 1,
            *msccs.values(),
            service=session.service,
            origin=session.origin,
            aoc=aoc,
        )
        result = self._send(message)
        answer = result.answer
        # the client's sessions are exactly the server's: nothing closes them but a
        # TERMINATION or supervision (checked at every tick)
        assert answer.result_code == 2001, answer
        assert isinstance(answer, CCA)
        if aoc is not None:
            # WIRE.md 5.2: Cost-Information is the session's charge so far
            assert answer.cost_information is not None
            value = answer.cost_information.unit_value
            exponent = (value.exponent or 0) + 6
            assert exponent >= 0
            charged = sum(
                sum(self._charges(sid, session, rg)) for rg in SERVICE_RGS[session.service]
            )
            assert value.value_digits * 10**exponent == charged
            path("AoC cost checked")
        session.number += 1
        session.last_ms = self.now
        for rg_id, m in msccs.items():
            if m.used_service_unit is not None:
                units = sum(
                    (u.cc_total_octets or u.cc_time or u.cc_service_specific_units or 0)
                    for u in m.used_service_unit
                )
                session.reported[rg_id] = session.reported.get(rg_id, 0) + units
            session.grants.pop(rg_id, None)  # reported on or given back: a new one or none
        if terminate:
            assert sid not in self.h.core.sessions
            path("session terminated")
            self._closed(sid, session)
            return
        self._granted(sid, session, answer)

    @precondition(lambda self: bool(self.open))
    @rule(index=picks, offset=st.sampled_from([-1, 2, 3, 9]))
    def out_of_sequence(self, index: int, offset: int) -> None:
        sid, session = self._pick(index)
        if session.number + offset < 0:
            return
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
        assert answer.result_code == 5004
        assert answer.failed_avp == {"CC-Request-Number": number}
        assert self._state() == before

    @precondition(lambda self: bool(self.open))
    @rule(index=picks, terminate=st.booleans(), repeat=st.booleans())
    def foreign_peer(self, index: int, terminate: bool, repeat: bool) -> None:
        """Another peer names an open session (WIRE.md 5.3): with the next request number, or
        with the last one (which the owner would get the cached answer for). It is answered as
        for a session that does not exist, and nothing changes."""
        sid, session = self._pick(index)
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
        path("another peer's session refused (5002)")

    @precondition(lambda self: bool(self.sent))
    @rule(index=picks, units=st.integers(1, 3))
    def fish(self, index: int, units: int) -> None:
        """A peer sends another peer's End-to-End-Id (WIRE.md 6): it gets an answer of its own,
        never the one cached for the other. (Two arguments: hypothesis favours the rules with
        fewer, and those should be the ones that move money.)"""
        earlier = self.sent[index % len(self.sent)]
        fisher = "fisher.test.local"
        if earlier.origin == fisher:
            return
        message = ccr(
            self._sid("p", fisher),
            CCRequestType.EVENT,
            0,
            mscc(30, ask=rsu(units=units)),
            subscriber=SUBSCRIBER[ACCOUNTS[0]],
            service=SMS,
            action=RequestedAction.PRICE_ENQUIRY,
            origin=fisher,
        )
        result = self._send(message, e2e=earlier.e2e)  # (a hit only on its own earlier fish)
        assert result.answer.result_code == 2001 and result.body != earlier.result.body
        assert isinstance(result.answer, CCA)
        assert result.duplicate or result.answer.session_id == message.session_id
        path("another peer's End-to-End-Id answered afresh")

    # --- events -----------------------------------------------------------------------------

    @rule(data=st.data())
    def event(self, data: st.DataObject) -> None:
        account = data.draw(accounts)
        action = data.draw(st.sampled_from(RequestedAction))
        service = data.draw(services)
        rg = data.draw(st.sampled_from(SERVICE_RGS[service]))
        amount = data.draw(amounts(rg, big=False))
        message = ccr(
            self._sid("e"),
            CCRequestType.EVENT,
            0,
            mscc(rg, ask=unit_map(rg, amount)),
            subscriber=SUBSCRIBER[account],
            service=service,
            action=action,
        )
        before = self._state()
        result = self._send(message)
        code = result.answer.result_code
        # (5004: a refund beyond what was debited, WIRE.md 1.1 section 5.4)
        assert code in {2001, 4010, 4012} or (
            code == 5004 and action is RequestedAction.REFUND_ACCOUNT
        )
        path(f"event {action.name} answered {code}")
        enquiry = action in (RequestedAction.PRICE_ENQUIRY, RequestedAction.CHECK_BALANCE)
        if enquiry or code != 2001:
            assert not result.duplicate and self._state() == before
        elif amount and self._state() != before:
            path(f"event {action.name} moved money")

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
        account=st.sampled_from([*ACCOUNTS, "held at final units"]),
        credit=st.sampled_from([True, True, False]),
        amount=st.integers(1, 5 * EUR),
        name=st.sampled_from([None, None, "op1", "op2"]),
    )
    def admin(self, account: str, credit: bool, amount: int, name: str | None) -> None:
        amount = amount if credit else 1 + amount // 5  # debits are smaller than top-ups
        if account not in ACCOUNTS:  # the account of a session held at its final units
            held = [s.account_id for s in self.h.core.sessions.values() if s.starved]
            account = min(held) if held else ACCOUNTS[0]
        self._admin(account, credit, amount, None if name is None else self._operation_id(name))

    def _admin(self, account: str, credit: bool, amount: int, operation_id: str | None) -> None:
        operation = AccountOperation.CREDIT if credit else AccountOperation.DEBIT
        starved = {
            sid
            for sid in self.h.core.sessions
            if self.h.core.sessions[sid].account_id == account and self.h.core.sessions[sid].starved
        }
        self.h.take_actions()
        code = self._send(
            amr(operation, account, amount=amount, operation_id=operation_id)
        ).answer.result_code
        rars = {
            a.session_id
            for a in self.h.take_actions()
            if a.kind is ActionKind.RAR and a.reason == "top-up"
        }
        # WIRE.md 7: a top-up re-authorises the sessions held at their final units (a retry of
        # an Operation-Id already applied is answered as the top-up, and does the same)
        assert rars == (starved if credit and code == 2001 else set())
        if rars:
            path("top-up re-authorises sessions (RAR)")

    @rule(
        catalog=st.booleans(),
        account=accounts,
        status=st.sampled_from([*AccountStatus, AccountStatus.ACTIVE, AccountStatus.ACTIVE]),
    )
    def operator(self, catalog: bool, account: str, status: AccountStatus) -> None:
        """An account's status set, or a catalog that changes a price put in force."""
        if catalog:
            self.dearer = not self.dearer
            self.catalogs += 1
            self.h.load_catalog(DEARER if self.dearer else CATALOG, self.now)
            return
        answer = self._send(amr(AccountOperation.SET_STATUS, account, status=status))
        assert answer.answer.result_code == 2001

    # --- retransmissions --------------------------------------------------------------------

    @precondition(lambda self: bool(self.sent))
    @rule(index=picks, same_id=st.booleans())
    def retransmit(self, index: int, same_id: bool) -> None:
        """Any earlier request again: with its End-to-End-Id (`_send` checks the cache), or with
        a new one (a repeat of a session's last request number is answered the same)."""
        earlier = self.sent[index % len(self.sent)]
        message = earlier.message
        if (
            isinstance(message, AMR)
            and message.operation_id is not None
            and self.now - self.first_used[message.operation_id] >= OPERATION_ID_USE_MS
        ):
            return  # the client does not retry an operation that old
        if isinstance(message, CCR):
            mine = self.open.get(message.session_id)
            if (
                mine is not None
                and message.origin_host == mine.origin
                and message.cc_request_number > mine.number
            ):
                return  # a request refused out of sequence is not retried once it fits
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
            path("repeat of a session's last request answered the same")
        if (
            isinstance(message, CCR)
            and message.cc_request_type is CCRequestType.INITIAL
            and not was_open
            and message.session_id in self.h.core.sessions
        ):
            # an INITIAL of a session long gone opened it again: the client lost track of it
            assert message.session_id not in self.open
            path("late INITIAL opened a session again")

    # --- time, catalogs, restarts -----------------------------------------------------------

    @rule(
        ms=st.integers(0, 15 * 60 * 1000),
        to_a_change=st.sampled_from([None, None, 1, 60, 600, 1500]),
    )
    def advance(self, ms: int, to_a_change: int | None) -> None:
        """Time passes: some ms, or to `to_a_change` s before data's next tariff change."""
        if to_a_change is None:
            self.now = min(self.now + ms, HORIZON)
        else:
            self._approach_tariff_change(to_a_change)

    def _approach_tariff_change(self, before_s: int) -> None:
        rg = self.catalog.rating_group(DATA, 10)
        assert isinstance(rg, RatingGroup)
        start_s = self.now // S + before_s
        if start_s >= HORIZON // S:
            return
        change = next_tariff_change(rg, start_s, HORIZON // S)
        if change is not None:
            self.now = max(self.now, (change - before_s) * S)

    @rule(
        index=picks,
        when=st.sampled_from(["deadline", "deadline", "expiry", "later"]),
        offset_ms=st.sampled_from([-1000, -1, 0, 1, 999, 1000]),
        ms=st.sampled_from([0, 1000, 130_000, 1200 * 1000, 3600 * 1000]),
    )
    def tick(self, index: int, when: str, offset_ms: int, ms: int) -> None:
        """A tick: around a session's Tcc deadline (it closes exactly when that is reached),
        around the next reservation's expiry, or some time later."""
        if when == "deadline" and self.open:
            self._tick(self._pick(index)[1].deadline_s() * S + offset_ms)
            return
        due = self.h.ledger.next_expiry()
        if when == "expiry" and due is not None:
            self._tick(due + min(offset_ms, 0))
            return
        self._tick(self.now + ms)

    @rule(replay=st.booleans())
    def restart(self, replay: bool) -> None:
        """A restart from the snapshots (the duplicate cache is in them: nothing is
        forgotten), or a check that replaying the journal rebuilds the same state."""
        if replay:
            self.h.assert_replays()
            path("replay of the journal")
        else:
            self.h.restart()
            path("restart from snapshots")

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
        # a session's records are numbered 1, 2, ...: after a partial record comes the next
        # number; after a final one, a Session-Id opened again (a late retransmission of its
        # INITIAL once the server forgot it) starts again at 1
        last: dict[str, tuple[int, str]] = {}
        for seq, line in self.h.cdr_lines:
            record = json.loads(line)
            assert record["recordSequenceNumber"] == seq
            number, cause = record["localSequenceNumber"], record["causeForRecordClosing"]
            if record["recordType"] != "session":
                assert number == 1
                continue
            before = last.get(record["sessionId"])
            partial = before is not None and before[1] == "partialRecord"
            assert number == (before[0] + 1 if before is not None and partial else 1)
            last[record["sessionId"]] = (number, cause)
            if seq > self.cdrs_counted and cause == "partialRecord":
                path("partial CDR")
        self.cdrs_counted = len(seqs)

    @invariant()
    def sessions_match_the_client(self) -> None:
        for sid, session in self.open.items():
            assert sid in self.h.core.sessions
            assert self.h.core.sessions[sid].number == session.number

    def teardown(self) -> None:
        if self.model.initial:
            self.h.assert_replays()


CoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreMachine = CoreMachine.TestCase


@pytest.fixture(autouse=True, scope="module")
def _print_paths() -> Iterator[None]:
    """With ``pytest -s``: how often the run reached each path."""
    PATHS.clear()
    yield
    print("\nmoney paths reached by the core machine in this run:")
    for name, count in sorted(PATHS.items()):
        print(f"  {count:6d}  {name}")
