"""Load-modulated prices in the charging core (docs/charging.md "Load-modulated prices").

The catalog's ``[load]`` section (``rating.load.LoadPolicy``) names a measure of load and bands
with exact factors and hysteresis. This module holds what the core needs to apply it:

* the band in force (an index: 0 the base band, i the catalog's band i), moved only when the
  core decides a grant or a direct debit of a load-priced rating group (``commit``), by
  ``rating.load.next_band`` on the load measured then;
* for the "grants" measure, the grants of load-priced groups made per second of input time
  over the last window (one count per second at most, oldest first, and their total);
* rating groups with every rate multiplied by a band's factor (``priced``), built on first
  use per catalog.

Everything here is a function of the journaled inputs (their times and what they did) and the
catalog in force: no clock, no machine figure, so replay moves the band exactly as it moved
live. It is part of the core's snapshot (``LoadState``, ``CoreState.load_pricing``). Plain
Python (not compiled), ``mypy --strict`` clean.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import msgspec

from rating.load import LoadMeasure, LoadPolicy, next_band
from rating.model import Catalog, RatingGroup
from rating.tariff import Rate, Tariff

_PRICED_CACHE_LIMIT: Final = 1024


class LoadState(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """The load pricing part of a core snapshot."""

    band: int = 0  # the band in force (0: base)
    # (second, grants of load-priced groups made in it), oldest first, within the window
    grants: list[tuple[int, int]] = []


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadDecision:
    """A band a grant or debit is priced in (one per band of the catalog, built once)."""

    index: int  # 0: the base band
    name: str
    factor: Fraction
    factor_text: str  # as the catalog writes it: "1", "3/2" (`Load-Factor`, `loadFactor`)


_ONE: Final = Fraction(1)


def factor_text(factor: Fraction) -> str:
    """An exact factor as the catalog writes it: "2", "3/2"."""
    return str(factor)


class LoadPricing:
    """The band in force, the recent grants, and banded rating groups (see the module). Holds
    the load policy of the catalog in force (`catalog_changed`)."""

    __slots__ = (
        "_decisions",
        "_factors",
        "_grants",
        "_max_factor",
        "_policy",
        "_priced",
        "_total",
        "band",
    )

    def __init__(self, catalog: Catalog) -> None:
        self.band = 0
        self._grants: deque[list[int]] = deque()  # [second, count]
        self._total = 0
        self._priced: dict[tuple[int, int, int], RatingGroup] = {}
        # (rating group, num, den) of a grant -> the factor it is charged at and its text
        self._factors: dict[tuple[int, int, int], tuple[Fraction, str]] = {}
        self._policy: LoadPolicy | None = None
        self._decisions: tuple[LoadDecision, ...] = ()
        self._max_factor = _ONE
        self.catalog_changed(catalog)

    # -- deciding -------------------------------------------------------------------------------

    def measure(self, policy: LoadPolicy, open_sessions: int, now_s: int) -> int:
        """The load now: the open sessions, or the grants of the window (the one being
        decided left out)."""
        if policy.measure is LoadMeasure.SESSIONS:
            return open_sessions
        horizon = now_s - policy.window_s  # counted: grants at seconds > horizon
        total = self._total
        for second, count in self._grants:
            if second > horizon:
                break
            total -= count
        return total

    def decide(self, rating_group: int, open_sessions: int, now_s: int) -> LoadDecision | None:
        """The band a grant of `rating_group` decided now would be priced in (nothing moves:
        `commit` does, once the grant is made). None: the group is not load-priced."""
        policy = self._policy
        if policy is None or not policy.applies(rating_group):
            return None
        load = self.measure(policy, open_sessions, now_s)
        return self._decisions[next_band(policy.bands, self.band, load)]

    def commit(self, decision: LoadDecision, now_s: int) -> None:
        """A grant (or debit) priced in `decision` was made at `now_s`: the band is in force,
        and the grant counts toward the "grants" measure."""
        self.band = decision.index
        policy = self._policy
        if policy is None or policy.measure is not LoadMeasure.GRANTS:
            return
        grants = self._grants
        horizon = now_s - policy.window_s
        while grants and grants[0][0] <= horizon:
            self._total -= grants.popleft()[1]
        if grants and grants[-1][0] >= now_s:  # same second (or a clock that went back)
            grants[-1][1] += 1
        else:
            grants.append([now_s, 1])
        self._total += 1

    def band_name(self) -> str | None:
        """The name of the band in force; None if the catalog has no load bands."""
        return self._decisions[self.band].name if self._decisions else None

    # -- pricing --------------------------------------------------------------------------------

    def priced(self, rg: RatingGroup, factor: Fraction, band: str) -> RatingGroup:
        """`rg` with every rate multiplied by `factor` (exact), labelled with the band; `rg`
        itself for factor 1."""
        if factor == 1:
            return rg
        # by tariff: a group's variants (the price modifiers of an account's offers) differ
        key = (id(rg.tariff), factor.numerator, factor.denominator)
        found = self._priced.get(key)
        if found is not None and found.tariff.timeline is rg.tariff.timeline:
            return found
        if len(self._priced) >= _PRICED_CACHE_LIMIT:
            self._priced.clear()
        tariff = rg.tariff
        class_rates = tuple(
            tuple(_scaled(rate, factor, band) for rate in rates) for rates in tariff.class_rates
        )
        banded = RatingGroup(
            id=rg.id,
            name=rg.name,
            unit=rg.unit,
            price=rg.price,
            block=rg.block,
            billing=rg.billing,
            setup_fee=rg.setup_fee,
            zero_rated=rg.zero_rated,
            timezone=rg.timezone,
            periods=rg.periods,
            tiers=rg.tiers,
            promotions=rg.promotions,
            linked_rating_groups=rg.linked_rating_groups,
            grant=rg.grant,
            tariff=Tariff(
                tier_starts=tariff.tier_starts, class_rates=class_rates, timeline=tariff.timeline
            ),
        )
        self._priced[key] = banded
        return banded

    def bound_factor(self, rating_group: int) -> Fraction:
        """The most any usage of `rating_group` is charged at, relative to its rates: the
        largest factor of the catalog's bands (at least 1), or 1 if it is not load-priced."""
        policy = self._policy
        if policy is None or not policy.applies(rating_group):
            return _ONE
        return self._max_factor

    def grant_factor(self, rating_group: int, num: int, den: int) -> tuple[Fraction, str]:
        """The factor (and its text) a grant recorded as `num/den` is charged at: its own, but
        never more than the catalog in force allows for the group (`bound_factor`, after a
        catalog change)."""
        key = (rating_group, num, den)
        found = self._factors.get(key)
        if found is None:
            recorded = Fraction(num, den)
            bound = self.bound_factor(rating_group)
            factor = recorded if recorded <= bound else bound
            if len(self._factors) >= _PRICED_CACHE_LIMIT:
                self._factors.clear()
            found = self._factors[key] = (factor, factor_text(factor))
        return found

    def catalog_changed(self, catalog: Catalog) -> None:
        """A new catalog: its policy and bands; banded groups are built again; the band in
        force stays (clamped to the bands the catalog has); the window's counts stay."""
        self._priced.clear()
        self._factors.clear()
        policy = self._policy = catalog.load
        if policy is None:
            self._decisions = ()
            self._max_factor = _ONE
            self.band = 0
            return
        decisions = []
        for index in range(len(policy.bands) + 1):
            name, factor = policy.band(index)
            decisions.append(
                LoadDecision(index=index, name=name, factor=factor, factor_text=factor_text(factor))
            )
        self._decisions = tuple(decisions)
        self._max_factor = policy.max_factor
        self.band = min(self.band, len(policy.bands))

    # -- snapshots ------------------------------------------------------------------------------

    def state(self) -> LoadState:
        return LoadState(band=self.band, grants=[(s, c) for s, c in self._grants])

    def restore(self, state: LoadState | None, catalog: Catalog) -> None:
        state = state if state is not None else LoadState()
        self.band = state.band
        self._grants = deque([s, c] for s, c in state.grants)
        self._total = sum(c for _, c in state.grants)
        self.catalog_changed(catalog)


def _scaled(rate: Rate, factor: Fraction, band: str) -> Rate:
    per_unit = Fraction(rate.num, rate.den) * factor
    return Rate(
        num=per_unit.numerator,
        den=per_unit.denominator,
        block=rate.block,
        tier=rate.tier,
        period=rate.period,
        promotion=rate.promotion,
        label=f"{rate.label}, load {band} x{factor}",
    )
