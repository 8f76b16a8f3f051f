"""Properties of the billing engine over generated plans, instants and operation sequences
(hypothesis): proration exact to the cent, invoice totals equal to their lines, one period
invoice per subscription and period start, gap-free unique invoice numbers.

Each example runs inside a savepoint that is rolled back afterwards, so it starts from the
catalog alone; examples are capped (~50 each) and have no deadline, to stay fast on SQLite.
"""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.errors import Conflict, ValidationFailed
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import Invoice, Subscription
from tests.billing_engine_support import (
    add_plan,
    all_invoices,
    assert_numbers_gap_free,
    bare_tenant,
    duplicate_periods,
    half_up,
    invoices_of,
    run_billing,
    subscribe,
)

pytestmark = pytest.mark.usefixtures("ctx")

EXAMPLES = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# Instants between 2027 and 2030, to the microsecond (the core truncates to the second).
instants = st.datetimes(min_value=datetime(2027, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))
prices = st.integers(min_value=0, max_value=10**7)


@contextmanager
def clean_state():
    """Roll back everything the example did, however many times its services committed."""
    db.session.close()
    connection = db.session.get_bind()
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        db.session.close()
        savepoint.rollback()


def check_invoice_invariants() -> list[Invoice]:
    invoices = all_invoices()
    for invoice in invoices:
        assert invoice.total == invoice.subtotal == sum(line.amount for line in invoice.lines), invoice.number
        assert invoice.total >= 0, invoice.number
        assert invoice.status == ("open" if invoice.total else "paid")
    assert duplicate_periods() == []
    assert_numbers_gap_free(invoices)
    return invoices


# --- proration ----------------------------------------------------------------------------------


@EXAMPLES
@given(
    old_price=prices,
    new_price=prices,
    interval=st.sampled_from(["month", "year"]),
    start=instants,
    position=st.fractions(min_value=0, max_value=1),
    micro=st.integers(0, 999_999),
)
def test_upgrade_proration_is_exact_to_the_cent_and_never_negative(
    old_price, new_price, interval, start, position, micro
):
    with clean_state():
        add_plan("prop_old", old_price, interval=interval)
        add_plan("prop_new", new_price, interval=interval)
        subscription = subscribe("prop_old", start)
        period_start, period_end = subscription.current_period_start, subscription.current_period_end
        whole = int((period_end - period_start).total_seconds())
        # Any whole second inside the period, plus a fraction of a second the core must ignore.
        offset = min(int(position * whole), whole - 1)
        at = period_start + timedelta(seconds=offset, microseconds=micro)

        preview, invoice = subscriptions.change_plan(SYSTEM, subscription, "prop_new", at=at)
        commit()

        if new_price < old_price:
            assert (preview.direction, preview.immediate, invoice) == ("downgrade", False, None)
            assert subscription.plan_version.key == "prop_old"
            return
        left = Fraction(whole - offset, whole)
        credit, charge = half_up(old_price * left), half_up(new_price * left)
        assert (preview.credit, preview.charge) == (credit, charge)
        assert preview.total == charge - credit >= 0
        expected = [amount for amount in (-credit, charge) if amount]
        if not expected:
            assert invoice is None
        else:
            assert [line.amount for line in invoice.lines] == expected
            assert invoice.total == charge - credit
        assert subscription.plan_version.key == "prop_new"
        check_invoice_invariants()


# --- random operation sequences ------------------------------------------------------------------

PLAN_KEYS = ["starter", "professional", "enterprise", "prop_free", "prop_yearly"]

operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["subscribe", "change", "change", "cancel", "resume", "cancel_scheduled", "run", "run", "retry"]
        ),
        st.integers(min_value=0, max_value=1),  # which tenant
        # Seconds the clock moves first: often not at all, so same-second operations are common.
        st.one_of(st.just(0), st.just(1), st.integers(min_value=1, max_value=50 * 86400)),
        st.sampled_from(PLAN_KEYS),
        st.booleans(),  # prorate / at period end / dated change
        st.integers(min_value=0, max_value=40 * 86400),  # how far a dated change lies ahead
    ),
    min_size=1,
    max_size=14,
)


def apply(operation, tenants, clock, last_run_at):
    """Carry out one operation as the portal would: a refused one rolls back and changes nothing."""
    name, which, _, plan, flag, ahead = operation
    tenant = tenants[which]
    subscription = db.session.execute(
        select(Subscription).where(Subscription.tenant_id == tenant.tenant_id)
    ).scalar_one_or_none()
    try:
        if name == "subscribe":
            subscriptions.start(SYSTEM, tenant, plan, at=clock)
        elif name == "change":
            subscriptions.change_plan(
                SYSTEM,
                subscription,
                plan,
                at=clock,
                prorate=flag,
                effective_date=clock + timedelta(seconds=ahead) if flag and ahead else None,
            )
        elif name == "cancel":
            subscriptions.cancel(SYSTEM, subscription, at_period_end=flag, at=clock)
        elif name == "resume":
            subscriptions.resume(SYSTEM, subscription, at=clock)
        elif name == "cancel_scheduled":
            subscriptions.cancel_scheduled_change(SYSTEM, subscription)
        elif name == "run":
            run = run_billing(clock)
            assert run.errors == [], run.errors
            return clock
        elif name == "retry" and last_run_at is not None:
            run = run_billing(last_run_at)
            assert run.errors == [] and run.invoices_created == 0, (run.errors, run.invoices_created)
            return last_run_at
        commit()
    except (Conflict, ValidationFailed):
        rollback()
    return last_run_at


@EXAMPLES
@given(start=instants, steps=operations)
def test_any_sequence_of_operations_keeps_one_period_invoice_per_period_and_gap_free_numbers(start, steps):
    with clean_state():
        add_plan("prop_free", 0)
        add_plan("prop_yearly", 600000, interval="year")
        tenants = [bare_tenant() for _ in range(2)]
        commit()
        clock, last_run_at = start, None
        for step in steps:
            clock += timedelta(seconds=step[2])
            last_run_at = apply(step, tenants, clock, last_run_at)
            check_invoice_invariants()

        # However the sequence went, a final run brings every live subscription up to date and
        # its current period is invoiced exactly once.
        run_billing(clock)
        for tenant in tenants:
            subscription = subscriptions.subscription_of(tenant)
            if subscription is None or not subscription.is_live:
                continue
            assert subscription.current_period_end > clock
            if subscription.status != "trialing":
                starts = [i.period_start for i in invoices_of(subscription, "period")]
                assert starts.count(subscription.current_period_start) == 1
        check_invoice_invariants()


@EXAMPLES
@given(
    start=instants,
    months=st.integers(min_value=1, max_value=15),
    plan=st.sampled_from(["starter", "enterprise", "prop_yearly"]),
)
def test_catch_up_bills_each_elapsed_period_once_back_to_back(start, months, plan):
    with clean_state():
        add_plan("prop_yearly", 600000, interval="year")
        subscription = subscribe(plan, start)
        run_billing(start + relativedelta(months=months))
        periods = [(i.period_start, i.period_end) for i in invoices_of(subscription, "period")]
        # Back to back: each period starts where the previous one ended; none is billed twice.
        assert all(earlier[1] == later[0] for earlier, later in zip(periods, periods[1:], strict=False))
        assert periods[0][0] == subscription.billing_anchor
        expected = 1 + months // (12 if plan == "prop_yearly" else 1)
        assert len(periods) == expected
        check_invoice_invariants()
