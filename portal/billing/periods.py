"""Billing periods counted from an anchor, and how much of one is left."""

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from dateutil.relativedelta import relativedelta

INTERVAL_MONTHS = {"month": 1, "year": 12}

ONE_SECOND = timedelta(seconds=1)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    # Month arithmetic in a local zone would move period starts with daylight saving time.
    return value.astimezone(UTC)


def _months(interval: str) -> int:
    try:
        return INTERVAL_MONTHS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MONTHS)}") from None


def add_interval(anchor: datetime, interval: str, count: int) -> datetime:
    """The start of period ``count``: the anchor plus ``count`` intervals, same time of day."""
    months = _months(interval)
    # Always from the anchor, never from the previous period end: chaining would turn a
    # Jan 31 anchor into Feb 28, then Mar 28 for ever. relativedelta clamps to the month's end.
    return _utc(anchor, "anchor") + relativedelta(months=months * count)


def period_bounds(anchor: datetime, interval: str, index: int) -> tuple[datetime, datetime]:
    """(start, end) of period ``index``; the end is the next period's start (half-open)."""
    return add_interval(anchor, interval, index), add_interval(anchor, interval, index + 1)


def period_index_at(anchor: datetime, interval: str, at: datetime) -> int:
    """The period containing ``at``: start_k <= at < start_(k+1)."""
    anchor, at = _utc(anchor, "anchor"), _utc(at, "at")
    if at < anchor:
        raise ValueError(f"{at.isoformat()} is before the billing anchor {anchor.isoformat()}")
    # The calendar-month distance is right or one too many (when at's day or time of day is
    # earlier than the anchor's); period starts strictly increase, so stepping back settles it.
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    index = months // _months(interval)
    while add_interval(anchor, interval, index) > at:
        index -= 1
    while add_interval(anchor, interval, index + 1) <= at:
        index += 1
    return index


def remaining_fraction(start: datetime, end: datetime, at: datetime) -> Fraction:
    """Whole seconds left in [start, end) at ``at`` over the period's whole seconds, in [0, 1]."""
    start, end, at = _utc(start, "start"), _utc(end, "end"), _utc(at, "at")
    total = (end - start) // ONE_SECOND
    if total <= 0:
        raise ValueError(f"empty period: {start.isoformat()} to {end.isoformat()}")
    # Proration is by the second (DESIGN §6): the second under way still counts as remaining.
    remaining = (end - at.replace(microsecond=0)) // ONE_SECOND
    return Fraction(min(max(remaining, 0), total), total)
