"""Money: integer minor units everywhere, rounded once, half-up, formatted for people."""

import math
from decimal import Decimal
from fractions import Fraction

# Every currency we bill in has two decimal places, so "minor units" is always cents here.
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def _currency(code: str) -> str:
    code = code.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {code!r}")
    return code


def round_half_up(value: Decimal | Fraction | int) -> int:
    """Round to whole minor units, halves away from zero (0.5 -> 1, -0.5 -> -1)."""
    # Floats are refused: by the time a price is a float it is already off by a fraction of a cent.
    if isinstance(value, bool) or not isinstance(value, Decimal | Fraction | int):
        raise TypeError(f"round_half_up takes Decimal, Fraction or int, not {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"cannot round {value} to minor units")
    # Exact rational arithmetic: Decimal.quantize would fail beyond 28 digits of context precision.
    return round_ratio(*value.as_integer_ratio())


def round_ratio(numerator: int, denominator: int) -> int:
    """``round_half_up(Fraction(numerator, denominator))`` in integers alone: a tax or a discount
    worked out for every line of a billing run without building a Fraction for each step."""
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return -whole if numerator < 0 else whole


def to_major(cents: int) -> Decimal:
    """49900 -> Decimal("499.00"): major units with exactly two places, for API bodies."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"minor units are an int, not {type(cents).__name__}")
    # Built from the digits, so no context precision or rounding is involved.
    return Decimal(f"{cents}e-2")


def format_amount(minor_units: Decimal | int, currency: str) -> str:
    """Any amount of minor units, sub-cent ones too: 5 -> "$0.05", Decimal("0.5") -> "$0.005"."""
    code = _currency(currency)
    sign, digits, exponent = Decimal(minor_units).as_tuple()
    # Built from the digits: dividing by 100 or abs() would round under the 28-digit context.
    major = Decimal((0, digits, exponent - 2))
    whole, _, fraction = f"{major:,f}".partition(".")
    # At least two places, more only when a unit price needs them; never scientific notation.
    number = f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
    sign = "-" if sign and major else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def format_money(cents: int, currency: str) -> str:
    """Whole cents for people: "$499.00", "-$12.50", "€1,234.56"; no known symbol: "1,234.56 XYZ"."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"minor units are an int, not {type(cents).__name__}")
    return format_amount(cents, currency)


def allocate(amount: int, weights: list[int]) -> list[int]:
    """``amount`` shared out in proportion to ``weights`` (which may be negative, but must not sum
    to zero unless ``amount`` is zero), in whole minor units that sum to ``amount`` exactly: each
    share rounded down, the units left over given to the largest remainders (first come first)."""
    total = sum(weights)
    if amount == 0 or not weights:
        return [0] * len(weights)
    if total == 0:
        raise ValueError("cannot allocate an amount over weights that sum to zero")
    exact = [Fraction(amount * weight, total) for weight in weights]
    shares = [math.floor(share) for share in exact]
    left = amount - sum(shares)
    # Largest remainder first; among equal remainders, the earlier line.
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += 1
    return shares
