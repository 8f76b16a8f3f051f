"""Dunning (DESIGN §6): a failed payment makes the subscription past_due, tells the billing
contacts, and is retried on a schedule; when the last retry fails the subscription is unpaid
and the tenant suspended (payment_failed). The invoice stopping being owed, whichever way
(paid by card or transfer, covered by credit, voided, written off), undoes both:
``portal.billing.invoices.end_dunning``."""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from portal import audit
from portal.billing.invoices import BILLING
from portal.billing.payments import gateway
from portal.extensions import db
from portal.infra.transactions import defer
from portal.mail import send_email
from portal.models import Invoice, PaymentAttempt, Subscription, Tenant
from portal.team.services import owner_and_admin_emails
from portal.tenants.suspension import suspend
from portal.web import public_url

log = logging.getLogger(__name__)


def retry_days() -> list[int]:
    """``DUNNING_RETRY_DAYS`` ("3,5,7"): days after the first failure on which to try again."""
    raw = str(current_app.config.get("DUNNING_RETRY_DAYS", "3,5,7"))
    days = sorted({int(part) for part in raw.split(",") if part.strip().isdigit()})
    return days or [3, 5, 7]


def billing_contacts(tenant: Tenant) -> list[str]:
    """Owner and admins: the people who can pay."""
    return owner_and_admin_emails(tenant.tenant_id)


def _notify(invoice: Invoice, message: str, final: bool) -> None:
    tenant = invoice.tenant
    subject = (
        f"Account suspended: payment for invoice {invoice.number} failed"
        if final
        else f"Payment for invoice {invoice.number} failed"
    )
    context = {
        "invoice": invoice,
        "tenant_obj": tenant,
        "reason": message,
        "final": final,
        "next_attempt": invoice.next_payment_attempt_at,
        "pay_url": public_url("billing.invoice", invoice_id=invoice.id),
        "card_url": public_url("billing.payment_method"),
    }
    fallback = [tenant.contact_email] if tenant.contact_email else []  # seed 000 lets it be absent
    for email in billing_contacts(tenant) or fallback:
        send_email(email, subject, "payment_failed", tenant=tenant, **context)


def payment_failed(invoice: Invoice, message: str, at: datetime) -> None:
    """Count one failed payment of ``invoice`` (callers make sure each attempt counts once)."""
    if invoice.status != "open":
        return
    invoice.payment_failures += 1
    invoice.payment_failed_at = invoice.payment_failed_at or at
    days = retry_days()
    subscription = invoice.subscription
    final = invoice.payment_failures > len(days)
    if not final:
        invoice.next_payment_attempt_at = invoice.payment_failed_at + timedelta(days=days[invoice.payment_failures - 1])
        if subscription.status in ("active", "trialing"):
            subscription.status = "past_due"
            audit.record(
                BILLING,
                "subscription.past_due",
                invoice.tenant,
                "subscription",
                subscription.id,
                invoice=invoice.number,
            )
    else:
        invoice.next_payment_attempt_at = None
        _give_up(invoice, subscription)
    audit.record(
        BILLING,
        "invoice.payment_failed",
        invoice.tenant,
        "invoice",
        invoice.id,
        number=invoice.number,
        reason=message[:300],
        failures=invoice.payment_failures,
        final=final,
    )
    _notify(invoice, message, final)


def _give_up(invoice: Invoice, subscription: Subscription) -> None:
    if subscription.status in ("active", "trialing", "past_due"):
        subscription.status = "unpaid"
        audit.record(
            BILLING, "subscription.unpaid", invoice.tenant, "subscription", subscription.id, invoice=invoice.number
        )
    tenant = invoice.tenant
    if tenant.status == "active":
        suspend(BILLING, tenant, "payment_failed", note=f"Invoice {invoice.number} could not be collected.")


def retry_due(at: datetime) -> int:
    """Hand every invoice whose retry is due to the charge job (or count the retry as failed
    when there is no card to charge). Returns how many were handled."""
    due = list(
        db.session.execute(
            select(Invoice)
            .where(Invoice.status == "open", Invoice.next_payment_attempt_at <= at)
            .order_by(Invoice.next_payment_attempt_at)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    for invoice in due:
        invoice.next_payment_attempt_at = None  # claimed: the attempt's outcome sets the next one
        if invoice.tenant.stripe_payment_method_id and gateway.configured():
            defer("jobs.stripe.charge_invoice", invoice.id, next_attempt_number(invoice))
        else:
            payment_failed(invoice, "There is no card on file to charge.", at)
    return len(due)


def next_attempt_number(invoice: Invoice) -> int:
    from sqlalchemy import func

    last = db.session.scalar(select(func.max(PaymentAttempt.number)).where(PaymentAttempt.invoice_id == invoice.id))
    return (last or 0) + 1
