"""What the portal's usage page and the overview show: a window's usage per feature with its
quota and warning level, and the daily series for the chart and the CSV export."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from portal.models import Tenant
from portal.usage.meters import meters_by_key
from portal.usage.periods import current_period, month_start, next_month
from portal.usage.services import FeatureUsage, feature_readings, has_usage, plan_version_of, subscription_for

WARN_AT = 90
# Meters that read a level (storage held, pipelines running) rather than count what happened: a
# day without a report still holds the last level, where a counter's quiet day is a zero.
LEVEL_AGGREGATIONS = frozenset({"last", "max", "min", "avg", "first"})


@dataclass
class FeatureLine:
    usage: FeatureUsage

    @property
    def level(self) -> str:
        """ "exceeded" at 100 %, "warning" from 90 %, else "ok"."""
        percent = self.usage.percent
        if percent is None:
            return "ok"
        return "exceeded" if percent >= 100 else "warning" if percent >= WARN_AT else "ok"

    @property
    def bar_value(self) -> float:
        return min(self.usage.percent or 0.0, 100.0)


@dataclass
class UsageReport:
    start: datetime
    end: datetime
    month: str | None  # "2025-11" for a calendar month, None for the current billing period
    features: list[FeatureLine] = field(default_factory=list)
    days: list[date] = field(default_factory=list)
    daily: dict[str, list[float]] = field(default_factory=dict)
    levels: set[str] = field(default_factory=set)
    any_usage: bool = False

    @property
    def warnings(self) -> list[FeatureLine]:
        return [line for line in self.features if line.level != "ok"]


_UNREAD = object()


def build(tenant: Tenant, month: str | None = None, with_daily: bool = True, subscription=_UNREAD) -> UsageReport:
    """The current billing period, or the calendar month ``month`` (YYYY-MM, 400 if malformed).
    ``subscription``: the tenant's, when the caller has read it already (None: it has none).
    Its statements are as many with a year of events as with none (tests/test_page_queries.py)."""
    if subscription is _UNREAD:
        subscription = subscription_for(tenant.tenant_id)
    if month:
        start = month_start(month)
        end = next_month(start)
    else:
        start, end = current_period(subscription)
    report = UsageReport(start=start, end=end, month=month, any_usage=has_usage(tenant.tenant_id))
    version = plan_version_of(subscription, tenant.subscription_plan)
    if version is None:
        return report
    meters = meters_by_key()
    # Every feature read together: the page's statements do not grow with the plan's features.
    usages, readings = feature_readings(tenant.tenant_id, version, start, end, meters)
    report.features = [FeatureLine(usage) for usage in usages]
    if with_daily:
        last = min(end, datetime.now(start.tzinfo) + timedelta(days=1))
        report.days = [(start + timedelta(days=i)).date() for i in range(max((last - start).days, 1))]
        for line in report.features:
            meter, reading = meters[line.usage.key], readings[line.usage.key]
            by_day = reading.daily
            if meter.aggregation in LEVEL_AGGREGATIONS:
                report.levels.add(line.usage.key)
                # The level the window opens with is the last one reported before it (0 if none).
                report.daily[line.usage.key] = _carried_forward(by_day, report.days, float(reading.opening))
            else:
                report.daily[line.usage.key] = [float(by_day.get(day, 0)) for day in report.days]
    return report


def _carried_forward(by_day: dict, days: list[date], opening: float) -> list[float]:
    """A level per day: the day's own reading, else the last one before it."""
    values, last = [], opening
    for day in days:
        if day in by_day:
            last = float(by_day[day])
        values.append(last)
    return values
