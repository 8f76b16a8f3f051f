"""A subscription's life through the billing core's public functions (DESIGN §6): sign-up with and
without a trial, upgrades with exact proration by the second, dated upgrades, downgrades at the
period's end, cancelling and resuming, catalog price changes, and monthly to yearly.

Every instant is given explicitly, so the tests travel in time; expected amounts are computed
here with Fractions and the test's own half-up rounding, never by the core's helpers.
"""

from datetime import date, timedelta

import pytest

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.billing.plans import current_version, subscriber_counts, sync_catalog
from portal.errors import Conflict, NotFound, ValidationFailed
from portal.infra.transactions import commit
from tests.billing_engine_support import (
    add_plan,
    bare_tenant,
    catalog_spec,
    invoices_of,
    line_amounts,
    prorated,
    reload,
    run_billing,
    subscribe,
    utc,
)

pytestmark = pytest.mark.usefixtures("ctx")

T0 = utc(2027, 1, 10, 8, 0, 0)  # a 31-day period: Jan 10 08:00 to Feb 10 08:00 (UTC)
T1 = utc(2027, 2, 10, 8, 0, 0)
T2 = utc(2027, 3, 10, 8, 0, 0)


def change(subscription, plan_key, at, **options):
    preview, invoice = subscriptions.change_plan(SYSTEM, subscription, plan_key, at=at, **options)
    commit()
    return preview, invoice


# --- starting -----------------------------------------------------------------------------------


def test_starter_sign_up_is_invoiced_for_its_first_month_at_once():
    subscription = subscribe("starter", T0)

    assert subscription.status == "active"
    assert (subscription.current_period_start, subscription.current_period_end) == (T0, T1)
    [invoice] = invoices_of(subscription)
    assert (invoice.kind, invoice.period_start, invoice.period_end) == ("period", T0, T1)
    assert (invoice.total, invoice.currency, invoice.status) == (4900, "USD", "open")
    assert line_amounts(invoice) == [("plan", 4900)]
    assert invoice.plan_name == "Starter"


def test_professional_sign_up_starts_a_14_day_trial_with_nothing_to_pay():
    subscription = subscribe("professional", T0)

    trial_end = T0 + timedelta(days=14)
    assert subscription.status == "trialing"
    assert subscription.trial_end == trial_end
    assert subscription.current_period_end == trial_end
    assert invoices_of(subscription) == []
    assert subscriptions.next_invoice_estimate(subscription) == (trial_end, 49900, "Professional")


def test_trial_end_turns_the_subscription_active_and_issues_the_first_invoice():
    subscription = subscribe("professional", T0)
    trial_end = T0 + timedelta(days=14)

    assert run_billing(trial_end - timedelta(seconds=1)).invoices_created == 0
    assert reload(subscription).status == "trialing"

    run = run_billing(trial_end)
    assert run.invoices_created == 1
    assert reload(subscription).status == "active"
    [invoice] = invoices_of(subscription)
    assert (invoice.period_start, invoice.period_end) == (trial_end, utc(2027, 2, 24, 8))
    assert invoice.total == 49900


def test_upgrade_during_a_trial_is_free_and_the_first_invoice_is_at_the_new_price():
    subscription = subscribe("professional", T0)

    preview, invoice = change(subscription, "enterprise", T0 + timedelta(days=3))
    assert preview.immediate and invoice is None and preview.total == 0
    assert reload(subscription).status == "trialing"

    run_billing(T0 + timedelta(days=14))
    [first] = invoices_of(subscription)
    assert (first.total, first.plan_name) == (199900, "Enterprise")


def test_a_second_subscription_for_the_same_tenant_is_refused():
    subscription = subscribe("starter", T0)
    with pytest.raises(Conflict, match="already has a subscription"):
        subscriptions.start(SYSTEM, subscription.tenant, "enterprise", at=T0 + timedelta(days=1))
    assert len(invoices_of(subscription)) == 1


def test_an_unknown_plan_is_refused_and_nothing_is_created():
    tenant = bare_tenant()
    with pytest.raises(NotFound, match="Unknown plan 'platinum'"):
        subscriptions.start(SYSTEM, tenant, "platinum", at=T0)
    assert subscriptions.subscription_of(tenant) is None


