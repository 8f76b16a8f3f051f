"""Helpers for the billing engine's tests: tenants that have no subscription yet (so a test
chooses the instant they subscribe), plans made up for one test, billing runs as of an
instant, and the arithmetic a test must do on its own instead of trusting the core's.
"""

import math
import re
from datetime import UTC, datetime
from fractions import Fraction

from sqlalchemy import func, select

from portal.access import SYSTEM
from portal.billing import subscriptions
from portal.billing.catalog import PlanSpec, load_catalog
from portal.billing.plans import current_version, sync_catalog
from portal.billing.runs import create_run, execute
from portal.extensions import db
from portal.infra.transactions import commit
from portal.models import BillingRun, Invoice, PlanVersion, Subscription, Tenant
from tests.conftest import unique

NUMBER = re.compile(r"^INV-(\d{4})-(\d{6})$")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def bare_tenant(company_name: str | None = None) -> Tenant:
    """A tenant row with no subscription yet; the test subscribes it at an instant of its choosing."""
    tenant_id = unique("t")
    tenant = Tenant(
        tenant_id=tenant_id,
        company_name=company_name or f"Company {tenant_id}",
        contact_email=f"billing-{tenant_id}@example.com",
        subscription_plan="starter",
    )
    db.session.add(tenant)
    db.session.flush()
    return tenant


def subscribe(plan_key: str, at: datetime, tenant: Tenant | None = None) -> Subscription:
    """Sign a (new) tenant up to ``plan_key`` at ``at`` and commit, as the sign-up request does."""
    tenant = tenant or bare_tenant()
    subscription = subscriptions.start(SYSTEM, tenant, plan_key, at=at)
    commit()
    return subscription


def catalog_spec(plan_key: str) -> PlanSpec:
    return next(spec for spec in load_catalog().plans if spec.key == plan_key)


def add_plan(
    key: str,
    price: int,
    interval: str = "month",
    trial_days: int = 0,
    name: str | None = None,
    currency: str = "USD",
    rate_limits: dict | None = None,
) -> PlanVersion:
    """A plan of the test's own, synced through the catalog like the shipped ones."""
    base = catalog_spec("starter")
    spec = PlanSpec(
        key=key,
        name=name or key.replace("_", " ").title(),
        price=price,
        currency=currency,
        interval=interval,
        trial_days=trial_days,
        quotas=base.quotas,
        rate_limits=rate_limits or base.rate_limits,
    )
    sync_catalog([spec])
    commit()
    return current_version(key)


def run_billing(at: datetime, triggered_by: str = "test") -> BillingRun:
    """One billing run as of ``at``, in-process, as the worker runs it."""
    run = create_run(triggered_by, at)
    commit()
    return execute(run)


def invoices_of(subscription: Subscription, kind: str | None = None) -> list[Invoice]:
    statement = select(Invoice).where(Invoice.subscription_id == subscription.id)
    if kind:
        statement = statement.where(Invoice.kind == kind)
    return list(db.session.execute(statement.order_by(Invoice.number)).scalars())


def reload(subscription: Subscription) -> Subscription:
    db.session.refresh(subscription)
    return subscription


def half_up(value: Fraction) -> int:
    """Round a non-negative amount of cents to whole cents, halves up (the test's own rounding)."""
    assert value >= 0
    return math.floor(value + Fraction(1, 2))


def prorated(price: int, start: datetime, end: datetime, at: datetime) -> int:
    """``price`` for the whole seconds left in [start, end) at ``at`` (the second under way counts)."""
    whole = int((end - start).total_seconds())
    left = int((end - at.replace(microsecond=0)).total_seconds())
    return half_up(Fraction(price) * Fraction(left, whole))


def line_amounts(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.type, line.amount) for line in invoice.lines]


def assert_numbers_gap_free(invoices: list[Invoice]) -> None:
    """Every number is INV-YYYY-NNNNNN, unique, and each year's numbers follow one another with no gap."""
    by_year: dict[int, list[int]] = {}
    for invoice in invoices:
        match = NUMBER.match(invoice.number)
        assert match, f"{invoice.number!r} is not INV-YYYY-NNNNNN"
        by_year.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    for year, numbers in by_year.items():
        numbers.sort()
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"{year}: {numbers}"


def all_invoices() -> list[Invoice]:
    return list(db.session.execute(select(Invoice).order_by(Invoice.number)).scalars())


def duplicate_periods() -> list[tuple]:
    """(subscription, period_start, count) for any period billed more than once."""
    return list(
        db.session.execute(
            select(Invoice.subscription_id, Invoice.period_start, func.count())
            .where(Invoice.kind == "period")
            .group_by(Invoice.subscription_id, Invoice.period_start)
            .having(func.count() > 1)
        ).all()
    )
