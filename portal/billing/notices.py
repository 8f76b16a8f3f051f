"""Billing emails (DESIGN §6): invoice issued (with its PDF), payment receipt, upcoming yearly
renewal, trial ending, cancellation confirmed, plan changed.

Each is sent once per cause. The cause's key (kind, invoice or subscription, period or instant)
is inserted into ``billing_notices`` in the transaction that queues the email, and only the
call that inserted it sends: a billing run run again, a retried job or a replayed Stripe
webhook finds the key and sends nothing (the quota notices' mechanism). Every type but the
receipt can be switched off per tenant (Billing → Emails). Amounts are in the invoice's (or
plan's) currency and dates in UTC, written as the invoice writes them ("Mar 1, 2025").
"""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from portal import audit
from portal.access import Actor
from portal.billing.money import format_money
from portal.billing.pdf import format_date
from portal.billing.profile import billing_recipients
from portal.extensions import db
from portal.infra.bulk import dialect_insert
from portal.mail import Drawn, send_email
from portal.models import (
    OPTIONAL_BILLING_EMAILS,
    BillingEmailSettings,
    BillingNotice,
    Invoice,
    PlanVersion,
    Subscription,
    Tenant,
)
from portal.models.base import new_id, utcnow
from portal.web import public_url

log = logging.getLogger(__name__)

# What the activity log calls each type (the settings form's labels).
NAMES = {
    "invoice_issued": "Invoice issued",
    "payment_receipt": "Payment receipt",
    "renewal_upcoming": "Upcoming renewal",
    "trial_ending": "Trial ending",
    "cancellation_confirmed": "Cancellation confirmed",
    "plan_changed": "Plan changed",
}
RENEWAL_NOTICE = timedelta(days=7)
TRIAL_NOTICE = timedelta(days=3)


# --- settings ------------------------------------------------------------------------------


def settings_of(tenant_id: str) -> BillingEmailSettings:
    """The tenant's choices; a new, unsaved row (everything on) when it never chose."""
    return db.session.get(BillingEmailSettings, tenant_id) or BillingEmailSettings(
        tenant_id=tenant_id, **{kind: True for kind in OPTIONAL_BILLING_EMAILS}
    )


def update_settings(actor: Actor, tenant: Tenant, wanted: dict[str, bool]) -> BillingEmailSettings:
    """Switch billing emails on or off (the receipt stays on: it is proof of a payment)."""
    settings = settings_of(tenant.tenant_id)
    changed = {}
    for kind in OPTIONAL_BILLING_EMAILS:
        value = bool(wanted.get(kind, False))
        if getattr(settings, kind) is not value:
            changed[kind] = value
        setattr(settings, kind, value)
    db.session.add(settings)
    db.session.flush()
    if changed:
        audit.record(
            actor,
            "billing.emails_updated",
            tenant,
            "tenant",
            tenant.tenant_id,
            switched_on=[NAMES[kind] for kind, on in changed.items() if on],
            switched_off=[NAMES[kind] for kind, on in changed.items() if not on],
        )
    return settings


# --- sending once --------------------------------------------------------------------------