# --- upgrades with proration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        utc(2027, 1, 25, 13, 37, 11, 750000),  # mid-period; the second under way still counts
        utc(2027, 1, 10, 8, 0, 0),  # the period's first second: the whole old price comes back
        utc(2027, 1, 10, 8, 0, 1),
        utc(2027, 2, 3, 23, 59, 59),
    ],
)
def test_upgrade_mid_period_credits_unused_time_and_charges_the_rest_by_the_second(at):
    subscription = subscribe("starter", T0)
    credit, charge = prorated(4900, T0, T1, at), prorated(49900, T0, T1, at)

    preview = subscriptions.preview_change(subscription, "professional", at=at)
    assert (preview.direction, preview.immediate, preview.credit, preview.charge) == ("upgrade", True, credit, charge)
    assert preview.total == charge - credit >= 0

    _, invoice = change(subscription, "professional", at)
    second = at.replace(microsecond=0)
    assert (invoice.kind, invoice.period_start, invoice.period_end) == ("proration", second, T1)
    assert line_amounts(invoice) == [("proration", -credit), ("proration", charge)]
    assert invoice.total == invoice.subtotal == charge - credit
    assert [line.description.split(",")[0] for line in invoice.lines] == [
        "Unused time on Starter",
        "Remaining time on Professional",
    ]

    subscription = reload(subscription)
    assert subscription.plan_version.key == "professional"
    assert subscription.tenant.subscription_plan == "professional"
    assert (subscription.current_period_start, subscription.current_period_end) == (T0, T1)


def test_upgrade_exact_amounts_for_a_known_instant():
    # 1,362,169 of 2,678,400 seconds left: 4900 × that = 2492.06… -> 2492; 49900 × that = 25378.1… -> 25378.
    subscription = subscribe("starter", T0)
    _, invoice = change(subscription, "professional", utc(2027, 1, 25, 13, 37, 11))
    assert line_amounts(invoice) == [("proration", -2492), ("proration", 25378)]
    assert invoice.total == 22886


def test_upgraded_subscription_renews_at_the_new_price():
    subscription = subscribe("starter", T0)
    change(subscription, "enterprise", utc(2027, 1, 20))

    run_billing(T1)
    renewal = invoices_of(subscription, "period")[-1]
    assert (renewal.period_start, renewal.period_end, renewal.total) == (T1, T2, 199900)
    assert line_amounts(renewal) == [("plan", 199900)]


def test_upgrade_in_the_last_second_of_the_period_charges_nothing():
    subscription = subscribe("starter", T0)
    preview, invoice = change(subscription, "professional", T1 - timedelta(seconds=1))
    # One second of 2,678,400 is worth 0.0018 and 0.0186 cents: both round to nothing.
    assert invoice is None and preview.total == 0
    assert reload(subscription).plan_version.key == "professional"


def test_upgrade_without_proration_charges_nothing_extra():
    subscription = subscribe("starter", T0)

    preview, invoice = change(subscription, "enterprise", utc(2027, 1, 20, 12), prorate=False)

    assert preview.immediate and preview.lines == [] and preview.total == 0
    assert invoice is None
    assert len(invoices_of(subscription)) == 1
    assert reload(subscription).plan_version.key == "enterprise"
    run_billing(T1)
    assert invoices_of(subscription)[-1].total == 199900


def test_changing_to_the_current_plan_is_refused():
    subscription = subscribe("starter", T0)
    with pytest.raises(Conflict, match="already on the Starter plan"):
        subscriptions.change_plan(SYSTEM, subscription, "starter", at=utc(2027, 1, 20))


# --- upgrades dated in the future ---------------------------------------------------------------


def test_future_effective_date_schedules_the_upgrade_and_the_run_applies_it_as_of_that_instant():
    subscription = subscribe("starter", T0)
    effective = utc(2027, 1, 20, 6, 30)

    preview, invoice = change(subscription, "enterprise", utc(2027, 1, 12), effective_date=effective)
    assert (preview.immediate, preview.effective_at, invoice) == (False, effective, None)
    subscription = reload(subscription)
    assert subscription.plan_version.key == "starter"
    assert subscription.scheduled_plan_version.key == "enterprise"
    assert subscription.scheduled_change_at == effective

    assert run_billing(effective - timedelta(seconds=1)).invoices_created == 0
    assert reload(subscription).plan_version.key == "starter"

    # The run comes two days late; proration is still as of the effective instant.
    run = run_billing(utc(2027, 1, 22))
    assert run.invoices_created == 1
    [_, upgrade] = invoices_of(subscription)
    credit, charge = prorated(4900, T0, T1, effective), prorated(199900, T0, T1, effective)
    assert (upgrade.kind, upgrade.period_start, upgrade.period_end) == ("proration", effective, T1)
    assert line_amounts(upgrade) == [("proration", -credit), ("proration", charge)]
    subscription = reload(subscription)
    assert subscription.plan_version.key == "enterprise"
    assert subscription.scheduled_plan_version_id is None and subscription.scheduled_change_at is None

    run_billing(T1)
    assert invoices_of(subscription)[-1].total == 199900


