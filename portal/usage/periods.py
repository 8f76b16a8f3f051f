"""Which window "this period" and "that month" mean for usage."""

import re
from datetime import UTC, datetime

from dateutil.relativedelta import relativedelta

from portal.errors import ValidationFailed
from portal.models import Subscription, utcnow

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_start(text: str, field: str = "month") -> datetime:
    """ "2025-11" -> 2025-11-01T00:00Z; anything else is a 400 naming ``field``."""
    match = MONTH.match(text or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise ValidationFailed(f"{field} must be a month written YYYY-MM, e.g. 2025-11; got {text!r}.", field=field)
    return datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)


def this_month(at: datetime | None = None) -> datetime:
    at = at or utcnow()
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month(start: datetime, months: int = 1) -> datetime:
    return start + relativedelta(months=months)


def current_period(subscription: Subscription | None, at: datetime | None = None) -> tuple[datetime, datetime]:
    """The subscription's current billing period; the calendar month without one."""
    if subscription is not None and subscription.is_live:
        return subscription.current_period_start, subscription.current_period_end
    start = this_month(at)
    return start, next_month(start)
