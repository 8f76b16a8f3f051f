"""Annual plans: the shipped catalog's yearly versions of the three plans, switching between a
monthly and a yearly plan with exact proration, and a yearly subscription renewing after a year."""

from datetime import timedelta

import pytest

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.billing.catalog import load_catalog
from portal.infra.transactions import commit
from tests.billing_engine_support import invoices_of, line_amounts, prorated, reload, run_billing, subscribe, utc

pytestmark = pytest.mark.usefixtures("ctx")

T0 = utc(2027, 1, 10, 8, 0, 0)  # a 31-day monthly period: Jan 10 08:00 to Feb 10 08:00 (UTC)
T1 = utc(2027, 2, 10, 8, 0, 0)


def change(subscription, plan_key, at, **options):
    preview, invoice = subscriptions.change_plan(SYSTEM, subscription, plan_key, at=at, **options)
    commit()
    return preview, invoice


def test_the_catalog_ships_each_plan_yearly_with_two_months_free():
    plans = {plan.key: plan for plan in load_catalog().plans}
    for key in ("starter", "professional", "enterprise"):
        monthly, yearly = plans[key], plans[f"{key}_yearly"]
        assert (monthly.interval, yearly.interval) == ("month", "year")
        assert yearly.price == 10 * monthly.price
        assert yearly.trial_days == monthly.trial_days
        # Quotas count per billing period: a year holds twelve months of runs; levels stay.
        assert yearly.quotas.monthly_pipeline_quota == 12 * monthly.quotas.monthly_pipeline_quota
        assert yearly.quotas.storage_quota_gb == monthly.quotas.storage_quota_gb
        assert yearly.rate_limits == monthly.rate_limits


def test_monthly_starter_to_yearly_starter_is_an_upgrade_charged_now_with_the_unused_month_credited():
    subscription = subscribe("starter", T0)
    at = utc(2027, 1, 20, 14, 30, 15)

    preview, invoice = change(subscription, "starter_yearly", at)

    # 1,790,985 of the period's 2,678,400 seconds are left: 4,900 cents x that = 3,276.52, so 3,277.
    credit = prorated(4900, T0, T1, at)
    assert credit == 3277
    assert (preview.direction, preview.immediate) == ("upgrade", True)
    assert line_amounts(invoice) == [("plan", 49000), ("proration", -3277)]
    assert (invoice.kind, invoice.total, invoice.currency) == ("period", 45723, "USD")
    year_end = utc(2028, 1, 20, 14, 30, 15)
    assert (invoice.period_start, invoice.period_end) == (at, year_end)
    subscription = reload(subscription)
    assert subscription.plan_version.key == "starter_yearly"
    assert subscription.tenant.subscription_plan == "starter_yearly"
    assert (subscription.current_period_start, subscription.current_period_end) == (at, year_end)


def test_a_yearly_subscription_renews_after_a_year_and_not_before():
    subscription = subscribe("professional_yearly", T0)
    # Professional's 14-day trial comes first; the year starts when it ends.
    trial_end = T0 + timedelta(days=14)
    assert reload(subscription).status == "trialing"
    run_billing(trial_end)
    first = invoices_of(subscription)
    assert [(i.period_start, i.period_end, i.total) for i in first] == [
        (trial_end, utc(2028, 1, 24, 8), 499000),
    ]

    # Eleven monthly boundaries pass without an invoice.
    for month in range(2, 13):
        assert run_billing(utc(2027, month, 24, 8)).invoices_created == 0
    assert run_billing(utc(2028, 1, 24, 7, 59, 59)).invoices_created == 0

    run = run_billing(utc(2028, 1, 24, 8))
    assert (run.errors, run.invoices_created) == ([], 1)
    renewal = invoices_of(subscription)[-1]
    assert (renewal.period_start, renewal.period_end) == (utc(2028, 1, 24, 8), utc(2029, 1, 24, 8))
    assert line_amounts(renewal) == [("plan", 499000)]
    subscription = reload(subscription)
    assert (subscription.status, subscription.current_period_end) == ("active", utc(2029, 1, 24, 8))


def test_yearly_back_to_monthly_waits_for_the_paid_year_to_end():
    subscription = subscribe("starter_yearly", T0)
    year_end = utc(2028, 1, 10, 8)

    preview, invoice = change(subscription, "starter", utc(2027, 5, 1))

    assert (preview.immediate, preview.effective_at, invoice) == (False, year_end, None)
    assert reload(subscription).plan_version.key == "starter_yearly"
    run_billing(year_end)
    subscription = reload(subscription)
    assert subscription.plan_version.key == "starter"
    assert (subscription.current_period_start, subscription.current_period_end) == (year_end, utc(2028, 2, 10, 8))
    assert line_amounts(invoices_of(subscription)[-1]) == [("plan", 4900)]


def test_a_longer_interval_for_less_money_is_still_a_downgrade_at_the_period_end():
    subscription = subscribe("enterprise", T0)

    preview, invoice = change(subscription, "starter_yearly", utc(2027, 1, 11))

    assert (preview.direction, preview.immediate, preview.effective_at, invoice) == ("downgrade", False, T1, None)