def test_future_effective_date_as_a_calendar_day_means_midnight_utc():
    subscription = subscribe("starter", T0)
    preview, _ = change(subscription, "professional", utc(2027, 1, 12), effective_date=date(2027, 1, 15))
    assert preview.effective_at == utc(2027, 1, 15)
    assert reload(subscription).scheduled_change_at == utc(2027, 1, 15)


def test_effective_date_in_the_past_is_refused_and_nothing_changes():
    subscription = subscribe("starter", T0)
    with pytest.raises(ValidationFailed, match="effective_date is in the past"):
        subscriptions.change_plan(
            SYSTEM, subscription, "enterprise", at=utc(2027, 1, 20), effective_date=date(2027, 1, 15)
        )
    subscription = reload(subscription)
    assert subscription.plan_version.key == "starter" and subscription.scheduled_plan_version_id is None


def test_future_dated_upgrade_without_proration_applies_without_an_invoice():
    subscription = subscribe("starter", T0)
    change(subscription, "enterprise", utc(2027, 1, 12), effective_date=utc(2027, 1, 20), prorate=False)
    assert run_billing(utc(2027, 1, 21)).invoices_created == 0
    assert reload(subscription).plan_version.key == "enterprise"
    assert len(invoices_of(subscription)) == 1


# --- downgrades ---------------------------------------------------------------------------------


def test_downgrade_is_scheduled_for_the_period_end_and_applied_by_the_billing_run():
    subscription = subscribe("enterprise", T0)

    preview, invoice = change(subscription, "starter", utc(2027, 1, 20))
    assert (preview.direction, preview.immediate, preview.effective_at, invoice) == ("downgrade", False, T1, None)
    subscription = reload(subscription)
    assert subscription.plan_version.key == "enterprise"
    assert subscription.scheduled_plan_version.key == "starter"
    assert subscriptions.next_invoice_estimate(subscription) == (T1, 4900, "Starter")

    assert run_billing(T1 - timedelta(seconds=1)).invoices_created == 0
    run = run_billing(T1)

    assert run.invoices_created == 1
    subscription = reload(subscription)
    assert subscription.plan_version.key == "starter"
    assert subscription.tenant.subscription_plan == "starter"
    assert subscription.scheduled_plan_version_id is None
    renewal = invoices_of(subscription)[-1]
    assert (renewal.period_start, renewal.period_end, renewal.total, renewal.plan_name) == (T1, T2, 4900, "Starter")
    assert line_amounts(renewal) == [("plan", 4900)]  # no refund for the month already paid


def test_downgrade_with_an_effective_date_still_waits_for_the_period_end():
    subscription = subscribe("enterprise", T0)
    preview, _ = change(subscription, "starter", utc(2027, 1, 12), effective_date=utc(2027, 1, 15))
    assert (preview.immediate, preview.effective_at) == (False, T1)
    assert run_billing(utc(2027, 1, 16)).invoices_created == 0
    assert reload(subscription).plan_version.key == "enterprise"


def test_cancelling_the_scheduled_downgrade_keeps_the_current_plan_at_renewal():
    subscription = subscribe("enterprise", T0)
    change(subscription, "starter", utc(2027, 1, 20))

    subscriptions.cancel_scheduled_change(SYSTEM, subscription)
    commit()
    assert reload(subscription).scheduled_plan_version_id is None
    assert subscriptions.next_invoice_estimate(subscription) == (T1, 199900, "Enterprise")

    run_billing(T1)
    assert reload(subscription).plan_version.key == "enterprise"
    assert invoices_of(subscription)[-1].total == 199900


def test_cancelling_a_scheduled_change_when_there_is_none_is_refused():
    subscription = subscribe("starter", T0)
    with pytest.raises(Conflict, match="no scheduled plan change"):
        subscriptions.cancel_scheduled_change(SYSTEM, subscription)


