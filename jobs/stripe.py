"""Stripe jobs: drain the stored webhook events; charge one invoice attempt.

The drain itself (batches, savepoints, failure bookkeeping) is the domain's:
portal.billing.payments.drain. ``charge_invoice`` is deferred with RQ's ``Retry`` (10 s,
1 min, 5 min), which covers transient failures such as Stripe being unreachable."""

from portal.billing.payments import drain
from portal.billing.payments.services import charge
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import Invoice


def drain_stripe_events() -> int:
    """Process every stored event that is waiting, oldest first; returns how many were tried."""
    return drain.drain()


def process_stripe_event(event_id: str) -> None:
    """One stored event (jobs enqueued per event before the drain existed still name this)."""
    drain.process_one(event_id)


def charge_invoice(invoice_id: str, attempt_number: int) -> None:
    """Off-session charge of an invoice with the saved card; the attempt number is part of the
    idempotency key, so a retried job never charges twice."""
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or invoice.status != "open" or not invoice.tenant.stripe_payment_method_id:
        return
    try:
        charge(invoice, attempt_number, off_session=True)
        commit()
    except Exception:
        rollback()
        raise  # Stripe unreachable: RQ's Retry tries again, with the same idempotency key
