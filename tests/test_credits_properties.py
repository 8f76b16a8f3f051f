"""Properties of the credit ledger over random sequences of grants (some expiring), deductions
(some beyond the balance), billing runs that apply credit to invoices and write expired credit
off, and repeated runs (hypothesis): the balance is never negative, every entry's balance is the
true sum of what the grants hold, granted = used + expired + balance, and invoices still add up.

Each example runs inside a savepoint rolled back afterwards; examples are capped to stay fast.
"""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from portal.access import SYSTEM
from portal.billing import credits
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import CreditEntry, CreditGrant, Invoice
from tests.billing_engine_support import run_billing, subscribe, utc

pytestmark = pytest.mark.usefixtures("ctx")

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
T0 = utc(2028, 1, 15, 9)

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("grant"), st.integers(1, 20_000), st.one_of(st.none(), st.integers(1, 90 * 86400))
        ),  # expires that many seconds later
        st.tuples(st.just("deduct"), st.integers(1, 20_000), st.none()),
        st.tuples(st.just("run"), st.integers(0, 70 * 86400), st.none()),  # the clock moves, then a billing run
        st.tuples(st.just("rerun"), st.just(0), st.none()),
    ),
    min_size=1,
    max_size=14,
)


@contextmanager
def clean_state():
    db.session.close()
    savepoint = db.session.get_bind().begin_nested()
    try:
        yield
    finally:
        db.session.close()
        savepoint.rollback()


def check_ledger(tenant_id: str, at) -> None:
    grants = list(db.session.execute(select(CreditGrant).where(CreditGrant.tenant_id == tenant_id)).scalars())
    entries = list(
        db.session.execute(
            select(CreditEntry)
            .where(CreditEntry.tenant_id == tenant_id)
            .order_by(CreditEntry.created_at, CreditEntry.id)
        ).scalars()
    )
    assert all(0 <= grant.remaining <= grant.amount for grant in grants)
    assert all(entry.balance_after >= 0 for entry in entries)
    # Replaying the entries gives every recorded balance, and the last one is what the grants hold.
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running, entry
    assert running == sum(grant.remaining for grant in grants)

    summary = credits.summary(tenant_id, at=at)
    assert summary.balance >= 0
    assert summary.total_granted == summary.total_used + summary.total_expired + summary.balance
    assert summary.balance == sum(g.remaining for g in grants if g.expires_at is None or g.expires_at > at)

    invoices = list(db.session.execute(select(Invoice).where(Invoice.tenant_id == tenant_id)).scalars())
    for invoice in invoices:
        assert invoice.subtotal == sum(line.amount for line in invoice.lines), invoice.number
        assert invoice.total == invoice.subtotal - invoice.credits_applied >= 0, invoice.number
        assert invoice.status == ("open" if invoice.total else "paid"), invoice.number
    applied = -sum(entry.amount for entry in entries if entry.kind == "application")
    assert applied == sum(invoice.credits_applied for invoice in invoices)
    assert db.session.scalar(
        select(func.count())
        .select_from(CreditEntry)
        .where(CreditEntry.tenant_id == tenant_id, CreditEntry.kind == "application")
    ) == sum(1 for invoice in invoices if invoice.credits_applied)


@EXAMPLES
@given(steps=operations)
def test_balance_never_goes_negative_and_the_ledger_always_adds_up(steps):
    with clean_state():
        subscription = subscribe("starter", T0)
        tenant, at = subscription.tenant, T0
        for kind, value, expiry in steps:
            if kind == "grant":
                expires_at = at + timedelta(seconds=expiry) if expiry is not None else None
                credits.grant(SYSTEM, tenant, value, expires_at=expires_at, at=at)
                commit()
            elif kind == "deduct":
                available = credits.summary(tenant.tenant_id, at=at).balance
                if value > available:
                    with pytest.raises(credits.InsufficientCredit):
                        credits.deduct(SYSTEM, tenant, value, at=at)
                    rollback()
                else:
                    credits.deduct(SYSTEM, tenant, value, at=at)
                    commit()
            else:
                at += timedelta(seconds=value)
                run_billing(at)
            check_ledger(tenant.tenant_id, at)