def test_cancelling_a_scheduled_upgrade_stops_the_run_from_applying_it():
    subscription = subscribe("starter", T0)
    change(subscription, "enterprise", utc(2027, 1, 12), effective_date=utc(2027, 1, 20))
    subscriptions.cancel_scheduled_change(SYSTEM, subscription)
    commit()
    assert run_billing(utc(2027, 1, 25)).invoices_created == 0
    run_billing(T1)
    assert reload(subscription).plan_version.key == "starter"
    assert invoices_of(subscription)[-1].total == 4900


# --- cancelling and resuming --------------------------------------------------------------------


def test_cancel_at_period_end_ends_the_subscription_at_the_run_and_bills_nothing_more():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(
        SYSTEM,
        subscription,
        at_period_end=True,
        reason="too_expensive",
        feedback="  We outgrew it.  ",
        at=utc(2027, 1, 20),
    )
    commit()
    subscription = reload(subscription)
    assert (subscription.status, subscription.cancel_at_period_end) == ("active", True)
    assert (subscription.cancel_reason, subscription.cancel_feedback) == ("too_expensive", "We outgrew it.")
    assert subscriptions.next_invoice_estimate(subscription) is None

    run = run_billing(T1)
    assert (run.invoices_created, run.subscriptions_billed) == (0, 0)
    subscription = reload(subscription)
    assert (subscription.status, subscription.ended_at, subscription.cancel_at_period_end) == ("canceled", T1, False)

    assert run_billing(utc(2027, 7, 1)).subscriptions_due == 0
    assert len(invoices_of(subscription)) == 1


def test_cancel_at_period_end_twice_is_refused():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()
    with pytest.raises(Conflict, match="already set to end"):
        subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 21))


def test_cancel_drops_a_scheduled_downgrade():
    subscription = subscribe("enterprise", T0)
    change(subscription, "starter", utc(2027, 1, 15))
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()
    assert reload(subscription).scheduled_plan_version_id is None
    run_billing(T1)
    assert reload(subscription).status == "canceled"
    assert len(invoices_of(subscription)) == 1


@pytest.mark.parametrize(
    "reason, feedback, message",
    [
        ("x" * 41, "", "under 40 characters"),
        ("other", "y" * 2001, "under 2,000 characters"),
    ],
)
def test_cancel_with_bad_input_is_refused_and_changes_nothing(reason, feedback, message):
    subscription = subscribe("starter", T0)
    with pytest.raises(ValidationFailed, match=message):
        subscriptions.cancel(SYSTEM, subscription, reason=reason, feedback=feedback, at=utc(2027, 1, 20))
    subscription = reload(subscription)
    assert (subscription.cancel_at_period_end, subscription.cancel_reason, subscription.status) == (
        False,
        None,
        "active",
    )


def test_immediate_cancel_ends_the_subscription_now_and_nothing_more_is_billed():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at_period_end=False, reason="unused", at=utc(2027, 1, 20, 9, 15))
    commit()
    subscription = reload(subscription)
    assert (subscription.status, subscription.ended_at) == ("canceled", utc(2027, 1, 20, 9, 15))

    assert run_billing(T1).invoices_created == 0
    assert len(invoices_of(subscription)) == 1
    with pytest.raises(Conflict, match="canceled"):
        subscriptions.change_plan(SYSTEM, subscription, "enterprise", at=utc(2027, 2, 12))


def test_a_canceled_tenant_can_subscribe_again_and_is_billed_afresh():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at_period_end=False, at=utc(2027, 1, 20))
    commit()

    again = subscribe("enterprise", utc(2027, 3, 1), tenant=subscription.tenant)
    assert again.id == subscription.id
    assert (again.status, again.current_period_start, again.ended_at) == ("active", utc(2027, 3, 1), None)
    assert [(i.period_start, i.total) for i in invoices_of(again)] == [(T0, 4900), (utc(2027, 3, 1), 199900)]


def test_resume_before_the_period_end_keeps_the_subscription_renewing():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()

    subscriptions.resume(SYSTEM, subscription, at=utc(2027, 2, 1))
    commit()
    subscription = reload(subscription)
    assert (subscription.cancel_at_period_end, subscription.cancel_requested_at) == (False, None)
    assert subscriptions.next_invoice_estimate(subscription) == (T1, 4900, "Starter")

    run_billing(T1)
    assert reload(subscription).status == "active"
    assert [i.period_start for i in invoices_of(subscription)] == [T0, T1]


