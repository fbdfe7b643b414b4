"""The rating engine: usage -> money (``price*``) and money -> quota (``affordable``).

Pure functions of a ``RatingGroup`` and integers. Time is int seconds since the Unix epoch (UTC),
the Diameter Time of WIRE.md; money is int micro-units; units are ints in the group's unit.

Rules (each rounding is named; ``docs/catalog.md`` explains them with examples):

* **Billing increments are cumulative per session.** The caller passes ``prior_units``, the
  units of this session and rating group already rated. Billed units are
  ``B(prior + units) - B(prior)`` where ``B`` rounds a cumulative count up to the increment
  structure (``Billing.billed``, ``div_ceil``). Positions ``[B(prior), B(prior + units))`` are
  this report's *billed positions*; volume tiers are ranges of billed positions.
* **Money is cumulative too (rule CUMULATIVE_CEIL).** At a rate of ``r`` micro-units per unit,
  billed positions ``[a, b)`` cost ``ceil(r*b) - ceil(r*a)``. Reports at one tariff therefore
  add up to exactly ``ceil(r * total billed)``: splitting usage into any number of reports
  never costs more, or less, than one report; the session total is rounded up once. Where the
  tariff changes, each side follows the same rule at its own rate.
* **A tariff change splits usage (rule APPORTION_FLOOR).** Usage over ``[start, end]`` is cut
  at every instant where the rate changes. Units are apportioned to the parts in proportion to
  their duration, in time order: each part but the last gets ``floor(remaining units x its
  duration / remaining duration)`` and the last part gets the rest. A started increment is
  charged in the part where it was started (billing positions are contiguous across parts).
* **Grants round down.** ``affordable`` returns the largest number of units that costs at most
  the amount at the dearest rate in force anywhere in the window, and it always ends on an
  increment boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rating.model import RatingGroup
from rating.money import div_floor
from rating.tariff import MAX_TIME, MIN_TIME, Rate

__all__ = [
    "Charge",
    "ChargePart",
    "affordable",
    "billed_units",
    "dearest_rates",
    "next_tariff_change",
    "price",
    "price_at",
    "price_dearest",
    "price_event",
    "rates_at",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePart:
    """One part of a charge: a stretch of time at one rate, within one volume tier."""

    start: int
    end: int
    tier: int
    units: int
    """Used units attributed to this part."""
    billed_units: int
    """Billed units (positions) this part adds; a started increment is billed where it
    started."""
    rate: Rate
    charge: int
    """Micro-units (CUMULATIVE_CEIL)."""


_Segment = tuple[int, int, int, int, int, Rate, int]
"""(start, end, tier, units, billed_units, rate, charge): a ``ChargePart`` before it is built."""


class Charge:
    """The price of some usage: immutable. A plain class, not a frozen dataclass: the rating
    engine is compiled (mypyc), which makes this a native class, cheap to build, where a frozen
    dataclass's `__init__` runs in the interpreter; one or two are built per CCR. `Final` attributes
    are read-only in the compiled build (and for mypy)."""

    __slots__ = ("billed_units", "prior_units", "segments", "total", "units")

    def __init__(
        self,
        *,
        total: int,
        units: int,
        billed_units: int,
        prior_units: int,
        segments: tuple[_Segment, ...],
    ) -> None:
        #: Micro-units; the sum of the parts' charges. Never includes the setup fee.
        self.total: Final = total
        self.units: Final = units
        self.billed_units: Final = billed_units
        self.prior_units: Final = prior_units
        #: The breakdown as plain tuples; ``parts`` builds the objects (only when asked, to
        #: keep the hot path cheap).
        self.segments: Final = segments

    def _key(self) -> tuple[int, int, int, int, tuple[_Segment, ...]]:
        return (self.total, self.units, self.billed_units, self.prior_units, self.segments)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charge) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Charge(total={self.total!r}, units={self.units!r}, "
            f"billed_units={self.billed_units!r}, prior_units={self.prior_units!r})"
        )

    @property
    def parts(self) -> tuple[ChargePart, ...]:
        """The breakdown: one part per stretch of time at one rate and volume tier."""
        return tuple(
            ChargePart(
                start=start,
                end=end,
                tier=tier,
                units=units,
                billed_units=billed,
                rate=rate,
                charge=charge,
            )
            for start, end, tier, units, billed, rate, charge in self.segments
        )


def _check_units(units: int, prior_units: int) -> None:
    if units < 0:
        raise ValueError(f"units must be >= 0, got {units}")
    if prior_units < 0:
        raise ValueError(f"prior_units must be >= 0, got {prior_units}")


def _check_window(start: int, end: int) -> None:
    if not MIN_TIME <= start <= end < MAX_TIME:
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        raise ValueError(f"instants must be in [{MIN_TIME}, {MAX_TIME}), got {start}, {end}")


def _segments(
    rates: tuple[Rate, ...],
    tier_starts: tuple[int, ...],
    start: int,
    end: int,
    used0: int,
    used1: int,
    billed0: int,
    billed1: int,
    out: list[_Segment],
) -> int:
    """Charge billed positions [billed0, billed1) at ``rates`` (one per tier); append parts."""
    if len(rates) == 1 or billed1 <= tier_starts[1]:
        # One tier (used units never exceed billed units, so they are in tier 0 too).
        rate = rates[0]
        charge = rate.cumulative(billed1) - rate.cumulative(billed0)
        out.append((start, end, 0, used1 - used0, billed1 - billed0, rate, charge))
        return charge
    total = 0
    emitted = False
    last = len(tier_starts) - 1
    for tier, lo in enumerate(tier_starts):
        hi = tier_starts[tier + 1] if tier < last else None
        b0 = max(billed0, lo)
        b1 = billed1 if hi is None else min(billed1, hi)
        u0 = max(used0, lo)
        u1 = used1 if hi is None else min(used1, hi)
        if b0 < b1 or u0 < u1:
            rate = rates[tier]
            billed = max(b1 - b0, 0)
            charge = rate.cumulative(b1) - rate.cumulative(b0) if billed else 0
            out.append((start, end, tier, max(u1 - u0, 0), billed, rate, charge))
            total += charge
            emitted = True
    if not emitted:
        tier = 0
        while tier < last and tier_starts[tier + 1] <= billed0:
            tier += 1
        out.append((start, end, tier, 0, 0, rates[tier], 0))
    return total


def _one_rate(
    rg: RatingGroup, rates: tuple[Rate, ...], units: int, start: int, end: int, prior: int
) -> Charge:
    billing = rg.billing
    billed0 = billing.billed(prior)
    billed1 = billing.billed(prior + units)
    parts: list[_Segment] = []
    total = _segments(
        rates, rg.tariff.tier_starts, start, end, prior, prior + units, billed0, billed1, parts
    )
    return Charge(
        total=total,
        units=units,
        billed_units=billed1 - billed0,
        prior_units=prior,
        segments=tuple(parts),
    )


def price(rg: RatingGroup, units: int, start: int, end: int, prior_units: int = 0) -> Charge:
    """The charge for ``units`` used over [start, end], after ``prior_units`` of the session.

    The usage is split at every tariff change in (start, end) (APPORTION_FLOOR) and each part
    charged at its own rate (CUMULATIVE_CEIL). ``start == end`` is usage at one instant.
    """
    _check_units(units, prior_units)
    _check_window(start, end)
    tariff = rg.tariff
    timeline = tariff.timeline
    change = timeline.next_change(start, end)
    if change is None:
        return _one_rate(rg, tariff.rates_at(start), units, start, end, prior_units)
    cuts = [start]
    while change is not None:
        cuts.append(change)
        change = timeline.next_change(change, end)
    cuts.append(end)
    billing = rg.billing
    tier_starts = tariff.tier_starts
    remaining = units
    remaining_time = end - start
    used = prior_units
    billed_prior = billed = billing.billed(used)
    parts: list[_Segment] = []
    total = 0
    last = len(cuts) - 2
    for i in range(last + 1):
        t0, t1 = cuts[i], cuts[i + 1]
        share = remaining if i == last else div_floor(remaining * (t1 - t0), remaining_time)
        remaining -= share
        remaining_time -= t1 - t0
        used_next = used + share
        billed_next = billing.billed(used_next)
        total += _segments(
            tariff.rates_at(t0), tier_starts, t0, t1, used, used_next, billed, billed_next, parts
        )
        used, billed = used_next, billed_next
    return Charge(
        total=total,
        units=units,
        billed_units=billed - billed_prior,
        prior_units=prior_units,
        segments=tuple(parts),
    )


def price_at(rg: RatingGroup, units: int, at: int, prior_units: int = 0) -> Charge:
    """The charge for ``units`` attributed to the instant ``at`` (one rate: the one in force at
    ``at``). Use it for usage the client already split at a tariff change: UNIT_BEFORE at the
    grant's start, UNIT_AFTER at the Tariff-Time-Change (with ``prior_units`` + the before
    units)."""
    _check_units(units, prior_units)
    _check_window(at, at)
    return _one_rate(rg, rg.tariff.rates_at(at), units, at, at, prior_units)


def price_event(rg: RatingGroup, units: int, at: int) -> Charge:
    """The charge of an event (SMS, direct debit) of ``units`` at ``at``: a fresh count
    (prior 0, so the first increment applies), no setup fee."""
    return price_at(rg, units, at, 0)


def price_dearest(
    rg: RatingGroup, units: int, start: int, end: int, prior_units: int = 0
) -> Charge:
    """The charge for ``units`` with every tier at the dearest rate in force anywhere in
    [start, end) (just the rate at ``start`` if ``end == start``). This is the price a grant is
    reserved at, and the price of UNIT_INDETERMINATE usage."""
    _check_units(units, prior_units)
    _check_window(start, end)
    return _one_rate(rg, rg.tariff.worst_rates(start, end), units, start, end, prior_units)


def rates_at(rg: RatingGroup, at: int) -> tuple[Rate, ...]:
    """The rates (one per volume tier) in force at ``at``."""
    _check_window(at, at)
    return rg.tariff.rates_at(at)


def dearest_rates(rg: RatingGroup, start: int, end: int) -> tuple[Rate, ...]:
    """Per volume tier, the dearest rate in force at any instant of [start, end)."""
    _check_window(start, end)
    return rg.tariff.worst_rates(start, end)


def billed_units(rg: RatingGroup, units: int, prior_units: int = 0) -> int:
    """Billed units for ``units`` after ``prior_units`` (cumulative increments)."""
    _check_units(units, prior_units)
    billing = rg.billing
    return billing.billed(prior_units + units) - billing.billed(prior_units)


def affordable(
    rg: RatingGroup, amount: int, start: int, end: int, prior_units: int = 0
) -> int | None:
    """The most units ``amount`` micro-units pays for over the window [start, end), after
    ``prior_units``, at the dearest rate in force anywhere in the window; None if unlimited
    (the dearest rate is zero from some point the amount reaches).

    The result ``u`` ends on an increment boundary (``prior_units + u`` is billable) and is
    exact: ``price_dearest(u) <= amount < price_dearest(u + 1)``. Units that a started
    increment already paid for are included (they cost nothing). Grants round down
    (``div_floor``). The setup fee is not considered: subtract it first.
    """
    if amount < 0:
        raise ValueError(f"amount must be >= 0, got {amount}")
    _check_units(0, prior_units)
    _check_window(start, end)
    rates = rg.tariff.worst_rates(start, end)
    tier_starts = rg.tariff.tier_starts
    billing = rg.billing
    billed_prior = position = billing.billed(prior_units)
    budget = amount
    last = len(tier_starts) - 1
    tier = 0
    while tier < last and tier_starts[tier + 1] <= position:
        tier += 1
    while True:
        rate = rates[tier]
        hi = tier_starts[tier + 1] if tier < last else None
        if rate.num == 0:
            if hi is None:
                return None
            position = hi
            tier += 1
            continue
        # Largest x with ceil(r*x) - ceil(r*position) <= budget:
        # r*x <= budget + ceil(r*position)  <=>  x <= floor((budget + c) * den / num).
        base = rate.cumulative(position)
        limit = div_floor((budget + base) * rate.den, rate.num)
        if hi is not None and limit >= hi:
            budget -= rate.cumulative(hi) - base
            position = hi
            tier += 1
            continue
        reach = billing.grid_floor(limit)
        return max(reach, billed_prior) - prior_units


def next_tariff_change(rg: RatingGroup, start: int, end: int) -> int | None:
    """The first instant in (start, end) where the rate of ``rg`` changes (a period boundary
    or a promotion start/end with a different price), or None."""
    _check_window(start, end)
    return rg.tariff.timeline.next_change(start, end)
