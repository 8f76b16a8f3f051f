"""Money helpers: one half-up rounding to whole cents, and amounts people can read."""

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.billing.money import format_amount, format_money, round_half_up, round_ratio, to_major


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), 1),
        (Decimal("-0.5"), -1),
        (Decimal("2.5"), 3),
        (Decimal("-2.5"), -3),
        (Decimal("1.4999999"), 1),
        (Decimal("0.999"), 1),
        (Decimal("-0.4"), 0),
        (Decimal("624.5"), 625),
        (Fraction(1, 3), 0),
        (Fraction(2, 3), 1),
        (Fraction(-1, 2), -1),
        (Fraction(49900, 3), 16633),
        (7, 7),
        (-7, -7),
        (0, 0),
    ],
)
def test_round_half_up_rounds_halves_away_from_zero(value, expected):
    assert round_half_up(value) == expected
    assert type(round_half_up(value)) is int


def test_round_half_up_is_exact_beyond_decimal_context_precision():
    # 40 significant digits: Decimal.quantize under the default 28-digit context would fail.
    assert round_half_up(Decimal("1234567890123456789012345678901234567.5")) == 1234567890123456789012345678901234568
    assert round_half_up(Decimal("1E+40")) == 10**40
    assert round_half_up(Decimal("0.4999999999999999999999999999999999999")) == 0


@pytest.mark.parametrize("value", [0.5, 1.0, True])
def test_round_half_up_refuses_floats_and_bools(value):
    with pytest.raises(TypeError):
        round_half_up(value)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_round_half_up_refuses_non_finite_decimals(value):
    with pytest.raises(ValueError, match="cannot round"):
        round_half_up(value)


@given(st.fractions())
def test_round_half_up_is_nearest_with_ties_away_from_zero(value):
    rounded = round_half_up(value)
    assert abs(value - rounded) <= Fraction(1, 2)
    if abs(value - rounded) == Fraction(1, 2):
        assert abs(rounded) > abs(value)
    assert round_half_up(-value) == -rounded


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6))
def test_round_half_up_treats_decimal_and_fraction_alike(value):
    assert round_half_up(value) == round_half_up(Fraction(value))


@pytest.mark.parametrize(
    ("cents", "currency", "expected"),
    [
        (49900, "USD", "$499.00"),
        (-1250, "USD", "-$12.50"),
        (123456, "EUR", "€1,234.56"),
        (5, "GBP", "£0.05"),
        (0, "USD", "$0.00"),
        (-1, "usd", "-$0.01"),
        (123456, "xyz", "1,234.56 XYZ"),
        (-123456, "CHF", "-1,234.56 CHF"),
        (199900, "USD", "$1,999.00"),
        (10**30 + 7, "USD", "$10,000,000,000,000,000,000,000,000,000.07"),
    ],
)
def test_format_money(cents, currency, expected):
    assert format_money(cents, currency) == expected


@pytest.mark.parametrize("currency", ["US", "USDX", "U$D", "", "12A"])
def test_format_money_rejects_what_is_not_a_currency_code(currency):
    with pytest.raises(ValueError, match="currency code"):
        format_money(100, currency)


@pytest.mark.parametrize("cents", [4.99, Decimal("499"), "499", True])
def test_format_money_takes_whole_cents_only(cents):
    with pytest.raises(TypeError):
        format_money(cents, "USD")


@pytest.mark.parametrize(
    ("minor", "expected"),
    [
        (Decimal("0.5"), "$0.005"),
        (Decimal("5"), "$0.05"),
        (Decimal("6.5"), "$0.065"),
        (Decimal("0.333"), "$0.00333"),
        (Decimal("250"), "$2.50"),
        (Decimal("0.50"), "$0.005"),
        (Decimal("1E+3"), "$10.00"),
        (Decimal("-0.5"), "-$0.005"),
        (Decimal("-0"), "$0.00"),
    ],
)
def test_format_amount_shows_sub_cent_unit_prices(minor, expected):
    assert format_amount(minor, "USD") == expected


def test_to_major_has_exactly_two_places():
    assert to_major(49900) == Decimal("499.00")
    assert str(to_major(49900)) == "499.00"
    assert str(to_major(0)) == "0.00"
    assert str(to_major(-5)) == "-0.05"
    assert str(to_major(10**30 + 1)) == "10000000000000000000000000000.01"


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_to_major_and_format_money_agree_with_the_cents(cents):
    major = to_major(cents)
    assert major.as_tuple().exponent == -2
    assert major * 100 == cents
    shown = format_money(cents, "USD")
    assert Decimal(shown.replace("$", "").replace(",", "")) == major


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(min_value=1, max_value=10**12))
def test_round_ratio_is_the_nearest_integer_with_ties_away_from_zero(numerator, denominator):
    exact = Fraction(numerator, denominator)
    nearest = math.floor(abs(exact) + Fraction(1, 2))
    assert round_ratio(numerator, denominator) == (-nearest if exact < 0 else nearest)


def test_round_ratio_refuses_a_denominator_that_is_not_positive():
    with pytest.raises(ValueError):
        round_ratio(1, 0)
