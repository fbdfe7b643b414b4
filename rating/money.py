"""Exact integer money and the named roundings every division in `rating` goes through.

Money is an ``int`` of micro-units: ``MICRO`` (1,000,000) is one unit of the currency. No float
is ever produced or accepted. Every division says which way it rounds:

* ``div_floor`` rounds towards minus infinity (grants, apportioning, thresholds);
* ``div_ceil`` rounds towards plus infinity (charges).

Decimal text such as ``"0.02"`` is parsed digit by digit, never through ``float``.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

MICRO: Final = 1_000_000
"""Micro-units in one currency unit."""

MICRO_DIGITS: Final = 6

_DECIMAL_RE = re.compile(r"(\d+)(?:\.(\d+))?")
"""Unsigned decimal text: money (``parse_money``) and decimal ratios (``parse_ratio``)."""
_RATIO_FRACTION_RE = re.compile(r"(\d+)/(\d+)")


def div_floor(a: int, b: int) -> int:
    """``a / b`` rounded down (towards minus infinity). ``b`` must be positive."""
    if b <= 0:
        raise ZeroDivisionError("div_floor needs a positive divisor")
    return a // b


def div_ceil(a: int, b: int) -> int:
    """``a / b`` rounded up (towards plus infinity). ``b`` must be positive."""
    if b <= 0:
        raise ZeroDivisionError("div_ceil needs a positive divisor")
    return -((-a) // b)


def floor_to_multiple(a: int, step: int) -> int:
    """Largest multiple of ``step`` that is <= ``a`` (rounds down)."""
    return div_floor(a, step) * step


def ceil_to_multiple(a: int, step: int) -> int:
    """Smallest multiple of ``step`` that is >= ``a`` (rounds up)."""
    return div_ceil(a, step) * step


def parse_money(text: str) -> int:
    """Parse a non-negative decimal amount of currency units into micro-units, exactly.

    ``"0.02"`` -> 20000; ``"12"`` -> 12000000. At most six decimals (one micro-unit): a value
    that would need rounding is refused rather than rounded. Raises ``ValueError``.
    """
    if text.startswith("-"):
        raise ValueError(f"negative amount {text!r}")
    match = _DECIMAL_RE.fullmatch(text)
    if match is None:
        raise ValueError(f'not a decimal amount: {text!r} (expected digits, e.g. "0.02")')
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > MICRO_DIGITS:
        extra = frac[MICRO_DIGITS:]
        if extra.strip("0"):
            raise ValueError(f"{text!r} has more than {MICRO_DIGITS} decimals (finer than 1e-6)")
        frac = frac[:MICRO_DIGITS]
    return int(whole) * MICRO + int(frac.ljust(MICRO_DIGITS, "0"))


def parse_ratio(text: str) -> Fraction:
    """Parse a non-negative exact ratio: a decimal (``"0.2"``) or a fraction (``"1/3"``)."""
    if text.startswith("-"):
        raise ValueError(f"negative value {text!r}")
    match = _DECIMAL_RE.fullmatch(text)
    if match is not None:
        whole, frac = match.group(1), match.group(2) or ""
        return Fraction(int(whole + frac), 10 ** len(frac))
    match = _RATIO_FRACTION_RE.fullmatch(text)
    if match is not None:
        den = int(match.group(2))
        if den == 0:
            raise ValueError(f"zero denominator in {text!r}")
        return Fraction(int(match.group(1)), den)
    raise ValueError(f'not an exact decimal or fraction: {text!r} (e.g. "0.2" or "1/3")')


def format_money(micro: int, decimals: int = MICRO_DIGITS) -> str:
    """Render micro-units as a decimal string with ``decimals`` places (0..6).

    With fewer than six places the value is rounded up (``div_ceil``) for display only.
    """
    if not 0 <= decimals <= MICRO_DIGITS:
        raise ValueError("decimals must be between 0 and 6")
    sign = "-" if micro < 0 else ""
    step = 10 ** (MICRO_DIGITS - decimals)
    scaled = div_ceil(abs(micro), step)
    if decimals == 0:
        return f"{sign}{scaled}"
    whole, frac = divmod(scaled, 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def format_exact(micro: int, min_decimals: int = 2) -> str:
    """Render micro-units exactly, with as few decimals as possible but at least
    ``min_decimals`` (0..6): 20000 -> "0.02", 5000 -> "0.005", 19 -> "0.000019"."""
    text = format_money(micro)
    whole, frac = text.split(".")
    frac = frac.rstrip("0").ljust(min_decimals, "0")
    return f"{whole}.{frac}" if frac else whole


def unit_value(micro: int) -> tuple[int, int]:
    """Micro-units as a Diameter ``Unit-Value`` pair ``(Value-Digits, Exponent)``, exactly.

    Trailing zeros are folded into the exponent: 20000 -> (2, -2); 1500000 -> (15, -1).
    """
    digits, exponent = micro, -MICRO_DIGITS
    while digits != 0 and digits % 10 == 0 and exponent < 0:
        digits //= 10
        exponent += 1
    if digits == 0:
        exponent = 0
    return digits, exponent
