"""Offers held by accounts: subscriptions, unit balances, two-phase unit holds, renewals.

Deterministic and synchronous like the rest of the core: time is passed in (int ms), money
moves only through the `Ledger` (the fee of a subscription or a renewal is a `Debit` whose id
is derived from account, offer, subscription instant and period, so it is applied once).
docs/charging.md *Allowances* describes the rules; docs/catalog.md *Offers* the catalog.

State, per account (in its own structure keyed by account id, never in `AccountRecord`):
its subscriptions in the order they were made, each with one `UnitBalance` per allowance of
the offer. A grant that draws on allowances holds units on each balance it uses (`Hold`,
keyed by session and rating group, with the expiry of the grant's money reservation); the
report of usage posts what was used and gives the rest back; a release gives it all back.

Units identity, per balance (`check_invariants`):
``available == credited - expired - granted + returned`` and
``granted == used + returned + reserved``, with ``reserved`` the units of its open holds:
units granted from an allowance are used or returned, once every hold is settled.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import msgspec

from ocs.core.due import DueSet
from ocs.core.ledger import Code, Debit, Ledger
from rating.model import Catalog, Promotion
from rating.offers import Offer, Unpaid
from rating.periods import PeriodKind, boundary

__all__ = [
    "BalanceView",
    "Hold",
    "HoldPart",
    "OfferBook",
    "OffersState",
    "Renewal",
    "Subscription",
    "UnitBalance",
    "fee_operation_id",
]

#: The most subscriptions one account holds (bounds GET and the draw order's work).
MAX_SUBSCRIPTIONS_PER_ACCOUNT: Final = 16
#: The Operation-Ids of SUBSCRIBE/UNSUBSCRIBE remembered (the newest; a retry of an older one is
#: processed again: refused as the offer is held already, or not held).
MAX_OPERATIONS: Final = 1 << 16


class UnitBalance(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One allowance's units on one subscription, with the counters of the units identity."""

    allowance: str
    available: int  # units that can be held or drawn now
    reserved: int = 0  # units held by open holds
    credited: int = 0  # units given (subscription, renewals)
    granted: int = 0  # units taken by holds and direct draws
    used: int = 0  # units used (posted or drawn)
    returned: int = 0  # held units given back
    expired: int = 0  # units dropped at a period's end, beyond the rollover cap, or given
    # back by a hold of an earlier period


class Subscription(msgspec.Struct, kw_only=True, array_like=True):
    offer: str
    anchor_ms: int  # the subscription instant: the periods' anchor
    period: int  # index of the current period (0: the first)
    next_ms: int | None  # the next renewal (None: a "once" offer, or cancelled)
    suspended: bool
    balances: list[UnitBalance]
    fees_paid: int = 0  # micro-units, over the subscription's life
    serial: int = 0  # numbers the subscriptions of the book: ids unique whatever the clock