def test_resume_once_the_period_has_ended_is_refused_even_before_the_run():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()
    with pytest.raises(Conflict, match="period has already ended"):
        subscriptions.resume(SYSTEM, subscription, at=T1)
    assert reload(subscription).cancel_at_period_end is True


def test_resume_after_the_run_ended_the_subscription_is_refused():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at=utc(2027, 1, 20))
    commit()
    run_billing(T1)
    with pytest.raises(Conflict, match="already ended"):
        subscriptions.resume(SYSTEM, subscription, at=utc(2027, 2, 11))
    assert reload(subscription).status == "canceled"


def test_resume_without_a_pending_cancellation_is_refused():
    subscription = subscribe("starter", T0)
    with pytest.raises(Conflict, match="nothing to resume"):
        subscriptions.resume(SYSTEM, subscription, at=utc(2027, 1, 20))


# --- catalog price changes ----------------------------------------------------------------------


def test_price_change_makes_version_2_existing_subscribers_keep_their_price_new_ones_pay_the_new():
    existing = subscribe("starter", T0)
    v1 = current_version("starter")

    result = sync_catalog([catalog_spec("starter").model_copy(update={"price": 5900})])
    commit()
    assert result.new_versions == ["starter"]
    v2 = current_version("starter")
    assert (v1.version, v1.price, v2.version, v2.price) == (1, 4900, 2, 5900)
    assert sync_catalog([catalog_spec("starter").model_copy(update={"price": 5900})]).unchanged == ["starter"]

    newcomer = subscribe("starter", utc(2027, 1, 20))
    assert invoices_of(newcomer)[0].total == 5900
    assert subscriber_counts()[v1.id] >= 1 and subscriber_counts()[v2.id] >= 1

    run_billing(utc(2027, 2, 20))
    assert reload(existing).plan_version_id == v1.id
    assert [i.total for i in invoices_of(existing)] == [4900, 4900]
    assert [i.total for i in invoices_of(newcomer)] == [5900, 5900]


def test_changing_plan_after_a_price_change_moves_to_the_newest_version():
    subscription = subscribe("starter", T0)
    sync_catalog([catalog_spec("enterprise").model_copy(update={"price": 250000})])
    commit()
    change(subscription, "enterprise", utc(2027, 1, 20), prorate=False)
    run_billing(T1)
    assert invoices_of(subscription)[-1].total == 250000


# --- monthly to yearly --------------------------------------------------------------------------


def test_monthly_to_yearly_upgrade_re_anchors_the_cycle_and_bills_the_year_at_once():
    add_plan("professional_yearly", 479000, interval="year", name="Professional yearly")
    subscription = subscribe("starter", T0)
    at = utc(2027, 1, 25, 12)

    preview, invoice = change(subscription, "professional_yearly", at)

    year_end = utc(2028, 1, 25, 12)
    credit = prorated(4900, T0, T1, at)
    assert preview.direction == "upgrade"
    assert (invoice.kind, invoice.period_start, invoice.period_end) == ("period", at, year_end)
    assert line_amounts(invoice) == [("plan", 479000), ("proration", -credit)]
    assert invoice.total == 479000 - credit
    subscription = reload(subscription)
    assert subscription.billing_anchor == at
    assert (subscription.current_period_start, subscription.current_period_end) == (at, year_end)

    # The old monthly boundary is gone: nothing is billed until the year is over.
    assert run_billing(utc(2027, 12, 31)).subscriptions_due == 0
    run_billing(year_end)
    renewal = invoices_of(subscription)[-1]
    assert (renewal.period_start, renewal.period_end, renewal.total) == (year_end, utc(2029, 1, 25, 12), 479000)


def test_yearly_to_monthly_downgrade_starts_a_monthly_cycle_at_the_year_end():
    add_plan("premium_yearly", 600000, interval="year")  # $500 a month: starter is a downgrade
    subscription = subscribe("premium_yearly", T0)
    year_end = utc(2028, 1, 10, 8)
    preview, _ = change(subscription, "starter", utc(2027, 6, 1))
    assert (preview.direction, preview.effective_at) == ("downgrade", year_end)

    run_billing(year_end)
    subscription = reload(subscription)
    assert (subscription.current_period_start, subscription.current_period_end) == (year_end, utc(2028, 2, 10, 8))
    assert invoices_of(subscription)[-1].total == 4900


