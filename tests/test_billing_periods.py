"""Billing periods: counted from the anchor so month ends never drift; proration by the second."""

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.billing.money import round_half_up
from portal.billing.periods import (
    INTERVAL_MONTHS,
    add_interval,
    period_bounds,
    period_index_at,
    remaining_fraction,
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def seconds(moment: datetime) -> int:
    """Whole seconds since the epoch, sub-second part dropped."""
    return (moment - utc(1970, 1, 1)) // timedelta(seconds=1)


anchors = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))
intervals = st.sampled_from(sorted(INTERVAL_MONTHS))


def test_month_end_anchor_keeps_coming_back_to_the_month_end():
    anchor = utc(2025, 1, 31, 10, 30, 15)
    starts = [add_interval(anchor, "month", k) for k in range(5)]
    assert starts == [
        utc(2025, 1, 31, 10, 30, 15),
        utc(2025, 2, 28, 10, 30, 15),
        utc(2025, 3, 31, 10, 30, 15),
        utc(2025, 4, 30, 10, 30, 15),
        utc(2025, 5, 31, 10, 30, 15),
    ]


def test_month_end_anchor_in_a_leap_year_gets_february_29():
    anchor = utc(2024, 1, 31)
    assert [add_interval(anchor, "month", k).date().isoformat() for k in range(5)] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
        "2024-05-31",
    ]


def test_yearly_leap_day_anchor_falls_back_to_february_28_in_common_years():
    anchor = utc(2024, 2, 29, 8)
    assert [add_interval(anchor, "year", k) for k in range(5)] == [
        utc(2024, 2, 29, 8),
        utc(2025, 2, 28, 8),
        utc(2026, 2, 28, 8),
        utc(2027, 2, 28, 8),
        utc(2028, 2, 29, 8),
    ]


def test_period_bounds_are_consecutive_starts():
    anchor = utc(2024, 1, 31, 12)
    assert period_bounds(anchor, "month", 0) == (utc(2024, 1, 31, 12), utc(2024, 2, 29, 12))
    assert period_bounds(anchor, "month", 1) == (utc(2024, 2, 29, 12), utc(2024, 3, 31, 12))
    assert period_bounds(anchor, "year", 1) == (utc(2025, 1, 31, 12), utc(2026, 1, 31, 12))


def test_other_timezones_are_converted_to_utc():
    anchor = datetime(2025, 1, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))  # Feb 1, 04:00 UTC
    start = add_interval(anchor, "month", 1)
    assert start == utc(2025, 3, 1, 4) and start.tzinfo is UTC


@pytest.mark.parametrize(
    "call",
    [
        lambda: add_interval(datetime(2025, 1, 1), "month", 1),
        lambda: period_bounds(datetime(2025, 1, 1), "month", 0),
        lambda: period_index_at(utc(2025, 1, 1), "month", datetime(2025, 3, 1)),
        lambda: remaining_fraction(utc(2025, 1, 1), utc(2025, 2, 1), datetime(2025, 1, 15)),
    ],
)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call()


def test_unknown_interval_is_refused():
    with pytest.raises(ValueError, match="unknown interval 'week'"):
        add_interval(utc(2025, 1, 1), "week", 1)


def test_period_index_at_the_edges():
    anchor = utc(2025, 1, 31, 10)
    assert period_index_at(anchor, "month", anchor) == 0
    assert period_index_at(anchor, "month", utc(2025, 2, 28, 9, 59, 59, 999999)) == 0
    assert period_index_at(anchor, "month", utc(2025, 2, 28, 10)) == 1
    assert period_index_at(anchor, "month", utc(2025, 3, 31, 9)) == 1
    assert period_index_at(anchor, "month", utc(2026, 1, 31, 10)) == 12
    assert period_index_at(anchor, "year", utc(2026, 1, 31, 9)) == 0
    assert period_index_at(anchor, "year", utc(2026, 1, 31, 10)) == 1


def test_period_index_before_the_anchor_is_an_error():
    with pytest.raises(ValueError, match="before the billing anchor"):
        period_index_at(utc(2025, 1, 31), "month", utc(2025, 1, 30, 23, 59))


@given(anchors, intervals)
def test_period_starts_strictly_increase(anchor, interval):
    starts = [add_interval(anchor, interval, k) for k in range(-3, 40)]
    assert all(earlier < later for earlier, later in zip(starts, starts[1:], strict=False))
    assert all(start.time() == anchor.time() for start in starts)


@given(anchors, intervals, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 40)))
def test_every_instant_falls_into_exactly_one_period(anchor, interval, offset):
    at = anchor + offset
    index = period_index_at(anchor, interval, at)
    start, end = period_bounds(anchor, interval, index)
    assert index >= 0
    assert start <= at < end
    # Starts increase, so the neighbours (and hence every other period) miss it.
    for other in (index - 1, index + 1):
        if other >= 0:
            other_start, other_end = period_bounds(anchor, interval, other)
            assert not other_start <= at < other_end


@given(anchors, intervals, st.integers(min_value=0, max_value=500))
def test_a_period_start_belongs_to_its_own_period(anchor, interval, index):
    assert period_index_at(anchor, interval, add_interval(anchor, interval, index)) == index


def test_remaining_fraction_worked_examples():
    start, end = utc(2025, 11, 1), utc(2025, 12, 1)  # 30 days
    assert remaining_fraction(start, end, start) == 1
    assert remaining_fraction(start, end, end) == 0
    assert remaining_fraction(start, end, utc(2025, 11, 16)) == Fraction(1, 2)
    assert remaining_fraction(start, end, utc(2025, 11, 21)) == Fraction(1, 3)
    # Upgrading with ten days left charges a third of $499.00, rounded once.
    assert round_half_up(49900 * remaining_fraction(start, end, utc(2025, 11, 21))) == 16633


def test_remaining_fraction_counts_whole_seconds():
    start, end = utc(2025, 11, 1), utc(2025, 12, 1)
    total = 30 * 86400
    # 1.999 s in: the sub-second part is dropped, so the second under way still counts.
    almost_two_seconds_in = start + timedelta(seconds=1, microseconds=999000)
    assert remaining_fraction(start, end, almost_two_seconds_in) == Fraction(total - 1, total)
    assert remaining_fraction(start, end, start + timedelta(microseconds=1)) == 1
    assert remaining_fraction(start, end, end - timedelta(microseconds=1)) == Fraction(1, total)


def test_remaining_fraction_is_clamped_outside_the_period():
    start, end = utc(2025, 11, 1), utc(2025, 12, 1)
    assert remaining_fraction(start, end, utc(2025, 10, 1)) == 1
    assert remaining_fraction(start, end, utc(2026, 1, 1)) == 0


def test_remaining_fraction_of_an_empty_period_is_an_error():
    with pytest.raises(ValueError, match="empty period"):
        remaining_fraction(utc(2025, 11, 1), utc(2025, 11, 1), utc(2025, 11, 1))


@given(
    anchors,
    intervals,
    st.integers(min_value=0, max_value=300),
    st.timedeltas(min_value=timedelta(days=-40), max_value=timedelta(days=400)),
)
def test_remaining_fraction_is_exact_and_between_zero_and_one(anchor, interval, index, offset):
    start, end = period_bounds(anchor, interval, index)
    at = start + offset
    fraction = remaining_fraction(start, end, at)
    assert isinstance(fraction, Fraction)
    assert 0 <= fraction <= 1
    # Independently, in whole seconds since the epoch.
    total = seconds(end) - seconds(start)
    left = seconds(end) - seconds(at)
    assert fraction == Fraction(min(max(left, 0), total), total)
