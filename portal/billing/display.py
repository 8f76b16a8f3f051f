"""How billing figures read on the page: dates, quantities, plan quotas and feature prices."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from portal.billing.money import format_amount, format_money
from portal.billing.pricing import FeatureSpec, feature_specs
from portal.timezones import format_local

QUOTA_LABELS = {
    "monthly_pipeline_quota": "pipeline runs a {interval}",
    "concurrent_pipeline_quota": "concurrent pipelines",
    "storage_quota_gb": "GB storage",
}
# The same quotas as a comparison's row names and units ("Storage: 500 GB → 50 GB").
QUOTA_ROWS = {
    "monthly_pipeline_quota": ("Pipeline runs a {interval}", ""),
    "concurrent_pipeline_quota": ("Concurrent pipelines", ""),
    "storage_quota_gb": ("Storage", " GB"),
}
# Quotas that count what a billing period sums, so a yearly plan's is a year's (seed 000 names
# it "monthly" all the same); the others are levels, the same whatever the interval.
PER_PERIOD_QUOTAS = {"monthly_pipeline_quota"}


@dataclass(frozen=True)
class QuotaChange:
    name: str
    before: str
    after: str
    lost: bool  # the new plan gives less of it


def quota_changes(old, new) -> list[QuotaChange]:
    """Each quota on the current plan and on the other, in words; ``lost`` where the other has
    less. Between a monthly and a yearly plan a per-period quota is compared month for month."""
    before, after = old.quotas or {}, new.quotas or {}
    same_interval = old.interval == new.interval
    changes = []
    for key in list(before) + [key for key in after if key not in before]:
        name, unit = QUOTA_ROWS.get(key, (key.replace("_", " ").capitalize(), ""))
        old_amount, new_amount = before.get(key), after.get(key)
        per_period = key in PER_PERIOD_QUOTAS
        old_unit = new_unit = unit
        if per_period and not same_interval:
            name = name.removesuffix(" a {interval}")
            old_unit, new_unit = f"{unit} a {old.interval}", f"{unit} a {new.interval}"
        name = name.format(interval=old.interval)
        if per_period and new_amount is not None and old_amount is not None:
            lost = Fraction(new_amount, new.months) < Fraction(old_amount, old.months)
        else:
            lost = new_amount is not None and (old_amount is None or new_amount < old_amount)
        changes.append(
            QuotaChange(
                name,
                f"{number(old_amount)}{old_unit}" if old_amount is not None else "unlimited",
                f"{number(new_amount)}{new_unit}" if new_amount is not None else "unlimited",
                lost,
            )
        )
    return changes


def day(value: datetime | None) -> str:
    """Dec 31, 2026, in the viewer's timezone."""
    return format_local(value, "day")


def number(value: Decimal | int) -> str:
    """1250 -> "1,250", Decimal("1.500000") -> "1.5"."""
    text = f"{Decimal(value):,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price(version) -> str:
    """$499.00 / month."""
    return f"{format_money(version.price, version.currency)} / {version.interval}"


def quotas(version) -> list[str]:
    return [
        f"{number(amount)} {QUOTA_LABELS.get(key, key.replace('_', ' ')).format(interval=version.interval)}"
        for key, amount in (version.quotas or {}).items()
    ]


def _unit(feature: FeatureSpec) -> str:
    return feature.unit_label.removesuffix("s") if feature.unit_label.endswith("s") else feature.unit_label


def feature_summary(feature: FeatureSpec, currency: str) -> str:
    """One line per feature: what is included and what more costs."""
    included = f"{number(feature.included_units)} {feature.unit_label} included" if feature.included_units else ""
    if feature.pricing == "included":
        if feature.limit is not None:
            return f"{feature.name}: up to {number(feature.limit)} {feature.unit_label}"
        return f"{feature.name}: included"
    if feature.pricing == "per_unit":
        extra = f"{format_amount(feature.unit_price, currency)} per {_unit(feature)}"
    elif feature.pricing == "package":
        extra = (
            f"{format_money(feature.package_price, currency)} per {number(feature.package_size)} {feature.unit_label}"
        )
    else:
        cheapest = min(tier.unit_price for tier in feature.tiers)
        first = feature.tiers[0].unit_price
        extra = (
            f"{format_amount(first, currency)} per {_unit(feature)}"
            if first == cheapest
            else f"{format_amount(first, currency)} down to {format_amount(cheapest, currency)} per {_unit(feature)}"
        )
    return f"{feature.name}: {included}, then {extra}" if included else f"{feature.name}: {extra}"


def features(version) -> list[str]:
    return [feature_summary(feature, version.currency) for feature in feature_specs(version)]
