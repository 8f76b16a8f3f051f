"""The credit ledger's rules: grants and deductions, validation that changes nothing, expiry
write-offs, and credit applied to invoices by billing runs and plan changes (oldest-expiring
first, fully covered invoices paid, never twice)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import credits
from portal.billing.subscriptions import change_plan
from portal.errors import ValidationFailed
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import AuditEvent, CreditEntry, CreditGrant
from tests.billing_engine_support import bare_tenant, invoices_of, reload, run_billing, subscribe, utc

pytestmark = pytest.mark.usefixtures("ctx")

T0 = utc(2027, 3, 1, 12)
STARTER = 4900  # $49.00 a month


def ledger(tenant_id: str) -> list[tuple[str, int, int]]:
    rows = db.session.execute(
        select(CreditEntry).where(CreditEntry.tenant_id == tenant_id).order_by(CreditEntry.created_at, CreditEntry.id)
    ).scalars()
    return [(entry.kind, entry.amount, entry.balance_after) for entry in rows]


def balance(tenant_id: str, at=None) -> int:
    return credits.summary(tenant_id, at=at).balance


# --- grants and deductions -----------------------------------------------------------------


def test_a_grant_raises_the_balance_and_is_recorded_with_its_reason_and_who_gave_it():
    tenant = bare_tenant()
    credits.grant(SYSTEM, tenant, 2500, reason="Outage compensation", at=T0)
    commit()
    summary = credits.summary(tenant.tenant_id, at=T0)
    assert (summary.currency, summary.balance, summary.total_granted, summary.total_used) == ("USD", 2500, 2500, 0)
    grant = db.session.execute(select(CreditGrant).where(CreditGrant.tenant_id == tenant.tenant_id)).scalar_one()
    assert (grant.amount, grant.remaining, grant.reason, grant.created_by) == (
        2500,
        2500,
        "Outage compensation",
        "system",
    )
    assert ledger(tenant.tenant_id) == [("grant", 2500, 2500)]
    assert db.session.execute(
        select(AuditEvent.action).where(AuditEvent.tenant_id == tenant.tenant_id)
    ).scalars().all() == ["credit.granted"]


def test_a_deduction_lowers_the_balance_oldest_expiring_grant_first():
    tenant = bare_tenant()
    forever = credits.grant(SYSTEM, tenant, 1000, at=T0)
    late = credits.grant(SYSTEM, tenant, 1000, expires_at=T0 + timedelta(days=60), at=T0)
    soon = credits.grant(SYSTEM, tenant, 1000, expires_at=T0 + timedelta(days=30), at=T0)
    credits.deduct(SYSTEM, tenant, 1500, reason="Correction", at=T0)
    commit()
    assert (soon.remaining, late.remaining, forever.remaining) == (0, 500, 1000)
    assert ledger(tenant.tenant_id)[-1] == ("deduction", -1500, 1500)
    assert balance(tenant.tenant_id, T0) == 1500


@pytest.mark.parametrize(
    "amount, message",
    [
        (0, "more than zero"),
        (-500, "more than zero"),
        (10**12, "at most"),
        (12.5, "whole number"),
        (True, "whole number"),
    ],
)
def test_a_grant_or_deduction_of_a_bad_amount_is_refused_and_changes_nothing(amount, message):
    tenant = bare_tenant()
    credits.grant(SYSTEM, tenant, 1000, at=T0)
    commit()
    for action in (credits.grant, credits.deduct):
        with pytest.raises(ValidationFailed, match=message) as refused:
            action(SYSTEM, tenant, amount, at=T0)
        assert refused.value.field == "amount"
        rollback()
    assert ledger(tenant.tenant_id) == [("grant", 1000, 1000)]


def test_deducting_more_than_the_balance_is_refused_with_the_balance_and_changes_nothing():
    tenant = bare_tenant()
    grant = credits.grant(SYSTEM, tenant, 1000, at=T0)
    commit()
    with pytest.raises(
        credits.InsufficientCredit, match=r"Cannot deduct \$10\.01: the credit balance is only \$10\.00"
    ):
        credits.deduct(SYSTEM, tenant, 1001, at=T0)
    rollback()
    assert db.session.get(CreditGrant, grant.id).remaining == 1000
    assert ledger(tenant.tenant_id) == [("grant", 1000, 1000)]


def test_a_grant_expiring_in_the_past_or_with_a_bad_currency_is_refused():
    tenant = bare_tenant()
    with pytest.raises(ValidationFailed, match="future"):
        credits.grant(SYSTEM, tenant, 1000, expires_at=T0 - timedelta(seconds=1), at=T0)
    with pytest.raises(ValidationFailed, match="three-letter"):
        credits.grant(SYSTEM, tenant, 1000, currency="dollars", at=T0)
    rollback()
    assert ledger(tenant.tenant_id) == []


def test_credit_in_another_currency_is_kept_apart():
    tenant = bare_tenant()
    credits.grant(SYSTEM, tenant, 1000, currency="eur", at=T0)
    commit()
    assert credits.summary(tenant.tenant_id, "EUR", at=T0).balance == 1000
    assert balance(tenant.tenant_id, T0) == 0
    with pytest.raises(credits.InsufficientCredit):
        credits.deduct(SYSTEM, tenant, 1, currency="USD", at=T0)
    rollback()


# --- expiry --------------------------------------------------------------------------------


def test_expired_credit_counts_as_expired_at_once_and_the_billing_run_writes_it_off_once():
    tenant = bare_tenant()
    credits.grant(SYSTEM, tenant, 700, expires_at=T0 + timedelta(days=10), reason="Trial credit", at=T0)
    credits.grant(SYSTEM, tenant, 300, at=T0)
    commit()
    later = T0 + timedelta(days=11)
    summary = credits.summary(tenant.tenant_id, at=later)
    assert (summary.balance, summary.total_granted, summary.total_expired) == (300, 1000, 700)

    run_billing(later)
    run_billing(later + timedelta(days=1))  # again: nothing more to write off
    assert ledger(tenant.tenant_id) == [("grant", 700, 700), ("grant", 300, 1000), ("expiry", -700, 300)]
    summary = credits.summary(tenant.tenant_id, at=later)
    assert (summary.balance, summary.total_expired, summary.total_used) == (300, 700, 0)


def test_expired_credit_cannot_be_deducted():
    tenant = bare_tenant()
    credits.grant(SYSTEM, tenant, 700, expires_at=T0 + timedelta(days=1), at=T0)
    commit()
    with pytest.raises(credits.InsufficientCredit, match=r"only \$0\.00"):
        credits.deduct(SYSTEM, tenant, 100, at=T0 + timedelta(days=2))
    rollback()
    assert ledger(tenant.tenant_id) == [("grant", 700, 700)]


# --- invoices ------------------------------------------------------------------------------


def test_the_billing_run_applies_credit_oldest_expiring_first_and_lowers_the_total():
    subscription = subscribe("starter", T0)
    tenant = subscription.tenant
    forever = credits.grant(SYSTEM, tenant, 1500, reason="Goodwill", at=T0)
    soon = credits.grant(SYSTEM, tenant, 1000, expires_at=T0 + timedelta(days=45), at=T0)
    later = credits.grant(SYSTEM, tenant, 1000, expires_at=T0 + timedelta(days=90), at=T0)
    commit()

    run_billing(utc(2027, 4, 1, 12))
    renewal = invoices_of(subscription)[-1]
    assert (renewal.subtotal, renewal.credits_applied, renewal.total, renewal.status) == (
        STARTER,
        3500,
        STARTER - 3500,
        "open",
    )
    assert sum(line.amount for line in renewal.lines) == renewal.subtotal
    assert (soon.remaining, later.remaining, forever.remaining) == (0, 0, 0)
    entry = db.session.execute(select(CreditEntry).where(CreditEntry.invoice_id == renewal.id)).scalar_one()
    assert (entry.kind, entry.amount, entry.balance_after) == ("application", -3500, 0)
    assert entry.description == f"Applied to invoice {renewal.number}"


def test_an_invoice_fully_covered_by_credit_is_paid_and_the_rest_stays():
    subscription = subscribe("starter", T0)
    credits.grant(SYSTEM, subscription.tenant, 10_000, at=T0)
    commit()
    run_billing(utc(2027, 4, 1, 12))
    renewal = invoices_of(subscription)[-1]
    assert (renewal.credits_applied, renewal.total, renewal.status, renewal.amount_due) == (STARTER, 0, "paid", 0)
    assert renewal.paid_at == utc(2027, 4, 1, 12)
    assert balance(subscription.tenant_id, utc(2027, 4, 2)) == 10_000 - STARTER


def test_rerunning_a_billing_run_does_not_apply_credit_twice():
    subscription = subscribe("starter", T0)
    credits.grant(SYSTEM, subscription.tenant, 6000, at=T0)
    commit()
    at = utc(2027, 4, 1, 12)
    run_billing(at)
    run_billing(at)
    run_billing(at + timedelta(hours=1))
    applied = [entry for entry in ledger(subscription.tenant_id) if entry[0] == "application"]
    assert applied == [("application", -STARTER, 6000 - STARTER)]
    assert len(invoices_of(subscription)) == 2
    # The next period takes what is left.
    run_billing(utc(2027, 5, 1, 12))
    assert invoices_of(subscription)[-1].credits_applied == 6000 - STARTER
    assert balance(subscription.tenant_id, utc(2027, 5, 2)) == 0


def test_credit_expired_before_the_invoice_is_written_off_not_applied():
    subscription = subscribe("starter", T0)
    credits.grant(SYSTEM, subscription.tenant, 2000, expires_at=utc(2027, 3, 20), at=T0)
    commit()
    run_billing(utc(2027, 4, 1, 12))
    renewal = invoices_of(subscription)[-1]
    assert (renewal.credits_applied, renewal.total) == (0, STARTER)
    assert ledger(subscription.tenant_id) == [("grant", 2000, 2000), ("expiry", -2000, 0)]


def test_a_proration_invoice_takes_credit_too():
    subscription = subscribe("starter", T0)
    credits.grant(SYSTEM, subscription.tenant, 500_000, at=T0)
    commit()
    _, invoice = change_plan(SYSTEM, reload(subscription), "enterprise", at=T0 + timedelta(days=10))
    commit()
    assert invoice.kind == "proration" and invoice.subtotal > 0
    assert (invoice.credits_applied, invoice.total, invoice.status) == (invoice.subtotal, 0, "paid")
    assert balance(subscription.tenant_id, T0 + timedelta(days=11)) == 500_000 - invoice.subtotal


def test_an_invoice_issued_without_credit_is_unchanged():
    subscription = subscribe("starter", T0)
    run_billing(utc(2027, 4, 1, 12))
    renewal = invoices_of(subscription)[-1]
    assert (renewal.subtotal, renewal.credits_applied, renewal.total, renewal.status) == (STARTER, 0, STARTER, "open")
    assert ledger(subscription.tenant_id) == []
