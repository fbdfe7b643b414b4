"""The catalog's `[loan_policy]`: airtime-on-credit loans (docs/catalog.md, *Loan policy*).

Parsed here and called from `rating.catalog.parse_catalog`, so `ocs catalog check` validates
it like the rest of the catalog. Money is a decimal string of currency units, never a float;
the one division (a fee given as a ratio of the amount) names its rounding: up, to the
micro-unit (a fee is a charge).

Plain Python on purpose (not in setup.py's COMPILED list): mypyc would compile nothing here
that matters for speed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from rating.errors import CatalogError
from rating.money import div_ceil, parse_money, parse_ratio
from rating.values import at as _at
from rating.values import integer as _integer

__all__ = ["FEE_ROUNDINGS", "LoanPolicy", "parse_loan_policy"]

#: The roundings a fee ratio may name. Only "up": a fee is a charge, and charges round up.
FEE_ROUNDINGS: Final = ("up",)
_KEYS: Final = (
    "amounts",
    "fee",
    "fee_ratio",
    "fee_rounding",
    "threshold",
    "min_account_age_days",
    "min_topup",
    "topup_window_days",
    "max_outstanding",
    "max_outstanding_amount",
)
#: A loan amount, fee or threshold is at most 10^15 micro-units (one ledger operation).
_MAX_MONEY: Final = 10**15
_MAX_DAYS: Final = 3650


@dataclass(frozen=True, slots=True, kw_only=True)
class LoanPolicy:
    """What loans a subscriber may take, and at what fee (money in micro-units)."""

    amounts: tuple[int, ...]
    """The loan amounts (principal) a subscriber may ask for, increasing."""
    fee: int = 0
    """A fixed fee per loan (used when `fee_ratio` is None)."""
    fee_ratio: Fraction | None = None
    """A fee of ``amount x fee_ratio``, rounded up to the micro-unit."""
    threshold: int = 0
    """A loan may be taken, and the loan balance pays usage, only while the money balance is
    at or below this."""
    min_account_age_days: int = 0
    """The account must have been created at least this many (UTC calendar) days before."""
    min_topup: int = 0
    """With `topup_window_days`: a top-up (CREDIT) of at least this amount in the window."""
    topup_window_days: int = 0
    max_outstanding: int | None = None
    """At most this many loans outstanding (unpaid principal or fee) once the new one is
    taken."""
    max_outstanding_amount: int | None = None
    """At most this much owed (principal + fee outstanding) once the new loan is taken."""

    def fee_for(self, amount: int) -> int:
        """The fee of a loan of `amount`: fixed, or the ratio rounded up (`div_ceil`)."""
        ratio = self.fee_ratio
        if ratio is None:
            return self.fee
        return div_ceil(amount * ratio.numerator, ratio.denominator)


def _money(value: object, path: str) -> int:
    if not isinstance(value, str):
        raise CatalogError(
            path, f'money is a decimal string of currency units, e.g. "2.00" (got {value!r})'
        )
    try:
        amount = parse_money(value)
    except ValueError as exc:
        raise CatalogError(path, str(exc)) from None
    if amount > _MAX_MONEY:
        raise CatalogError(path, f"must be at most {_MAX_MONEY} micro-units")
    return amount


def parse_loan_policy(value: object, path: str = "loan_policy") -> LoanPolicy:
    """The `[loan_policy]` table; raises `CatalogError` naming the key at fault."""
    if not isinstance(value, Mapping):
        raise CatalogError(path, "expected a table")
    unknown = sorted(set(value) - set(_KEYS))
    if unknown:
        raise CatalogError(_at(path, unknown[0]), f"unknown key (known: {', '.join(_KEYS)})")
    raw_amounts = value.get("amounts")
    if not isinstance(raw_amounts, list) or not raw_amounts:
        raise CatalogError(_at(path, "amounts"), 'a non-empty list, e.g. ["1.00", "2.00"]')
    amounts: list[int] = []
    for i, item in enumerate(raw_amounts):
        amount = _money(item, f"{path}.amounts[{i}]")
        if amount <= 0:
            raise CatalogError(f"{path}.amounts[{i}]", "must be positive")
        if amounts and amount <= amounts[-1]:
            raise CatalogError(f"{path}.amounts[{i}]", "amounts must be strictly increasing")
        amounts.append(amount)
    if "fee" in value and "fee_ratio" in value:
        raise CatalogError(_at(path, "fee_ratio"), "give either fee or fee_ratio, not both")
    fee = _money(value["fee"], _at(path, "fee")) if "fee" in value else 0
    ratio: Fraction | None = None
    if "fee_ratio" in value:
        text = value["fee_ratio"]
        if not isinstance(text, str):
            raise CatalogError(_at(path, "fee_ratio"), 'a decimal or a fraction string ("1/10")')
        try:
            ratio = parse_ratio(text)
        except ValueError as exc:
            raise CatalogError(_at(path, "fee_ratio"), str(exc)) from None
        rounding = value.get("fee_rounding")
        if rounding not in FEE_ROUNDINGS:
            raise CatalogError(
                _at(path, "fee_rounding"),
                'required with fee_ratio, and "up" (a fee is a charge: rounded up)',
            )
    elif "fee_rounding" in value:
        raise CatalogError(_at(path, "fee_rounding"), "only with fee_ratio")
    threshold = _money(value.get("threshold", "0"), _at(path, "threshold"))
    age = _int(value.get("min_account_age_days", 0), _at(path, "min_account_age_days"), lo=0,
               hi=_MAX_DAYS)  # fmt: skip
    min_topup = _money(value.get("min_topup", "0"), _at(path, "min_topup"))
    window = _int(value.get("topup_window_days", 0), _at(path, "topup_window_days"), lo=0,
                  hi=_MAX_DAYS)  # fmt: skip
    if min_topup and not window:
        raise CatalogError(_at(path, "topup_window_days"), "required (>= 1) with min_topup")
    if window and not min_topup:
        raise CatalogError(_at(path, "min_topup"), "required (> 0) with topup_window_days")
    most = None
    if "max_outstanding" in value:
        most = _int(value["max_outstanding"], _at(path, "max_outstanding"), lo=1, hi=1000)
    most_amount = None
    if "max_outstanding_amount" in value:
        most_amount = _money(value["max_outstanding_amount"], _at(path, "max_outstanding_amount"))
    policy = LoanPolicy(
        amounts=tuple(amounts),
        fee=fee,
        fee_ratio=ratio,
        threshold=threshold,
        min_account_age_days=age,
        min_topup=min_topup,
        topup_window_days=window,
        max_outstanding=most,
        max_outstanding_amount=most_amount,
    )
    for i, amount in enumerate(amounts):
        if amount + policy.fee_for(amount) > _MAX_MONEY:
            raise CatalogError(f"{path}.amounts[{i}]", "amount + fee above 10^15 micro-units")
    return policy


def _int(value: object, path: str, *, lo: int, hi: int) -> int:
    return _integer(value, path, lo=lo, hi=hi)