class HoldPart(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    offer: str
    allowance: str
    serial: int  # the subscription it was held on (a subscription again later is another)
    period: int  # the period it was held in (given back later, it expires)
    units: int


class Hold(msgspec.Struct, kw_only=True, array_like=True):
    account_id: str
    expires_ms: int
    parts: list[HoldPart]


class OffersState(msgspec.Struct, kw_only=True, array_like=True):
    """The offers' part of the core's snapshot (`CoreState.offers`)."""

    subscriptions: list[tuple[str, list[Subscription]]] = []
    holds: list[tuple[str, Hold]] = []
    operations: dict[str, str] = {}
    serial: int = 0  # subscriptions made so far


class Renewal(msgspec.Struct, frozen=True, kw_only=True):
    """A fee taken (or refused) at a subscription or a renewal: the core writes its record."""

    account_id: str
    offer: str
    period: int
    at_ms: int
    fee: int
    paid: bool
    operation_id: str


class BalanceView(msgspec.Struct, frozen=True, kw_only=True):
    """One balance as GET shows it."""

    offer: str
    allowance: str
    rating_groups: tuple[int, ...]
    available: int
    reserved: int
    expires_ms: int | None
    suspended: bool


def fee_operation_id(account_id: str, offer: str, serial: int, period: int) -> str:
    """The ledger id of the fee of `period` of subscription number `serial`: applied once."""
    return f"offer|{account_id}|{offer}|{serial}|{period}"


class OfferBook:
    """Subscriptions and unit balances of every account, and the open unit holds."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._holds: dict[str, Hold] = {}
        self._hold_due: DueSet[str] = DueSet()
        self._renew_due: DueSet[tuple[str, str]] = DueSet()
        #: Operation-Id of SUBSCRIBE/UNSUBSCRIBE -> what it named (applied once)
        self.operations: dict[str, str] = {}
        self.serial = 0  # subscriptions made so far (the last one's number)

    # --- reading -------------------------------------------------------------------------------

    def subscriptions(self, account_id: str) -> list[Subscription]:
        return self._subs.get(account_id, [])

    def find(self, account_id: str, offer: str) -> Subscription | None:
        for sub in self._subs.get(account_id, ()):
            if sub.offer == offer:
                return sub
        return None

    def name_operation(self, operation_id: str, what: str) -> None:
        """Remember what an Operation-Id named; beyond `MAX_OPERATIONS`, the oldest goes."""
        self.operations[operation_id] = what
        if len(self.operations) > MAX_OPERATIONS:
            del self.operations[next(iter(self.operations))]

    def has_offers(self, account_id: str) -> bool:
        return account_id in self._subs

    def views(self, account_id: str, catalog: Catalog) -> list[BalanceView]:
        out: list[BalanceView] = []
        for sub in self._subs.get(account_id, ()):
            offer = catalog.offers.get(sub.offer)
            for bal in sub.balances:
                allowance = offer.allowance(bal.allowance) if offer is not None else None
                out.append(
                    BalanceView(
                        offer=sub.offer,
                        allowance=bal.allowance,
                        rating_groups=allowance.rating_groups if allowance is not None else (),
                        available=bal.available,
                        reserved=bal.reserved,
                        expires_ms=sub.next_ms,
                        suspended=sub.suspended or offer is None,
                    )
                )
        return out

    def next_due(self) -> int | None:
        """The earliest instant (ms) a tick has work here: a renewal or a hold's expiry."""
        due = (self._hold_due.earliest(), self._renew_due.earliest())
        times = [t for t in due if t is not None]
        return min(times) if times else None

    # --- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self, ledger: Ledger, account_id: str, offer: Offer, now_ms: int, tz: str
    ) -> Renewal | None:
        """Take the first fee and give the first allowances, dated `now_ms`; None if the money
        balance cannot pay the fee (nothing changes)."""
        serial = self.serial + 1
        op_id = fee_operation_id(account_id, offer.name, serial, 0)
        if offer.fee:
            # internal: not remembered by the ledger, whose memory of a refusal under this id
            # would refuse the next attempt whatever the balance. Applied once all the same:
            # the SUBSCRIBE is (duplicates, Operation-Id), and an offer held is not taken again.
            outcome = ledger.apply(
                Debit(id=op_id, now_ms=now_ms, account_id=account_id, amount=offer.fee),
                internal=True,
            )
            if outcome.code is not Code.OK:
                return None
        self.serial = serial
        nxt = boundary(offer.period, now_ms, 1, tz)
        sub = Subscription(
            offer=offer.name,
            anchor_ms=now_ms,
            period=0,
            next_ms=nxt,
            suspended=False,
            balances=[
                UnitBalance(allowance=a.name, available=a.units, credited=a.units)
                for a in offer.allowances
            ],
            fees_paid=offer.fee,
            serial=serial,
        )
        self._subs.setdefault(account_id, []).append(sub)
        if nxt is not None:
            self._renew_due.add(nxt, (account_id, offer.name))
        return Renewal(
            account_id=account_id,
            offer=offer.name,
            period=0,
            at_ms=now_ms,
            fee=offer.fee,
            paid=True,
            operation_id=op_id,
        )

    def holds_on(self, account_id: str, offer: str) -> bool:
        """Whether open holds draw on the account's subscription to `offer`."""
        return any(
            h.account_id == account_id and any(p.offer == offer for p in h.parts)
            for h in self._holds.values()
        )

    def unsubscribe(self, account_id: str, offer: str) -> bool:
        """Remove the subscription (its units are dropped); False if there is none."""
        subs = self._subs.get(account_id)
        sub = self.find(account_id, offer)
        if subs is None or sub is None:
            return False
        subs.remove(sub)
        if not subs:
            del self._subs[account_id]
        if sub.next_ms is not None:
            self._renew_due.discard(sub.next_ms, (account_id, offer))
        return True

    def forget_account(self, account_id: str) -> None:
        for sub in list(self._subs.get(account_id, ())):
            self.unsubscribe(account_id, sub.offer)

    # --- renewals ------------------------------------------------------------------------------

    def renew_due(self, ledger: Ledger, catalog: Catalog, now_ms: int) -> list[Renewal]:
        """Renew every subscription whose boundary is at or before `now_ms`, each at its own
        instant, boundaries in time order (then account, offer): the fee is taken, the
        allowances reset or roll over; an unpaid fee suspends or cancels as the offer says."""
        done: list[Renewal] = []
        while True:
            at = self._renew_due.earliest()
            if at is None or at > now_ms:
                return done
            for account_id, name in sorted(self._renew_due.pop_due(at)):
                sub = self.find(account_id, name)
                if sub is None or sub.next_ms != at:
                    continue
                done.extend(self._renew(ledger, catalog, account_id, sub, at))

    def _renew(
        self, ledger: Ledger, catalog: Catalog, account_id: str, sub: Subscription, at_ms: int
    ) -> list[Renewal]:
        offer = catalog.offers.get(sub.offer)
        sub.period += 1
        if offer is None:  # no longer in the catalog: nothing to renew, no fee, no units
            self._expire_all(sub)
            sub.suspended = True
            sub.next_ms = None
            return []
        op_id = fee_operation_id(account_id, offer.name, sub.serial, sub.period)
        paid = True
        if offer.fee:
            outcome = ledger.apply(
                Debit(id=op_id, now_ms=at_ms, account_id=account_id, amount=offer.fee)
            )
            paid = outcome.code is Code.OK
        renewal = Renewal(
            account_id=account_id,
            offer=offer.name,
            period=sub.period,
            at_ms=at_ms,
            fee=offer.fee,
            paid=paid,
            operation_id=op_id,
        )
        if not paid and offer.on_unpaid is Unpaid.CANCEL:
            self._expire_all(sub)
            sub.next_ms = None
            self.unsubscribe(account_id, sub.offer)
            return [renewal]
        if paid:
            sub.fees_paid += offer.fee
        by_name = {a.name: a for a in offer.allowances}
        for bal in sub.balances:
            allowance = by_name.get(bal.allowance)
            left = bal.available
            if not paid or allowance is None:
                bal.expired += left
                bal.available = 0
                continue
            if allowance.rollover_cap is not None and not sub.suspended:
                after = min(left + allowance.units, allowance.rollover_cap)
            else:
                after = allowance.units
            bal.credited += allowance.units
            bal.expired += left + allowance.units - after
            bal.available = after
        if paid:  # allowances the offer gained since (a new catalog): given from now on
            held_names = {bal.allowance for bal in sub.balances}
            sub.balances.extend(
                UnitBalance(allowance=a.name, available=a.units, credited=a.units)
                for a in offer.allowances
                if a.name not in held_names
            )
        sub.suspended = not paid
        sub.next_ms = (
            boundary(offer.period, sub.anchor_ms, sub.period + 1, catalog.timezone)
            if offer.period is not PeriodKind.ONCE
            else None
        )
        if sub.next_ms is not None:
            self._renew_due.add(sub.next_ms, (account_id, sub.offer))
        return [renewal]

    def retry(
        self, ledger: Ledger, catalog: Catalog, account_id: str, now_ms: int
    ) -> list[Renewal]:
        """Try again the fee of each suspended subscription of the account (after a top-up):
        paid, it resumes at `now_ms` with its allowances' `units` for the rest of the current
        period; the period's fee is taken once (the subscription is no longer suspended)."""
        done: list[Renewal] = []
        for sub in list(self._subs.get(account_id, ())):
            offer = catalog.offers.get(sub.offer)
            if not sub.suspended or offer is None or sub.next_ms is None:
                continue
            op_id = f"{fee_operation_id(account_id, offer.name, sub.serial, sub.period)}|retry"
            if offer.fee:
                outcome = ledger.apply(
                    Debit(id=op_id, now_ms=now_ms, account_id=account_id, amount=offer.fee),
                    internal=True,  # applied once: only a suspended subscription retries
                )
                if outcome.code is not Code.OK:
                    continue
            sub.fees_paid += offer.fee
            sub.suspended = False
            held_names = {bal.allowance for bal in sub.balances}
            sub.balances.extend(
                UnitBalance(allowance=a.name, available=0)
                for a in offer.allowances
                if a.name not in held_names
            )
            by_name = {a.name: a for a in offer.allowances}
            for bal in sub.balances:
                allowance = by_name.get(bal.allowance)
                if allowance is not None:
                    bal.credited += allowance.units - bal.available
                    bal.available = allowance.units
            done.append(
                Renewal(
                    account_id=account_id,
                    offer=offer.name,
                    period=sub.period,
                    at_ms=now_ms,
                    fee=offer.fee,
                    paid=True,
                    operation_id=op_id,
                )
            )
        return done

    @staticmethod
    def _expire_all(sub: Subscription) -> None:
        for bal in sub.balances:
            bal.expired += bal.available
            bal.available = 0

    # --- drawing -------------------------------------------------------------------------------

    def _candidates(
        self, account_id: str, rg_id: int, catalog: Catalog
    ) -> Iterator[tuple[Subscription, UnitBalance]]:
        """The balances usage of `rg_id` draws on, in the documented order: the offer's
        priority (lower first), then the earliest expiry (never last), then the order of
        subscription; within an offer, its allowances in catalog order."""
        ranked: list[tuple[int, int, int, Subscription, UnitBalance]] = []
        for n, sub in enumerate(self._subs.get(account_id, ())):
            offer = catalog.offers.get(sub.offer)
            if offer is None or sub.suspended:
                continue
            expiry = sub.next_ms if sub.next_ms is not None else 2**63
            for bal in sub.balances:
                allowance = offer.allowance(bal.allowance)
                if allowance is not None and rg_id in allowance.rating_groups:
                    ranked.append((offer.priority, expiry, n, sub, bal))
        ranked.sort(key=lambda r: (r[0], r[1], r[2]))
        for _, _, _, sub, bal in ranked:
            yield sub, bal

    def modifiers(self, account_id: str, rg_id: int, catalog: Catalog) -> tuple[Promotion, ...]:
        """The price modifiers of the account's offers on `rg_id` (offers not suspended), in
        the draw order of the offers; one that overlaps a modifier already taken is left out,
        so at most one applies at any instant. Sorted by start."""
        taken: list[Promotion] = []
        seen: set[str] = set()
        for sub, _ in self._ranked(account_id, catalog):
            if sub.offer in seen:
                continue
            seen.add(sub.offer)
            offer = catalog.offers[sub.offer]
            for modifier in offer.modifiers:
                promo = modifier.promotion
                if rg_id in modifier.rating_groups and not any(
                    promo.start < t.end and t.start < promo.end for t in taken
                ):
                    taken.append(promo)
        return tuple(sorted(taken, key=lambda p: p.start))

    def _ranked(self, account_id: str, catalog: Catalog) -> list[tuple[Subscription, int]]:
        """The account's usable subscriptions in draw order (priority, expiry, subscription)."""
        ranked: list[tuple[int, int, int, Subscription]] = []
        for n, sub in enumerate(self._subs.get(account_id, ())):
            offer = catalog.offers.get(sub.offer)
            if offer is None or sub.suspended:
                continue
            expiry = sub.next_ms if sub.next_ms is not None else 2**63
            ranked.append((offer.priority, expiry, n, sub))
        ranked.sort(key=lambda r: (r[0], r[1], r[2]))
        return [(sub, n) for _, _, n, sub in ranked]

    def available(self, account_id: str, rg_id: int, catalog: Catalog) -> int:
        """Units of `rg_id` the account's allowances could pay now (estimates: on paper)."""
        if account_id not in self._subs:
            return 0
        return sum(bal.available for _, bal in self._candidates(account_id, rg_id, catalog))

    def hold(
        self,
        key: str,
        account_id: str,
        rg_id: int,
        units: int,
        expires_ms: int,
        catalog: Catalog,
    ) -> int:
        """Hold up to `units` on the balances that apply, in order; the units held (0: none,
        and no hold). `key` must not be held already."""
        if account_id not in self._subs or units <= 0:
            return 0
        assert key not in self._holds
        parts = self._take(account_id, rg_id, units, catalog, hold=True)
        if not parts:
            return 0
        self._holds[key] = Hold(account_id=account_id, expires_ms=expires_ms, parts=parts)
        self._hold_due.add(expires_ms, key)
        return sum(part.units for part in parts)

    @property
    def holds(self) -> int:
        """How many unit holds are open."""
        return len(self._holds)

    def held(self, key: str) -> int:
        hold = self._holds.get(key)
        return sum(p.units for p in hold.parts) if hold is not None else 0

    def settle(self, key: str, used: int) -> list[tuple[str, str, int]]:
        """Post a hold: up to `used` units are used, in the order they were held, the rest
        given back. The (offer, allowance, units) used; [] without a hold."""
        hold = self._holds.pop(key, None)
        if hold is None:
            return []
        self._hold_due.discard(hold.expires_ms, key)
        out: list[tuple[str, str, int]] = []
        left = used
        for part in hold.parts:
            take = min(left, part.units)
            left -= take
            bal, current = self._balance_of(hold.account_id, part)
            if bal is not None:
                bal.reserved -= part.units
                bal.used += take
                self._give_back(bal, part.units - take, current)
            if take:
                out.append((part.offer, part.allowance, take))
        return out

    def release(self, key: str) -> None:
        """Void a hold: every unit goes back (to a balance of an earlier period: it expires)."""
        self.settle(key, 0)

    def draw(
        self, account_id: str, rg_id: int, units: int, catalog: Catalog
    ) -> list[tuple[str, str, int]]:
        """Use up to `units` at once, without a hold (usage beyond or without a grant): the
        (offer, allowance, units) drawn."""
        return [
            (p.offer, p.allowance, p.units)
            for p in self.draw_parts(account_id, rg_id, units, catalog)
        ]

    def draw_parts(
        self, account_id: str, rg_id: int, units: int, catalog: Catalog
    ) -> list[HoldPart]:
        """`draw`, telling each balance's subscription and period (so that a refund can give
        the units back, `give_back`)."""
        if account_id not in self._subs or units <= 0:
            return []
        return self._take(account_id, rg_id, units, catalog, hold=False)

    def _take(
        self, account_id: str, rg_id: int, units: int, catalog: Catalog, *, hold: bool
    ) -> list[HoldPart]:
        """Take up to `units` from the balances that apply, in order: held (reserved) for a
        grant, or used at once."""
        out: list[HoldPart] = []
        need = units
        for sub, bal in self._candidates(account_id, rg_id, catalog):
            take = min(need, bal.available)
            if take <= 0:
                continue
            bal.available -= take
            bal.granted += take
            if hold:
                bal.reserved += take
            else:
                bal.used += take
            out.append(
                HoldPart(
                    offer=sub.offer,
                    allowance=bal.allowance,
                    serial=sub.serial,
                    period=sub.period,
                    units=take,
                )
            )
            need -= take
            if not need:
                break
        return out

    def give_back(
        self, account_id: str, parts: list[HoldPart], units: int
    ) -> list[tuple[str, str, int]]:
        """A refund of `units` drawn as `parts`: taken from the last part backwards (`parts`
        is trimmed), credited back to their balances (units of a period that has ended, or of a
        subscription gone, expire at once). The (offer, allowance, units) given back."""
        out: list[tuple[str, str, int]] = []
        while units > 0 and parts:
            part = parts[-1]
            take = min(units, part.units)
            units -= take
            if take == part.units:
                parts.pop()
            else:
                parts[-1] = HoldPart(
                    offer=part.offer,
                    allowance=part.allowance,
                    serial=part.serial,
                    period=part.period,
                    units=part.units - take,
                )
            bal, current = self._balance_of(account_id, part)
            if bal is not None:
                bal.credited += take
                if current:
                    bal.available += take
                else:
                    bal.expired += take
            out.append((part.offer, part.allowance, take))
        return out

    def _balance_of(self, account_id: str, part: HoldPart) -> tuple[UnitBalance | None, bool]:
        """The balance a hold part was taken from (None if its subscription is gone), and
        whether it is still in the period the part was held in."""
        for sub in self._subs.get(account_id, ()):
            if sub.serial == part.serial:
                for bal in sub.balances:
                    if bal.allowance == part.allowance:
                        return bal, sub.period == part.period and not sub.suspended
        return None, False

    @staticmethod
    def _give_back(bal: UnitBalance, units: int, current: bool) -> None:
        if units <= 0:
            return
        bal.returned += units
        if current:
            bal.available += units
        else:
            bal.expired += units

    def expire_due(self, now_ms: int) -> list[str]:
        """Void the holds whose expiry is at or before `now_ms`: their keys, in order."""
        keys = self._hold_due.pop_due(now_ms)
        for key in keys:
            hold = self._holds.get(key)
            if hold is not None:
                self._hold_due.add(hold.expires_ms, key)  # where `settle` expects it
                self.release(key)
        return keys

    # --- invariants ----------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Raise AssertionError unless every balance's units add up (module docstring)."""
        held: dict[tuple[str, str, int, str], int] = {}
        for hold in self._holds.values():
            for p in hold.parts:
                k = (hold.account_id, p.offer, p.serial, p.allowance)
                held[k] = held.get(k, 0) + p.units
        for account_id, subs in self._subs.items():
            for sub in subs:
                for b in sub.balances:
                    where = f"{account_id}/{sub.offer}/{b.allowance}"
                    if b.available < 0 or b.reserved < 0:
                        raise AssertionError(f"{where}: negative units")
                    if b.available != b.credited - b.expired - b.granted + b.returned:
                        raise AssertionError(f"{where}: available {b.available} out of step")
                    if b.granted != b.used + b.returned + b.reserved:
                        raise AssertionError(
                            f"{where}: granted {b.granted} != used {b.used} + returned "
                            f"{b.returned} + held {b.reserved}"
                        )
                    if held.get((account_id, sub.offer, sub.serial, b.allowance), 0) != (
                        b.reserved
                    ):
                        raise AssertionError(f"{where}: reserved != its open holds")

    # --- snapshots -----------------------------------------------------------------------------

    def state(self) -> OffersState:
        return OffersState(
            subscriptions=[(a, subs) for a, subs in self._subs.items()],
            holds=list(self._holds.items()),
            operations=self.operations,
            serial=self.serial,
        )

    def restore(self, state: OffersState) -> None:
        self._subs = {a: list(subs) for a, subs in state.subscriptions}
        self._holds = dict(state.holds)
        self.operations = dict(state.operations)
        self.serial = state.serial
        self._hold_due = DueSet()
        for key, hold in self._holds.items():
            self._hold_due.add(hold.expires_ms, key)
        self._renew_due = DueSet()
        for account_id, subs in self._subs.items():
            for sub in subs:
                if sub.next_ms is not None:
                    self._renew_due.add(sub.next_ms, (account_id, sub.offer))