def _claim(tenant_id: str, kind: str, key: str) -> bool:
    """Record the cause unless it is recorded; True when this call recorded it."""
    statement = (
        dialect_insert(BillingNotice.__table__)
        .values(id=new_id("bn"), tenant_id=tenant_id, kind=kind, key=key, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(BillingNotice.__table__.c.id)
    )
    return db.session.connection().execute(statement).first() is not None


def _send(tenant: Tenant, kind: str, key: str, subject: str, attachments=(), **context) -> bool:
    """Send ``kind`` for the cause ``key`` unless switched off or already sent; True when sent."""
    if not settings_of(tenant.tenant_id).wants(kind):
        return False
    addresses = billing_recipients(tenant) or ([tenant.contact_email] if tenant.contact_email else [])
    if not addresses or not _claim(tenant.tenant_id, kind, f"{kind}:{key}"):
        return False
    context = {
        "company": tenant.company_name,
        "money": format_money,
        "utc_day": format_date,
        "billing_url": public_url("billing.index"),
        "settings_url": public_url("billing.emails"),
        "optional": kind in OPTIONAL_BILLING_EMAILS,
        **context,
    }
    for address in addresses:
        send_email(address, subject, f"billing_{kind}", tenant=tenant, attachments=attachments, **context)
    log.info("Billing email %s (%s) to %d recipient(s) of %s", kind, key, len(addresses), tenant.tenant_id)
    return True


# --- the causes ----------------------------------------------------------------------------


def invoice_issued(invoice: Invoice) -> bool:
    """The invoice, with its PDF attached. ``portal.billing.invoices.issue`` defers the job that
    calls this, so a billing run's transactions draw no PDFs; the PDF itself is drawn when SMTP
    sends the message (never for the outbox)."""
    tenant = invoice.tenant
    return _send(
        tenant,
        "invoice_issued",
        invoice.id,
        f"Invoice {invoice.number} for {format_money(invoice.total, invoice.currency)}",
        attachments=[(f"{invoice.number}.pdf", "application/pdf", Drawn("invoice_pdf", invoice.id))],
        invoice=invoice,
        invoice_url=public_url("billing.invoice", invoice_id=invoice.id),
    )


def payment_receipt(invoice: Invoice, amount: int, reference: str, paid_at: datetime) -> bool:
    """The invoice is paid (card or transfer). Always sent: it cannot be switched off."""
    return _send(
        invoice.tenant,
        "payment_receipt",
        invoice.id,
        f"Receipt for invoice {invoice.number}: {format_money(amount, invoice.currency)} paid",
        invoice=invoice,
        amount=amount,
        reference=reference,
        paid_at=paid_at,
        invoice_url=public_url("billing.invoice", invoice_id=invoice.id),
    )


def cancellation_confirmed(subscription: Subscription, at: datetime) -> bool:
    """A cancellation, at the period's end or at once, as it was confirmed at ``at``."""
    version = subscription.plan_version
    ends_at = subscription.current_period_end if subscription.cancel_at_period_end else subscription.ended_at
    return _send(
        subscription.tenant,
        "cancellation_confirmed",
        f"{subscription.id}:{at.isoformat()}",
        f"Your {version.name} subscription is cancelled",
        plan_name=version.name,
        at_period_end=subscription.cancel_at_period_end,
        ends_at=ends_at,
    )


def plan_changed(
    subscription: Subscription,
    old: PlanVersion,
    new: PlanVersion,
    effective_at: datetime,
    immediate: bool,
    invoice: Invoice | None,
    at: datetime,
) -> bool:
    """A plan change made now or scheduled (the email says which, and what it was charged)."""
    return _send(
        subscription.tenant,
        "plan_changed",
        f"{subscription.id}:{at.isoformat()}:{new.id}",
        f"Your plan {'is now' if immediate else 'changes to'} {new.name}",
        old=old,
        new=new,
        effective_at=effective_at,
        immediate=immediate,
        trialing=subscription.status == "trialing",
        trial_end=subscription.trial_end,
        invoice=invoice,
        invoice_url=public_url("billing.invoice", invoice_id=invoice.id) if invoice else None,
    )


def _renewing_version(subscription: Subscription) -> PlanVersion:
    """The plan the next period is billed on (a scheduled change takes effect at the renewal)."""
    return subscription.scheduled_plan_version or subscription.plan_version


def renewal_upcoming(subscription: Subscription) -> bool:
    version = _renewing_version(subscription)
    renews_at = subscription.current_period_end
    return _send(
        subscription.tenant,
        "renewal_upcoming",
        f"{subscription.id}:{renews_at.isoformat()}",
        f"Your {subscription.plan_version.name} subscription renews on {format_date(renews_at)}",
        plan_name=subscription.plan_version.name,
        version=version,
        renews_at=renews_at,
        price=version.price,
        currency=version.currency,
        interval=version.interval,
    )


def trial_ending(subscription: Subscription) -> bool:
    version = _renewing_version(subscription)
    return _send(
        subscription.tenant,
        "trial_ending",
        f"{subscription.id}:{subscription.trial_end.isoformat()}",
        f"Your {version.name} trial ends on {format_date(subscription.trial_end)}",
        version=version,
        trial_end=subscription.trial_end,
        price=version.price,
        currency=version.currency,
        card_url=public_url("billing.payment_method"),
        has_card=bool(subscription.tenant.stripe_payment_method_id),
    )


def send_reminders(at: datetime) -> int:
    """The periodic pass (each billing run makes it): yearly renewals within 7 days and trials
    ending within 3 days of ``at``. Running it again sends nothing new. Returns emails' causes sent."""
    yearly = (
        select(Subscription)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .where(Subscription.status.in_(("active", "past_due")), PlanVersion.interval == "year")
    )
    sent = sum(
        renewal_upcoming(subscription)
        for subscription in _ending(yearly, Subscription.current_period_end, at, RENEWAL_NOTICE)
    )
    trialing = select(Subscription).where(Subscription.status == "trialing")
    return sent + sum(
        trial_ending(subscription) for subscription in _ending(trialing, Subscription.trial_end, at, TRIAL_NOTICE)
    )


def _ending(statement, end, at: datetime, notice: timedelta) -> list[Subscription]:
    """``statement``'s subscriptions, not set to cancel, whose ``end`` falls within ``notice``
    after ``at``, soonest first."""
    return db.session.scalars(
        statement.where(Subscription.cancel_at_period_end.is_(False), end > at, end <= at + notice).order_by(end)
    ).all()