@pytest.mark.parametrize("dated", [False, True])
def test_yearly_to_a_dearer_monthly_plan_waits_for_the_paid_year_to_end(dated):
    # $6,000 a year is $500 a month, so Enterprise monthly ($1,999) is an upgrade; but about
    # $5,600 of the year is still unused, more than Enterprise's first month: an invoice below
    # zero, refused at once, and (when dated) by every billing run afterwards.
    add_plan("premium_yearly", 600000, interval="year")
    subscription = subscribe("premium_yearly", T0)
    year_end = utc(2028, 1, 10, 8)
    options = {"effective_date": utc(2027, 3, 1)} if dated else {}

    preview, invoice = change(subscription, "enterprise", utc(2027, 2, 1), **options)

    assert (preview.direction, preview.immediate, preview.effective_at, invoice) == ("upgrade", False, year_end, None)
    run = run_billing(utc(2027, 6, 1))
    assert (run.errors, run.invoices_created) == ([], 0)
    assert reload(subscription).plan_version.key == "premium_yearly"

    run = run_billing(year_end)
    assert (run.errors, run.invoices_created) == ([], 1)
    subscription = reload(subscription)
    assert subscription.plan_version.key == "enterprise"
    assert (subscription.current_period_start, subscription.current_period_end) == (year_end, utc(2028, 2, 10, 8))
    assert line_amounts(invoices_of(subscription)[-1]) == [("plan", 199900)]


def test_another_tenants_subscription_is_not_found_through_a_tenant():
    mine, theirs = subscribe("starter", T0), subscribe("enterprise", T0)
    assert subscriptions.subscription_of(mine.tenant).id == mine.id
    assert subscriptions.subscription_of(theirs.tenant).id == theirs.id
    from portal.billing.invoices import get_for_tenant
    from portal.errors import NotFound

    their_invoice = invoices_of(theirs)[0]
    with pytest.raises(NotFound):
        get_for_tenant(mine.tenant, their_invoice.id)
    assert get_for_tenant(theirs.tenant, their_invoice.id).id == their_invoice.id


def test_sign_up_through_create_tenant_starts_a_starter_subscription(make_tenant):
    tenant = make_tenant()
    subscription = subscriptions.subscription_of(tenant)
    assert (subscription.status, subscription.plan_version.key) == ("active", "starter")
    assert [i.total for i in invoices_of(subscription)] == [4900]


# --- several changes within one second ----------------------------------------------------------


def refused_in_the_same_second(action) -> None:
    """The portal's handling of a refused action: a clear message, then everything rolled back."""
    from portal.infra.transactions import rollback

    with pytest.raises(Conflict, match="already has an invoice starting at this very second"):
        action()
    rollback()


def test_switching_to_yearly_in_the_second_of_sign_up_is_refused_with_a_message_and_changes_nothing():
    add_plan("professional_yearly", 479000, interval="year")
    subscription = subscribe("starter", T0)

    refused_in_the_same_second(lambda: subscriptions.change_plan(SYSTEM, subscription, "professional_yearly", at=T0))

    subscription = reload(subscription)
    assert (subscription.plan_version.key, subscription.current_period_end) == ("starter", T1)
    assert [i.total for i in invoices_of(subscription)] == [4900]
    # A second later the same change goes through.
    _, invoice = change(subscription, "professional_yearly", T0 + timedelta(seconds=1))
    assert invoice.period_start == T0 + timedelta(seconds=1)


def test_two_upgrades_in_one_second_refuse_the_second_and_keep_the_first():
    subscription = subscribe("starter", T0)
    change(subscription, "professional", utc(2027, 1, 20))

    refused_in_the_same_second(
        lambda: subscriptions.change_plan(SYSTEM, subscription, "enterprise", at=utc(2027, 1, 20))
    )

    assert reload(subscription).plan_version.key == "professional"
    assert [i.kind for i in invoices_of(subscription)] == ["period", "proration"]


def test_subscribing_again_in_the_second_of_an_immediate_cancel_is_refused():
    subscription = subscribe("starter", T0)
    subscriptions.cancel(SYSTEM, subscription, at_period_end=False, at=T0)
    commit()

    refused_in_the_same_second(lambda: subscriptions.start(SYSTEM, subscription.tenant, "starter", at=T0))

    assert reload(subscription).status == "canceled"
    assert len(invoices_of(subscription)) == 1
